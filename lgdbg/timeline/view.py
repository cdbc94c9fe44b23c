"""What to draw for a window [a, b] of the x axis, W pixels wide.

However many events a track holds, it is drawn with at most one mark (or
one merged span) per pixel column: marks that share a column become one mark
carrying their count, spans closer than half a pixel merge.  Both are found
by bisection in the sorted x lists, so the cost is per column drawn, not per
event.  script.py does exactly the same in the browser when zooming.

STYLES is the one place that says where each track sits in its lane and in
which colour; the page hands it to the script as data.
"""

from bisect import bisect_left, bisect_right

from .. import abi

# Geometry, in pixels.
GUTTER = 110          # lane names on the left
PLOT_W = 1200         # the plot area
RIGHT = 20
AXIS_H = 34           # the axis above the lanes
LANE_GAP = 6
CHAR_W = 6.2          # average width of a character of the 10px labels
LANE_H = {"guest": 100, "irq": 54, "pagetables": 40}

DEFER_COLOURS = {
    "blocked": "#d62728",
    "noirq": "#9467bd",
    "disabled": "#ff7f0e",
    "no-handler": "#8c564b",
    "other": "#7f7f7f",
}


def _style(y, h, colour, legend, noun, labels=False, label_y=None, minw=2):
    return {"y": y, "h": h, "colour": colour, "legend": legend, "noun": noun,
            "labels": labels, "label_y": label_y if label_y is not None or h is None else y + h - 3,
            "minw": minw}


# track name -> style; h None = the height of all the lanes (overlay).
STYLES = {
    "hcall": _style(4, 14, "#1f77b4", "hypercall", "hypercalls", labels=True),
    "trap": _style(22, 14, "#e377c2", "trap", "traps", labels=True),
    "trap-emulated": _style(22, 14, "#bd5fa0", "emulated in/out", "emulated in/out",
                            labels=True),
    "halt": _style(40, 14, "#a8a8a8", "halted (virtual time skipped)", "halts",
                   labels=True, minw=3),
    "clock-pending": _style(62, 3, "#bcbd22", "clock armed until deadline", "armed periods",
                            minw=0),
    "clock-armed": _style(58, 11, "#bcbd22", "SET_CLOCKEVENT armed/stopped", "clock changes"),
    "clock-deadline": _style(58, 11, "#6b6b00", "clock deadline", "deadlines"),
    "clock-fired": _style(58, 11, "#e6ab02", "clock fired", "clock expiries"),
    "console": _style(76, 10, "#17becf", "console output", "console writes"),
    "iret": _style(38, 12, "#333333", "return through lguest_iret", "returns",
                   labels=True, label_y=48),
    "raise": _style(4, 10, "#1b9e9e", "raised", "raises"),
    "deliver-interrupt": _style(4, 44, "#2ca02c", "delivered, interrupt gate", "deliveries",
                                labels=True, label_y=14),
    "deliver-trap": _style(4, 44, "#74c476", "delivered, trap gate", "deliveries",
                           labels=True, label_y=14),
    "hcall-pt": _style(4, 14, "#3f5fbf", "page-table hypercall", "page-table hypercalls",
                       labels=True),
    "demand": _style(22, 14, "#c49c94", "demand fault (the Host filled its shadow)",
                     "demand faults"),
    "kill": _style(0, None, "#000000", "killed", "kills", labels=True),
    "poweroff": _style(0, None, "#000000", "power off", "power-offs", labels=True),
}
for _reason, _colour in DEFER_COLOURS.items():
    STYLES["defer-" + _reason] = _style(20, 14, _colour, "deferred: " + _reason,
                                        "deferrals (%s)" % _reason)
# The guest lane's own lguest_iret marks sit lower, below the halts.
GUEST_IRET = _style(88, 10, "#333333", "return through lguest_iret", "returns",
                    labels=True, label_y=98)

