"""Reverse execution: checkpoints while going forward, replay to go back.

The machine is deterministic (same state + same schedule = same future), so
any earlier state can be rebuilt by restoring an earlier checkpoint and
running forward again, quietly, to the wanted point.  We keep:

  - a checkpoint before every forward action the debugger takes (a stepi, a
    continue), so undoing a step restores exactly the state before it, even
    when the step did no more than deliver an interrupt (irq stepping);
  - a checkpoint every INTERVAL instructions inside a continue, so no replay
    runs longer than that.

A position on the forward timeline is an instruction count plus whether the
Host's delivery attempt at that boundary has happened: right after a
delivery the icount has not moved, and stepping back must land on the
interrupted instruction with the state from *before* the delivery.

Replays are silent: events are muted (no trace lines, no console output, no
catchpoints) and breakpoints/watchpoints only report where they would have
stopped.  Writing registers or memory from the debugger changes history, so
it forgets every checkpoint but a fresh one.
"""

from .machine import Stop
from .snapshot import Snapshots

INTERVAL = 100_000
# Each checkpoint costs ~15 KB (a register context and the pages it changed):
# the cap bounds a long session to ~75 MB, forgetting the oldest first.
MAX_CHECKPOINTS = 5_000


class Checkpoint:
    __slots__ = ("snap", "icount", "held", "kind")

    def __init__(self, snap, icount, held, kind):
        self.snap, self.icount, self.held, self.kind = snap, icount, held, kind


class History:
    def __init__(self, machine):
        self.m = machine
        self.snaps = Snapshots(machine)
        self.points = []                     # Checkpoints, oldest first
        # Whether the machine has moved on from the newest checkpoint's state
        # (a checkpoint is taken just *before* a forward action).
        self.moved = False
        machine.debug_write_observers.append(self._debugger_wrote)

    # --- going forward -----------------------------------------------------------------
    def before_forward(self, kind):
        """Called by the Debugger before each stepi or continue."""
        self._add(kind)

    def periodic(self):
        self._add("periodic")

    def _add(self, kind):
        m = self.m
        snap = self.snaps.save()
        self.points.append(Checkpoint(snap, m.icount, m.delivery_held, kind))
        self.moved = True
        if len(self.points) > MAX_CHECKPOINTS:
            # History now begins later: replaying across a gap could miss a
            # debugger's action (an irq raised by hand) taken in it.
            del self.points[:len(self.points) - MAX_CHECKPOINTS]

    def _debugger_wrote(self, addr, length):
        self.snaps.mark_dirty(addr, length)
        self.forget()

    def forget(self):
        """The past no longer leads here: start history again from now."""
        self.points = []
        self.moved = False

    def close(self):
        self.snaps.close()

    # --- going back ------------------------------------------------------------------------
    def position(self):
        """Where we are: (icount, delivery_pending_at_this_boundary)."""
        return self.m.icount, self.m.delivery_held

    def step_back(self):
        """Back one step: returns a Stop ('step', or 'history-begin')."""
        return self._arrived(self._step_back())

    def continue_back(self):
        """Back to the most recent breakpoint or watchpoint stop before now."""
        return self._arrived(self._continue_back())

    def _arrived(self, stop):
        # Wherever we land, resuming from here must not stop at once on a
        # breakpoint at this very address (as after a forward stop).
        eip = self.m.cpu.reg("eip")
        self.m._resume_from_bp = eip if eip in self.m.cpu.breakpoints() else None
        return stop

    def _step_back(self):
        m = self.m
        if not self.points:
            return Stop("history-begin")
        last = self.points[-1]
        if last.kind == "stepi" and self.moved:
            # Undo exactly the last single step, whatever it did: a step may
            # only have delivered an interrupt, or follow a `monitor irq raise`
            # that no replay could repeat.
            self.points.pop()
            self.snaps.restore(last.snap)
            self.moved = True          # we are after the step the new last one saw
            return Stop("step")
        target = self._previous_position()
        if target is None:
            return Stop("history-begin")
        target = self._go_to_boundary(target)
        self._drop_after(target)
        return Stop("step")

    def _previous_position(self):
        icount, held = self.position()
        m = self.m
        if not held and m.last_delivery_icount == icount and self._has_point_before(icount, True):
            # We stand right after a delivery: go to the moment before it.
            return icount, True
        if icount == 0 or not self._has_point_before(icount - 1, False, inclusive=True):
            return None
        return icount - 1, False

    def _has_point_before(self, icount, held, inclusive=False):
        return any(p.icount < icount or (inclusive and p.icount == icount and not p.held)
                   for p in self.points)

    def _start_for(self, target):
        icount, held = target
        best = None
        for p in self.points:
            if p.icount < icount or (p.icount == icount and not held and not p.held):
                best = p
        return best

    def _go_to(self, target, watch=None):
        """Restore the best checkpoint and replay silently up to target."""
        start = self._start_for(target)
        self.snaps.restore(start.snap)
        icount, held = target
        self._replay(icount - self.m.icount, hold=held)

    def _go_to_boundary(self, target):
        """_go_to(target), or to the instruction before when target is no
        instruction boundary: the count of a rep string instruction's final
        pass, which no run stops at (Cpu.run_counted), so the replay ran past
        it.  Returns the target reached."""
        self._go_to(target)
        icount, held = target
        if self.m.icount > icount and not held and icount > 0 and \
                self._has_point_before(icount - 1, False, inclusive=True):
            target = (icount - 1, False)
            self._go_to(target)
        return target

    def _replay(self, insns, hold=False, record=None):
        m = self.m
        with m.quiet(record_stops=record):
            stop = m.run(max_insns=insns, hold_delivery=hold) if insns > 0 or hold else Stop("step")
        return stop

    def _drop_after(self, target):
        icount, held = target
        self.points = [p for p in self.points
                       if p.icount < icount or (p.icount == icount and (held or not p.held))]
        self.moved = not self.points or (self.points[-1].icount, self.points[-1].held) != target

    def _continue_back(self):
        here = self.position()
        end = here[0]
        # Scan checkpoint intervals from the newest backwards.
        starts = [p for p in self.points if p.icount < end]
        for i in range(len(starts) - 1, -1, -1):
            start = starts[i]
            stop_at = starts[i + 1].icount if i + 1 < len(starts) else end
            hits = []
            self.snaps.restore(start.snap)
            self._replay(stop_at - self.m.icount, record=hits)
            eip = self.m.cpu.reg("eip")
            if stop_at < end and eip in self.m.cpu.breakpoints() and \
                    self.m._resume_from_bp != eip:
                # The replay ends on a breakpoint the forward run stopped at.
                hits.append((stop_at, Stop("breakpoint", addr=eip)))
            hits = [h for h in hits if h[0] < end]
            if hits:
                icount, stop = hits[-1]
                self.snaps.restore(start.snap)
                self._replay(icount - self.m.icount)
                self._drop_after((icount, False))
                return stop
        if self.points:
            first = self.points[0]
            self.snaps.restore(first.snap)
            self.points = [first]
            self.moved = False
        return Stop("history-begin")
