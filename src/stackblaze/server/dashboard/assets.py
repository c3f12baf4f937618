"""The pages' only script and style sheet, served from the daemon (no CDN, no bundler: it works offline).

The script does three things: refreshes `[data-part]` sections in place (GET the page with ?part=), sends
the actions to the /v1 API with a confirm() first and the X-Stackblaze header (auth.py), and shows a
live log stream (EventSource on /v1/logs/stream) with level, text and replica filters and pause.
Log lines are built with textContent: a line is never parsed as HTML.
"""

from __future__ import annotations

import hashlib

JS = r"""
"use strict";
const HEADERS = {"X-Stackblaze": "1", "Content-Type": "application/json"};
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];
function say(text, bad) {
  const el = document.getElementById("status");
  if (el) { el.textContent = text; el.className = bad ? "bad" : "ok"; }
}
const seen = new WeakMap();
async function refresh(el) {
  const url = new URL(location.href);
  url.searchParams.set("part", el.dataset.part);
  try {
    const answer = await fetch(url, {headers: {"X-Stackblaze": "1"}});
    const html = await answer.text();
    if (answer.ok && seen.get(el) !== html) { seen.set(el, html); el.innerHTML = html; }
  } catch (err) { say("the daemon is not answering: " + err, true); }
}
function refreshAll() { document.querySelectorAll("[data-part]").forEach(refresh); }
function schedule(el) {
  const every = 1000 * Number(el.dataset.every || 2);
  setTimeout(async () => { if (!document.hidden) await refresh(el); schedule(el); }, every);
}
document.querySelectorAll("[data-part]").forEach(schedule);

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-api]");
  if (!button) return;
  event.preventDefault();
  let body = button.dataset.body ? JSON.parse(button.dataset.body) : {};
  let shown = "";
  const [method, path] = button.dataset.api.split(" ");
  const url = new URL(path, location.href);
  for (const pair of (button.dataset.inputs || "").split(",").filter(Boolean)) {
    const [id, field] = pair.split(":");  // "?name": a query parameter, else a body field
    const input = document.getElementById(id);
    if (!input || input.value === "") continue;
    if (field.startsWith("?")) { url.searchParams.set(field.slice(1), input.value); continue; }
    body[field] = input.type === "number" ? Number(input.value) : input.value;
    shown = shown || input.value;
  }
  const question = (button.dataset.confirm || "").replace("{value}", shown);
  if (question && !window.confirm(question)) return;
  button.disabled = true;
  say(button.textContent + "…");
  try {
    const sent = method === "GET" ? undefined : JSON.stringify(body);
    const answer = await fetch(url, {method, headers: HEADERS, body: sent});
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) say(data.error || ("HTTP " + answer.status), true);
    else if (data.ok === false) say(data.error || "failed", true);
    else say(button.textContent + ": done", false);
  } catch (err) {
    say(String(err), true);
  } finally {
    button.disabled = false;
    refreshAll();
  }
});

function logLine(record) {
  const row = document.createElement("div");
  row.className = "line" + (record.level ? " " + record.level : "") + (record.stream === "stderr" ? " stderr" : "");
  const add = (cls, text) => {
    const span = document.createElement("span"); span.className = cls; span.textContent = text; row.append(span);
  };
  add("at", (record.at || "").slice(11, 23));
  add("who", record.service + "." + record.replica);
  if (record.level) add("level", record.level);
  add("msg", record.message !== undefined && record.message !== null ? record.message : record.line);
  for (const [key, value] of Object.entries(record.fields || {})) {
    add("field", key + "=" + (typeof value === "string" ? value : JSON.stringify(value)));
  }
  return row;
}
function startLogs(box) {
  const list = box.querySelector(".lines");
  const level = box.querySelector("[name=level]"), text = box.querySelector("[name=text]");
  const replica = box.querySelector("[name=replica]"), pause = box.querySelector("[name=pause]");
  const kept = [];
  let paused = false;
  const keep = (r) => {
    if (replica.value && String(r.replica) !== replica.value) return false;
    if (level.value && (!r.level || LEVELS.indexOf(r.level) < LEVELS.indexOf(level.value))) return false;
    return !text.value || r.line.toLowerCase().includes(text.value.toLowerCase());
  };
  const stick = () => { list.scrollTop = list.scrollHeight; };
  const render = () => { list.replaceChildren(...kept.filter(keep).slice(-500).map(logLine)); stick(); };
  const connect = (backlog) => {
    const source = new EventSource(box.dataset.stream + "&n=" + backlog);
    source.onopen = () => { box.dataset.state = "live"; };
    source.onmessage = (message) => {
      const record = JSON.parse(message.data);
      kept.push(record);
      if (kept.length > 5000) kept.shift();
      if (paused || !keep(record)) return;
      list.append(logLine(record));
      while (list.childElementCount > 500) list.firstElementChild.remove();
      stick();
    };
    source.onerror = () => { source.close(); box.dataset.state = "reconnecting"; setTimeout(() => connect(0), 2000); };
  };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    box.dataset.paused = paused ? "yes" : "no";
    if (!paused) render();
  });
  for (const input of [level, text, replica]) input.addEventListener("input", render);
  connect(box.dataset.backlog || 200);
}
document.querySelectorAll("[data-stream]").forEach(startLogs);
"""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.2em;background:#1d2330;color:#fff}
header a{color:#cfe3ff;text-decoration:none;margin-right:1em}.brand{font-weight:700;color:#fff!important}
#status{margin-left:auto}#status.bad{color:#ff9c9c}#status.ok{color:#a6f0b5}
main{padding:0 1.2em 2em}h2{margin:1.2em 0 .4em;font-size:16px}.crumbs{color:#667}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:.5em}
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{font-weight:600;background:#eef1f5}.muted{color:#889}.bad,.waiting{color:#b3261e}.running{color:#1b7f3b}
pre{background:#10141c;color:#dfe6ee;padding:.5em;overflow:auto;max-height:14em;margin:.2em 0}
button{cursor:pointer;margin:0 .3em .2em 0}.actions{display:flex;gap:.4em;align-items:center;flex-wrap:wrap}
input[type=number]{width:5em}.logs .lines{background:#10141c;color:#dfe6ee;font:12px/1.35 monospace;
height:22em;overflow:auto;padding:.4em}.line span{margin-right:.6em}.line .at{color:#7d8899}
.line .who{color:#8ab4ff}.line .level{font-weight:700}.line.error .level,.line.fatal .level{color:#ff7b72}
.line.warn .level{color:#e3b341}.line .field{color:#a5d6a7}.line.stderr .msg{color:#ffb4a9}
.chart{width:100%;max-width:720px;background:#fff;display:block;margin-bottom:.3em}
.chart .title{font-weight:600;font-size:12px}.chart .axis{stroke:#889}.chart .grid{stroke:#e3e6ea}
.chart .ylabel{font-size:10px;text-anchor:end}.chart .xlabel{font-size:10px}.chart .end{text-anchor:end}
.chart .empty{text-anchor:middle;fill:#889}.series{fill:none;stroke-width:1.6}
.mark{stroke-width:1.5}.mark.exit{stroke:#d93025}.mark.start{stroke:#1b7f3b;stroke-dasharray:2 3}
.mark.restart{stroke:#e3a008;stroke-dasharray:4 2}.r0{stroke:#1f6feb;color:#1f6feb}.r1{stroke:#8250df;color:#8250df}
.r2{stroke:#0a7d74;color:#0a7d74}.r3{stroke:#bf5700;color:#bf5700}.r4{stroke:#6e7781;color:#6e7781}
.r5{stroke:#cf222e;color:#cf222e}.key.exit{color:#d93025}.key.start{color:#1b7f3b}.key.restart{color:#e3a008}
.legend .key{margin-right:1em}
"""

VERSION = hashlib.sha256((JS + CSS).encode()).hexdigest()[:10]  # in the asset URLs: a new build is never stale
