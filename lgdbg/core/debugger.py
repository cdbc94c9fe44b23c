"""Run control shared by every front end (gdb stub, REPL, explorer).

Front ends translate; this decides.  It owns breakpoints, watchpoints,
lguest catchpoints (stop on a hypercall, an irq, a trap or a kill) and the
interrupt-stepping policy, and it single-steps virtual interrupt delivery.
"""

from .. import abi
from ..views import inspect
from ..errors import UsageError
from ..machine import Stop

CATCH_KINDS = ("hcall", "irq", "trap", "kill")


class Catchpoint:
    def __init__(self, number, kind, arg=None):
        self.number, self.kind, self.arg = number, kind, arg

    def matches(self, event):
        kind = event["kind"]
        if self.kind == "hcall" and kind == "hcall":
            return self.arg is None or self.arg in (event["nr"], event["name"])
        if self.kind == "irq" and kind == "irq":
            return self.arg is None or self.arg == event["irq"]
        if self.kind == "trap" and kind == "trap":
            return self.arg is None or self.arg == event["vector"]
        return self.kind == "kill" and kind == "kill"

    def describe(self):
        return "%s%s" % (self.kind, "" if self.arg is None else " %s" % self.arg)


class Debugger:
    def __init__(self, machine, history=False):
        self.machine = machine
        self.history = None
        if history:
            self.enable_history()
        self.irq_stepping = False
        self.catchpoints = []
        self._next_catch = 1
        self.caught = None
        machine.subscribe(self._on_event)

    # --- catchpoints ----------------------------------------------------------------
    def add_catch(self, kind, arg=None):
        if kind not in CATCH_KINDS:
            raise UsageError("catch what? (%s)" % ", ".join(CATCH_KINDS))
        if kind == "hcall" and isinstance(arg, str):
            # The running Guest's hypercall names: 3.2 has SHUTDOWN, not CRASH.
            names = abi.profile(self.machine.profile).hcall_numbers
            name = arg.upper()
            if name.isdigit():
                arg = int(name)
            elif name not in names:
                raise UsageError("unknown %s hypercall %r (known: %s)"
                                 % (self.machine.profile, arg, " ".join(sorted(names))))
            else:
                arg = name
        cp = Catchpoint(self._next_catch, kind, arg)
        self._next_catch += 1
        self.catchpoints.append(cp)
        return cp

    def delete_catch(self, number):
        for cp in self.catchpoints:
            if cp.number == number:
                self.catchpoints.remove(cp)
                return True
        return False

    last_irq_event = None

    def _on_event(self, event):
        if event["kind"] == "irq":
            self.last_irq_event = event
        if self.caught is None:
            for cp in self.catchpoints:
                if cp.matches(event):
                    self.caught = (cp, event)
                    # The run loop finishes this Host entry, then returns.
                    self.machine.request_stop()
                    return

    # --- history (reverse execution) ---------------------------------------------------
    def enable_history(self):
        """Keep checkpoints so reverse_stepi/reverse_cont work (icount clock only)."""
        if self.history is None:
            if not self.machine.clock.deterministic:
                raise UsageError("reverse execution needs the deterministic clock (--clock icount)")
            from .reverse import History
            self.history = History(self.machine)
        return self.history

    def reverse_stepi(self):
        return self._need_history().step_back()

    def reverse_cont(self):
        return self._need_history().continue_back()

    def _checkpoint(self):
        """Before anything that moves the guest: reverse-stepi undoes it exactly."""
        if self.history is not None and not self.machine.dead:
            self.history.before_forward("stepi")

    def _need_history(self):
        if self.history is None:
            raise UsageError("no execution history: reverse execution is off")
        return self.history

    # --- running -------------------------------------------------------------------
    def cont(self):
        if self.history is None or self.machine.dead:
            return self._run()
        # In slices, with a checkpoint before each, so that going back never
        # replays more than one interval.
        from .reverse import INTERVAL
        self.history.before_forward("continue")
        while True:
            stop = self._run(max_insns=INTERVAL)
            if stop.kind != "step":
                return stop
            self.history.periodic()

    def stepi(self, count=1):
        stop = None
        for _ in range(count):
            self._checkpoint()
            if self.machine.release_held_delivery():
                # Stepping back stopped between a Host entry and its delivery:
                # this step is that delivery, as it was going forward.
                stop = Stop("step")
                continue
            if self.irq_stepping and not self.machine.dead:
                irq, _ = self.machine.try_deliver()
                if irq is not None:
                    return Stop("step", reason="delivered irq %d" % irq)
            stop = self._run(max_insns=1)
            if stop.kind != "step":
                return stop
        return stop

    def _run(self, max_insns=None):
        self.caught = None
        self._interrupted = False
        stop = self.machine.run(max_insns=max_insns)
        if self.caught is not None and stop.kind in ("interrupted", "step"):
            cp, event = self.caught
            return Stop("catch", reason="catchpoint %d (%s)" % (cp.number, cp.describe()),
                        watch=event)
        return stop

    _interrupted = False

    def interrupt(self):
        """Stop a running continue, stepi N or step-irq --until (any thread)."""
        self._interrupted = True
        self.machine.request_stop()

    # --- single-stepping interrupt delivery -----------------------------------------
    def step_irq(self, until=False, limit=1_000_000):
        """Deliver exactly one virtual interrupt now, or say why not.

        With until=True, step instructions until delivery happens, noting each
        change of the Host's reason.  Returns a dict for lgdbg.views.render.
        """
        m = self.machine
        self._interrupted = False
        report = {"delivered": False, "steps": 0, "changes": []}
        decision = inspect.irq_decision(m)
        report["decision"] = decision
        last = decision["verdict"]
        if last != "deliver":
            report["changes"].append({"after": 0, "verdict": last, "detail": decision.get("detail"),
                                      "eip": m.cpu.reg("eip")})
        while True:
            if decision["verdict"] == "deliver":
                return self._deliver_now(report)
            if not until or report["steps"] >= limit or m.dead or self._interrupted:
                report["why_not"] = decision.get("detail") or decision["steps"][-1]
                return report
            self.last_irq_event = None
            self._checkpoint()
            stop = m.run(max_insns=1)
            report["steps"] += 1
            if self.last_irq_event is not None:
                # The step itself reached a Host entry (a hypercall, a tick)
                # and the Host delivered there: that is the delivery.
                ev = self.last_irq_event
                report.update(delivered=True, irq=ev["irq"], from_eip=ev["from_eip"],
                              handler=ev["handler"], vector=ev["vector"], gate=ev["gate"],
                              at_host_entry=True)
                return report
            if stop.kind != "step":
                report["stopped"] = stop.kind
                report["why_not"] = "the guest stopped (%s)" % (stop.reason or stop.kind)
                return report
            decision = inspect.irq_decision(m)
            if decision["verdict"] != last:
                last = decision["verdict"]
                report["changes"].append({"after": report["steps"], "verdict": last,
                                          "detail": decision.get("detail"),
                                          "eip": m.cpu.reg("eip")})

    def _deliver_now(self, report):
        m = self.machine
        ld = m.host.lguest_data
        before = m.mem.read_u32(ld + abi.LD_IRQ_ENABLED)
        regs = m.cpu.regs()
        self._checkpoint()
        irq, _ = m.try_deliver()
        after = m.mem.read_u32(ld + abi.LD_IRQ_ENABLED)
        report.update(delivered=irq is not None, irq=irq, irq_enabled_before=before,
                      irq_enabled_after=after, from_eip=regs["eip"],
                      handler=m.cpu.reg("eip"))
        if irq is not None:
            esp = m.cpu.reg("esp")
            vector = abi.FIRST_EXTERNAL_VECTOR + irq
            gate = abi.decode_gate(*m.host.idt[vector])
            words = 5 if regs["cs"] & 3 != abi.GUEST_PL else 3
            raw = m.read_memory(esp, 4 * words)
            vals = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
            frame = {"eip": vals[0], "cs": vals[1], "eflags": vals[2],
                     "if": bool(vals[2] & abi.X86_EFLAGS_IF)}
            if words == 5:
                frame.update(esp=vals[3], ss=vals[4])
            report.update(frame=frame, frame_at=esp, vector=vector,
                          gate=abi.gate_kind(gate.type))
        return report
