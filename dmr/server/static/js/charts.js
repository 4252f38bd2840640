// Small SVG charts (no library): a line chart over time and horizontal bars.

import { h, s } from "./dom.js";

const W = 320;
const H = 120;
const PAD = { l: 40, r: 8, t: 8, b: 18 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v >= 1000) return `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k`;
  if (v >= 10 || v === 0) return v.toFixed(0);
  return v.toFixed(v >= 1 ? 1 : 2);
}

/** points: [{t: ms, v: number}] over the window ending now. */
export function lineChart(title, points, { unit = "", windowMs = 10 * 60 * 1000, kind = "line" } = {}) {
  const now = Date.now();
  const t0 = now - windowMs;
  const pts = points.filter((p) => p.t >= t0 && Number.isFinite(p.v));
  const max = niceMax(Math.max(0, ...pts.map((p) => p.v)));
  const x = (t) => PAD.l + ((t - t0) / windowMs) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    svg.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy, class: "grid" }),
      s("text", { x: PAD.l - 4, y: yy + 3, class: "axis", "text-anchor": "end", text: fmt(max * f) }));
  }
  svg.append(s("text", { x: PAD.l, y: H - 4, class: "axis", text: `-${Math.round(windowMs / 60000)} min` }),
    s("text", { x: W - PAD.r, y: H - 4, class: "axis", "text-anchor": "end", text: "now" }));
  if (kind === "bars") {
    const bw = Math.max(2, (W - PAD.l - PAD.r) / (windowMs / 60000) - 2);
    for (const p of pts) {
      svg.append(s("rect", { x: x(p.t) - bw / 2, y: y(p.v), width: bw, height: Math.max(0, y(0) - y(p.v)), class: "bar-fill" },
        s("title", { text: `${fmt(p.v)} ${unit}` })));
    }
  } else if (pts.length) {
    svg.append(s("polyline", { points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "), class: "series" }));
    for (const p of pts.filter((q) => q.dot)) svg.append(s("circle", { cx: x(p.t), cy: y(p.v), r: 2.5, class: "dot" }, s("title", { text: `${fmt(p.v)} ${unit}` })));
  }
  const last = pts.length ? pts[pts.length - 1].v : null;
  return h("figure", { class: "chart", dataset: { points: String(pts.length), title } },
    h("figcaption", {}, h("span", { text: title }), h("span", { class: "chart-last", text: last === null ? "no data yet" : `${fmt(last)} ${unit}` })),
    svg);
}

/** bars: [{label, value}] against `total` (drawn as the full width). */
export function barChart(title, bars, total, fmtValue, totalLabel = "budget") {
  const rowH = 22;
  const height = Math.max(1, bars.length) * rowH + 20;
  const max = total || Math.max(1, ...bars.map((b) => b.value));
  const svg = s("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart-svg", role: "img", "aria-label": title });
  bars.forEach((b, i) => {
    const yy = i * rowH + 4;
    const wFull = W - 8;
    svg.append(s("rect", { x: 4, y: yy, width: wFull, height: rowH - 6, class: "bar-bg" }),
      s("rect", { x: 4, y: yy, width: Math.max(1, (b.value / max) * wFull), height: rowH - 6, class: "bar-fill" }),
      s("text", { x: 8, y: yy + rowH - 10, class: "bar-label", text: `${b.label} · ${fmtValue(b.value)}` }));
  });
  if (!bars.length) svg.append(s("text", { x: 8, y: 16, class: "axis", text: "no model resident" }));
  svg.append(s("text", { x: 4, y: height - 4, class: "axis", text: total ? `${totalLabel} ${fmtValue(total)}` : "" }));
  return h("figure", { class: "chart", dataset: { points: String(bars.length), title } },
    h("figcaption", {}, h("span", { text: title }), h("span", { class: "chart-last", text: bars.length ? fmtValue(bars.reduce((a, b) => a + b.value, 0)) : "–" })),
    svg);
}