# Drawing order inside a lane (later on top) and legend order.
# Deferrals go over the deliveries: zoomed out, a column of deliveries would
# otherwise hide them.
ORDER = ["clock-pending", "halt", "console", "clock-armed", "clock-deadline",
         "clock-fired", "trap", "trap-emulated", "hcall", "demand", "hcall-pt", "raise", "iret",
         "deliver-interrupt", "deliver-trap", "defer-blocked", "defer-noirq",
         "defer-disabled", "defer-no-handler", "defer-other", "kill", "poweroff"]
ALWAYS_IN_LEGEND = ["defer-" + r for r in abi.DEFER_REASONS]


def style_of(lane, name):
    if name == "iret" and lane.kind == "guest":
        return GUEST_IRET
    return STYLES[name]


def layout(lanes):
    """y of each lane's top; the overlay spans them all.  Returns (tops, height)."""
    tops, y = {}, AXIS_H
    for lane in lanes:
        if lane.kind == "overlay":
            continue
        tops[lane.id] = y
        y += LANE_H[lane.kind] + LANE_GAP
    for lane in lanes:
        if lane.kind == "overlay":
            tops[lane.id] = AXIS_H
    return tops, y - LANE_GAP


def ordered_tracks(lane):
    return [lane.tracks[n] for n in ORDER if n in lane.tracks and len(lane.tracks[n])]


def marks_in_view(xs, a, b, w):
    """One (px, count, first index) per pixel column holding marks."""
    scale = w / (b - a)
    i, end = bisect_left(xs, a), bisect_right(xs, b)
    out = []
    while i < end:
        col = min(int((xs[i] - a) * scale), w - 1)
        j = bisect_left(xs, a + (col + 1) / scale, i, end)
        if j <= i:
            j = i + 1
        px = (xs[i] - a) * scale if j == i + 1 else col + 0.5
        out.append((px, j - i, i))
        i = j
    return out


def spans_in_view(x0s, x1s, a, b, w, minw):
    """One (p0, p1, count, first index) per run of spans that touch on screen."""
    scale = w / (b - a)
    i, n = bisect_left(x1s, a), len(x0s)
    out = []
    while i < n and x0s[i] <= b:
        p0 = max(0.0, (x0s[i] - a) * scale)
        p1 = max(min(float(w), (x1s[i] - a) * scale), p0 + minw)
        j = i + 1
        while True:
            k = bisect_right(x0s, a + (p1 + 0.5) / scale, j)
            if k <= j:
                break
            p1 = max(p1, min(float(w), (x1s[k - 1] - a) * scale),
                     (x0s[k - 1] - a) * scale + minw)
            j = k
        out.append((p0, p1, j - i, i))
        i = j
    return out


def place_labels(items, labels, is_span, w=PLOT_W):
    """(index into items, x) of the single items whose label fits: right of the
    item up to the next one, or, at the right edge, left of it."""
    chosen, free_from = [], -1e9
    for k, item in enumerate(items):
        if item[-2] != 1:
            continue
        width = len(labels[item[-1]]) * CHAR_W
        start = (item[1] if is_span else item[0]) + 3
        nxt = items[k + 1][0] if k + 1 < len(items) else w
        if start + width > nxt and k + 1 == len(items):
            start = item[0] - 3 - width            # no room at the edge: flip left
            prev_end = items[k - 1][1 if is_span else 0] if k else -1e9
            if start < prev_end + 2:
                continue
        if start >= free_from and start + width <= nxt:
            chosen.append((k, start))
            free_from = start + width + 4
    return chosen


def nice_ticks(a, b, w, target_px=110):
    """Round axis values between a and b, about one per target_px pixels."""
    span = b - a
    raw = span / max(1, w / target_px)
    mag = 10 ** max(0, len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), 10 * mag)
    first = -(-a // step) * step
    return [first + k * step for k in range(int((b - first) // step) + 1)]


def fmt_x(x):
    return "{:,}".format(int(x))
