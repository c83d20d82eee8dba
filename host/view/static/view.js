// The page: the live stream (server-sent events), the header, the recipe timeline, the
// alarm list, log-in and the controls.  Every action asks for a reason and is sent with
// the session's CSRF token; the server checks everything again.
"use strict";

const $ = id => document.getElementById(id);
let me = { user: null, permissions: {} }, last = null;

function secs(s) {
  if (s === null || s === undefined) return "-";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(r).padStart(2, "0");
}

function clock(ms) { return new Date(ms).toLocaleTimeString([], { hour12: false }); }

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (me.csrf) headers["X-CSRF-Token"] = me.csrf;
  const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
  let data = {};
  try { data = await r.json(); } catch (e) { data = { ok: false, reason: "HTTP " + r.status }; }
  return { status: r.status, ...data };
}

async function loadMe() {
  me = await (await fetch("/api/me", { credentials: "same-origin" })).json();
  $("login").hidden = !!me.user;
  $("whoami").hidden = $("logout").hidden = !me.user;
  $("whoami").textContent = me.user ? `${me.full_name} (${me.role})` : "";
  $("readonly").hidden = !!me.user;
  applyPermissions();
}

function applyPermissions() {
  const p = me.permissions || {};
  const notes = [];
  for (const b of document.querySelectorAll("#controls button")) {
    const why = p[b.dataset.action];
    b.disabled = why !== null || !runAllows(b.dataset.action);
    b.title = why || "";
    if (why && me.user) notes.push(b.textContent + ": " + why);
  }
  const stop = $("line-stop");
  stop.disabled = p.stop !== null;
  stop.title = p.stop || "Stop the whole line: every module to its safe state";
  $("control-note").textContent = me.user ? notes.join("; ") : "Read-only: log in to act on the line.";
  renderAlarms();
}

function runAllows(action) {
  const run = last && last.run;
  if (!run) return false;
  if (["completed", "aborted", "completed_with_deviations"].includes(run.state)) return false;
  if (action === "hold") return run.state === "running";
  if (action === "resume") return run.state === "held" || run.state === "manual";
  return true;
}

function ask(title, text, reason) {
  return new Promise(resolve => {
    const d = $("ask");
    $("ask-title").textContent = title;
    $("ask-text").textContent = text;
    $("ask-reason").value = reason || "";
    $("ask-ok").textContent = title;
    d.onclose = () => resolve(d.returnValue === "ok" ? $("ask-reason").value.trim() : null);
    d.showModal();
    $("ask-reason").focus();
  });
}

async function act(action, extra, title, text, reason) {
  const why = await ask(title, text, reason);
  if (!why) return;
  const r = await post("/api/action", { action, reason: why, ...(extra || {}) });
  $("last-reply").textContent = `${title}: ${r.ok ? "accepted" : "refused"}${r.reason ? " - " + r.reason : ""}`;
  $("last-reply").className = "note" + (r.ok ? "" : " refused");
}

function header(s) {
  $("line-id").textContent = s.line;
  const run = s.run;
  $("recipe").textContent = run ? `${run.recipe} - run ${run.run_id}` : "no run";
  const state = $("state");
  state.textContent = run ? run.state : "-";
  state.className = run && ["held", "manual", "shutting_down", "aborted", "completed_with_deviations"].includes(run.state) ? "state-abnormal" : "";
  $("phase").textContent = run ? run.phase || "-" : "-";
  $("phase-time").textContent = run ? secs(run.phase_elapsed_s) : "-";
  $("next-in").textContent = run && run.next_phase_in_s !== null ? "~" + secs(run.next_phase_in_s) : "-";
  $("elapsed").textContent = run ? secs(run.elapsed_s) : "-";
  $("volumes").textContent = run ? `${(run.collected_ml || 0).toFixed(1)} / ${(run.diverted_ml || 0).toFixed(1)} mL` + (run.outlet ? " to " + run.outlet : "") : "-";
  const link = $("link-text");
  const bad = [];
  if (!s.link.connected) bad.push("broker lost " + secs((s.t_ms - s.link.since_ms) / 1000) + " ago");
  const over = !run || ["completed", "aborted", "completed_with_deviations"].includes(run.state);
  if (!s.coordinator.online && !over) bad.push("coordinator offline");
  const coord = s.coordinator.online ? "coordinator ok" : "no coordinator (no run going)";
  link.textContent = bad.length ? bad.join(", ") : (s.link.connected ? "broker, " : "") + coord;
  link.className = bad.length ? "bad-link" : "";
}

