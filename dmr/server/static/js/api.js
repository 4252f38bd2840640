// The HTTP API, same origin only. With an API key configured (DMR_API_KEY) a 401 makes the page ask for
// the key, which then goes on every call as `Authorization: Bearer`; streams are read with fetch (an
// EventSource cannot send headers).

import { modal } from "./dom.js";

const KEY = "dmr.apiKey";
let asking = null;

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

async function askKey(rejected) {
  if (!asking) {
    asking = modal(rejected ? "API key rejected: enter the server's API key" : "This server needs an API key",
      [{ name: "key", label: "API key (DMR_API_KEY)", value: "" }], "Use key")
      .then((r) => { asking = null; if (r && r.key) { setApiKey(r.key.trim()); return true; } return false; });
  }
  return asking;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** fetch() against this server with the key; a 401 asks for the key and tries again. */
export async function request(path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = new Headers(opts.headers || {});
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    if (opts.json !== undefined) {
      headers.set("Content-Type", "application/json");
    }
    const init = { ...opts, headers, credentials: "same-origin", cache: "no-store" };
    if (opts.json !== undefined) init.body = JSON.stringify(opts.json);
    delete init.json;
    const r = await fetch(path, init);
    if (r.status === 401 && attempt < 5 && !(opts.signal && opts.signal.aborted)) {
      if (await askKey(Boolean(key))) continue;
    }
    return r;
  }
}

export async function errorOf(r) {
  let msg = `${r.status} ${r.statusText}`;
  try {
    const text = await r.text();
    const d = JSON.parse(text);
    msg = (d.error && (d.error.message || d.error)) || d.message || text || msg;
  } catch { /* keep the status line */ }
  return new ApiError(r.status, typeof msg === "string" ? msg : JSON.stringify(msg));
}

export async function getJSON(path, opts = {}) {
  const r = await request(path, opts);
  if (!r.ok) throw await errorOf(r);
  return r.json();
}

export async function getText(path, opts = {}) {
  const r = await request(path, opts);
  if (!r.ok) throw await errorOf(r);
  return r.text();
}

/** The body's lines as they arrive. */
export async function* lines(response) {
  const reader = response.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        yield buf.slice(0, i).replace(/\r$/, "");
        buf = buf.slice(i + 1);
      }
    }
    buf += dec.decode();
    if (buf) yield buf;
  } finally {
    reader.releaseLock();
  }
}

/** Server-sent events: {event, data} per event (data lines joined). */
export async function* sse(response) {
  let event = "message";
  let data = [];
  for await (const line of lines(response)) {
    if (line === "") {
      if (data.length) yield { event, data: data.join("\n") };
      event = "message";
      data = [];
    } else if (line.startsWith("data:")) {
      data.push(line.slice(5).replace(/^ /, ""));
    } else if (line.startsWith("event:")) {
      event = line.slice(6).trim();
    }
  }
  if (data.length) yield { event, data: data.join("\n") };
}

/** Parse Prometheus' text format: [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
