"""The self-contained HTML page: the SVG inline, the data the zoom script
redraws from, the explorer's table beside the picture.  Nothing is fetched.

The data embedded is exact (every mark, with its hover text for tracks of up
to TITLE_LIMIT marks) while a track holds at most GRID marks.  A bigger
track is embedded already aggregated into `grid` columns of the whole window,
GRID at most and fewer when many tracks are big, so that all of them share
ITEM_BUDGET items: the page stays a few megabytes for any trace, exact down
to a zoom of grid / PLOT_W.  Deeper than that, --from/--to gives exact marks.
Such a page also leaves its lanes empty for the script to draw (the static
drawing would double its size); the .svg output is the script-free picture.
"""

import json
from html import escape

from . import view
from .script import SCRIPT
from .svg import WIDTH, render_svg

GRID = 16384
ITEM_BUDGET = 200000
TITLE_LIMIT = 2000

CSS = """
body { font: 13px sans-serif; margin: 12px; color: #222; background: #fff; }
h1 { font-size: 16px; margin: 0 0 4px 0; }
.meta { color: #555; margin: 2px 0; }
.controls { margin: 6px 0; }
.controls button { font: 12px sans-serif; padding: 1px 8px; }
#window { margin-left: 10px; color: #444; }
.wrap { display: flex; align-items: flex-start; gap: 12px; }
.chart { flex: 1 1 60%; min-width: 0; }
.chart svg { width: 100%; height: auto; cursor: grab; user-select: none; }
aside.explore { flex: 0 1 auto; max-width: 40%; max-height: 92vh; overflow: auto; }
aside.explore table { border-collapse: collapse; font: 11px monospace; }
aside.explore th, aside.explore td { border-bottom: 1px solid #ddd; padding: 1px 4px;
  text-align: left; white-space: nowrap; }
aside.explore tr.differs { background: #fff3c4; font-weight: bold; }
.reason { display: inline-block; width: 9px; height: 9px; margin-right: 3px; }
"""


def render_page(tl, title="trace", points=None):
    data = pack(tl)
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    counts = ", ".join("%s %s" % ("{:,}".format(n), k) for k, n in sorted(tl.counts.items()))
    notes = "".join('<p class="meta note">%s</p>' % escape(n) for n in tl.notes)
    if data["reduced"]:
        notes += ('<p class="meta note">large trace: busy tracks are embedded aggregated '
                  '(exact to a zoom of about %dx)</p>' % data["exactZoom"])
    table = explorer_table(tl, points) if points is not None else ""
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>%s - lgdbg timeline</title>" % escape(title),
        "<style>%s</style></head><body>" % CSS,
        "<h1>lgdbg timeline: %s</h1>" % escape(title),
        '<p class="meta">%s events (%s) over %s %s to %s</p>' % (
            "{:,}".format(tl.events), escape(counts), tl.axis, view.fmt_x(tl.lo),
            view.fmt_x(tl.hi)),
        notes,
        '<div class="controls"><button id="zoom-in">zoom in</button> '
        '<button id="zoom-out">zoom out</button> <button id="zoom-reset">whole trace</button>'
        '<span id="window"></span> <span class="meta">(wheel zooms, drag pans, '
        'double-click resets; hover a mark for details)</span></div>',
        '<div class="wrap"><div class="chart">',
        render_svg(tl, standalone=False, plot=not data["reduced"]),
        "<noscript>This big trace is drawn by the page's script: allow it, or use "
        "-o FILE.svg.</noscript>" if data["reduced"] else "", "</div>",
        table, "</div>",
        '<script id="tl-data" type="application/json">%s</script>' % blob,
        "<script>%s</script>" % SCRIPT,
        "</body></html>\n",
    ])