function timeline(run) {
  const ol = $("timeline");
  ol.textContent = "";
  if (!run) { ol.textContent = "No run reported by a coordinator."; return; }
  const ended = ["completed", "aborted", "completed_with_deviations"].includes(run.state);
  const names = (run.phases || []).map(p => p.name);
  const inRecipe = names.includes(run.phase);
  // Out of the recipe's phases (a shutdown sequence): done is what this page saw run.
  const seen = new Set(Trends.phases().map(p => p[1]));
  (run.phases || []).forEach((p, i) => {
    const li = document.createElement("li");
    let cls = "";
    if (inRecipe && !ended) cls = i < run.phase_index ? "done" : i === run.phase_index ? "current" : i === run.phase_index + 1 ? "next" : "";
    else if (seen.has(p.name) || (ended && run.state === "completed")) cls = "done";
    else cls = "skipped";
    li.className = cls;
    const name = document.createElement("div");
    name.className = "name"; name.textContent = p.name + (p.description ? " - " + p.description : "");
    li.appendChild(name);
    if (p.conditions) {
      const c = document.createElement("div");
      c.className = "cond";
      c.textContent = Array.isArray(p.conditions) ? p.conditions.join("; ") : p.conditions;
      li.appendChild(c);
    }
    ol.appendChild(li);
  });
  if (!inRecipe && run.phase) {
    const li = document.createElement("li");
    li.className = ended ? "done shutdown" : "current shutdown";
    li.textContent = run.phase + (ended ? " - " + run.state : "");
    ol.appendChild(li);
  }
}

// What the module calls the alarm (its ack target), as LiveLine publishes it.
function alarmKey(a) {
  return a.alarm;
}

function renderAlarms() {
  if (!last) return;
  const body = $("alarms").querySelector("tbody");
  body.textContent = "";
  const active = last.alarms.filter(a => a.active).length;
  $("alarm-count").textContent = `${active} active, ${last.alarms.length} listed`;
  const canAck = (me.permissions || {}).ack === null && runAllows("ack") && last.coordinator.online;
  for (const a of last.alarms) {
    const tr = document.createElement("tr");
    tr.className = (a.active ? "active" : "inactive") + (a.acked ? " acked" : " unacked") + " sev-" + a.severity;
    tr.dataset.module = a.module;
    tr.dataset.key = alarmKey(a);
    for (const text of [clock(a.t_ms), a.module, a.cause, a.severity, (a.active ? "active" : "cleared") + (a.acked ? ", acked" : "")]) {
      const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
    }
    const td = document.createElement("td");
    if (a.active && tr.dataset.key.startsWith("trip:")) {
      td.textContent = "latched: reset at the module"; // a trip is reset, not acknowledged
    } else if (a.active && !a.acked) {
      const b = document.createElement("button");
      b.textContent = "Ack"; b.disabled = !canAck; b.title = (me.permissions || {}).ack || "";
      b.onclick = () => act("ack", { module: a.module, alarm: alarmKey(a) }, "Acknowledge", `${a.module}: ${a.cause}`);
      td.appendChild(b);
    }
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function onSnapshot(s) {
  last = s;
  header(s);
  Diagram.update(s);
  Trends.learn(s);
  // A phase change is placed at the snapshot's time (the view's clock, the one samples
  // are stamped with); the first one seen, back by the time already spent in it.
  if (s.run && s.run.phase) Trends.phase(s.t_ms, s.run.phase, (s.run.phase_elapsed_s || 0) * 1000);
  timeline(s.run);
  renderAlarms();
  applyPermissions();
  $("diagram").dataset.updated = String(Date.now());
}

function stream() {
  const es = new EventSource("/events");
  es.onopen = () => { $("banner").hidden = true; };
  es.onerror = () => { $("banner").hidden = false; $("banner").textContent = "Connection to the view server lost: reconnecting..."; };
  es.onmessage = e => {
    const m = JSON.parse(e.data);
    if (m.snapshot) onSnapshot(m.snapshot);
    if (m.hello) Trends.history({}, m.hello.phases);
    if (m.history) Trends.history(m.history);
    if (m.samples) for (const [mod, ch, t, v] of m.samples) Trends.put(mod + "." + ch, t, v);
  };
}

function wire() {
  // Wired before anything is awaited: a log-in typed early must never submit the form
  // the browser's way (that would put the password in the URL).
  $("login").onsubmit = async e => {
    e.preventDefault();
    const r = await post("/api/login", { user: $("login-user").value, password: $("login-password").value });
    $("login-password").value = "";
    $("login-error").textContent = r.ok ? "" : r.reason;
    await loadMe();
  };
  $("logout").onclick = async () => { await post("/api/logout", {}); await loadMe(); };
  for (const b of document.querySelectorAll("#controls button")) {
    b.onclick = () => act(b.dataset.action, {}, b.textContent, `${b.textContent} the running recipe on line ${me.line}.`);
  }
  $("line-stop").onclick = () => act("stop", {}, "Line stop",
    "Every module of the line goes to its safe state now (latched until reset).", "Line stop from the web view");
}

async function start() {
  wire();
  const layout = await (await fetch("/api/layout")).json();
  Diagram.draw($("diagram"), layout);
  Trends.init($("charts"));
  await loadMe();
  stream();
  document.body.dataset.ready = "1";
}

start();
