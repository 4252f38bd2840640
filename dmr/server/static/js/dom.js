// DOM helpers. Text always goes in as text nodes or textContent: nothing here parses HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = String(v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h("div", {class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function fmtBytes(n) {
  if (n === undefined || n === null || Number.isNaN(Number(n))) return "–";
  n = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtDate(sec) {
  if (!sec) return "–";
  return new Date(sec * 1000).toLocaleString();
}

export function fmtTime(sec) {
  if (!sec) return "–";
  return new Date(sec * 1000).toLocaleTimeString();
}

export function fmtDuration(sec) {
  if (sec === undefined || sec === null || !Number.isFinite(sec)) return "–";
  if (sec < 0) sec = 0;
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m}m ${Math.round(sec % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return String(text ?? ""); }
}

export function parseJSON(text) {
  try { return JSON.parse(text); } catch { return null; }
}

/** A modal built from a <dialog>: resolves with the form's values, or null when cancelled. */
export function modal(title, fields, okText = "OK") {
  return new Promise((resolve) => {
    const inputs = fields.map((f) => h("input", {
      name: f.name, value: f.value ?? "", placeholder: f.placeholder ?? "", "aria-label": f.label,
    }));
    const form = h("form", { method: "dialog", class: "modal-form" },
      h("h3", { text: title }),
      fields.map((f, i) => (f.message
        ? h("p", { class: "modal-message", text: f.message })
        : h("label", {}, h("span", { text: f.label }), inputs[i]))),
      h("div", { class: "modal-actions" },
        h("button", { type: "button", class: "secondary", value: "cancel", text: "Cancel",
          onclick: () => dlg.close("cancel") }),
        h("button", { type: "submit", value: "ok", class: "primary", text: okText })));
    const dlg = h("dialog", { class: "modal" }, form);
    dlg.addEventListener("close", () => {
      const ok = dlg.returnValue === "ok";
      const out = {};
      fields.forEach((f, i) => { if (!f.message) out[f.name] = inputs[i].value; });
      dlg.remove();
      resolve(ok ? out : null);
    });
    document.body.append(dlg);
    dlg.showModal();
    const first = inputs.find((x, i) => !fields[i].message);
    if (first) first.focus();
  });
}

export function confirmModal(message, okText = "Delete") {
  return modal("Confirm", [{ name: "_", message }], okText).then((r) => r !== null);
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const t = h("div", { class: `toast ${kind}`, role: "status", text: message });
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}
