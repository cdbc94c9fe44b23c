"""Draw a Timeline as SVG: the axis, one group per lane, a legend.

The output stands alone (for papers): colours are attributes, not only CSS,
and every mark carries its details in a <title> that viewers show on hover.
Each lane is `<g id="lane-..." class="lane lane-KIND">` holding its
background, its name and a `<g class="lane-plot">` that the page's script
redraws when zooming; each track inside is `<g class="track NAME">`.
"""

from html import escape

from . import view
from .view import AXIS_H, GUTTER, PLOT_W, RIGHT

WIDTH = GUTTER + PLOT_W + RIGHT
LEGEND_ROW = 16
STYLE = """
.lane-name { font-size: 12px; font-weight: bold; fill: #333; }
.label { fill: #222; font-size: 10px; }
.tick text { fill: #444; font-size: 10px; }
.legend text { fill: #333; font-size: 11px; }
.track rect:hover { stroke: #000; stroke-width: 1px; }
"""


def _q(text):
    return escape(str(text), quote=True)


def render_svg(tl, a=None, b=None, standalone=True, plot=True):
    """The whole picture of tl over [a, b] (default: its window) as SVG text;
    with plot False, the frame only (lanes empty, for the page's script)."""
    a = tl.lo if a is None else a
    b = tl.hi if b is None else b
    tops, lanes_h = view.layout(tl.lanes)
    legend = legend_items(tl)
    legend_h = _legend_height(legend)
    height = lanes_h + 12 + legend_h
    out = ['<svg xmlns="http://www.w3.org/2000/svg" id="timeline" class="lgdbg-timeline" '
           'width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" '
           'font-size="10" data-axis="%s">' % (WIDTH, height, WIDTH, height, tl.axis)]
    if standalone:
        out.append('<desc>%s</desc>' % _q("lgdbg timeline; " + "; ".join(tl.notes)))
    out.append("<style>%s</style>" % STYLE)
    out.append('<defs><clipPath id="plot-clip"><rect x="-1" y="-%d" width="%d" height="%d"/>'
               '</clipPath></defs>' % (AXIS_H, PLOT_W + 2, height))
    out.append('<rect width="%d" height="%d" fill="#ffffff"/>' % (WIDTH, height))
    out.append('<text class="axis-name" x="8" y="%d" font-size="11">%s</text>'
               % (AXIS_H - 14, _q(tl.axis)))
    out.append('<g id="axis" transform="translate(%d,0)">%s</g>' % (GUTTER, axis(tl, a, b)))
    full_h = lanes_h - AXIS_H
    for lane in tl.lanes:
        out.append(lane_group(tl, lane, tops[lane.id], full_h, a, b, plot))
    out.append(legend_svg(legend, lanes_h + 12))
    out.append("</svg>")
    return "\n".join(out)


def axis(tl, a, b):
    parts = ['<line x1="0" x2="%d" y1="%d" y2="%d" stroke="#888"/>'
             % (PLOT_W, AXIS_H - 4, AXIS_H - 4)]
    scale = PLOT_W / (b - a)
    for x in view.nice_ticks(a, b, PLOT_W):
        px = (x - a) * scale
        parts.append('<g class="tick"><line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#888"/>'
                     '<text x="%.1f" y="%d" text-anchor="middle">%s</text></g>'
                     % (px, px, AXIS_H - 9, AXIS_H - 4, px, AXIS_H - 13, view.fmt_x(x)))
    return "".join(parts)


def lane_group(tl, lane, top, full_h, a, b, plot=True):
    h = full_h if lane.kind == "overlay" else view.LANE_H[lane.kind]
    attrs = 'id="%s" class="lane lane-%s"' % (lane.id, lane.kind)
    if lane.irq is not None:
        attrs += ' data-irq="%d"' % lane.irq
    out = ['<g %s transform="translate(0,%d)">' % (attrs, top)]
    if lane.kind != "overlay":
        out.append('<rect class="lane-bg" x="%d" width="%d" height="%d" fill="#f4f4f4"/>'
                   % (GUTTER, PLOT_W, h))
        out.append('<text class="lane-name" x="8" y="%d">%s</text>' % (h // 2 + 4, _q(lane.name)))
    out.append('<g class="lane-plot" transform="translate(%d,0)" clip-path="url(#plot-clip)">'
               % GUTTER)
    for track in view.ordered_tracks(lane) if plot else ():
        out.append(track_group(tl, lane, track, h, a, b))
    out.append("</g></g>")
    return "".join(out)


def track_group(tl, lane, track, lane_h, a, b):
    st = view.style_of(lane, track.name)
    y, h = st["y"], st["h"] if st["h"] is not None else lane_h
    label_y = st["label_y"] if st["h"] is not None else lane_h - 4
    out = ['<g class="track %s" fill="%s">' % (track.name, st["colour"])]
    if track.is_span:
        items = view.spans_in_view(track.xs, track.x1s, a, b, PLOT_W, st["minw"])
        for p0, p1, n, i in items:
            out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d"><title>%s</title></rect>'
                       % (p0, y, max(p1 - p0, 0.5), h, _q(_title(tl, track, n, i))))
    else:
        items = view.marks_in_view(track.xs, a, b, PLOT_W)
        for px, n, i in items:
            w = 2 if n == 1 else 1
            out.append('<rect x="%.1f" y="%d" width="%d" height="%d"><title>%s</title></rect>'
                       % (px - w / 2, y, w, h, _q(_title(tl, track, n, i))))
    if st["labels"]:
        for k, x in view.place_labels(items, track.labels, track.is_span):
            out.append('<text class="label" x="%.1f" y="%d">%s</text>'
                       % (x, label_y, _q(track.labels[items[k][-1]])))
    out.append("</g>")
    return "".join(out)


def _title(tl, track, n, i):
    if n == 1:
        return tl.title(track, i)
    st = view.STYLES.get(track.name, {})
    last = track.x1s[i + n - 1] if track.is_span else track.xs[i + n - 1]
    return "%d %s, %s %s to %s (first: %s)" % (
        n, st.get("noun", "events"), tl.axis, view.fmt_x(track.xs[i]), view.fmt_x(last),
        track.labels[i])


def legend_items(tl):
    present = {t.name for lane in tl.lanes for t in lane.tracks.values() if len(t)}
    names = [n for n in view.ORDER if n in present or n in view.ALWAYS_IN_LEGEND]
    return [(n, view.STYLES[n]["colour"], view.STYLES[n]["legend"]) for n in names]


def _legend_rows(items):
    rows, row, used = [], [], 0
    for item in items:
        w = 22 + len(item[2]) * 6.5 + 14
        if row and used + w > PLOT_W:
            rows.append(row)
            row, used = [], 0
        row.append((used, item))
        used += w
    return rows + ([row] if row else [])


def _legend_height(items):
    return len(_legend_rows(items)) * LEGEND_ROW + 4


def legend_svg(items, top):
    out = ['<g id="legend" class="legend" transform="translate(%d,%d)">' % (GUTTER, top)]
    for r, row in enumerate(_legend_rows(items)):
        for x, (name, colour, text) in row:
            y = r * LEGEND_ROW
            out.append('<g class="legend-item %s"><rect class="swatch" x="%.0f" y="%d" '
                       'width="16" height="11" fill="%s"/><text x="%.0f" y="%d">%s</text></g>'
                       % (name, x, y, colour, x + 21, y + 10, _q(text)))
    out.append("</g>")
    return "".join(out)
