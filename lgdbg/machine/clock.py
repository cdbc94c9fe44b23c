"""Virtual time for the Guest.

The default clock is derived from retired instructions (one instruction is one
nanosecond), plus the idle time skipped while the Guest is halted.  Nothing
depends on the host's speed, so the same image and schedule give the same
trace.  The realtime clock reads the host's clocks instead and counts nothing:
faster, not reproducible.

lguest_data.time is CLOCK_REALTIME in the real Host; here it is a fixed epoch
(the day Linux 2.6.23 was released) plus virtual time, so traces stay
byte-identical between runs.
"""

import time

NS_PER_INSN = 1
EPOCH_SEC = 1191906960          # 2007-10-09 05:16 UTC, Linux 2.6.23


class VirtualClock:
    deterministic = True

    def __init__(self):
        self.icount = 0
        self.idle_ns = 0
        self.deadline_ns = None      # the armed clock event, absolute virtual ns

    @property
    def time_ns(self):
        return self.icount * NS_PER_INSN + self.idle_ns

    def stamp(self):
        return {"icount": self.icount, "time_ns": self.time_ns}

    def timespec(self):
        sec, nsec = divmod(self.time_ns, 1_000_000_000)
        return EPOCH_SEC + sec, nsec

    def insns_until(self, when_ns):
        """Instructions to run before virtual time reaches when_ns (at least 0)."""
        return max(-(-(when_ns - self.time_ns) // NS_PER_INSN), 0)

    def skip_to(self, when_ns):
        """Idle: let time pass without retiring instructions."""
        if when_ns > self.time_ns:
            self.idle_ns += when_ns - self.time_ns


class RealtimeClock:
    deterministic = False

    def __init__(self):
        self.icount = None
        self.deadline_ns = None
        self._start = time.monotonic_ns()

    @property
    def time_ns(self):
        return time.monotonic_ns() - self._start

    def stamp(self):
        return {"time_ns": self.time_ns}

    def timespec(self):
        ns = time.time_ns()
        return ns // 1_000_000_000, ns % 1_000_000_000

    def skip_to(self, when_ns):
        delay = when_ns - self.time_ns
        if delay > 0:
            time.sleep(delay / 1e9)
