// binsight review: one bin at a time, answered by click or keyboard. Plain JavaScript, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
let reviewer = localStorage.getItem("binsight-reviewer") || new URLSearchParams(location.search).get("reviewer") || "";
let current = null;
let busy = false;

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: {"Content-Type": "application/json", "X-Reviewer": reviewer},
    body: body ? JSON.stringify(body) : undefined,
    credentials: "same-origin",
  });
  const data = await res.json().catch(() => ({error: `HTTP ${res.status}`}));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

function show(state) {
  const p = state.progress;
  $("progress-bar").style.width = p.total ? `${(100 * p.settled) / p.total}%` : "0";
  $("progress-text").textContent = `${p.settled} of ${p.total} settled · ${p.mine} by you`;
  $("who").textContent = `· ${reviewer}`;
  current = state.bin;
  $("work").hidden = !current;
  $("done").hidden = !!current;
  if (!current) return;
  document.body.dataset.bin = String(current.id);
  $("photo").src = current.photo_url;
  $("photo-box").classList.remove("zoom");
  $("expected").textContent = current.expected === null ? "nothing (no record)" : String(current.expected);
  $("reason").textContent = current.reason;
  $("bin-id").textContent = current.bin_id;
  const dist = $("dist");
  dist.replaceChildren();
  for (const [label, prob] of Object.entries(current.probabilities)) {
    const col = document.createElement("div");
    col.className = "col" + (String(current.expected) === label ? " exp" : "");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.height = `${Math.max(2, 90 * prob)}px`;
    bar.title = `${label}: ${prob.toFixed(2)}`;
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${Math.round(100 * prob)}%`;
    const text = document.createElement("span");
    text.textContent = label;
    col.append(pct, bar, text);
    dist.append(col);
  }
}

async function run(method, path, body) {
  if (busy) return;
  busy = true;
  $("message").textContent = "";
  try {
    show(await api(method, path, body));
  } catch (err) {
    $("message").textContent = err.message;
    if (method === "POST") show(await api("GET", "/api/next"));  // e.g. the lease lapsed: take the next bin
  } finally {
    busy = false;
  }
}

const answer = (value) => current && run("POST", "/api/answer", {bin: current.id, answer: value});
const undo = () => run("POST", "/api/undo");

document.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-answer]");
  if (button) answer(button.dataset.answer);
});
$("undo").addEventListener("click", undo);
$("photo-box").addEventListener("click", (e) => {
  const box = $("photo-box");
  const rect = box.getBoundingClientRect();
  $("photo").style.transformOrigin = `${((e.clientX - rect.left) / rect.width) * 100}% ${((e.clientY - rect.top) / rect.height) * 100}%`;
  box.classList.toggle("zoom");
});
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey || $("work").hidden) return;
  const key = e.key.toLowerCase();
  if (/^[0-5]$/.test(key)) answer(key);
  else if (key === "m" || key === "+") answer("more");
  else if (key === "u") answer("unsure");
  else if (key === "s") answer("skip");
  else if (key === "z" || key === "backspace") undo();
  else return;
  e.preventDefault();
});

function start() {
  const name = $("reviewer").value.trim();
  if (!name) return;
  reviewer = name;
  localStorage.setItem("binsight-reviewer", name);
  $("login").hidden = true;
  run("GET", "/api/next");
}
$("start").addEventListener("click", start);
$("reviewer").addEventListener("keydown", (e) => { if (e.key === "Enter") start(); });

if (reviewer) run("GET", "/api/next");
else $("login").hidden = false;
