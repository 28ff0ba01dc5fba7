// Foundry's console, live: every element with data-live="<path>" is replaced by the HTML fragment
// that path answers, every few seconds while the tab is visible. A fragment that did not change
// is left alone, and a <details> the operator opened stays open across a refresh. Without this
// script the pages still work: they are only not live.
"use strict";

(function () {
  const PERIOD_MS = 3000;
  const state = () => document.getElementById("live-state");

  function show(text, kind) {
    const element = state();
    if (element) {
      element.textContent = text;
      element.className = kind;
    }
  }

  async function refresh(region) {
    let response;
    try {
      // A signed-out browser is answered 401, never redirected to the sign-in page's HTML.
      response = await fetch(region.dataset.live, {
        credentials: "same-origin",
        cache: "no-store",
        redirect: "error",
        headers: { Accept: "text/html" },
      });
    } catch (error) {
      show("Not updating: Foundry is unreachable", "stale");
      return;
    }
    if (!response.ok) {
      show(response.status === 401 ? "Not updating: sign in again" : "Not updating", "stale");
      return;
    }
    const html = await response.text();
    show("Live", "live");
    if (html === region.dataset.shown) {
      return;
    }
    const open = Array.from(region.querySelectorAll("details[open][id]"), (d) => d.id);
    region.innerHTML = html;
    region.dataset.shown = html;
    for (const id of open) {
      const details = document.getElementById(id);
      if (details) {
        details.open = true;
      }
    }
  }

  async function tick() {
    if (document.visibilityState !== "hidden") {
      await Promise.all(Array.from(document.querySelectorAll("[data-live]"), refresh));
    }
    window.setTimeout(tick, PERIOD_MS);
  }

  if (document.querySelector("[data-live]")) {
    show("Live", "live");
    window.setTimeout(tick, PERIOD_MS);
  }
})();
