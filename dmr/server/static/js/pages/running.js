// Running: resident models (GET /engines/ps) with backend, mode, memory and time until idle unload; unload;
// per-model settings (context size, keep-alive, speculative draft) through /engines/_configure, which
// persists them across restarts.

import { clear, fmtBytes, fmtDuration, h, toast } from "../dom.js";
import { errorOf, getJSON, request } from "../api.js";

export function mount(root) {
  const body = h("tbody", { id: "running-body" });
  const model = h("select", { id: "cfg-model", "aria-label": "Model" });
  const ctx = h("input", { id: "cfg-context", type: "number", min: "-1", step: "1", placeholder: "model default" });
  const keep = h("input", { id: "cfg-keep-alive", placeholder: "5m, 1h, 0, -1" });
  const draft = h("input", { id: "cfg-draft", placeholder: "draft model (optional)" });
  const ntok = h("input", { id: "cfg-draft-tokens", type: "number", min: "1", step: "1", placeholder: "draft tokens" });
  const saved = h("pre", { class: "json", id: "cfg-saved" });
  const form = h("form", { class: "configure", id: "configure" },
    h("label", {}, h("span", { text: "Model" }), model),
    h("label", {}, h("span", { text: "Context size" }), ctx),
    h("label", {}, h("span", { text: "Keep-alive" }), keep),
    h("label", {}, h("span", { text: "Speculative draft model" }), draft),
    h("label", {}, h("span", { text: "Draft tokens" }), ntok),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary", id: "cfg-save", text: "Save settings" })));
  root.append(h("h2", { text: "Running" }),
    h("div", { class: "table-wrap" }, h("table", { class: "running" },
      h("thead", {}, h("tr", {}, ["Model", "Backend", "Mode", "Memory", "State", "Idle unload in", ""].map((t) => h("th", { text: t })))),
      body)),
    h("h3", { text: "Model settings" }),
    h("p", { class: "muted", text: "Saved with _configure: they apply at the next load and persist across restarts." }),
    form, saved);

  let ps = [];
  function draw() {
    clear(body);
    if (!ps.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No model is loaded." })));
    const now = Date.now() / 1000;
    for (const r of ps) {
      const state = r.loading ? "loading" : r.in_use ? "in use" : "idle";
      const left = r.in_use || r.loading ? "–" : r.keep_alive === "-1" || !r.until ? "never" : fmtDuration(r.until - now);
      body.append(h("tr", { dataset: { model: r.model_name } },
        h("td", { text: r.model_name }), h("td", { text: r.backend_name }), h("td", { text: r.mode }),
        h("td", { text: fmtBytes(r.memory_estimate) }), h("td", { text: state }), h("td", { class: "until", text: left }),
        h("td", {}, h("button", { type: "button", class: "danger unload", text: "Unload", onclick: () => unload(r.model_name) }))));
    }
  }

  async function refresh() {
    try { ps = await getJSON("/engines/ps"); } catch (e) { toast(`Running: ${e.message}`, "error"); return; }
    draw();
  }

  async function unload(name) {
    const r = await request("/engines/unload", { method: "POST", json: { models: [name] } });
    if (!r.ok) toast((await errorOf(r)).message, "error");
    else toast(`Unloaded ${name}`);
    refresh();
  }

  async function loadConfig() {
    const name = model.value;
    if (!name) return;
    let doc = [];
    try { doc = await getJSON(`/engines/_configure?model=${encodeURIComponent(name)}`); } catch { doc = []; }
    const cfg = (doc[0] && doc[0].Config) || {};
    ctx.value = cfg["context-size"] ?? "";
    keep.value = cfg.keep_alive ?? "";
    draft.value = (cfg.speculative && cfg.speculative.draft_model) || "";
    ntok.value = (cfg.speculative && cfg.speculative.num_tokens) || "";
    saved.textContent = doc.length ? JSON.stringify(doc[0], null, 2) : "No saved settings for this model.";
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const doc = { model: model.value };
    if (ctx.value !== "") doc["context-size"] = parseInt(ctx.value, 10);
    if (keep.value.trim()) doc.keep_alive = keep.value.trim();
    if (draft.value.trim()) {
      doc.speculative = { draft_model: draft.value.trim() };
      if (ntok.value !== "") doc.speculative.num_tokens = parseInt(ntok.value, 10);
    }
    const r = await request("/engines/_configure", { method: "POST", json: doc });
    if (!r.ok) { toast((await errorOf(r)).message, "error"); return; }
    toast(`Saved settings for ${doc.model}`);
    form.dataset.saved = String(Date.now());
    await loadConfig();
    refresh();
  });
  model.addEventListener("change", loadConfig);

  getJSON("/models").then((list) => {
    for (const m of list) {
      const name = (m.tags && m.tags[0]) || m.id;
      model.append(h("option", { value: name, text: name }));
    }
    loadConfig();
  }).catch((e) => toast(e.message, "error"));
  refresh();
  const poll = setInterval(refresh, 3000);
  const tick = setInterval(draw, 1000);
  return () => { clearInterval(poll); clearInterval(tick); };
}
