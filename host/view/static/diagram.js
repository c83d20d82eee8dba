// The line diagram: boxes and pipes from /api/layout (drawn from the line file), values,
// states, alarms and trips from the live snapshot.  Grey unless something is abnormal.
"use strict";

const Diagram = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 204, H = 132, PART_H = 44, DX = 236, DY = 138, PAD = 14, MAX_VALUES = 4;
  let svg, layout, pos = {};

  function el(name, attrs, parent, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function defs() {
    const d = el("defs", {}, svg);
    const p = el("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" }, d);
    el("rect", { width: 6, height: 6, fill: "#e2e2e2" }, p);
    el("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#bdbdbd", "stroke-width": 3 }, p);
    const m = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, d);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6e6e6e" }, m);
  }

  function draw(target, data) {
    svg = target; layout = data;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    defs();
    const width = PAD * 2 + (layout.cols - 1) * DX + W;
    const height = PAD * 2 + (layout.rows - 1) * DY + H;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.style.maxHeight = Math.max(260, height) + "px";
    for (const n of layout.nodes) {
      const h = n.module ? H : PART_H;
      const x = PAD + n.col * DX, y = PAD + n.row * DY + (n.module ? 0 : (H - PART_H) / 2);
      pos[n.id] = { x, y, h };
    }
    const pipes = el("g", {}, svg);
    for (const e of layout.edges) pipe(pipes, e);
    for (const n of layout.nodes) node(n);
  }

  function pipe(g, e) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) return;
    const x1 = a.x + W, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, xm = (x1 + x2) / 2;
    el("path", { class: "pipe", d: `M${x1},${y1} H${xm} V${y2} H${x2 - 2}`, "marker-end": "url(#arrow)" }, g);
    if (e.via.length) el("title", {}, g.lastChild, e.via.join(", "));
  }

  function node(n) {
    const p = pos[n.id];
    const g = el("g", { class: "node " + (n.module ? "module" : "part"), id: "node-" + n.id,
      "data-module": n.id, transform: `translate(${p.x},${p.y})` }, svg);
    el("rect", { class: "body", width: W, height: p.h, rx: 3 }, g);
    el("text", { class: "id", x: 8, y: 17 }, g, n.id);
    const kind = n.kind + (n.role ? " (" + n.role + ")" : "");
    el("text", { class: "kind", x: W - 8, y: 17, "text-anchor": "end" }, g, kind);
    if (n.module) {
      el("text", { class: "state", x: 8, y: 33 }, g, "-");
      el("g", { class: "values" }, g);
      el("g", { class: "flags" }, g);
    }
    n.protections.forEach((pr, i) =>
      el("text", { class: "protect", x: 8, y: p.h + 12 + i * 11 }, g, pr.id + " (" + pr.kind.replace("_", " ") + ")"));
  }

  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function age(ms) { return ms >= 60000 ? Math.round(ms / 60000) + " min" : Math.round(ms / 1000) + " s"; }

  function update(snap) {
    if (!svg) return;
    for (const m of snap.modules) {
      const g = document.getElementById("node-" + m.id);
      if (!g) continue;
      const trips = m.trips || [], alarms = m.alarms || [];
      g.classList.toggle("trip", trips.length > 0);
      g.classList.toggle("alarm", trips.length === 0 && alarms.length > 0);
      g.classList.toggle("offline", !m.online);
      let state = m.state || "?";
      if (trips.some(t => t.first_out)) state += " - first out";
      if (!m.online) state += " - offline" + (m.last_seen_ms ? ", " + age(snap.t_ms - m.last_seen_ms) + " ago" : "");
      g.querySelector("text.state").textContent = state;
      values(g.querySelector("g.values"), m, snap.t_ms);
      flags(g.querySelector("g.flags"), trips, alarms);
    }
  }

  function values(g, m, now) {
    while (g.firstChild) g.removeChild(g.firstChild);
    // Sensors first, then actuators; status inputs (e-stop, bubble, lamp) show as alarms.
    const entries = Object.entries(m.values || {}).filter(([, v]) => v.role !== "status");
    entries.sort((a, b) => (a[1].role === "actuator") - (b[1].role === "actuator"));
    entries.slice(0, MAX_VALUES).forEach(([ch, v], i) => {
      const y = 50 + i * 16;
      const stale = v.stale || !m.online;
      if (stale) el("rect", { class: "stale-bg", x: 4, y: y - 12, width: W - 8, height: 15 }, g);
      const sp = v.setpoint !== null && v.setpoint !== undefined && v.role !== "actuator" ? "  sp " + fmt(v.setpoint) : "";
      const old = stale && v.t_ms ? "  (" + age(now - v.t_ms) + ")" : "";
      const t = el("text", { class: "value" + (stale ? " stale" : ""), x: 8, y, "data-channel": ch }, g,
        `${ch} ${fmt(v.value)} ${v.unit || ""}${sp}${old}`);
      if (v.quality && v.quality !== "good") t.textContent += " " + v.quality.toUpperCase();
    });
  }

  function flags(g, trips, alarms) {
    // One flag row: the first trip (else the first alarm); "+n" when there are more (the
    // alarm list has them all).
    while (g.firstChild) g.removeChild(g.firstChild);
    const items = trips.map(t => ["trip", "TRIP " + t.cause])
      .concat(alarms.map(a => ["alarm", "ALM " + a]));
    if (!items.length) return;
    const [kind, text] = items[0], y = H - 20;
    el("rect", { class: "flag-" + kind, x: 4, y: y - 2, width: W - 8, height: 18 }, g);
    el("text", { class: "flag flag-" + kind, x: 8, y: y + 11, "data-flag": kind }, g, text);
    if (items.length > 1)
      el("text", { class: "flag flag-" + kind, x: W - 8, y: y + 11, "text-anchor": "end" }, g, "+" + (items.length - 1));
  }

  return { draw, update };
})();
