// Requests: the recorder (GET /engines/requests), live from its event stream; filter by model; per request
// Overview (token usage, response metadata, generation speed, prompt and response), Request and Response.

import { clear, fmtDuration, fmtTime, h, parseJSON, pretty, toast } from "../dom.js";
import { errorOf, request, sse } from "../api.js";

function contentText(c) {
  if (typeof c === "string") return c;
  if (Array.isArray(c)) return c.map((p) => (typeof p === "string" ? p : p.text || (p.type ? `[${p.type}]` : ""))).join(" ");
  return c === undefined || c === null ? "" : JSON.stringify(c);
}

/** The prompt and the response text of a record, whatever dialect it was spoken in. */
export function describe(rec) {
  const req = parseJSON(rec.request) || {};
  const resp = parseJSON(rec.response) || {};
  let promptText = "";
  let msgs = req.messages;
  if (!msgs && Array.isArray(req.input)) msgs = req.input;
  if (Array.isArray(msgs) && msgs.length) {
    const users = msgs.filter((m) => m && (m.role === "user" || !m.role));
    const last = users[users.length - 1] || msgs[msgs.length - 1];
    promptText = contentText(last.content);
  } else if (req.prompt !== undefined) promptText = contentText(req.prompt);
  else if (typeof req.input === "string") promptText = req.input;
  else if (req.query !== undefined) promptText = contentText(req.query);
  let answer = "";
  const choice = resp.choices && resp.choices[0];
  if (choice) answer = contentText(choice.message ? choice.message.content : choice.text);
  else if (resp.message) answer = contentText(resp.message.content);
  else if (typeof resp.response === "string") answer = resp.response;
  else if (Array.isArray(resp.content)) answer = contentText(resp.content);
  else if (typeof resp.output_text === "string") answer = resp.output_text;
  else if (Array.isArray(resp.output)) answer = resp.output.map((o) => contentText(o.content)).join("");
  const u = resp.usage || {};
  const usage = {
    prompt: u.prompt_tokens ?? u.input_tokens ?? resp.prompt_eval_count,
    completion: u.completion_tokens ?? u.output_tokens ?? resp.eval_count,
  };
  usage.total = u.total_tokens ?? ((usage.prompt ?? 0) + (usage.completion ?? 0) || undefined);
  const created = resp.created || resp.created_at;
  let duration = rec.duration_ms !== undefined ? rec.duration_ms / 1000 : undefined;
  if (duration === undefined && typeof created === "number" && rec.timestamp) duration = Math.max(0, rec.timestamp - created);
  const speed = duration && usage.completion ? usage.completion / duration : undefined;
  return { req, resp, promptText, answer, usage, duration, speed, finish: choice && choice.finish_reason };
}

export function mount(root) {
  const records = new Map();
  let selected = null;
  const filter = h("select", { id: "requests-model", "aria-label": "Filter by model" }, h("option", { value: "", text: "All models" }));
  const live = h("span", { class: "live", id: "requests-live", text: "connecting…" });
  const body = h("tbody", { id: "requests-body" });
  const detail = h("div", { class: "request-detail", id: "request-detail" });
  root.append(h("h2", { text: "Requests" }),
    h("div", { class: "toolbar" }, filter, live),
    h("div", { class: "table-wrap" }, h("table", { class: "requests" },
      h("thead", {}, h("tr", {}, ["Time", "Model", "API", "Prompt", "Context", "Took", "Status"].map((t) => h("th", { text: t })))),
      body)),
    detail);

  function draw() {
    const models = [...new Set([...records.values()].map((r) => r.model))].sort();
    const cur = filter.value;
    clear(filter).append(h("option", { value: "", text: "All models" }), ...models.map((m) => h("option", { value: m, text: m, selected: m === cur })));
    clear(body);
    const rows = [...records.values()].filter((r) => !cur || r.model === cur).sort((a, b) => (a.id < b.id ? 1 : -1));
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No requests yet." })));
    for (const r of rows) {
      const d = describe(r);
      body.append(h("tr", { class: `${r.id === selected ? "selected" : ""} ${r.status_code >= 400 ? "failed" : ""}`, dataset: { id: r.id }, tabindex: 0,
        onclick: () => open(r.id), onkeydown: (e) => { if (e.key === "Enter") open(r.id); } },
        h("td", { text: fmtTime(r.timestamp) }),
        h("td", { text: r.model }),
        h("td", {}, h("span", { class: "tag", text: r.dialect || "openai" })),
        h("td", { class: "prompt", text: d.promptText.slice(0, 120) }),
        h("td", { text: d.usage.total ?? "–" }),
        h("td", { text: fmtDuration(d.duration) }),
        h("td", { text: r.status_code })));
    }
  }

  function open(id) {
    selected = id;
    const r = records.get(id);
    if (!r) return;
    const d = describe(r);
    const panes = {
      Overview: () => h("div", { class: "overview" },
        h("div", { class: "cards" },
          card("Prompt tokens", d.usage.prompt), card("Completion tokens", d.usage.completion), card("Total tokens", d.usage.total),
          card("Generation speed", d.speed ? `${d.speed.toFixed(1)} tokens/s` : "–"), card("Took", fmtDuration(d.duration)),
          card("Status", r.status_code)),
        h("table", { class: "kv" }, h("tbody", {}, [
          ["Model", r.model], ["API", r.dialect || "openai"], ["Endpoint", `${r.method} ${r.url}`], ["Response ID", d.resp.id],
          ["Finish reason", d.finish], ["User agent", r.user_agent], ["Origin", r.origin], ["Time", new Date(r.timestamp * 1000).toLocaleString()],
          ["Error", r.error],
        ].filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", { text: v }))))),
        h("h4", { text: "Prompt" }), h("pre", { class: "text prompt-text", text: d.promptText }),
        h("h4", { text: "Response" }), h("pre", { class: "text response-text", text: d.answer || r.error || "" })),
      Request: () => h("pre", { class: "json request-json", text: pretty(r.request) }),
      Response: () => h("pre", { class: "json response-json", text: pretty(r.response) }),
    };
    const pane = h("div", { class: "pane" });
    const tabs = h("div", { class: "tabs", role: "tablist" });
    const pick = (name) => {
      for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.tab === name));
      clear(pane).append(panes[name]());
    };
    for (const name of Object.keys(panes)) {
      tabs.append(h("button", { type: "button", role: "tab", class: "tab", dataset: { tab: name }, text: name, onclick: () => pick(name) }));
    }
    clear(detail).append(h("h3", { text: `${r.model} · ${fmtTime(r.timestamp)}` }), tabs, pane);
    pick("Overview");
    draw();
  }

  function card(label, value) {
    return h("div", { class: "card" }, h("div", { class: "card-label", text: label }), h("div", { class: "card-value", text: value ?? "–" }));
  }

  const controller = new AbortController();
  (async () => {
    try {
      const r = await request("/engines/requests?include_existing=true", { headers: { Accept: "text/event-stream" }, signal: controller.signal });
      if (!r.ok) throw await errorOf(r);
      for await (const ev of sse(r)) {
        if (ev.event === "connected") { live.textContent = "live"; live.classList.add("on"); draw(); continue; }
        if (ev.event !== "new_request") continue;
        const groups = parseJSON(ev.data) || [];
        for (const g of groups) for (const rec of g.records || []) records.set(rec.id, rec);
        draw();
      }
    } catch (e) {
      if (e.name !== "AbortError") { live.textContent = "disconnected"; toast(`Requests: ${e.message}`, "error"); }
    }
  })();
  draw();
  return () => controller.abort();
}
