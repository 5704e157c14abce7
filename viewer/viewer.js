// attnflow view: the page's script. Reads the JSON the Python side embedded (#attnflow-data: one
// entry per system / grid point, positions as base64 little-endian int16 times scale / 32767,
// frames x tokens x dim) and draws it with plotly.js. Computes nothing about the dynamics.
// window.attnflowViewer exposes the state for tests (frame, entry, draw counter).
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
  var $ = function (id) { return document.getElementById(id); };
  var api = { ready: false, drawn: 0, frame: 0, entry: 0, errors: [] };
  window.attnflowViewer = api;

  function fail(msg) {
    api.errors.push(String(msg));
    $("error").textContent = "viewer error: " + msg;
  }
  window.addEventListener("error", function (ev) { fail(ev.message); });

  var DATA;
  try {
    DATA = JSON.parse($("attnflow-data").textContent);
  } catch (e) {
    fail("cannot read the embedded data: " + e);
    return;
  }
  if (typeof Plotly === "undefined") { fail("plotly.js is missing from the page"); return; }

  var state = { entry: 0, frame: 0, trail: 6, fps: 10, playing: false, timer: null, busy: false,
                pending: false };

  function decode(e) {
    if (e._pos) return e._pos;
    var bin = atob(e.positions), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; ++i) bytes[i] = bin.charCodeAt(i);
    var q = new Int16Array(bytes.buffer), s = e.scale / 32767, f = new Float32Array(q.length);
    for (var j = 0; j < q.length; ++j) f[j] = q[j] * s;
    e._pos = f;
    return f;
  }
  function colorOf(label) { return PALETTE[label % PALETTE.length]; }
  function is3d(e) { return e.dim === 3; }

  // Coordinates of frame k: [x, y, z] arrays (z absent in 2-D).
  function frameCoords(e, k) {
    var pos = decode(e), n = e.n_shown, dim = e.dim, base = k * n * dim, out = [[], [], []];
    for (var i = 0; i < n; ++i)
      for (var c = 0; c < dim; ++c) out[c].push(pos[base + i * dim + c]);
    return out;
  }

  // Static background: unit-sphere wireframe (sphere view) or unit circle (circle view).
  function backgroundTrace(e) {
    var x = [], y = [], z = [], a, b, k;
    if (e.view === "sphere") {
      for (a = -60; a <= 60; a += 30) {  // latitude circles
        for (k = 0; k <= 72; ++k) {
          b = (k / 72) * 2 * Math.PI;
          x.push(Math.cos(a * Math.PI / 180) * Math.cos(b));
          y.push(Math.cos(a * Math.PI / 180) * Math.sin(b));
          z.push(Math.sin(a * Math.PI / 180));
        }
        x.push(null); y.push(null); z.push(null);
      }
      for (a = 0; a < 180; a += 30) {  // meridians
        for (k = 0; k <= 72; ++k) {
          b = (k / 72) * 2 * Math.PI;
          x.push(Math.cos(a * Math.PI / 180) * Math.cos(b));
          y.push(Math.sin(a * Math.PI / 180) * Math.cos(b));
          z.push(Math.sin(b));
        }
        x.push(null); y.push(null); z.push(null);
      }
      return { type: "scatter3d", mode: "lines", x: x, y: y, z: z, hoverinfo: "skip",
               line: { color: "#d0d0d0", width: 1.5 }, showlegend: false };
    }
    if (e.view === "circle") {
      for (k = 0; k <= 180; ++k) { x.push(Math.cos(k * Math.PI / 90)); y.push(Math.sin(k * Math.PI / 90)); }
      return { type: "scatter", mode: "lines", x: x, y: y, hoverinfo: "skip",
               line: { color: "#d0d0d0", width: 1.5 }, showlegend: false };
    }
    return null;
  }

  // Trails: the last `trail` frames of each token as a polyline, one trace per color.
  function trailTraces(e, k) {
    var traces = [], first = Math.max(0, k - state.trail), groups = {}, pos = decode(e);
    var n = e.n_shown, dim = e.dim, g, i, f, c;
    if (state.trail === 0 || k === 0) first = k;
    for (i = 0; i < n; ++i) {
      g = e.labels[i] % PALETTE.length;
      if (!groups[g]) groups[g] = [[], [], []];
      for (f = first; f <= k; ++f)
        for (c = 0; c < dim; ++c) groups[g][c].push(pos[(f * n + i) * dim + c]);
      for (c = 0; c < dim; ++c) groups[g][c].push(null);
    }
    for (g = 0; g < PALETTE.length; ++g) {
      var xyz = groups[g] || [[], [], []];
      var t = { mode: "lines", x: xyz[0], y: xyz[1], hoverinfo: "skip", showlegend: false,
                line: { color: PALETTE[g], width: is3d(e) ? 3 : 1.5 }, opacity: 0.55 };
      if (is3d(e)) { t.type = "scatter3d"; t.z = xyz[2]; } else { t.type = "scatter"; }
      traces.push(t);
    }
    return traces;
  }

  function tokenTrace(e, k) {
    var xyz = frameCoords(e, k), colors = [], text = [];
    for (var i = 0; i < e.n_shown; ++i) {
      colors.push(colorOf(e.labels[i]));
      text.push("token " + i * e.stride + ", final cluster " + e.labels[i]);
    }
    var t = { mode: "markers", x: xyz[0], y: xyz[1], text: text, hoverinfo: "text", showlegend: false,
              marker: { color: colors, size: e.sizes, line: { width: 0 }, opacity: 0.95 } };
    if (is3d(e)) { t.type = "scatter3d"; t.z = xyz[2]; t.marker.size = e.sizes.map(function (s) { return s * 0.7; }); }
    else { t.type = "scatter"; }
    return t;
  }

  function sceneLayout(e) {
    var r = e.sphere ? 1.08 : 1.05 * e.scale;
    var pc = e.view === "pca";
    var ax = function (name) {
      return { range: [-r, r], title: { text: name }, zeroline: false, showspikes: false,
               backgroundcolor: "#fafafa", showbackground: true };
    };
    var layout = { margin: { l: 0, r: 0, t: 10, b: 0 }, uirevision: "entry" + state.entry,
                   paper_bgcolor: "#fff", showlegend: false };
    if (is3d(e)) {
      layout.scene = { aspectmode: "cube", xaxis: ax(pc ? "PC1" : "x1"), yaxis: ax(pc ? "PC2" : "x2"),
                       zaxis: ax(pc ? "PC3" : "x3"), camera: { eye: { x: 1.35, y: 1.35, z: 0.9 } },
                       uirevision: "entry" + state.entry };
    } else {
      layout.xaxis = { range: [-r, r], zeroline: false, title: { text: "x1" } };
      layout.yaxis = { range: [-r, r], zeroline: false, scaleanchor: "x", scaleratio: 1,
                       title: { text: e.dim === 2 && e.d === 1 ? "" : "x2" } };
      layout.margin = { l: 50, r: 10, t: 10, b: 40 };
    }
    return layout;
  }

  function drawScene() {
    var e = DATA.entries[state.entry], k = state.frame, traces = [];
    var bg = backgroundTrace(e);
    if (bg) traces.push(bg);
    traces = traces.concat(trailTraces(e, k));
    traces.push(tokenTrace(e, k));
    return Plotly.react($("scene"), traces, sceneLayout(e), { responsive: true, displaylogo: false });
  }

  // Observable plots: one line each, the theory curve dashed, a vertical cursor at time t.
  function cursor(t) {
    return [{ type: "line", xref: "x", yref: "paper", x0: t, x1: t, y0: 0, y1: 1,
              line: { color: "#c00", width: 1.5, dash: "dot" } }];
  }
  // A log axis with ticks 1, 2, 5, 10, 20, 50, ... over the data's range (plotly's default minor
  // labels "2, 5" between decades read like counts).
  function logAxis(values) {
    var hi = 1, lo = Infinity;
    values.forEach(function (v) { if (v > hi) hi = v; if (v > 0 && v < lo) lo = v; });
    if (!isFinite(lo)) lo = 1;
    var pick = function (mults) {
      var ticks = [];
      for (var p = 1; p <= hi * 10; p *= 10)
        mults.forEach(function (m) { if (m * p >= lo / 1.3 && m * p <= hi * 1.3) ticks.push(m * p); });
      return ticks;
    };
    if (hi / lo < 8) return { type: "log" };  // within a decade: plotly's own ticks read well
    var ticks = pick([1, 2, 5]);
    return { type: "log", tickvals: ticks, ticktext: ticks.map(String) };
  }
  function obsPlot(id, e, key, label, logy, theory) {
    var o = e.obs || {}, div = $(id), traces = [];
    if (!o.t || !o[key]) {
      Plotly.react(div, [], { title: { text: label + ": not recorded", font: { size: 12 } },
                              margin: { l: 50, r: 10, t: 28, b: 30 },
                              xaxis: { visible: false }, yaxis: { visible: false } }, { displaylogo: false });
      return;
    }
    traces.push({ type: "scatter", mode: "lines+markers", x: o.t, y: o[key], name: "run",
                  line: { color: "#1f77b4", width: 1.6 }, marker: { size: 3 } });
    if (theory) traces.push({ type: "scatter", mode: "lines", x: theory.t, y: theory.mean_cosine,
                              name: "theory", line: { color: "#2ca02c", width: 2, dash: "dash" } });
    Plotly.react(div, traces, {
      title: { text: label, font: { size: 12 }, x: 0.02, xanchor: "left" },
      margin: { l: 55, r: 10, t: 26, b: 30 }, showlegend: !!theory, hovermode: "x",
      legend: { x: 0.98, xanchor: "right", y: 0.05, font: { size: 10 } },
      xaxis: { title: { text: "t", standoff: 2 } }, yaxis: logy ? logAxis(o[key]) : { type: "linear" },
      shapes: cursor(e.times[state.frame]), uirevision: "entry" + state.entry
    }, { displaylogo: false, responsive: true, displayModeBar: false });
    if (!div._attnflowClick) {  // linked: a click on a plot moves the viewer to that time
      div._attnflowClick = true;
      div.on("plotly_click", function (ev) {
        if (!ev || !ev.points || !ev.points.length) return;
        var t = ev.points[0].x, times = DATA.entries[state.entry].times, best = 0;
        for (var i = 1; i < times.length; ++i)
          if (Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
        play(false);
        setFrame(best);
      });
    }
  }
  function drawObservables() {
    var e = DATA.entries[state.entry], o = e.obs || {};
    obsPlot("obs-energy", e, "energy", o.energy_label || "energy", false, null);
    obsPlot("obs-clusters", e, "clusters", "clusters (log axis)", true, null);
    obsPlot("obs-cosine", e, "mean_cosine", "mean cosine" + (e.theory ? " and " + e.theory.label : ""),
            false, e.theory);
  }
  function moveCursors() {
    var e = DATA.entries[state.entry], t = e.times[state.frame];
    ["obs-energy", "obs-clusters", "obs-cosine"].forEach(function (id) {
      var div = $(id);
      if (div.layout && div.layout.shapes && div.layout.shapes.length)
        Plotly.relayout(div, { "shapes[0].x0": t, "shapes[0].x1": t });
    });
  }

  function label() {
    var e = DATA.entries[state.entry];
    $("time").textContent = "t = " + Number(e.times[state.frame]).toPrecision(4) + "  (frame " +
      (state.frame + 1) + " of " + e.times.length + ")";
  }

  // Draws the current frame; frames requested while a draw is running coalesce into one.
  function render() {
    if (state.busy) { state.pending = true; return; }
    state.busy = true;
    label();
    moveCursors();
    Promise.resolve(drawScene()).then(function () {
      api.drawn += 1;
      api.frame = state.frame;
      api.entry = state.entry;
      api.ready = true;
      state.busy = false;
      if (state.pending) { state.pending = false; render(); }
    }, function (err) { state.busy = false; fail(err); });
  }

  function setFrame(k) {
    var e = DATA.entries[state.entry];
    state.frame = Math.max(0, Math.min(e.times.length - 1, k | 0));
    $("slider").value = state.frame;
    render();
  }
  function describeEntry() {
    var e = DATA.entries[state.entry], notes = [];
    $("projection").textContent = e.projection || "";
    if (e.projection) notes.push(e.projection);
    $("legend").textContent = "Colors: the " + e.clusters_final + " cluster" + (e.clusters_final === 1 ? "" : "s") +
      " of the final state (connected components of <x_i, x_j> > 1 - " + e.delta + " among the tokens shown), " +
      "trails: the last frames of each token. " + e.weights_note.charAt(0).toUpperCase() + e.weights_note.slice(1) + ". " + notes.join(" ") +
      " Drag to rotate, scroll to zoom.";
  }
  function setEntry(i) {
    state.entry = Math.max(0, Math.min(DATA.entries.length - 1, i | 0));
    var e = DATA.entries[state.entry];
    $("entry").value = String(state.entry);
    $("slider").max = e.times.length - 1;
    state.frame = Math.min(state.frame, e.times.length - 1);
    describeEntry();
    drawObservables();
    setFrame(state.frame);
  }

  function play(on) {
    state.playing = on;
    $("play").innerHTML = on ? "&#10074;&#10074; pause" : "&#9654; play";
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
    if (!on) return;
    var e = DATA.entries[state.entry];
    if (state.frame >= e.times.length - 1) setFrame(0);
    state.timer = setInterval(function () {
      if (state.busy) return;  // drop a tick rather than queue frames
      var last = DATA.entries[state.entry].times.length - 1;
      if (state.frame >= last) { play(false); return; }
      setFrame(state.frame + 1);
    }, 1000 / state.fps);
  }

  // Page setup.
  $("title").textContent = "attnflow view: " + DATA.title;
  $("description").textContent = DATA.description + (DATA.version ? " (attnflow " + DATA.version + ")" : "");
  DATA.notes.forEach(function (n) {
    var li = document.createElement("li");
    li.textContent = n;
    $("notes").appendChild(li);
  });
  if (DATA.entries.length > 1) {
    $("entry-label").hidden = false;
    $("entry-kind").textContent = DATA.kind === "sweep" ? "grid point" : "system";
    DATA.entries.forEach(function (e, i) {
      var opt = document.createElement("option");
      opt.value = String(i);
      opt.textContent = e.label;
      $("entry").appendChild(opt);
    });
  }
  $("entry").addEventListener("change", function () { setEntry(parseInt(this.value, 10)); });
  $("slider").addEventListener("input", function () { play(false); setFrame(parseInt(this.value, 10)); });
  $("play").addEventListener("click", function () { play(!state.playing); });
  $("fps").addEventListener("change", function () {
    state.fps = parseInt(this.value, 10);
    if (state.playing) play(true);
  });
  $("trail").addEventListener("change", function () { state.trail = parseInt(this.value, 10); render(); });
  document.addEventListener("keydown", function (ev) {
    if (ev.target && ev.target.tagName === "SELECT") return;
    if (ev.key === " ") { ev.preventDefault(); play(!state.playing); }
    else if (ev.key === "ArrowRight") setFrame(state.frame + 1);
    else if (ev.key === "ArrowLeft") setFrame(state.frame - 1);
  });

  Object.defineProperty(api, "busy", { get: function () { return state.busy || state.pending; } });
  api.setFrame = setFrame;
  api.setEntry = setEntry;
  api.play = play;
  api.entries = DATA.entries.length;
  api.frames = function () { return DATA.entries[state.entry].times.length; };
  setEntry(0);
})();
