// The review queue from the keyboard: j / ArrowDown and k / ArrowUp move between findings,
// c confirms the one selected, f calls it a false positive (each verdict is posted in the
// background and the next finding is selected), Enter opens its call at the finding.
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;
  const rows = Array.from(document.querySelectorAll("[data-testid=queue-row]"));
  const message = document.getElementById("review-message");
  const keys = {c: "confirmed", f: "false_positive"};
  let selected = -1;

  function select(index) {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((row, i) => { row.classList.toggle("selected", i === selected); row.dataset.selected = String(i === selected); });
    rows[selected].scrollIntoView({block: "nearest"});
  }

  async function judge(row, verdict) {
    const response = await fetch(`/qa/findings/${row.dataset.findingId}/verdict`, {
      method: "POST", credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
      body: new URLSearchParams({verdict: verdict})});
    const body = await response.json().catch(() => ({}));
    message.textContent = body.message || String(response.status);
    message.className = response.ok ? "ok" : "error";
    message.hidden = false;
    if (response.ok) {
      row.dataset.status = verdict;
      row.querySelector("[data-testid=queue-status]").textContent = row.querySelector(`[data-verdict=${verdict}]`).textContent;
      select(rows.indexOf(row) + 1);
    }
  }

  rows.forEach((row, i) => {
    row.addEventListener("click", () => select(i));
    for (const button of row.querySelectorAll("button.verdict")) {
      button.addEventListener("click", (e) => { e.stopPropagation(); select(i); judge(row, button.dataset.verdict); });
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("form, input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j" || e.key === "ArrowDown") { select(selected + 1); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { select(selected - 1); e.preventDefault(); }
    else if (keys[e.key] && selected >= 0) { judge(rows[selected], keys[e.key]); }
    else if (e.key === "Enter" && selected >= 0) { window.location = rows[selected].querySelector("[data-testid=queue-open]").href; }
  });
  select(0);
})();