def pack(tl):
    """The lanes as compact arrays for the script (see the module comment)."""
    strings, index = [], {}

    def intern(s):
        k = index.get(s)
        if k is None:
            k = index[s] = len(strings)
            strings.append(s)
        return k

    big = sum(1 for lane in tl.lanes for t in lane.tracks.values() if len(t) > GRID)
    grid = max(2 * view.PLOT_W, min(GRID, ITEM_BUDGET // max(1, big)))
    lanes = []
    for lane in tl.lanes:
        tracks = [pack_track(tl, track, intern, grid) for track in view.ordered_tracks(lane)]
        lanes.append({"id": lane.id, "kind": lane.kind, "tracks": tracks})
    styles = dict(view.STYLES)
    styles["guest-iret"] = view.GUEST_IRET
    _, lanes_h = view.layout(tl.lanes)
    return {"axis": tl.axis, "lo": tl.lo, "hi": tl.hi, "W": view.PLOT_W, "width": WIDTH,
            "gutter": view.GUTTER, "axisH": view.AXIS_H, "laneH": view.LANE_H,
            "fullH": lanes_h - view.AXIS_H, "charW": view.CHAR_W, "styles": styles,
            "strings": strings, "lanes": lanes, "reduced": big > 0,
            "exactZoom": grid // view.PLOT_W}


def pack_track(tl, track, intern, grid=GRID):
    n = len(track)
    out = {"name": track.name}
    if n <= GRID:
        idx = range(n)
        xs, x1s = track.xs, track.x1s
        if n <= TITLE_LIMIT:
            out["titles"] = [tl.title(track, i) for i in idx]
    else:
        if track.is_span:
            items = view.spans_in_view(track.xs, track.x1s, tl.lo, tl.hi, grid, 0)
            idx = [it[3] for it in items]
            xs = [track.xs[i] for i in idx]
            x1s = [track.x1s[it[3] + it[2] - 1] for it in items]
            out["counts"] = [it[2] for it in items]
        else:
            items = view.marks_in_view(track.xs, tl.lo, tl.hi, grid)
            idx = [it[2] for it in items]
            xs = [track.xs[i] for i in idx]
            x1s = None
            out["counts"] = [it[1] for it in items]
            out["last"] = [track.xs[it[2] + it[1] - 1] - track.xs[it[2]] for it in items]
    out["dx"] = [xs[0]] + [b - a for a, b in zip(xs, xs[1:])] if xs else []
    if x1s is not None:
        out["w"] = [b - a for a, b in zip(xs, x1s)]
    labels = [intern(track.labels[i]) for i in idx]
    if labels and all(k == labels[0] for k in labels):
        out["label"] = labels[0]
    else:
        out["labels"] = labels
    return out


def explorer_table(tl, points):
    rows = []
    for p in points:
        addr = p.get("address")
        addr_text = tl.name(addr) if isinstance(addr, int) else ""
        if isinstance(addr, int) and not addr_text.startswith("0x"):
            addr_text = "%#x %s" % (addr, addr_text)
        reason = p.get("reason")
        chip = ""
        if reason:
            colour = view.DEFER_COLOURS.get(reason, view.DEFER_COLOURS["other"])
            chip = '<span class="reason" style="background:%s"></span>' % colour
        delivered = p.get("delivered")
        cells = [p.get("offset", ""), addr_text, p.get("insn", ""), p.get("outcome", ""),
                 "" if delivered is None else ("yes" if delivered else "no"),
                 chip + escape(str(reason or "")), "yes" if p.get("differs") else ""]
        cls = ' class="differs"' if p.get("differs") else ""
        rows.append("<tr%s>%s</tr>" % (cls, "".join(
            "<td>%s</td>" % (c if k == 5 else escape(str(c))) for k, c in enumerate(cells))))
    head = "".join("<th>%s</th>" % h for h in
                   ("offset", "address", "instruction", "outcome", "delivered", "reason",
                    "differs"))
    return ('<aside class="explore"><h2 style="font-size:14px;margin:0 0 4px">injection points '
            '(%d)</h2><table id="explore-table"><thead><tr>%s</tr></thead><tbody>%s</tbody>'
            '</table></aside>' % (len(points), head, "".join(rows)))
