// sovereign-mcp operator dashboard: polls /dashboard/fragment and posts the controls with the CSRF token.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const every = parseInt(document.querySelector('meta[name="refresh-ms"]').content, 10) || 3000;
  const panels = document.getElementById("panels");
  const flash = document.getElementById("flash");
  const updated = document.getElementById("updated");
  const dialog = document.getElementById("confirm");
  let pending = null;

  function say(text, bad) {
    flash.textContent = text;
    flash.className = bad ? "error" : "";
  }

  async function refresh() {
    if (dialog.open) return;  // keep the page still while a confirm dialog is open
    try {
      const r = await fetch("/dashboard/fragment", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { window.location.assign("/dashboard"); return; }
      if (!r.ok) { say("refresh failed: HTTP " + r.status, true); return; }
      const open = Array.from(panels.querySelectorAll("details[open] > summary")).map((s) => s.textContent);
      panels.innerHTML = await r.text();
      panels.querySelectorAll("details > summary").forEach((s) => {
        if (open.includes(s.textContent)) s.parentElement.open = true;
      });
      updated.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      say("refresh failed: " + e, true);
    }
  }

  async function post(url) {
    try {
      const r = await fetch(url, { method: "POST", credentials: "same-origin",
                                   headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) say(body.error || ("HTTP " + r.status), true);
      else say(body.message || "done", false);
    } catch (e) {
      say(String(e), true);
    }
    refresh();
  }

  panels.addEventListener("click", (event) => {
    const button = event.target.closest("button.ctl");
    if (!button || button.disabled) return;
    const text = button.dataset.confirm;
    if (!text) { post(button.dataset.url); return; }
    pending = button.dataset.url;
    document.getElementById("confirm-title").textContent = button.dataset.title || "Confirm";
    document.getElementById("confirm-text").textContent = text;
    dialog.showModal();
  });
  dialog.addEventListener("close", () => {
    const url = pending;
    pending = null;
    if (dialog.returnValue === "ok" && url) post(url);
  });
  setInterval(refresh, every);
  updated.textContent = "updated " + new Date().toLocaleTimeString();
})();
