// The shell: a hash router over the pages, each a module with mount(root, params) -> cleanup.

import { clear, h } from "./dom.js";
import { getJSON } from "./api.js";
import { startSampler } from "./sampler.js";
import * as chat from "./pages/chat.js";
import * as models from "./pages/models.js";
import * as requests from "./pages/requests.js";
import * as running from "./pages/running.js";
import * as logs from "./pages/logs.js";
import * as dashboard from "./pages/dashboard.js";

const PAGES = { chat, models, requests, running, logs, dashboard };
let cleanup = null;

function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [name, query] = raw.split("?");
  const page = PAGES[name] ? name : "chat";
  const params = new URLSearchParams(query || "");
  if (cleanup) {
    try { cleanup(); } catch (e) { console.error(e); }
    cleanup = null;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === page);
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = clear(document.getElementById("view"));
  const root = h("section", { class: `page page-${page}`, id: `page-${page}` });
  view.append(root);
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · Docker Model Runner`;
  try {
    cleanup = PAGES[page].mount(root, params) || null;
  } catch (e) {
    root.append(h("p", { class: "error", text: String(e) }));
  }
}

window.addEventListener("hashchange", route);
route();
startSampler();
getJSON("/version").then((v) => {
  document.getElementById("version").textContent = `${v.version} · ${v.backend || ""}`;
}).catch(() => {});
