// Logs: a live tail of GET /logs?follow=true with pause and a text filter.

import { h } from "../dom.js";
import { errorOf, lines, request } from "../api.js";

const MAX_LINES = 5000;

export function mount(root) {
  const filter = h("input", { id: "logs-filter", type: "search", placeholder: "Filter", "aria-label": "Filter lines" });
  const pause = h("button", { type: "button", class: "secondary", id: "logs-pause", text: "Pause" });
  const status = h("span", { class: "live", id: "logs-live", text: "connecting…" });
  const out = h("div", { class: "log", id: "log", role: "log" });
  root.append(h("h2", { text: "Logs" }), h("div", { class: "toolbar" }, filter, pause, status), out);
  let paused = false;
  let held = [];

  const matches = (text) => !filter.value || text.toLowerCase().includes(filter.value.toLowerCase());
  function add(text) {
    const line = h("div", { class: `line${/\b(ERROR|CRITICAL)\b/.test(text) ? " err" : /\bWARNING\b/.test(text) ? " warn" : ""}`, text });
    line.hidden = !matches(text);
    const stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 8;
    out.append(line);
    while (out.childElementCount > MAX_LINES) out.firstElementChild.remove();
    if (stick) out.scrollTop = out.scrollHeight;
  }
  filter.addEventListener("input", () => { for (const l of out.children) l.hidden = !matches(l.textContent); });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    status.textContent = paused ? "paused" : "live";
    if (!paused) { held.forEach(add); held = []; }
  });

  const controller = new AbortController();
  (async () => {
    try {
      const r = await request("/logs?follow=true", { signal: controller.signal });
      if (!r.ok) throw await errorOf(r);
      status.textContent = "live";
      status.classList.add("on");
      for await (const text of lines(r)) {
        if (paused) held.push(text);
        else add(text);
      }
      status.textContent = "ended";
    } catch (e) {
      if (e.name !== "AbortError") status.textContent = `disconnected: ${e.message}`;
    }
  })();
  return () => controller.abort();
}
