// Samples /metrics every few seconds from the page's start, so that the dashboard has the last minutes
// whichever page was open: per interval the mean tokens/s and TTFT of the requests that finished in it
// (from the histograms' sums and counts), requests in flight, memory per resident model.

import { getText, parseMetrics } from "./api.js";

export const INTERVAL_MS = 3000;
const KEEP = 400; // 20 minutes
export const samples = [];
const listeners = new Set();
let timer = null;
let prev = null;

function total(ms, name, filter = () => true) {
  return ms.filter((m) => m.name === name && filter(m.labels)).reduce((a, m) => a + m.value, 0);
}

function ratio(ms, base, last) {
  const sum = total(ms, `${base}_sum`);
  const count = total(ms, `${base}_count`);
  if (!last) return { sum, count, value: count ? sum / count : null };
  const dc = count - last.count;
  return { sum, count, value: dc > 0 ? (sum - last.sum) / dc : null };
}

export async function sampleOnce() {
  const ms = parseMetrics(await getText("/metrics"));
  const tps = ratio(ms, "dmr_generation_tokens_per_second", prev && prev.tps);
  const ttft = ratio(ms, "dmr_time_to_first_token_seconds", prev && prev.ttft);
  const memory = {};
  for (const m of ms) if (m.name === "dmr_model_memory_bytes") memory[m.labels.model] = m.value;
  const budget = total(ms, "dmr_memory_budget_bytes") || null;
  const sample = {
    t: Date.now(),
    tps,
    ttft,
    inflight: total(ms, "dmr_slots_busy") + total(ms, "dmr_requests_waiting"),
    requests: total(ms, "dmr_requests_total"),
    memory,
    budget,
  };
  prev = sample;
  samples.push(sample);
  if (samples.length > KEEP) samples.shift();
  for (const fn of listeners) fn(sample);
  return sample;
}

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function startSampler() {
  if (timer) return;
  const tick = () => { sampleOnce().catch(() => {}); };
  tick();
  timer = setInterval(tick, INTERVAL_MS);
}
