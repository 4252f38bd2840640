// Models: the local store (GET /models), pull with a progress bar per layer (POST /models/create's JSON
// lines), delete with confirmation, tag, inspect (GGUF metadata, config) and a chat action.

import { clear, confirmModal, fmtBytes, fmtDate, h, modal, toast } from "../dom.js";
import { errorOf, getJSON, lines, request } from "../api.js";

function short(id) {
  return String(id || "").replace(/^sha256:/, "").slice(0, 12);
}

export function mount(root) {
  const ref = h("input", { id: "pull-ref", placeholder: "ai/smollm2 or hf.co/org/repo", "aria-label": "Model reference",
    autocomplete: "off", spellcheck: "false" });
  const pullBtn = h("button", { type: "submit", class: "primary", id: "pull", text: "Pull" });
  const progress = h("div", { class: "pull-progress", id: "pull-progress" });
  const table = h("tbody", { id: "models-body" });
  const inspect = h("div", { class: "inspect", id: "inspect" });
  const form = h("form", { class: "pull-form" }, ref, pullBtn);
  let pulling = null;
  root.append(
    h("h2", { text: "Models" }),
    form,
    progress,
    h("div", { class: "table-wrap" }, h("table", { class: "models" },
      h("thead", {}, h("tr", {}, ["Model", "Parameters", "Quantization", "Architecture", "Context", "Size", "Created", ""]
        .map((t) => h("th", { text: t })))),
      table)),
    inspect);

  async function refresh() {
    let list;
    try {
      list = await getJSON("/models");
    } catch (e) {
      toast(`Models: ${e.message}`, "error");
      return;
    }
    clear(table);
    if (!list.length) table.append(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "No models yet: pull one above." })));
    for (const m of list) {
      const cfg = m.config || {};
      const name = (m.tags && m.tags[0]) || short(m.id);
      table.append(h("tr", { dataset: { id: m.id, tags: (m.tags || []).join(" ") } },
        h("td", { class: "name" }, h("strong", { text: name }),
          h("div", { class: "tags" }, (m.tags || []).length > 1 ? m.tags.map((t) => h("span", { class: "tag", dataset: { tag: t } }, t,
            h("button", { type: "button", class: "icon untag", title: `Remove the tag ${t}`, "aria-label": `Remove the tag ${t}`,
              text: "×", onclick: () => untag(t) }))) : null),
          h("div", { class: "muted mono", text: short(m.id) })),
        h("td", { "data-label": "Parameters", text: cfg.parameters || "–" }),
        h("td", { "data-label": "Quantization", text: cfg.quantization || "–" }),
        h("td", { "data-label": "Architecture", text: cfg.architecture || "–" }),
        h("td", { "data-label": "Context", text: cfg.context_size || "–" }),
        h("td", { "data-label": "Size", text: cfg.size || "–" }),
        h("td", { "data-label": "Created", text: fmtDate(m.created) }),
        h("td", { class: "actions" },
          h("a", { class: "button primary", href: `#/chat?model=${encodeURIComponent(name)}`, text: "Chat" }),
          h("button", { type: "button", class: "secondary", text: "Inspect", onclick: () => show(name) }),
          h("button", { type: "button", class: "secondary", text: "Tag", onclick: () => tag(name) }),
          h("button", { type: "button", class: "danger delete", text: "Delete", onclick: () => remove(m) }))));
    }
  }

  async function show(name) {
    clear(inspect);
    try {
      const m = await getJSON(`/models/${name}`);
      const cfg = { ...(m.config || {}) };
      const gguf = cfg.gguf || {};
      delete cfg.gguf;
      inspect.append(h("h3", { text: `Inspect ${name}` }),
        h("button", { type: "button", class: "secondary close", text: "Close", onclick: () => clear(inspect) }),
        h("h4", { text: "Config" }), kv(cfg),
        h("h4", { text: "GGUF metadata" }), kv(gguf),
        h("details", {}, h("summary", { text: "JSON" }), h("pre", { class: "json", text: JSON.stringify(m, null, 2) })));
      inspect.scrollIntoView({ block: "nearest" });
    } catch (e) {
      toast(e.message, "error");
    }
  }

  function kv(obj) {
    return h("table", { class: "kv" }, h("tbody", {}, Object.entries(obj).map(([k, v]) =>
      h("tr", {}, h("th", { text: k }), h("td", { class: "mono", text: typeof v === "object" ? JSON.stringify(v) : String(v) })))));
  }

  async function tag(name) {
    const r = await modal(`Tag ${name}`, [{ name: "target", label: "New tag (repo:tag)", placeholder: "myorg/mymodel:v1" }], "Tag");
    if (!r || !r.target.trim()) return;
    const target = r.target.trim();
    const i = target.lastIndexOf(":");
    const repo = i > target.lastIndexOf("/") ? target.slice(0, i) : target;
    const t = i > target.lastIndexOf("/") ? target.slice(i + 1) : "latest";
    const resp = await request(`/models/${name}/tag?repo=${encodeURIComponent(repo)}&tag=${encodeURIComponent(t)}`, { method: "POST" });
    if (!resp.ok) toast((await errorOf(resp)).message, "error");
    else toast(`Tagged ${repo}:${t}`);
    refresh();
  }

  async function untag(t) {
    if (!(await confirmModal(`Remove the tag ${t}? The model stays under its other tags.`, "Remove tag"))) return;
    const resp = await request(`/models/${t}`, { method: "DELETE" });
    if (!resp.ok) toast((await errorOf(resp)).message, "error");
    else toast(`Removed the tag ${t}`);
    refresh();
  }

  async function remove(m) {
    const tags = m.tags || [];
    const name = tags[0] || short(m.id);
    const what = tags.length > 1 ? `${name} and its tags ${tags.slice(1).join(", ")}` : name;
    if (!(await confirmModal(`Delete ${what} from the local store?`))) return;
    const path = tags.length > 1 ? `/models/${m.id}?force=true` : `/models/${name}`;
    const resp = await request(path, { method: "DELETE" });
    if (!resp.ok) toast((await errorOf(resp)).message, "error");
    else toast(`Deleted ${name}`);
    refresh();
  }

  function bar(label, cls) {
    const fill = h("div", { class: "fill" });
    const text = h("span", { class: "bar-text" });
    const el = h("div", { class: `progress ${cls}` }, h("span", { class: "bar-label", text: label }), h("div", { class: "bar" }, fill), text);
    return { el, set(cur, totalBytes) {
      const pct = totalBytes ? Math.min(100, (100 * cur) / totalBytes) : 0;
      fill.style.width = `${pct}%`;
      el.dataset.percent = pct.toFixed(0);
      text.textContent = `${pct.toFixed(0)}% · ${fmtBytes(cur)} / ${fmtBytes(totalBytes)}`;
    } };
  }

  async function pull(reference) {
    clear(progress);
    const status = h("div", { class: "pull-status", id: "pull-status", text: `Pulling ${reference}…` });
    const overall = bar("Total", "overall");
    overall.el.id = "pull-total";
    const layers = new Map();
    const layerBox = h("div", { class: "layers" });
    progress.append(status, overall.el, layerBox);
    pulling = new AbortController();
    pullBtn.disabled = true;
    let totalBytes = 0;
    try {
      const r = await request("/models/create", { method: "POST", json: { from: reference }, signal: pulling.signal,
        headers: { Accept: "application/json" } });
      if (!r.ok) throw await errorOf(r);
      for await (const line of lines(r)) {
        if (!line.trim()) continue;
        let ev;
        try { ev = JSON.parse(line); } catch { continue; }
        if (ev.type === "error") throw new Error(ev.message);
        if (ev.message) status.textContent = ev.message;
        if (ev.total) totalBytes = ev.total;
        if (ev.layer && ev.layer.id) {
          let b = layers.get(ev.layer.id);
          if (!b) {
            b = { ...bar(short(ev.layer.id), "layer"), current: 0, size: ev.layer.size };
            layers.set(ev.layer.id, b);
            layerBox.append(b.el);
          }
          b.current = ev.layer.current;
          b.set(ev.layer.current, ev.layer.size);
          const done = [...layers.values()].reduce((a, x) => a + (x.current || 0), 0);
          overall.set(done, totalBytes || [...layers.values()].reduce((a, x) => a + (x.size || 0), 0));
        }
        if (ev.type === "success") {
          for (const b of layers.values()) b.set(b.size, b.size);
          overall.set(totalBytes || 1, totalBytes || 1);
          status.textContent = ev.message || "Pulled";
          progress.dataset.state = "done";
          toast(ev.message || `Pulled ${reference}`);
        }
      }
    } catch (e) {
      if (e.name !== "AbortError") {
        status.textContent = `Error: ${e.message}`;
        status.classList.add("error");
        progress.dataset.state = "error";
      }
    } finally {
      pulling = null;
      pullBtn.disabled = false;
      refresh();
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = ref.value.trim();
    if (v && !pulling) pull(v);
  });
  refresh();
  return () => { if (pulling) pulling.abort(); };
}
