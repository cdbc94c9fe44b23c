"""The Host's events: what the trace records and what front ends subscribe to.

Every event is a plain dict with `kind`, `icount` (absent on the realtime
clock), `time_ns`, and the kind's own fields (shared/docs/run-contract.md).
Field order is fixed by construction so that traces are byte-identical.
"""

import json

KINDS = ("hcall", "irq", "irq-deferred", "trap", "raise", "halt", "wake",
         "clock", "console", "kill")


class EventBus:
    """Fan events out to subscribers and keep the most recent hypercalls."""

    def __init__(self, keep_hcalls=256):
        self._subscribers = []
        self.recent_hcalls = []
        self._keep = keep_hcalls

    def subscribe(self, callback):
        self._subscribers.append(callback)
        return callback

    def unsubscribe(self, callback):
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    muted = 0          # >0 while the debugger replays the past: nothing is said twice

    def emit(self, event):
        if self.muted:
            return
        if event["kind"] == "hcall":
            self.recent_hcalls.append(event)
            if len(self.recent_hcalls) > self._keep:
                del self.recent_hcalls[: len(self.recent_hcalls) - self._keep]
        for cb in list(self._subscribers):
            cb(event)


class TraceWriter:
    """JSON Lines, one event per line, compact and in emission order."""

    def __init__(self, stream):
        self._stream = stream

    def __call__(self, event):
        self._stream.write(json.dumps(event, separators=(",", ":")) + "\n")

    def close(self):
        self._stream.flush()
