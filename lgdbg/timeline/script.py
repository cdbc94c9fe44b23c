"""The page's script: zoom and pan by redrawing the lanes from embedded data.

It mirrors view.py and svg.py (marks per pixel column, merged spans, labels
only where they fit) so a zoomed-in view is as exact as the data embedded
allows; page.py says how exact that is.  Plain ES5-ish JavaScript, no
libraries, no network.
"""

SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("tl-data").textContent);
  var svg = document.getElementById("timeline");
  var W = D.W, view = {a: D.lo, b: D.hi}, pending = false;

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;")
                    .replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function fmt(x) { return Math.round(x).toLocaleString("en-US"); }
  function undelta(d) {
    var out = new Array(d.length), acc = 0;
    for (var i = 0; i < d.length; i++) { acc += d[i]; out[i] = acc; }
    return out;
  }
  // Decode the tracks once: absolute x, x1 and prefix sums of counts.
  D.lanes.forEach(function (lane) {
    lane.tracks.forEach(function (t) {
      t.xs = undelta(t.dx);
      if (t.w) { t.x1s = t.xs.map(function (x, i) { return x + t.w[i]; }); }
      // Aggregated marks: where each bucket's last mark is, to draw its extent.
      t.lastx = t.last ? t.xs.map(function (x, i) { return x + t.last[i]; }) : t.xs;
      var n = t.xs.length, cum = new Array(n + 1);
      cum[0] = 0;
      for (var i = 0; i < n; i++) { cum[i + 1] = cum[i] + (t.counts ? t.counts[i] : 1); }
      t.cum = cum;
    });
  });

  function lowerBound(arr, v, lo, hi) {
    while (lo < hi) { var m = (lo + hi) >> 1; if (arr[m] < v) lo = m + 1; else hi = m; }
    return lo;
  }
  function upperBound(arr, v, lo, hi) {
    while (lo < hi) { var m = (lo + hi) >> 1; if (arr[m] <= v) lo = m + 1; else hi = m; }
    return lo;
  }
  // view.marks_in_view: [px, count, first, next]
  function marksInView(t, a, b) {
    var xs = t.xs, scale = W / (b - a), out = [];
    var i = lowerBound(xs, a, 0, xs.length), end = upperBound(xs, b, 0, xs.length);
    while (i < end) {
      var col = Math.min(Math.floor((xs[i] - a) * scale), W - 1);
      var j = lowerBound(xs, a + (col + 1) / scale, i, end);
      if (j <= i) j = i + 1;
      var px = j === i + 1 ? (xs[i] - a) * scale : col + 0.5;
      out.push([px, t.cum[j] - t.cum[i], i, j]);
      i = j;
    }
    return out;
  }
  // view.spans_in_view: [p0, p1, count, first, next]
  function spansInView(t, a, b, minw) {
    var x0s = t.xs, x1s = t.x1s, n = x0s.length, scale = W / (b - a), out = [];
    var i = lowerBound(x1s, a, 0, n);
    while (i < n && x0s[i] <= b) {
      var p0 = Math.max(0, (x0s[i] - a) * scale);
      var p1 = Math.max(Math.min(W, (x1s[i] - a) * scale), p0 + minw);
      var j = i + 1;
      for (;;) {
        var k = upperBound(x0s, a + (p1 + 0.5) / scale, j, n);
        if (k <= j) break;
        p1 = Math.max(p1, Math.min(W, (x1s[k - 1] - a) * scale), (x0s[k - 1] - a) * scale + minw);
        j = k;
      }
      out.push([p0, p1, t.cum[j] - t.cum[i], i, j]);
      i = j;
    }
    return out;
  }
  function labelOf(t, i) { return D.strings[t.labels ? t.labels[i] : t.label]; }
  function title(t, st, it, isSpan) {
    var i = isSpan ? it[3] : it[2], j = isSpan ? it[4] : it[3], n = it[isSpan ? 2 : 1];
    if (n === 1 && t.titles) return t.titles[i];
    if (n === 1) return labelOf(t, i) + " at " + D.axis + " " + fmt(t.xs[i]);
    var last = isSpan ? t.x1s[j - 1] : t.lastx[j - 1];
    return n + " " + st.noun + ", " + D.axis + " " + fmt(t.xs[i]) + " to " + fmt(last) +
           " (first: " + labelOf(t, i) + ")";
  }
  function trackSvg(lane, t, laneH, a, b) {
    var st = D.styles[lane.kind === "guest" && t.name === "iret" ? "guest-iret" : t.name];
    var y = st.y, h = st.h === null ? laneH : st.h;
    var labelY = st.h === null ? laneH - 4 : st.label_y;
    var isSpan = !!t.x1s, out = ['<g class="track ' + t.name + '" fill="' + st.colour + '">'];
    var items = isSpan ? spansInView(t, a, b, st.minw) : marksInView(t, a, b);
    items.forEach(function (it) {
      var tt = esc(title(t, st, it, isSpan));
      if (isSpan) {
        out.push('<rect x="' + it[0].toFixed(1) + '" y="' + y + '" width="' +
                 Math.max(it[1] - it[0], 0.5).toFixed(1) + '" height="' + h + '"><title>' +
                 tt + '</title></rect>');
      } else {
        var w = it[1] === 1 ? 2 : 1, x0 = it[0] - w / 2;
        if (it[1] > 1) {   // from the first mark to the last of the column's buckets
          x0 = Math.max(0, (t.xs[it[2]] - a) * W / (b - a));
          w = Math.max(1, (t.lastx[it[3] - 1] - a) * W / (b - a) - x0);
        }
        // A bucket wider than a column (zoomed past the embedded detail) is pale.
        out.push('<rect x="' + x0.toFixed(1) + '" y="' + y + '" width="' + w.toFixed(1) +
                 '" height="' + h + '"' + (w > 2 ? ' fill-opacity="0.35"' : '') + '><title>' +
                 tt + '</title></rect>');
      }
    });
    if (st.labels) {  // view.place_labels
      var freeFrom = -1e9;
      items.forEach(function (it, k) {
        var n = it[isSpan ? 2 : 1];
        if (n !== 1) return;
        var i = isSpan ? it[3] : it[2], text = labelOf(t, i);
        var start = (isSpan ? it[1] : it[0]) + 3, width = text.length * D.charW;
        var next = k + 1 < items.length ? items[k + 1][0] : W;
        if (start + width > next && k + 1 === items.length) {  // flip left at the edge
          start = it[0] - 3 - width;
          var prevEnd = k ? items[k - 1][isSpan ? 1 : 0] : -1e9;
          if (start < prevEnd + 2) return;
        }
        if (start >= freeFrom && start + width <= next) {
          out.push('<text class="label" x="' + start.toFixed(1) + '" y="' + labelY + '">' +
                   esc(text) + '</text>');
          freeFrom = start + width + 4;
        }
      });
    }
    out.push("</g>");
    return out.join("");
  }
  // view.nice_ticks
  function ticks(a, b) {
    var raw = (b - a) / Math.max(1, W / 110);
    var mag = raw >= 1 ? Math.pow(10, String(Math.floor(raw)).length - 1) : 1;
    var step = 10 * mag, ms = [1, 2, 5, 10];
    for (var m = 0; m < ms.length; m++) { if (ms[m] * mag >= raw) { step = ms[m] * mag; break; } }
    var first = Math.ceil(a / step) * step, out = [];
    for (var x = first; x <= b; x += step) out.push(x);
    return out;
  }
  function axisSvg(a, b) {
    var y = D.axisH, scale = W / (b - a);
    var out = ['<line x1="0" x2="' + W + '" y1="' + (y - 4) + '" y2="' + (y - 4) + '" stroke="#888"/>'];
    ticks(a, b).forEach(function (x) {
      var px = ((x - a) * scale).toFixed(1);
      out.push('<g class="tick"><line x1="' + px + '" x2="' + px + '" y1="' + (y - 9) +
               '" y2="' + (y - 4) + '" stroke="#888"/><text x="' + px + '" y="' + (y - 13) +
               '" text-anchor="middle">' + fmt(x) + '</text></g>');
    });
    return out.join("");
  }
  function draw() {
    pending = false;
    var a = view.a, b = view.b;
    document.getElementById("axis").innerHTML = axisSvg(a, b);
    D.lanes.forEach(function (lane) {
      var laneH = lane.kind === "overlay" ? D.fullH : D.laneH[lane.kind];
      var g = document.querySelector("#" + lane.id + " > .lane-plot");
      g.innerHTML = lane.tracks.map(function (t) { return trackSvg(lane, t, laneH, a, b); }).join("");
    });
    svg.setAttribute("data-rendered", "js");
    svg.setAttribute("data-view", Math.round(a) + "," + Math.round(b));
    document.getElementById("window").textContent =
      D.axis + " " + fmt(a) + " to " + fmt(b) + " (" + fmt(b - a) + ")" +
      (D.reduced && (D.hi - D.lo) / (b - a) > D.exactZoom ? "; zoomed past the embedded detail: " +
       "use --from/--to for exact marks" : "");
  }
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(draw); } }
  function setView(a, b) {
    var minW = Math.min(D.hi - D.lo, 20);
    if (b - a < minW) { var c = (a + b) / 2; a = c - minW / 2; b = c + minW / 2; }
    if (b - a > D.hi - D.lo) { a = D.lo; b = D.hi; }
    if (a < D.lo) { b += D.lo - a; a = D.lo; }
    if (b > D.hi) { a -= b - D.hi; b = D.hi; }
    view.a = a; view.b = b;
    schedule();
  }
  function plotFraction(clientX) {
    var r = svg.getBoundingClientRect(), unit = D.width / r.width;
    return ((clientX - r.left) * unit - D.gutter) / W;
  }
  function zoom(factor, f) {
    f = Math.min(1, Math.max(0, f));
    var x = view.a + f * (view.b - view.a), w = (view.b - view.a) * factor;
    setView(x - f * w, x - f * w + w);
  }
  svg.addEventListener("wheel", function (e) {
    e.preventDefault();
    zoom(e.deltaY > 0 ? 1.25 : 0.8, plotFraction(e.clientX));
  }, {passive: false});
  var drag = null;
  svg.addEventListener("mousedown", function (e) { drag = {x: e.clientX, a: view.a, b: view.b}; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var r = svg.getBoundingClientRect(), unit = D.width / r.width;
    var shift = -(e.clientX - drag.x) * unit / W * (drag.b - drag.a);
    setView(drag.a + shift, drag.b + shift);
  });
  svg.addEventListener("dblclick", function () { setView(D.lo, D.hi); });
  document.getElementById("zoom-in").onclick = function () { zoom(0.5, 0.5); };
  document.getElementById("zoom-out").onclick = function () { zoom(2, 0.5); };
  document.getElementById("zoom-reset").onclick = function () { setView(D.lo, D.hi); };
  window.addEventListener("keydown", function (e) {
    var w = view.b - view.a;
    if (e.key === "+" || e.key === "=") zoom(0.5, 0.5);
    else if (e.key === "-") zoom(2, 0.5);
    else if (e.key === "0") setView(D.lo, D.hi);
    else if (e.key === "ArrowLeft") setView(view.a - w / 4, view.b - w / 4);
    else if (e.key === "ArrowRight") setView(view.a + w / 4, view.b + w / 4);
  });
  var m = /view=(-?\d+),(-?\d+)/.exec(location.hash);
  if (m) setView(+m[1], +m[2]);
  draw();
})();
"""
