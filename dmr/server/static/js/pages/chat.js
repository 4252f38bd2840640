// Chat: conversations kept in this browser (localStorage), streamed answers over
// /engines/v1/chat/completions, a stop button that aborts the request, reasoning folded, stats under each
// answer and a context-use gauge for the conversation.

import { clear, confirmModal, fmtDuration, h, modal, toast } from "../dom.js";
import { errorOf, getJSON, request, sse } from "../api.js";
import { render, splitThinking } from "../markdown.js";

const STORE = "dmr.chats";

function load() {
  try {
    const d = JSON.parse(localStorage.getItem(STORE) || "null");
    if (d && Array.isArray(d.list)) return d;
  } catch { /* start over */ }
  return { current: null, list: [] };
}

function save(db) {
  localStorage.setItem(STORE, JSON.stringify(db));
}

function newConversation(model) {
  return {
    id: `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`,
    title: "New chat",
    model: model || "",
    system: "",
    temperature: "",
    top_p: "",
    max_tokens: "",
    messages: [],
    used: 0,
    estimated: false,
  };
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => p.text || "").join("");
  return "";
}

export function mount(root, params) {
  const db = load();
  let models = [];
  let controller = null;
  const wanted = params.get("model");
  if (wanted) {
    const c = newConversation(wanted);
    db.list.unshift(c);
    db.current = c.id;
    save(db);
    history.replaceState(null, "", "#/chat");
  }
  const current = () => {
    let c = db.list.find((x) => x.id === db.current);
    if (!c) {
      c = db.list[0];
      if (!c) { c = newConversation(models[0]?.id); db.list.push(c); }
      db.current = c.id;
    }
    return c;
  };

  const convList = h("ul", { class: "conv-list", id: "conversations" });
  const modelSelect = h("select", { id: "chat-model", "aria-label": "Model" });
  const gaugeFill = h("div", { class: "fill" });
  const gaugeLabel = h("span", { class: "gauge-label" });
  const gauge = h("div", { class: "gauge", id: "context-gauge", title: "Context used by this conversation" },
    h("div", { class: "bar" }, gaugeFill), gaugeLabel);
  const system = h("textarea", { id: "system-prompt", rows: 2, placeholder: "System prompt (optional)" });
  const temperature = h("input", { id: "temperature", type: "number", step: "0.1", min: "0", max: "2", placeholder: "default" });
  const topP = h("input", { id: "top-p", type: "number", step: "0.05", min: "0", max: "1", placeholder: "default" });
  const maxTokens = h("input", { id: "max-tokens", type: "number", step: "1", min: "1", placeholder: "default" });
  const settings = h("details", { class: "settings", id: "chat-settings" },
    h("summary", { text: "System prompt and sampling" }),
    h("label", { class: "wide" }, h("span", { text: "System prompt" }), system),
    h("div", { class: "row" },
      h("label", {}, h("span", { text: "Temperature" }), temperature),
      h("label", {}, h("span", { text: "Top p" }), topP),
      h("label", {}, h("span", { text: "Max tokens" }), maxTokens)));
  const messages = h("div", { class: "messages", id: "messages", "aria-live": "polite" });
  const prompt = h("textarea", { id: "prompt", rows: 2, placeholder: "Message (Enter sends, Shift+Enter adds a line)",
    "aria-label": "Message" });
  const send = h("button", { type: "submit", id: "send", class: "primary", text: "Send" });
  const stop = h("button", { type: "button", id: "stop", class: "danger", text: "Stop", hidden: true });
  const composer = h("form", { class: "composer", id: "composer" }, prompt, h("div", { class: "composer-actions" }, send, stop));
  const sidebar = h("aside", { class: "convs" },
    h("button", { type: "button", class: "primary", id: "new-chat", text: "+ New chat",
      onclick: () => { const c = newConversation(modelSelect.value); db.list.unshift(c); db.current = c.id; save(db); draw(); prompt.focus(); } }),
    convList);
  root.append(h("div", { class: "chat-layout" }, sidebar,
    h("div", { class: "chat-main" },
      h("div", { class: "chat-top" },
        h("button", { type: "button", class: "secondary only-narrow", text: "Chats",
          onclick: () => sidebar.classList.toggle("open") }),
        modelSelect, gauge),
      settings, messages, composer)));

  function contextWindow() {
    const m = models.find((x) => x.id === current().model);
    return (m && m.dmr && m.dmr.context_window) || 0;
  }

  function drawGauge() {
    const c = current();
    const totalCtx = contextWindow();
    const used = c.used || 0;
    gauge.dataset.used = String(used);
    gauge.dataset.total = String(totalCtx);
    const pct = totalCtx ? Math.min(100, (100 * used) / totalCtx) : 0;
    gaugeFill.style.width = `${pct}%`;
    gauge.classList.toggle("warn", pct > 80);
    gaugeLabel.textContent = totalCtx
      ? `${c.estimated ? "~" : ""}${used} / ${totalCtx} tokens (${pct.toFixed(pct < 10 ? 1 : 0)}%)`
      : `${used} tokens`;
  }

  function drawList() {
    clear(convList);
    for (const c of db.list) {
      convList.append(h("li", { class: c.id === db.current ? "active" : "", dataset: { id: c.id } },
        h("button", { type: "button", class: "conv-title", text: c.title || "Untitled",
          onclick: () => { if (controller) return; db.current = c.id; save(db); sidebar.classList.remove("open"); draw(); } }),
        h("button", { type: "button", class: "icon", title: "Rename", "aria-label": "Rename", text: "✎",
          onclick: async () => {
            const r = await modal("Rename conversation", [{ name: "title", label: "Title", value: c.title }], "Rename");
            if (r && r.title.trim()) { c.title = r.title.trim(); save(db); drawList(); }
          } }),
        h("button", { type: "button", class: "icon", title: "Delete", "aria-label": "Delete", text: "×",
          onclick: async () => {
            if (controller && c.id === db.current) return;
            if (!(await confirmModal(`Delete the conversation “${c.title}”?`))) return;
            db.list = db.list.filter((x) => x.id !== c.id);
            if (db.current === c.id) db.current = null;
            save(db);
            draw();
          } })));
    }
  }

  function messageNode(msg) {
    const body = h("div", { class: "content" });
    const node = h("div", { class: `msg ${msg.role}` },
      h("div", { class: "who", text: msg.role === "user" ? "You" : msg.role === "assistant" ? "Assistant" : msg.role }),
      body);
    const stats = h("div", { class: "stats" });
    node.append(stats);
    const paint = () => {
      clear(body);
      if (msg.role !== "assistant") {
        body.append(h("div", { class: "plain", text: msg.content }));
      } else {
        const split = splitThinking(msg.content);
        const reasoning = [msg.reasoning, split.reasoning].filter(Boolean).join("\n");
        if (reasoning) {
          const d = h("details", { class: "reasoning" }, h("summary", { text: "Reasoning" }));
          d.append(h("div", { class: "reasoning-text", text: reasoning }));
          body.append(d);
        }
        body.append(render(split.answer));
        if (msg.error) body.append(h("p", { class: "error", text: msg.error }));
      }
      clear(stats);
      const st = msg.stats;
      if (st) {
        if (st.ttft !== undefined) stats.append(h("span", { class: "ttft", text: `TTFT ${fmtDuration(st.ttft)}` }));
        if (st.tps !== undefined) stats.append(h("span", { class: "tps", text: `${st.tps.toFixed(1)} tokens/s` }));
        if (st.tokens !== undefined) stats.append(h("span", { class: "tokens", text: `${st.tokens} tokens` }));
        if (st.stopped) stats.append(h("span", { class: "stopped", text: "stopped" }));
        if (st.finish && st.finish !== "stop") stats.append(h("span", { text: `finish: ${st.finish}` }));
      }
    };
    paint();
    return { node, paint };
  }

  function drawMessages() {
    clear(messages);
    const c = current();
    if (!c.messages.length) {
      messages.append(h("p", { class: "empty muted", text: models.length
        ? "Ask something. Conversations stay in this browser."
        : "No model yet: pull one on the Models page." }));
    }
    for (const m of c.messages) messages.append(messageNode(m).node);
    messages.scrollTop = messages.scrollHeight;
  }

  function drawModels() {
    const c = current();
    clear(modelSelect);
    const ids = models.map((m) => m.id);
    if (c.model && !ids.includes(c.model)) ids.unshift(c.model);
    if (!c.model && ids.length) { c.model = ids[0]; save(db); }
    for (const id of ids) modelSelect.append(h("option", { value: id, text: id, selected: id === c.model }));
  }

  function draw() {
    const c = current();
    drawList();
    drawModels();
    system.value = c.system || "";
    temperature.value = c.temperature ?? "";
    topP.value = c.top_p ?? "";
    maxTokens.value = c.max_tokens ?? "";
    drawMessages();
    drawGauge();
  }

  modelSelect.addEventListener("change", () => { current().model = modelSelect.value; save(db); drawGauge(); });
  for (const [el, key] of [[system, "system"], [temperature, "temperature"], [topP, "top_p"], [maxTokens, "max_tokens"]]) {
    el.addEventListener("input", () => { current()[key] = el.value; save(db); });
  }
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    if (controller) return;
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    ask(text);
  });

  async function ask(text) {
    const c = current();
    if (!c.model) { toast("Choose a model first", "error"); return; }
    c.messages.push({ role: "user", content: text });
    if (c.title === "New chat") c.title = text.slice(0, 40);
    const answer = { role: "assistant", content: "", reasoning: "", stats: null };
    c.messages.push(answer);
    save(db);
    drawList();
    drawMessages();
    const { node, paint } = messageNode(answer);
    messages.lastElementChild.replaceWith(node);
    node.classList.add("streaming");
    const body = {
      model: c.model,
      messages: [
        ...(c.system ? [{ role: "system", content: c.system }] : []),
        ...c.messages.slice(0, -1).map((m) => ({ role: m.role, content: m.role === "assistant" ? splitThinking(m.content).answer : m.content })),
      ],
      stream: true,
      stream_options: { include_usage: true },
    };
    for (const [key, val, conv] of [["temperature", c.temperature, Number], ["top_p", c.top_p, Number], ["max_tokens", c.max_tokens, (v) => parseInt(v, 10)]]) {
      if (val !== "" && val !== undefined && val !== null && !Number.isNaN(conv(val))) body[key] = conv(val);
    }
    controller = new AbortController();
    send.hidden = true;
    stop.hidden = false;
    const t0 = performance.now();
    let tFirst = null;
    let usage = null;
    let finish = null;
    let pending = false;
    const repaint = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; paint(); messages.scrollTop = messages.scrollHeight; });
    };
    try {
      const r = await request("/engines/v1/chat/completions", { method: "POST", json: body, signal: controller.signal,
        headers: { Accept: "text/event-stream" } });
      if (!r.ok) throw await errorOf(r);
      for await (const ev of sse(r)) {
        if (ev.data === "[DONE]") break;
        let chunk;
        try { chunk = JSON.parse(ev.data); } catch { continue; }
        if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
        if (chunk.usage) usage = chunk.usage;
        for (const ch of chunk.choices || []) {
          const d = ch.delta || {};
          const piece = textOf(d.content);
          const think = d.reasoning_content || d.reasoning || "";
          if ((piece || think) && tFirst === null) tFirst = performance.now();
          answer.content += piece;
          answer.reasoning += think;
          if (ch.finish_reason) finish = ch.finish_reason;
        }
        repaint();
      }
    } catch (err) {
      if (err.name !== "AbortError") answer.error = String(err.message || err);
    }
    const aborted = controller.signal.aborted;
    const tEnd = performance.now();
    const tokens = usage ? usage.completion_tokens : Math.max(1, Math.round((answer.content.length + answer.reasoning.length) / 4));
    answer.stats = {
      ttft: tFirst !== null ? (tFirst - t0) / 1000 : undefined,
      tps: tFirst !== null && tEnd > tFirst ? tokens / ((tEnd - tFirst) / 1000) : undefined,
      tokens,
      stopped: aborted || undefined,
      finish: finish || undefined,
    };
    if (usage) {
      c.used = usage.total_tokens;
      c.estimated = false;
    } else {
      c.used = (c.used || 0) + Math.round((text.length + answer.content.length) / 4);
      c.estimated = true;
    }
    controller = null;
    send.hidden = false;
    stop.hidden = true;
    node.classList.remove("streaming");
    node.dataset.done = aborted ? "stopped" : "complete";
    save(db);
    paint();
    drawGauge();
    prompt.focus();
  }

  draw();
  getJSON("/engines/v1/models").then((doc) => {
    models = doc.data || [];
    drawModels();
    drawGauge();
    if (!current().messages.length) drawMessages();
  }).catch((e) => toast(`Models: ${e.message}`, "error"));
  prompt.focus();
  return () => { if (controller) controller.abort(); };
}
