// The wallboard: polls /wallboard/data every 2 s and redraws; pause / resume a campaign.
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;
  const S = JSON.parse(document.getElementById("strings").textContent);
  const $ = (id) => document.getElementById(id);
  function cell(row, text) { const td = document.createElement("td"); td.textContent = text == null ? "" : String(text); row.appendChild(td); return td; }
  function since(s) { if (s == null) return ""; s = Math.max(0, s); const m = Math.floor(s / 60); return `${m}:${String(s % 60).padStart(2, "0")}`; }
  function pct(x) { return (100 * x).toFixed(1) + " %"; }

  async function command(name, cmd) {
    const response = await fetch(`/wallboard/campaigns/${encodeURIComponent(name)}/${cmd}`, {
      method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}});
    const body = await response.json().catch(() => ({}));
    const message = $("wall-message");
    if (!response.ok) { message.textContent = body.message || String(response.status); message.hidden = false; }
    else { message.hidden = true; }
    refresh();
  }

  const canListen = $("wallboard-calls").dataset.canListen === "true";
  // Barge into a call a live finding is about: the supervisor's own barge action (the
  // console calls the supervisor's phone into the call); refused as any barge would be.
  function barge(callId) { listen(callId, "barge"); }

  // A supervisor listens in on a call: the console calls the supervisor's own phone.
  async function listen(callId, mode) {
    const response = await fetch(`/wallboard/calls/${encodeURIComponent(callId)}/${mode}`, {
      method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}});
    const body = await response.json().catch(() => ({}));
    const message = $("wall-listen-message");
    message.textContent = response.ok ? (S["wall.calling_you"] || "").replace("{mode}", S["wall." + mode]).replace("{agent}", body.agent)
      : (body.message || String(response.status));
    message.className = response.ok ? "ok" : "error";
    message.dataset.ok = response.ok ? "true" : "false"; message.dataset.mode = mode;
    message.hidden = false;
  }

  function draw(data) {
    $("wall-updated").textContent = data.at;
    const live = new Set(data.calls.map((c) => c.call_id));
    const campaigns = $("wall-campaigns"); campaigns.replaceChildren();
    for (const c of data.campaigns) {
      const row = document.createElement("tr");
      row.setAttribute("data-testid", "wall-campaign-row"); row.dataset.campaign = c.name; row.dataset.status = c.status;
      cell(row, c.name); cell(row, c.status + " · " + c.mode);
      cell(row, c.dial_level == null ? "–" : c.dial_level.toFixed(2)); cell(row, c.lines == null ? "–" : c.lines);
      cell(row, `${c.dials_today} (${c.answered_today})`);
      cell(row, `${pct(c.abandon_rate)} (${c.abandoned_today})`).setAttribute("data-testid", "wall-abandon-rate");
      cell(row, c.connects_last_hour).setAttribute("data-testid", "wall-connects-hour");
      const f = c.figures || {};
      cell(row, f.error ? f.error : (f.cases == null ? "" : `${f.dialable_now} / ${f.cases}`)).setAttribute("data-testid", "wall-progress");
      cell(row, Object.entries(f.blocked_by || {}).map(([k, v]) => `${k} ${v}`).join(", "));
      const actions = cell(row, "");
      if (c.status === "running" || c.status === "paused") {
        const pause = c.status === "running";
        const button = document.createElement("button");
        button.textContent = pause ? S["wall.pause"] : S["wall.resume"];
        button.setAttribute("data-testid", pause ? "btn-campaign-pause" : "btn-campaign-resume");
        button.addEventListener("click", () => command(c.name, pause ? "pause" : "resume"));
        actions.appendChild(button);
      }
      campaigns.appendChild(row);
      for (const alert of c.alerts || []) {  // not yet acknowledged (`dunning alerts --ack ID`)
        const line = document.createElement("tr");
        line.setAttribute("data-testid", "wall-alert"); line.dataset.kind = alert.kind; line.className = "alert";
        const td = cell(line, `⚠ ${alert.raised_at} ${alert.kind}: ${alert.message}`); td.colSpan = 9;
        const act = cell(line, "");
        if (alert.call_id) {  // a live finding: the call it is about, and barging into it while it lasts
          line.dataset.callId = alert.call_id;
          if (live.has(alert.call_id)) {
            const button = document.createElement("button");
            button.textContent = S["wall.barge"]; button.setAttribute("data-testid", "btn-barge");
            button.dataset.callId = alert.call_id;
            button.addEventListener("click", () => barge(alert.call_id));
            act.appendChild(button);
          } else { act.textContent = S["wall.call_over"]; }
        }
        campaigns.appendChild(line);
      }
    }
    const agents = $("wall-agents"); agents.replaceChildren();
    for (const a of data.agents) {
      const row = document.createElement("tr");
      row.setAttribute("data-testid", "wall-agent-row"); row.dataset.extension = a.extension; row.dataset.state = a.state;
      row.className = "state-" + a.state;
      cell(row, a.extension); cell(row, a.name);
      cell(row, (S["state." + a.state] || a.state) + (a.reason ? " (" + (S["pause." + a.reason] || a.reason) + ")" : "")
        + (a.line ? " · " + (S["wall.line_" + a.line] || a.line) : ""));
      row.dataset.line = a.line || "";
      cell(row, since(a.seconds)); cell(row, a.campaign); cell(row, a.call_id);
      agents.appendChild(row);
    }
    const calls = $("wall-calls"); calls.replaceChildren();
    for (const c of data.calls) {
      const row = document.createElement("tr"); row.setAttribute("data-testid", "wall-call-row"); row.dataset.callId = c.call_id;
      cell(row, c.call_id); cell(row, c.campaign); cell(row, c.number); cell(row, c.stage); cell(row, c.agent); cell(row, since(c.seconds));
      const actions = cell(row, "");
      if (canListen && c.stage === "talking") {
        for (const mode of ["listen", "whisper", "barge"]) {
          const button = document.createElement("button");
          button.textContent = S["wall." + mode]; button.setAttribute("data-testid", "btn-" + mode);
          button.addEventListener("click", () => listen(c.call_id, mode));
          actions.appendChild(button);
        }
      }
      calls.appendChild(row);
    }
    if (!data.calls.length) { const row = document.createElement("tr"); cell(row, S["wall.none"]); calls.appendChild(row); }
  }

  async function refresh() {
    const response = await fetch("/wallboard/data", {credentials: "same-origin", headers: {"Accept": "application/json"}});
    if (response.status === 401) { location.href = "/login?expired=1"; return; }
    if (response.ok) draw(await response.json());
  }
  refresh();
  setInterval(refresh, 2000);
})();
