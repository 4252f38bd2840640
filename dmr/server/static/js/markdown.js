// A small markdown renderer that builds DOM nodes: model text only ever becomes text nodes (textContent),
// never HTML. Fenced code blocks, headings, lists, quotes, paragraphs; inline code, bold, italic, links
// (http/https only, shown with their address). Raw HTML in the text stays visible as text.

import { h } from "./dom.js";

const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g;

function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[2] !== undefined) out.push(h("code", { text: m[2] }));
    else if (m[3] !== undefined || m[4] !== undefined) out.push(h("strong", {}, inline(m[3] ?? m[4])));
    else if (m[5] !== undefined) out.push(h("em", {}, inline(m[5])));
    else if (m[6] !== undefined) {
      out.push(h("a", { href: m[7], rel: "noopener noreferrer nofollow", target: "_blank",
        referrerpolicy: "no-referrer", title: m[7], text: m[6] }));
    }
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function codeBlock(lang, code) {
  const copy = h("button", { type: "button", class: "copy", text: "Copy" });
  copy.addEventListener("click", () => {
    navigator.clipboard?.writeText(code).then(() => { copy.textContent = "Copied"; }, () => {});
  });
  return h("div", { class: "codeblock" },
    h("div", { class: "codebar" }, h("span", { text: lang || "code" }), copy),
    h("pre", {}, h("code", { text: code })));
}

/** Render `text` to a DocumentFragment. */
export function render(text) {
  const frag = document.createDocumentFragment();
  const src = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) {
      const p = h("p");
      para.forEach((line, k) => { if (k) p.append(h("br")); p.append(...inline(line).map(
        (x) => (typeof x === "string" ? document.createTextNode(x) : x))); });
      frag.append(p);
      para = [];
    }
  };
  while (i < src.length) {
    const line = src[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+.#-]*)/);
    if (fence) {
      flush();
      const close = fence[1];
      const body = [];
      i++;
      while (i < src.length && !src[i].trim().startsWith(close)) body.push(src[i++]);
      i++; // the closing fence (or the end of a still-streaming answer)
      frag.append(codeBlock(fence[2], body.join("\n")));
      continue;
    }
    const head = line.match(/^(#{1,6})\s+(.*)$/);
    if (head) {
      flush();
      frag.append(h(`h${Math.min(head[1].length + 2, 6)}`, {}, inline(head[2])));
      i++;
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (item) {
      flush();
      const ordered = /\d/.test(item[1]);
      const list = h(ordered ? "ol" : "ul");
      while (i < src.length) {
        const m = src[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        list.append(h("li", {}, inline(m[2])));
        i++;
      }
      frag.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quoted = [];
      while (i < src.length && /^\s*>/.test(src[i])) quoted.push(src[i++].replace(/^\s*>\s?/, ""));
      const q = h("blockquote");
      q.append(render(quoted.join("\n")));
      frag.append(q);
      continue;
    }
    if (/^\s*([-*_])\s*\1\s*\1[\s\-*_]*$/.test(line)) {
      flush();
      frag.append(h("hr"));
      i++;
      continue;
    }
    if (line.trim() === "") flush();
    else para.push(line);
    i++;
  }
  flush();
  return frag;
}

/** Split a model's text into its reasoning (<think>…</think>) and its answer. */
export function splitThinking(text) {
  const m = String(text ?? "").match(/^\s*<think>([\s\S]*?)(<\/think>|$)([\s\S]*)$/);
  if (!m) return { reasoning: "", answer: text ?? "" };
  return { reasoning: m[1].trim(), answer: m[3].replace(/^\s+/, "") };
}
