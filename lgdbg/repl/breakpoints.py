"""Breakpoints and watchpoints: break, tbreak, watch, rwatch, awatch, delete, info."""

from ..views import render
from .session import CommandError, SUBCOMMANDS, Breakpoint


class BreakpointsCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_break(self, args, temporary=False):
        """break ADDR: stop when the guest reaches ADDR (0x..., symbol, symbol+offset, *ADDR)."""
        if not args:
            args = "$eip"
        addr = self.address(args)
        b = Breakpoint(self._next_bp, "breakpoint", addr, args, temporary=temporary)
        self._next_bp += 1
        self.breakpoints.append(b)
        self.m.cpu.add_breakpoint(addr)
        self.say("%s %d at %s" % ("Temporary breakpoint" if temporary else "Breakpoint",
                                  b.number, render.addr(addr, self.sym)))

    def cmd_tbreak(self, args):
        """tbreak ADDR: a breakpoint that deletes itself when hit."""
        self.cmd_break(args, temporary=True)

    def cmd_watch(self, args, kind="watch"):
        """watch ADDR [LEN]: stop after an instruction (or the Host) writes there (LEN default 4)."""
        words = args.split()
        if not words:
            raise CommandError("%s wants ADDR [LEN]" % kind)
        length = 4
        if len(words) > 1:
            try:
                length = int(words[-1], 0)
                words = words[:-1]
            except ValueError:
                pass
        if not 1 <= length <= 4096:
            raise CommandError("watch length must be between 1 and 4096 bytes")
        spec = " ".join(words)
        addr = self.address(spec)
        old = self.read(addr, length)
        b = Breakpoint(self._next_bp, kind, addr, spec, length=length)
        b.old = old
        self._next_bp += 1
        self.breakpoints.append(b)
        self.m.add_watch(addr, length, kind)
        words = {"watch": "Watchpoint", "rwatch": "Read watchpoint",
                 "awatch": "Access watchpoint"}[kind]
        self.say("%s %d: %s (%d bytes at %s)" % (words, b.number, spec, length,
                                                  render.addr(addr, self.sym)))

    def cmd_rwatch(self, args):
        """rwatch ADDR [LEN]: stop after an instruction reads there."""
        self.cmd_watch(args, kind="rwatch")

    def cmd_awatch(self, args):
        """awatch ADDR [LEN]: stop after an instruction reads or writes there."""
        self.cmd_watch(args, kind="awatch")

    def cmd_delete(self, args):
        """delete [N...]: delete breakpoints and watchpoints N... (all of them without N)."""
        if not args:
            for b in list(self.breakpoints):
                self._delete(b)
            self.say("Deleted all breakpoints and watchpoints.")
            return
        numbers = [self.number(w, "breakpoint number") for w in args.replace(",", " ").split()]
        missing = [n for n in numbers if not any(b.number == n for b in self.breakpoints)]
        if missing:
            raise CommandError("no breakpoint number %d" % missing[0])
        for n in numbers:
            self._delete(next(b for b in self.breakpoints if b.number == n))

    def _delete(self, b):
        self.breakpoints.remove(b)
        if b.is_watch:
            self.m.remove_watch(b.addr, b.length, b.kind)
        elif not any(o.addr == b.addr and not o.is_watch for o in self.breakpoints):
            self.m.cpu.remove_breakpoint(b.addr)

    def cmd_info(self, args):
        """info breakpoints|registers|catchpoints: list breakpoints and watchpoints, and so on."""
        what = args.split()[0] if args else ""
        if not what:
            raise CommandError("info what? (breakpoints, registers, catchpoints)")
        for full in SUBCOMMANDS["info"]:
            if full.startswith(what):
                break
        else:
            raise CommandError("info %s: unknown (breakpoints, registers, catchpoints)" % what)
        if full in ("breakpoints", "watchpoints"):
            self.say(self.render_breakpoints())
        elif full == "registers":
            self.cmd_regs("")
        else:
            self.cmd_catch("list")

    def render_breakpoints(self):
        if not self.breakpoints:
            return "No breakpoints or watchpoints."
        rows = [("Num", "Type", "Disp", "Address", "What")]
        for b in self.breakpoints:
            what = b.spec if not b.is_watch else "%s (%d bytes)" % (b.spec, b.length)
            kind = {"breakpoint": "breakpoint", "watch": "hw watchpoint",
                    "rwatch": "read watchpoint", "awatch": "acc watchpoint"}[b.kind]
            rows.append((str(b.number), kind, "del" if b.temporary else "keep",
                         render.addr(b.addr, self.sym), what))
            if b.hits:
                rows.append(("", "", "", "", "\tbreakpoint already hit %d time%s"
                             % (b.hits, "" if b.hits == 1 else "s")))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for r in rows:
            if r[4].startswith("\t"):
                lines.append("        " + r[4].strip())
                continue
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
        return "\n".join(line.rstrip() for line in lines)

    # ------------------------------------------------------------------ registers, memory
