"""Stopping a running Guest from outside: deadlines and stop requests.

unicorn's own `timeout=` costs milliseconds per run (its watchdog thread is
created, polled and joined every emu_start; measured 3-12 ms for a 1 ms
timeout), so the realtime clock would spend more time stopping than running.
One long-lived thread does the job instead.

The subtle part is the race every emu_stop has: a stop asked for just before
emu_start begins is forgotten by unicorn.  So while a run is armed and its
deadline has passed (or a stop was requested), the watchdog repeats emu_stop
every half millisecond until the run loop disarms it.
"""

import threading
import time

RETRY_S = 0.0005


class Watchdog:
    def __init__(self, stop_cpu):
        self._stop_cpu = stop_cpu
        self._cond = threading.Condition()
        self._armed = False
        self._deadline = None          # time.monotonic() value, or None
        self._stop_requested = False
        self._thread = threading.Thread(target=self._loop, name="lgdbg-watchdog", daemon=True)
        self._thread.start()

    def arm(self, deadline=None):
        """A run is about to start; stop it at `deadline` (monotonic seconds)."""
        with self._cond:
            self._armed = True
            self._deadline = deadline
            # Without a deadline there is nothing to time: stay asleep until
            # a stop request (no thread wake-up per run on the icount clock).
            if deadline is not None or self._stop_requested:
                self._cond.notify()

    def disarm(self):
        with self._cond:
            self._armed = False
            self._deadline = None

    def request_stop(self):
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()     # the watchdog thread and any idle wait

    def clear_stop(self):
        with self._cond:
            self._stop_requested = False

    @property
    def stop_requested(self):
        return self._stop_requested

    def wait_for_stop(self, timeout):
        """Sleep up to timeout seconds (a halted Guest on the realtime clock);
        True if a stop was requested meanwhile."""
        with self._cond:
            return self._cond.wait_for(lambda: self._stop_requested, timeout)

    def _due(self):
        return self._stop_requested or (self._deadline is not None
                                        and time.monotonic() >= self._deadline)

    def _loop(self):
        with self._cond:
            while True:
                if not self._armed:
                    self._cond.wait()
                    continue
                if self._due():
                    self._stop_cpu()
                    self._cond.wait(RETRY_S)
                elif self._deadline is not None:
                    self._cond.wait(max(self._deadline - time.monotonic(), 0))
                else:
                    self._cond.wait()
