"""Read a `lgdbg run --trace` file into lanes of marks and spans.

The x axis is `icount` (instructions retired); a `--clock realtime` trace
has none, so its axis is `time_ns`.  The guest gets one lane; every irq that
appears gets its own; an overlay lane carries the end (kill or power-off)
across all of them.

A track holds one kind of thing in one lane, in x order: marks (an x, a
label and the event's details) or spans (x0, x1, label, details).  Spans
of one track never overlap, which lets view.py find them by bisection.

The fine print comes from run-contract.md: a deferral of irq N is written
once per change of reason and lasts until N is delivered or its reason
changes; icount stands still while halted, so a halt is a span of zero
instructions labelled with the virtual time it skipped; clock deadlines are
in virtual nanoseconds and are placed on the axis through the (time, x)
points where the two stop moving together (halt and wake).
"""

import gc
import json
from bisect import bisect_right
from itertools import islice

from .. import abi
from ..errors import UsageError
from .describe import describe

GUEST, OVERLAY, PAGETABLES = "guest", "overlay", "pagetables"
# The hypercalls that change page tables: drawn in the page-tables lane, with
# the demand faults, instead of with the other hypercalls.
PAGE_TABLE_CALLS = frozenset(("NEW_PGTABLE", "FLUSH_TLB", "SET_PTE", "SET_PMD", "SET_PGD"))


class Track:
    __slots__ = ("name", "xs", "x1s", "labels", "infos")

    def __init__(self, name, spans=False):
        self.name = name
        self.xs, self.labels, self.infos = [], [], []
        self.x1s = [] if spans else None

    @property
    def is_span(self):
        return self.x1s is not None

    def mark(self, x, label, info=None):
        self.xs.append(x)
        self.labels.append(label)
        self.infos.append(info)

    def span(self, x0, x1, label, info=None):
        self.xs.append(x0)
        self.x1s.append(x1)
        self.labels.append(label)
        self.infos.append(info)

    def __len__(self):
        return len(self.xs)


class Lane:
    def __init__(self, lane_id, name, kind, irq=None):
        self.id, self.name, self.kind, self.irq = lane_id, name, kind, irq
        self.tracks = {}

    def track(self, name, spans=False):
        t = self.tracks.get(name)
        if t is None:
            t = self.tracks[name] = Track(name, spans)
        return t


class Timeline:
    """What the trace says, ready to draw: lanes, the axis and the window."""

    def __init__(self, axis, lo, hi, lanes, counts, notes, name):
        self.axis, self.lo, self.hi = axis, lo, hi
        self.lanes, self.counts, self.notes = lanes, counts, notes
        self.name = name        # address -> 'symbol+0x4' or hex

    @property
    def events(self):
        return sum(self.counts.values())

    def title(self, track, i):
        """The hover text of one mark or span: its label, where, and the details."""
        x, label, info = track.xs[i], track.labels[i], track.infos[i]
        where = "%s %s" % (self.axis, "{:,}".format(x))
        if track.is_span:
            where += " to {:,}".format(track.x1s[i])
        detail = describe(track.name, info, self.name)
        return "%s at %s%s" % (label, where, "; " + detail if detail else "")


def fmt_ns(ns):
    """Virtual time for a label: '850 ns', '12.5 us', '3.20 ms', '1.500 s'."""
    if ns < 1000:
        return "%d ns" % ns
    if ns < 1000000:
        return "%.1f us" % (ns / 1e3)
    if ns < 1000000000:
        return "%.2f ms" % (ns / 1e6)
    return "%.3f s" % (ns / 1e9)


