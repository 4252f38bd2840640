// Dashboard: charts from /metrics (sampled since the page opened: see sampler.js) and the recorder:
// tokens/s and TTFT over the last minutes, requests in flight, memory per resident model against the
// budget, requests and tokens per minute.

import { clear, fmtBytes, h } from "../dom.js";
import { getJSON } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { sampleOnce, samples, subscribe } from "../sampler.js";
import { describe } from "./requests.js";

const WINDOW = 10 * 60 * 1000;

export function mount(root) {
  const grid = h("div", { class: "charts", id: "charts" });
  root.append(h("h2", { text: "Dashboard" }), grid);
  let recorded = [];
  let budget = null;

  function perMinute(fn) {
    const buckets = new Map();
    for (const r of recorded) {
      const m = Math.floor((r.timestamp * 1000) / 60000) * 60000 + 30000;
      buckets.set(m, (buckets.get(m) || 0) + fn(r));
    }
    return [...buckets.entries()].sort((a, b) => a[0] - b[0]).map(([t, v]) => ({ t, v }));
  }

  function draw() {
    const series = (pick) => samples.map((x) => ({ t: x.t, v: pick(x), dot: true })).filter((p) => p.v !== null && p.v !== undefined);
    const last = samples[samples.length - 1];
    const mem = last ? Object.entries(last.memory).map(([label, value]) => ({ label, value })) : [];
    clear(grid).append(
      lineChart("Tokens/s (mean per interval)", series((x) => x.tps.value), { unit: "tok/s", windowMs: WINDOW }),
      lineChart("Time to first token", series((x) => x.ttft.value), { unit: "s", windowMs: WINDOW }),
      lineChart("Requests in flight", samples.map((x) => ({ t: x.t, v: x.inflight })), { unit: "", windowMs: WINDOW }),
      barChart("Memory per resident model", mem, (last && last.budget) || budget, fmtBytes,
        last && last.budget ? "budget" : "device memory"),
      lineChart("Requests per minute (recorder)", perMinute(() => 1), { unit: "req", windowMs: WINDOW, kind: "bars" }),
      lineChart("Tokens per minute (recorder)", perMinute((r) => describe(r).usage.total || 0), { unit: "tok", windowMs: WINDOW, kind: "bars" }));
  }

  async function refreshRecorder() {
    try {
      const groups = await getJSON("/engines/requests");
      recorded = groups.flatMap((g) => g.records || []);
    } catch { recorded = []; }
    draw();
  }

  getJSON("/version").then((v) => {
    const totalMem = (v.devices || []).reduce((a, d) => a + (d.memory_total || 0), 0);
    budget = totalMem || null;
    draw();
  }).catch(() => {});
  const unsub = subscribe(draw);
  sampleOnce().catch(() => {});
  refreshRecorder();
  const poll = setInterval(refreshRecorder, 5000);
  draw();
  return () => { unsub(); clearInterval(poll); };
}
