"""Run control: continue, stepi, reverse-stepi, reverse-continue, and the report of a stop."""

from ..views import render
from .session import CommandError


class RunCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_continue(self, args):
        """continue: run the guest until a breakpoint, watchpoint, catchpoint, Ctrl-C or its end."""
        if args:
            raise CommandError("continue takes no arguments")
        self._interrupted = False
        self.report(self.dbg.cont())

    def cmd_stepi(self, args):
        """stepi [N]: execute N instructions (default 1); a hypercall is part of its int."""
        count = self.number(args, "stepi count", minimum=1) if args else 1
        self._interrupted = False
        stop = None
        for _ in range(count):
            # One at a time, so that Ctrl-C ends a long stepi too.
            stop = self.dbg.stepi(1)
            if stop.kind != "step" or stop.reason or self._interrupted:
                break
        if self._interrupted and stop.kind == "step":
            stop.kind = "interrupted"
        self.report(stop, stepping=True)

    def cmd_reverse_stepi(self, args):
        """reverse-stepi [N]: go back N steps, to exactly the state before each one."""
        count = self.number(args, "reverse-stepi count", minimum=1) if args else 1
        stop = None
        for _ in range(count):
            stop = self.dbg.reverse_stepi()
            if stop.kind != "step":
                break
        self.report(stop, stepping=True)

    def cmd_reverse_continue(self, args):
        """reverse-continue: back to the last breakpoint or watchpoint stop before now."""
        if args.strip():
            raise CommandError("reverse-continue takes no arguments")
        self.report(self.dbg.reverse_cont())

    def report(self, stop, stepping=False):
        """Say why the guest stopped, then where it is."""
        kind = stop.kind
        eip = self.m.cpu.reg("eip")
        if kind == "breakpoint":
            hit = [b for b in self.breakpoints if not b.is_watch and b.addr == stop.addr]
            for b in hit:
                b.hits += 1
            if hit:
                b = hit[0]
                self.say("%s %d, %s" % ("Temporary breakpoint" if b.temporary else "Breakpoint",
                                        b.number, render.addr(eip, self.sym)))
                for t in [b for b in hit if b.temporary]:
                    self._delete(t)
            else:
                self.say("Breakpoint at %s" % render.addr(eip, self.sym))
        elif kind == "watch":
            self._report_watch(stop.watch)
        elif kind == "catch":
            ev = stop.watch or {}
            self.say("Caught %s: %s" % (stop.reason, self.describe_event(ev)))
        elif kind == "interrupted":
            self.say("Interrupted at %s." % render.addr(eip, self.sym))
        elif kind == "history-begin":
            self.say("No more reverse-execution history.")
        elif kind == "step":
            if stop.reason:
                self.say(stop.reason)
        elif kind == "poweroff":
            self.say("The guest powered off (%s) after %s instructions."
                     % (stop.reason, self.m.icount))
        elif kind == "restart":
            self.say("The guest asked for a restart after %s instructions (the Launcher "
                     "would boot it again)." % self.m.icount)
        elif kind == "killed":
            self.say("The guest was killed: %s" % stop.reason)
        elif kind == "halted-forever":
            self.say("The guest is halted for ever: %s" % stop.reason)
        elif kind == "max-insns":
            self.say("Stopped at the instruction limit.")
        else:
            self.say("Stopped: %s" % (stop.reason or kind))
        self.show_location()

    def _report_watch(self, watch):
        kind, addr = watch if watch else ("watch", None)
        match = [b for b in self.breakpoints if b.is_watch
                 and addr is not None and b.addr <= addr < b.addr + b.length]
        match = [b for b in match if b.kind == kind] or match
        if not match:
            self.say("Watchpoint hit: %s at %s" % (kind, render.addr(addr, self.sym)))
            return
        b = match[0]
        b.hits += 1
        words = {"watch": "Watchpoint", "rwatch": "Read watchpoint",
                 "awatch": "Access watchpoint"}[b.kind]
        self.say("%s %d: %s (%s)" % (words, b.number, b.spec, render.addr(addr, self.sym)))
        try:
            new = self.m.read_memory(b.addr, b.length)
        except Exception:
            new = None
        if b.old is not None and new is not None:
            if new != b.old:
                self.say("Old value = %s" % self._value(b.old))
                self.say("New value = %s" % self._value(new))
            else:
                self.say("Value = %s" % self._value(new))
        b.old = new

    @staticmethod
    def _value(raw):
        if len(raw) in (1, 2, 4, 8):
            return "%#x" % int.from_bytes(raw, "little")
        return " ".join("%02x" % c for c in raw)

    def show_location(self):
        """'=> 0xc010031c <lguest_iret>:\tpush eax' and the source line when known."""
        eip = self.m.cpu.reg("eip")
        line = self.symbols.line_of(eip) if self.symbols else None
        if line:
            self.say("%s:%d" % (line[0], line[1]))
        try:
            rows = self.disassemble(eip, 1)
        except CommandError as e:
            self.say(str(e))
            return
        self.say(self._insn_line(rows[0], eip))