class _Reader:
    """Walks the events once, keeping the state spans need (open deferrals,
    an open halt, the armed clock, handlers not yet seen returning)."""

    def __init__(self, lo, hi, symbols):
        self.lo, self.hi = lo, hi
        self.name = symbols.name if symbols else (lambda a: "%#x" % a)
        self.iret = symbols.iret_window() if symbols else None
        self.lanes = {GUEST: Lane("lane-guest", "guest", GUEST),
                      OVERLAY: Lane("lane-overlay", "", OVERLAY)}
        self.deferred = {}      # irq -> (x0, reason, eip)
        self.halted = None      # (x, time_ns)
        self.clock = None       # (x, time_ns, deadline_ns) while armed
        self.deadlines = []     # (x_armed, time_armed, deadline_ns, x_ended or None)
        self.kinks = []         # (time_ns, x) where time and x change pace
        self.in_handler = []    # irqs delivered whose return is not seen yet
        self.was_in_iret = False
        self.hcalls = self.guest("hcall")     # the busiest track, kept at hand
        self.abi = None         # the boot event's ABI: which hypercall numbers (None: 2.6.23)

    # -- lanes ---------------------------------------------------------------
    def guest(self, name, spans=False):
        return self.lanes[GUEST].track(name, spans)

    def pagetables(self, name):
        lane = self.lanes.get(PAGETABLES)
        if lane is None:
            lane = self.lanes[PAGETABLES] = Lane("lane-pagetables", "page tables", PAGETABLES)
        return lane.track(name)

    def irq(self, n, name, spans=False):
        lane = self.lanes.get(n)
        if lane is None:
            lane = self.lanes[n] = Lane("lane-irq-%d" % n, "irq %d" % n, "irq", irq=n)
        return lane.track(name, spans)

    def visible(self, x):
        return self.lo is None or x >= self.lo

    def add_span(self, track, x0, x1, label, info):
        if self.lo is not None:
            if x1 < self.lo:
                return
            x0 = max(x0, self.lo)
        track.span(x0, x1, label, info)

    # -- events (one method per kind; x is already the axis value) ------------
    def boot(self, ev, x, t):
        # The first line of a trace since issue 18; an unknown ABI names no calls.
        self.abi = ev.get("abi") if ev.get("abi") in abi.PROFILES else None

    def hcall(self, ev, x, t):
        if self.lo is None or x >= self.lo:
            nr = ev.get("nr", -1)
            name = ev.get("name") or abi.hcall_name(nr, self.abi)
            track = self.pagetables("hcall-pt") if name in PAGE_TABLE_CALLS else self.hcalls
            track.mark(x, name, (nr, ev.get("args"), ev.get("eip"), ev.get("async"), self.abi))
        if self.iret:
            self.check_iret(ev.get("eip"), x)

    def irq_event(self, ev, x, t):
        n = ev.get("irq", -1)
        self.end_deferral(n, x)
        if self.iret:
            self.check_iret(ev.get("from_eip"), x)
        gate = ev.get("gate", "?")
        handler = ev.get("handler")
        label = "%s (%s)" % (self.name(handler) if handler is not None else "?", gate)
        track = "deliver-trap" if gate == "trap" else "deliver-interrupt"
        if self.visible(x):
            self.irq(n, track).mark(x, label, (ev.get("vector"), ev.get("from_eip"),
                                               handler, gate, ev.get("esp")))
        if self.iret:
            self.in_handler.append(n)

    def irq_deferred(self, ev, x, t):
        n, reason = ev.get("irq", -1), ev.get("reason", "?")
        if self.iret:
            self.check_iret(ev.get("eip"), x)
        open_ = self.deferred.get(n)
        if open_ is not None and open_[1] == reason:
            return
        self.end_deferral(n, x)
        self.deferred[n] = (x, reason, ev.get("eip"))
        self.irq(n, "defer-" + _reason_class(reason), spans=True)

    def end_deferral(self, n, x):
        open_ = self.deferred.pop(n, None)
        if open_ is not None:
            x0, reason, eip = open_
            self.add_span(self.irq(n, "defer-" + _reason_class(reason), spans=True),
                          x0, x, reason, (eip, x - x0))

    def trap(self, ev, x, t):
        if self.iret:
            self.check_iret(ev.get("eip"), x)
        if not self.visible(x):
            return
        v = ev.get("vector", -1)
        name = abi.TRAP_NAMES.get(v, "trap %d" % v)
        if ev.get("demand"):
            # Resolved by the Host from the Guest's tables: the Guest never saw it.
            self.pagetables("demand").mark(x, "demand fault", (
                v, ev.get("errcode"), ev.get("eip"), ev.get("cr2"), False, False, False))
            return
        track = "trap-emulated" if ev.get("emulated") else "trap"
        self.guest(track).mark(x, name, (v, ev.get("errcode"), ev.get("eip"), ev.get("cr2"),
                                         ev.get("delivered"), ev.get("emulated"),
                                         ev.get("direct")))

    def raise_(self, ev, x, t):
        if self.visible(x):
            n, source = ev.get("irq", -1), ev.get("source", "?")
            self.irq(n, "raise").mark(x, "raise (%s)" % source, source)

    def halt(self, ev, x, t):
        self.halted = (x, t)
        self.kinks.append((t, x))

    def wake(self, ev, x, t):
        self.kinks.append((t, x))
        if self.halted is not None:
            x0, t0 = self.halted
            self.halted = None
            self.add_span(self.guest("halt", spans=True), x0, x, "halt " + fmt_ns(t - t0),
                          (t0, t))

    def clock(self, ev, x, t):
        if ev.get("fired"):
            self.end_clock(x)
            if self.visible(x):
                self.guest("clock-fired").mark(x, "clock fired", t)
            return
        deadline = ev.get("armed", 0)
        self.end_clock(x)
        if deadline:
            if deadline < t:        # a delta rather than a deadline: be lenient
                deadline += t
            self.clock = (x, t, deadline)
            label = "armed +" + fmt_ns(deadline - t)
        else:
            label = "clock stopped"
        if self.visible(x):
            self.guest("clock-armed").mark(x, label, (t, deadline))

    def end_clock(self, x):
        if self.clock is not None:
            x0, t0, deadline = self.clock
            self.deadlines.append((x0, t0, deadline, x))
            self.clock = None

    def console(self, ev, x, t):
        if self.visible(x):
            self.guest("console").mark(x, "console", ev.get("text", ""))

    def kill(self, ev, x, t):
        if self.iret:
            self.check_iret(None, x)
        if self.visible(x):
            reason = ev.get("reason", "?")
            track = "poweroff" if reason == "CRASH: Power down" else "kill"
            label = "power off" if track == "poweroff" else "killed: " + reason
            self.lanes[OVERLAY].track(track).mark(x, label, reason)

    # -- the handler's way out through lguest_iret -----------------------------
    def check_iret(self, eip, x):
        inside = (self.iret is not None and eip is not None
                  and self.iret[0] <= eip < self.iret[1])
        if inside and not self.was_in_iret:
            irq = self.in_handler.pop() if self.in_handler else None
            if self.visible(x):
                label = "lguest_iret"
                if irq is None:
                    self.guest("iret").mark(x, label, (eip, None))
                else:
                    self.irq(irq, "iret").mark(x, label, (eip, irq))
        self.was_in_iret = inside

    # -- the end -----------------------------------------------------------------
    def finish(self, end):
        for n in list(self.deferred):
            self.end_deferral(n, end)
        if self.halted is not None:
            x0, t0 = self.halted
            self.add_span(self.guest("halt", spans=True), x0, end, "halted, no wake", (t0, None))
        if self.clock is not None:
            x0, t0, deadline = self.clock
            self.deadlines.append((x0, t0, deadline, None))
        self.place_deadlines(end)

    def place_deadlines(self, end):
        """Draw each armed period up to its deadline (or whatever ended it first)."""
        if not self.deadlines:
            return
        pending = self.guest("clock-pending", spans=True)
        for x0, t0, deadline, ended in self.deadlines:
            dx = self.time_to_x(deadline, end)
            reached = ended is None or dx <= ended
            x1 = min(dx, ended if ended is not None else end, end)
            if x1 < x0:
                continue
            self.add_span(pending, x0, x1, "deadline " + fmt_ns(deadline - t0), (t0, deadline))
            if reached and dx <= end and self.visible(dx):
                self.guest("clock-deadline").mark(dx, "deadline", deadline)
        if "clock-deadline" in self.lanes[GUEST].tracks:
            _sort_marks(self.guest("clock-deadline"))

    def time_to_x(self, t, end):
        """Where virtual time t falls on the axis: linear between kinks."""
        kinks = self.kinks
        i = bisect_right(kinks, (t, float("inf"))) - 1
        if i < 0:
            return kinks[0][1] if kinks else end
        t0, x0 = kinks[i]
        if i + 1 < len(kinks):
            t1, x1 = kinks[i + 1]
            return x0 if t1 == t0 else x0 + (x1 - x0) * (t - t0) // (t1 - t0)
        return x0 + (t - t0) * self.pace()

    def pace(self):
        """x per ns while running, from the last running stretch (1 if unknown)."""
        for (t0, x0), (t1, x1) in zip(reversed(self.kinks[:-1]), reversed(self.kinks[1:])):
            if x1 > x0 and t1 > t0:
                return (x1 - x0) / (t1 - t0)
        return 1


