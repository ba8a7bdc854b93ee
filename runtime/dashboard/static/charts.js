// jobrt dashboard charts: hand-written SVG line charts, one line per series, from the
// JSON in <script id="chart-data">. No library, nothing fetched.
"use strict";
(function () {
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  var W = 640, H = 220, L = 48, R = 12, T = 10, B = 24;

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function label(value) {
    if (value >= 1000) return (value / 1000).toFixed(1) + "k";
    if (value >= 10 || value === 0) return String(Math.round(value));
    return value.toPrecision(2);
  }

  function clock(seconds, span) {
    var d = new Date(seconds * 1000);
    var hm = ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
    return span > 2 * 86400 ? (d.getMonth() + 1) + "/" + d.getDate() + " " + hm : hm;
  }

  function draw(box, data) {
    var series = data[box.getAttribute("data-chart")] || [];
    var field = box.getAttribute("data-field");
    box.textContent = "";
    var max = 0;
    series.forEach(function (s) { s.points.forEach(function (p) { if (p[field] > max) max = p[field]; }); });
    if (!series.length) {
      var none = document.createElement("div");
      none.className = "none";
      none.textContent = "nothing counted in this range yet";
      box.appendChild(none);
      return;
    }
    max = max > 0 ? max * 1.1 : 1;
    var start = data.start, end = data.end, span = Math.max(end - start, 1);
    var x = function (t) { return L + (W - L - R) * (t + data.bucket / 2 - start) / span; };
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, role: "img", preserveAspectRatio: "none"}, box);
    for (var i = 0; i <= 4; i++) {
      var v = max * i / 4;
      el("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "grid"}, svg);
      el("text", {x: L - 4, y: y(v) + 3, "text-anchor": "end"}, svg).textContent = label(v);
    }
    for (var j = 0; j <= 4; j++) {
      var t = start + span * j / 4;
      el("text", {x: L + (W - L - R) * j / 4, y: H - 6, "text-anchor": j === 0 ? "start" : j === 4 ? "end" : "middle"}, svg)
        .textContent = clock(t, span);
    }
    el("line", {x1: L, x2: L, y1: T, y2: H - B, "class": "axis"}, svg);
    el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis"}, svg);
    var legend = document.createElement("div");
    legend.className = "legend";
    series.forEach(function (s, n) {
      var color = COLORS[n % COLORS.length];
      var points = s.points.filter(function (p) { return p[field] !== null && p[field] !== undefined; });
      var path = points.map(function (p, k) { return (k ? "L" : "M") + x(p.at).toFixed(1) + " " + y(p[field]).toFixed(1); });
      if (path.length) el("path", {d: path.join(" "), fill: "none", stroke: color, "stroke-width": 2}, svg);
      points.forEach(function (p) {
        var dot = el("circle", {cx: x(p.at), cy: y(p[field]), r: points.length > 60 ? 1.2 : 2.5, fill: color}, svg);
        el("title", {}, dot).textContent = s.key + " " + clock(p.at, span) + ": " + label(p[field]);
      });
      var item = document.createElement("span");
      var swatch = document.createElement("i");
      swatch.style.background = color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.key));
      legend.appendChild(item);
    });
    box.appendChild(legend);
  }

  function drawAll(root) {
    var source = (root.querySelector ? root : document).querySelector("#chart-data") || document.getElementById("chart-data");
    if (!source) return;
    var data = JSON.parse(source.textContent);
    (root.querySelectorAll ? root : document).querySelectorAll(".chart[data-chart]").forEach(function (box) { draw(box, data); });
  }

  window.jobrtCharts = {drawAll: drawAll};
})();
