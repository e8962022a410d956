// The QA player: a playback is logged by POST .../play (with the reason), which returns the
// audio URL; the browser then fetches it with HTTP range requests and starts at the offset (#t=).
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;
  const page = document.querySelector("[data-testid=recording-page]");
  const player = document.getElementById("qa-player");
  const message = document.getElementById("play-message");
  let url = null;

  async function start(offset) {
    if (!url) {
      const response = await fetch(`/qa/recordings/${page.dataset.recordingId}/play`, {
        method: "POST", credentials: "same-origin",
        headers: {"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        body: new URLSearchParams({reason: document.getElementById("play-reason").value})});
      const body = await response.json().catch(() => ({}));
      if (!response.ok || body.ok === false) { message.textContent = body.message || String(response.status); message.hidden = false; return; }
      url = body.url;
      player.src = url + (offset > 0 ? `#t=${offset}` : "");
      player.dataset.started = "true";
    } else {
      player.currentTime = offset;
    }
    player.dataset.requestedOffset = String(offset);
    try { await player.play(); } catch (e) { /* autoplay rules: the controls still work */ }
  }

  // Verdicts are posted in the background so that the recording keeps playing.
  for (const form of document.querySelectorAll("form.verdict")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch(form.action, {
        method: "POST", credentials: "same-origin",
        headers: {"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        body: new URLSearchParams({verdict: form.dataset.verdict})});
      const body = await response.json().catch(() => ({}));
      const note = document.getElementById("verdict-message");
      note.textContent = body.message || String(response.status);
      note.className = response.ok ? "ok" : "error";
      note.hidden = false;
      if (response.ok) {
        const row = form.closest("[data-testid=finding-row]");
        row.dataset.status = form.dataset.verdict;
        row.querySelector("[data-testid=finding-status]").textContent = form.dataset.verdict;
      }
    });
  }

  document.getElementById("btn-play").addEventListener("click", (e) => start(parseFloat(e.target.dataset.offset || "0")));
  for (const button of document.querySelectorAll("[data-testid=jump-offset]")) {
    button.addEventListener("click", () => start(parseFloat(button.dataset.offset)));
  }
  // A line of the conversation plays the call from where it was said (Enter does too).
  for (const line of document.querySelectorAll("[data-testid=conv-line]")) {
    line.addEventListener("click", () => start(parseFloat(line.dataset.start)));
    line.addEventListener("keydown", (e) => { if (e.key === "Enter") start(parseFloat(line.dataset.start)); });
  }
})();