def _sort_marks(track):
    if any(a > b for a, b in zip(track.xs, track.xs[1:])):
        order = sorted(range(len(track.xs)), key=track.xs.__getitem__)
        for attr in ("xs", "labels", "infos"):
            seq = getattr(track, attr)
            setattr(track, attr, [seq[i] for i in order])


def _reason_class(reason):
    return reason if reason in abi.DEFER_REASONS else "other"


_HANDLERS = {
    "boot": _Reader.boot, "hcall": _Reader.hcall, "irq": _Reader.irq_event,
    "irq-deferred": _Reader.irq_deferred,
    "trap": _Reader.trap, "raise": _Reader.raise_, "halt": _Reader.halt,
    "wake": _Reader.wake, "clock": _Reader.clock, "console": _Reader.console,
    "kill": _Reader.kill,
}


def read_trace(path, lo=None, hi=None, symbols=None):
    """Read TRACE, keeping what falls in [lo, hi] of the axis (None: no bound)."""
    reader = _Reader(lo, hi, symbols)
    counts = {}
    axis = first = x = t = None
    cut = False
    gc_was_on = gc.isenabled()
    gc.disable()        # a million small dicts: the collector would double the time
    try:
        for lineno, ev in _events(path):
            if axis is None:
                axis = "icount" if "icount" in ev else "time_ns"
            x = ev.get(axis)
            if not isinstance(x, int):
                raise UsageError("%s line %d: event without an integer %s" % (path, lineno, axis))
            t = ev.get("time_ns", x)
            if first is None:
                first = x
                reader.kinks.append((t, x))
            if hi is not None and x > hi:
                reader.kinks.append((t, x))
                x, cut = hi, True
                break
            kind = ev.get("kind")
            handler = _HANDLERS.get(kind)
            if handler is not None:        # unknown kinds: newer traces, skip
                counts[kind] = counts.get(kind, 0) + 1
                handler(reader, ev, x, t)
            elif kind is None:
                raise UsageError("%s line %d: event without a kind" % (path, lineno))
    finally:
        if gc_was_on:
            gc.enable()
    if first is None:
        raise UsageError("trace %s has no events" % path)
    if not cut and reader.kinks[-1] != (t, x):
        reader.kinks.append((t, x))
    lo_ = first if lo is None else lo
    hi_ = x if hi is None else hi
    if hi_ <= lo_:
        hi_ = lo_ + 1
    reader.finish(hi_)
    return Timeline(axis, lo_, hi_, _ordered_lanes(reader.lanes), counts,
                    _notes(symbols, reader), reader.name)


