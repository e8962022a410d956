// The agent page: presence buttons, the WebSocket (presence, case pop-up, counters), the
// disposition form. Every POST carries the session's CSRF token (X-CSRF-Token).
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;
  const S = JSON.parse(document.getElementById("strings").textContent);
  const $ = (id) => document.getElementById(id);
  const tr = (key, values) => (S[key] || key).replace(/\{(\w+)(:[^}]*)?\}/g, (m, k) => (values && k in values ? values[k] : m));
  let presence = null;
  let currentCase = null;
  let wrapTimer = null;

  async function post(url, data) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
      body: new URLSearchParams(data),
    });
    let body = {};
    try { body = await response.json(); } catch (e) { body = {message: response.statusText}; }
    return {ok: response.ok && body.ok !== false, status: response.status, body};
  }

  function show(el, on) { el.hidden = !on; }
  function cell(row, text) { const td = document.createElement("td"); td.textContent = text == null ? "" : String(text); row.appendChild(td); return td; }

  function applyPresence(p) {
    presence = p;
    const state = $("agent-state");
    state.dataset.state = p.state;
    state.textContent = S["state." + p.state] || p.state;
    const req = $("agent-requested");
    req.dataset.requested = p.requested;
    req.textContent = (S["state." + (p.requested === "paused" ? "paused" : p.requested)] || p.requested)
      + (p.reason ? " (" + (S["pause." + p.reason] || p.reason) + ")" : "");
    const blocked = !p.can_ready;
    $("btn-ready").disabled = blocked || p.requested === "ready";
    show($("ready-blocked"), blocked);
    $("btn-ready").dataset.blocked = blocked ? "true" : "false";
    clearInterval(wrapTimer);
    const left = $("wrap-up-left");
    if (p.state === "wrap_up" && p.wrap_up_left_s != null) {
      let s = p.wrap_up_left_s;
      const tick = () => { left.textContent = tr("agent.wrap_up_left", {s: Math.max(0, s)}); s -= 1; };
      tick(); wrapTimer = setInterval(tick, 1000); show(left, true);
    } else { show(left, false); }
    const line = $("agent-line");
    line.dataset.line = p.line || "";
    line.textContent = p.line ? (S["line." + p.line] || p.line) : "";
    show($("agent-line-row"), !!p.line);
    if (p.pending_call_id) { showDisposition(p.pending_call_id); }
  }

  function applyCounters(c) {
    $("counter-dials").textContent = `${c.dials} / ${c.dials_target} (${Math.round(c.dials_pct)} %)`;
    $("counter-effective").textContent = `${c.effective} / ${c.effective_target} (${Math.round(c.effective_pct)} %)`;
    $("counter-connects").textContent = String(c.connects);
    $("counter-talk").textContent = `${c.talk_min} min`;
    $("counter-rule").textContent = tr("agent.effective_rule", {s: c.effective_seconds});
  }

  function applyCase(card) {
    currentCase = card;
    const panel = $("case-panel");
    if (panel.dataset.callId !== card.call_id) consulting(false);
    panel.dataset.callId = card.call_id;
    panel.dataset.caseId = card.case_id;
    panel.classList.add("popped");
    show($("case-waiting"), false);
    show($("case-body"), true);
    $("case-debtor").textContent = card.debtor_name;
    $("case-reference").textContent = card.reference;
    $("case-client").textContent = card.client + " · " + card.campaign;
    $("case-amount").textContent = card.amount_due + " " + card.currency;
    $("case-dpd").textContent = String(card.days_past_due);
    $("case-due-date").textContent = card.due_date || "";
    $("case-id-number").textContent = card.id_number || "";
    $("case-status").textContent = card.status;
    $("case-local-time").textContent = `${card.local_time} (${card.timezone}, ${card.window})`;
    const warning = $("third-party-warning");
    warning.textContent = card.third_party ? tr("case.third_party", {note: card.third_party_note}) : "";
    show(warning, card.third_party);
    const phones = $("case-phones"); phones.replaceChildren();
    for (const p of card.phones) {
      const row = document.createElement("tr");
      row.dataset.testid = "phone-row"; row.setAttribute("data-testid", "phone-row");
      row.dataset.dialled = p.dialled ? "true" : "false";
      if (p.dialled) row.className = "dialled";
      cell(row, (S["phone." + p.role] || p.role) + (p.contact_name ? ` (${p.contact_name}${p.relation ? ", " + p.relation : ""})` : ""));
      cell(row, p.number);
      cell(row, [p.dialled ? S["case.dialled"] : "", p.valid ? "" : S["case.invalid"], p.do_not_call ? S["case.do_not_call"] : ""].filter(Boolean).join(" · "));
      phones.appendChild(row);
    }
    const promises = $("case-promises"); promises.replaceChildren();
    for (const p of card.promises) { const row = document.createElement("tr"); cell(row, p.amount); cell(row, p.due); cell(row, p.status); promises.appendChild(row); }
    if (!card.promises.length) { const row = document.createElement("tr"); cell(row, S["case.none"]); promises.appendChild(row); }
    const appointments = $("case-appointments"); appointments.replaceChildren();
    for (const a of card.appointments) { const li = document.createElement("li"); li.textContent = `${a.at} · ${a.requested_by} · ${a.note} · ${a.status}`; appointments.appendChild(li); }
    const history = $("case-history"); history.replaceChildren();
    for (const h of card.history) {
      const row = document.createElement("tr"); if (h.current) row.className = "current";
      cell(row, h.at); cell(row, h.number); cell(row, h.outcome); cell(row, h.agent);
      cell(row, (h.disposition ? (S["code." + h.disposition] || h.disposition) : "") + (h.note ? ": " + h.note : ""));
      history.appendChild(row);
    }
    $("callback-label").textContent = tr("dispo.callback_at", {tz: card.timezone});
    if (!card.disposed) showDisposition(card.call_id);
  }

  function showDisposition(callId) {
    const form = $("disposition-form");
    if ($("dispo-call-id").value !== callId) { form.reset(); $("dispo-call-id").value = callId; codeChanged(); show($("dispo-message"), false); }
    show($("disposition-panel"), true);
  }

  function codeChanged() {
    const code = $("dispo-code").value;
    show($("promise-fields"), code === "promise_to_pay");
    show($("callback-fields"), code === "callback");
  }

  async function ask(requested) {
    const data = {requested};
    if (requested === "paused") data.reason = $("pause-reason").value;
    const result = await post("/agent/presence", data);
    const message = $("presence-message");
    if (result.ok) { show(message, false); applyPresence(result.body); }
    else { message.textContent = result.body.message || String(result.status); show(message, true); }
  }

  $("btn-ready").addEventListener("click", () => ask("ready"));
  $("btn-pause").addEventListener("click", () => ask("paused"));
  $("btn-logout-queue").addEventListener("click", () => ask("logged_out"));
  $("dispo-code").addEventListener("change", codeChanged);
  $("disposition-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(event.target).entries());
    delete data.csrf_token;
    $("dispo-submit").disabled = true;
    const result = await post("/agent/disposition", data);
    $("dispo-submit").disabled = false;
    const message = $("dispo-message");
    message.textContent = result.body.message || String(result.status);
    message.className = result.ok ? "ok" : "error";
    message.dataset.ok = result.ok ? "true" : "false";
    show(message, true);
    if (result.ok) {
      show($("disposition-panel"), false);
      $("dispo-call-id").value = "";
      if (currentCase) currentCase.disposed = true;
      $("case-panel").dataset.disposed = "true";
      applyPresence(result.body.presence);
      const saved = $("presence-message"); saved.textContent = result.body.message; saved.className = "ok"; show(saved, true);
    }
  });

  // The call's controls, each with a key (Alt+letter; listed on the page and in docs/agent.md).
  function callMessage(result, text) {
    const message = $("call-message");
    message.textContent = result.ok ? text : (result.body.message || String(result.status));
    message.className = result.ok ? "ok" : "error";
    message.dataset.ok = result.ok ? "true" : "false";
    message.dataset.action = result.action;
    show(message, true);
  }
  async function callAction(action, url, data, done, refused) {
    const callId = $("case-panel").dataset.callId;
    if (!callId) return;
    const result = await post(url, Object.assign({call_id: callId}, data || {}));
    result.action = action;
    if (!result.ok && result.status === 409 && refused) refused();
    callMessage(result, result.ok ? done(result.body) : "");
  }
  const hangUp = () => callAction("hangup", "/agent/call/hangup", {}, () => S["call.done_hangup"]);
  // Alt+T: on a persistent line an attended transfer (the debtor on hold while the agent talks
  // with the supervisor; Alt+T again completes it, Alt+X or Esc cancels it), else a hand-over.
  let onHold = false;
  function consulting(on) {
    onHold = on;
    $("case-panel").dataset.consulting = on ? "true" : "false";
    show($("transfer-consult"), on);
  }
  const endTransfer = (how) => onHold && callAction(  // 409: the consultation or the call is over
    "transfer_" + how, "/agent/call/transfer/" + how, {}, (b) => { consulting(false); return tr("call.done_" + how, b); },
    () => consulting(false));
  const transfer = () => onHold ? endTransfer("complete") : callAction("transfer", "/agent/call/transfer", {}, (b) => {
    consulting(!!b.consult);
    return tr(b.consult ? "call.done_consult" : "call.done_transfer", b);
  });
  const markNumber = (mark) => callAction("number", "/agent/call/number", {mark},
    () => tr("call.done_number", {mark: S[mark === "wrong" ? "call.wrong" : "call.invalid"]}));
  function callback() {
    const callId = $("case-panel").dataset.callId;
    if (!callId || (currentCase && currentCase.disposed)) return;
    showDisposition(callId);
    $("dispo-code").value = "callback"; codeChanged();
    $("dispo-callback-at").focus();
  }
  $("btn-hangup").addEventListener("click", hangUp);
  $("btn-transfer").addEventListener("click", transfer);
  $("btn-transfer-complete").addEventListener("click", () => endTransfer("complete"));
  $("btn-transfer-cancel").addEventListener("click", () => endTransfer("cancel"));
  $("btn-wrong-number").addEventListener("click", () => markNumber("wrong"));
  $("btn-invalid-number").addEventListener("click", () => markNumber("invalid"));
  $("btn-callback").addEventListener("click", callback);
  const KEYS = {h: hangUp, t: transfer, x: () => endTransfer("cancel"), w: () => markNumber("wrong"),
                i: () => markNumber("invalid"), c: callback, s: () => $("disposition-form").requestSubmit()};
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && onHold) { event.preventDefault(); endTransfer("cancel"); return; }
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    const run = KEYS[event.key.toLowerCase()] || KEYS[(event.code || "").replace(/^Key/, "").toLowerCase()];
    if (run) { event.preventDefault(); run(); }
  });

  let delay = 500;
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/agent");
    const status = $("ws-status");
    ws.onopen = () => { delay = 500; status.dataset.connected = "true"; show(status, false); };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "presence") applyPresence(message);
      else if (message.type === "case") applyCase(message.case);
      else if (message.type === "counters") applyCounters(message);
    };
    ws.onclose = (event) => {
      status.dataset.connected = "false"; show(status, true);
      if (event.code === 4401) { location.href = "/login?expired=1"; return; }
      setTimeout(connect, delay); delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
