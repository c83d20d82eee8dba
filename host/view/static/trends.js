// Live trends (uPlot): temperatures, pressures, flows and the analyzer, with their
// setpoints (dashed), the recipe's phases as bands and the data gaps hatched.  The page
// keeps the last hour at one point per second per series (what the server sends as
// history, then the live samples), so it can be scrolled back.
"use strict";

const Trends = (() => {
  const KEEP_S = 3600, GREYS = ["#1e1e1e", "#3d6fa5", "#6b6b6b", "#7a5c99", "#2f7d5b", "#99702f"];
  const GROUPS = [
    { id: "temp", title: "Temperature", unit: "°C", match: (m, ch, v) => /°C|degC/i.test(v.unit || "") },
    { id: "press", title: "Pressure", unit: "bar", match: (m, ch, v) => v.unit === "bar" },
    { id: "flow", title: "Flow", unit: "mL/min", match: (m, ch, v) => /mL\/min/.test(v.unit || "") },
    { id: "ana", title: "Analyzer", unit: "", match: (m, ch, v) => m.kind === "analyzer" && v.role === "sensor" && !/lamp/.test(ch) },
  ];
  const charts = {};      // group id -> {plot, keys: [series key], x: [], ys: [[]]}
  const seriesGroup = {}; // "module.channel" -> group id
  let phases = [], gaps = [], windowS = 600, live = true, box;

  function groupOf(m, ch, v) {
    if (v.role === "status") return null;
    for (const g of GROUPS) if (g.match(m, ch, v)) return g.id;
    return null;
  }

  function bandsPlugin() {
    return { hooks: { drawClear: [u => {
      const ctx = u.ctx, { left, top, width, height } = u.bbox;
      ctx.save();
      ctx.beginPath(); ctx.rect(left, top, width, height); ctx.clip();
      const rowEnd = [-1e9, -1e9, -1e9]; // where the last label of each row ends
      ctx.font = `${10 * devicePixelRatio}px sans-serif`;
      phases.forEach((p, i) => {
        const t0 = p[0] / 1000, t1 = i + 1 < phases.length ? phases[i + 1][0] / 1000 : Date.now() / 1000 + 1e6;
        const x0 = u.valToPos(t0, "x", true), x1 = u.valToPos(t1, "x", true);
        ctx.fillStyle = i % 2 ? "rgba(0,0,0,0.035)" : "rgba(0,0,0,0.0)";
        ctx.fillRect(x0, top, x1 - x0, height);
        if (x0 < left - 1) return;
        ctx.fillStyle = "#6a6a6a";
        ctx.fillRect(x0, top, 1, height);
        // short phases: their names go a row lower rather than on top of each other
        const row = rowEnd.findIndex(end => x0 > end);
        if (row < 0) return;
        ctx.fillText(p[1], x0 + 3, top + (row + 1) * 11 * devicePixelRatio);
        rowEnd[row] = x0 + 3 + ctx.measureText(p[1]).width + 4;
      });
      // Gaps hatched; one label per place (a broker outage opens many gaps at once).
      const labels = new Map();
      for (const g of gaps) {
        const x0 = u.valToPos(g.from_ms / 1000, "x", true);
        const x1 = u.valToPos((g.to_ms || Date.now()) / 1000, "x", true);
        ctx.fillStyle = "rgba(120,120,120,0.35)";
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
        const at = Math.round(x0 / 40);
        labels.set(at, [x0, (labels.get(at) || [0, []])[1].concat(g.what)]);
      }
      ctx.fillStyle = "#333";
      for (const [x0, whats] of labels.values())
        ctx.fillText(whats.length === 1 ? "gap: " + whats[0] : `gap: ${whats.length} (${whats.filter(w => !w.startsWith("module:")).concat(whats.some(w => w.startsWith("module:")) ? ["modules"] : []).join(", ")})`,
          x0 + 3, top + height - 4);
      ctx.restore();
    }] } };
  }

  // At least 2 % of the value (and 0.01) from bottom to top: a steady reading is not
  // stretched into noise over the whole height.
  function yRange(u, min, max) {
    if (min === null || max === null) return [0, 1];
    const span = Math.max(max - min, 0.02 * Math.abs(max), 0.01);
    const mid = (min + max) / 2;
    return [mid - span * 0.6, mid + span * 0.6];
  }

  function make(group) {
    const div = document.createElement("div");
    div.className = "chart"; div.id = "chart-" + group.id;
    const h = document.createElement("h3");
    h.textContent = group.title + (group.unit ? " (" + group.unit + ")" : "");
    div.appendChild(h); box.appendChild(div);
    const width = Math.max(300, Math.floor(box.clientWidth / 2) - 8);
    const opts = {
      width, height: 170, plugins: [bandsPlugin()],
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true }, y: { range: yRange } },
      legend: { live: false },
      series: [{}],
      axes: [{ stroke: "#444", grid: { stroke: "#d0d0d0" } }, { stroke: "#444", grid: { stroke: "#d0d0d0" }, size: 50 }],
      hooks: { setSelect: [() => { live = false; }] },
    };
    const plot = new uPlot(opts, [[]], div);
    plot.over.addEventListener("dblclick", () => { live = true; rescale(); });
    return (charts[group.id] = { plot, keys: [], x: [], ys: [], div });
  }

  function addSeries(c, key, setpoint) {
    const n = c.keys.length;
    const base = key.replace(/:sp$/, "");
    const colour = GREYS[c.keys.filter(k => !k.endsWith(":sp")).length % GREYS.length];
    const own = c.keys.indexOf(base);
    const stroke = setpoint && own >= 0 ? c.plot.series[own + 1]._stroke || colour : colour;
    c.keys.push(key);
    c.ys.push(new Array(c.x.length).fill(null));
    c.plot.addSeries({ label: setpoint ? base + " sp" : key, stroke, width: setpoint ? 1 : 1.5,
      dash: setpoint ? [6, 4] : undefined, spanGaps: !!setpoint, _stroke: stroke }, n + 1);
    return n;
  }

  // The index of the last x <= t, -1 if none.  A binary search: a series' history comes
  // after the other series' of its chart, so each of its points lands before the end and
  // a walk back from the end made loading an hour O(n^2) (0.5-0.8 s of blocked main
  // thread with 20 modules, bench/bench_view.py).
  function lastAtOrBefore(x, t) {
    let lo = -1, hi = x.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (x[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  function put(key, tMs, value) {
    const gid = seriesGroup[key.replace(/:sp$/, "")];
    if (!gid || typeof value !== "number") return;
    const c = charts[gid] || make(GROUPS.find(g => g.id === gid));
    let i = c.keys.indexOf(key);
    if (i < 0) i = addSeries(c, key, key.endsWith(":sp"));
    const t = Math.floor(tMs / 1000);
    let j = c.x.length - 1;
    if (j < 0 || t > c.x[j]) {
      c.x.push(t); for (const y of c.ys) y.push(null); j = c.x.length - 1;
    } else {
      j = lastAtOrBefore(c.x, t);
      if (j < 0 || c.x[j] !== t) { j++; c.x.splice(j, 0, t); for (const y of c.ys) y.splice(j, 0, null); }
    }
    c.ys[i][j] = value;
    const drop = c.x.length - KEEP_S - 60;
    if (drop > 0) { c.x.splice(0, drop); for (const y of c.ys) y.splice(0, drop); }
    c.dirty = true;
  }

  function learn(snap) {
    for (const m of snap.modules) for (const [ch, v] of Object.entries(m.values || {})) {
      const key = m.id + "." + ch;
      if (!(key in seriesGroup)) seriesGroup[key] = groupOf(m, ch, v);
    }
    gaps = snap.gaps || [];
    for (const m of snap.modules) for (const [ch, v] of Object.entries(m.values || {}))
      if (v.setpoint !== null && v.setpoint !== undefined && v.t_ms) put(m.id + "." + ch + ":sp", v.t_ms, v.setpoint);
  }

  function rescaleOne(c) {
    if (!c.x.length) return;
    const hi = c.x[c.x.length - 1], lo = c.x[0];
    // the window, or less while there is less data (never a mostly empty chart)
    c.plot.setScale("x", { min: Math.max(hi - windowS, lo - 5), max: hi + 5 });
  }

  function rescale() {
    for (const c of Object.values(charts)) rescaleOne(c);
  }

  // One chart per task, each in one uPlot batch (a single draw): redrawing all four
  // charts on an hour of history in one task took ~90 ms of main thread
  // (bench/bench_view.py, "opening"), over the 50 ms budget.
  function redraw() {
    const dirty = Object.values(charts).filter(c => c.dirty);
    let k = 0;
    (function next() {
      if (k >= dirty.length) return;
      const c = dirty[k++];
      c.dirty = false;
      c.plot.batch(() => {
        c.plot.setData([c.x, ...c.ys], false);
        if (live) rescaleOne(c);
      });
      setTimeout(next, 0);
    })();
    if (live) for (const c of Object.values(charts)) if (!dirty.includes(c)) rescaleOne(c);
  }

  function init(target) {
    box = target;
    document.getElementById("window").addEventListener("change", e => { windowS = +e.target.value; live = true; rescale(); });
    setInterval(redraw, 1000);
    window.addEventListener("resize", () => {
      const width = Math.max(300, Math.floor(box.clientWidth / 2) - 8);
      for (const c of Object.values(charts)) c.plot.setSize({ width, height: 170 });
    });
  }

  // History waiting to be put: [key, rows, next row].  Never put in the task that
  // received it: Chromium may dispatch several server-sent events in one task, and each
  // series' hour put at once made one task of ~80 ms on opening (bench/bench_view.py).
  const backlog = [];
  let loading = false;

  function loadSome() {
    const until = performance.now() + 12;
    while (backlog.length && performance.now() < until) {
      const item = backlog[0];
      const [key, rows] = item;
      const end = Math.min(rows.length, item[2] + 500);
      for (let r = item[2]; r < end; r++) put(key, rows[r][0], rows[r][1]);
      item[2] = end;
      if (end >= rows.length) backlog.shift();
    }
    if (backlog.length) setTimeout(loadSome, 0);
    else loading = false;
  }

  return {
    init, learn, put, redraw,
    // An hour of every series is ~340k points with 20 modules: taken in slices of
    // ~12 ms, so the page keeps answering while it loads (live samples put meanwhile
    // land in order: put() inserts by time).
    history(h, ph) {
      if (ph) phases = ph;  // the hello's; a series' history comes without
      for (const [key, rows] of Object.entries(h)) backlog.push([key, rows, 0]);
      if (!loading) { loading = true; setTimeout(loadSome, 0); }
    },
    phases: () => phases.slice(),
    phase(tMs, name, inPhaseMs) {
      if (!phases.length) phases.push([tMs - inPhaseMs, name]);
      else if (phases[phases.length - 1][1] !== name) phases.push([tMs, name]);
    },
  };
})();