def _events(path, batch=4096):
    """(line number, event dict) for each non-blank line.

    Lines are parsed a batch at a time as one JSON array, which halves the
    cost of a big trace; a batch that fails is parsed line by line to name
    the line at fault.
    """
    try:
        f = open(path, "r", encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError("cannot read trace %s: %s" % (path, e.strerror or e))
    with f:
        numbered = ((n, line) for n, line in enumerate(f, 1) if not line.isspace())
        while True:
            chunk = list(islice(numbered, batch))
            if not chunk:
                return
            try:
                events = json.loads("[" + ",".join(line for _, line in chunk) + "]")
            except ValueError:
                events = None
            if events is None or len(events) != len(chunk):
                events = [_parse_line(path, n, line) for n, line in chunk]
            for (n, _), ev in zip(chunk, events):
                if not isinstance(ev, dict):
                    raise UsageError("%s line %d: not a JSON object" % (path, n))
                yield n, ev


def _parse_line(path, lineno, line):
    try:
        return json.loads(line)
    except ValueError as e:
        raise UsageError("%s line %d: not JSON (%s)" % (path, lineno, e))


def _ordered_lanes(lanes):
    irqs = sorted(k for k in lanes if isinstance(k, int))
    pt = [lanes[PAGETABLES]] if PAGETABLES in lanes else []
    return [lanes[GUEST]] + pt + [lanes[n] for n in irqs] + [lanes[OVERLAY]]


def _notes(symbols, reader):
    if symbols is None:
        return ["no --image: addresses in hex, lguest_iret returns not marked"]
    if reader.iret is None:
        return ["the image has no lguest_iret/lguest_noirq_end: returns not marked"]
    return []
