"""The REPL's command layer: one method per command, no terminal needed.

`lgdbg repl` (lgdbg/repl.py) reads lines with prompt_toolkit and hands each
one to Commands.execute(); tests and `--batch` do the same without a
terminal.  Front ends translate, they do not decide: every command becomes a
call on the machine or on lgdbg.debugger.Debugger, and the lguest commands
print through lgdbg.render, the renderers the gdb commands use, so both say
the same words.

Rules every command keeps:
  * A failing command prints one line (on the error stream) and returns
    False; it never raises, never prints a traceback.
  * Arguments are parsed in full before anything happens, so a mistyped
    command (unknown name, bad number, unknown symbol) never changes the
    guest's state.

capstone is imported only on first disassembly (lgdbg.disasm); this module
itself imports nothing heavy, so importing it is cheap.
"""

import re
import struct
import sys

from . import abi, inspect, pgtable_view, render
from .debugger import CATCH_KINDS, Debugger
from .errors import LgdbgError, UsageError


class CommandError(LgdbgError):
    """A command failed: the message is the one line the user sees."""


# Name -> method suffix, in the order `help` lists them.
COMMANDS = (
    "continue", "stepi", "step-irq", "reverse-stepi", "reverse-continue", "break", "tbreak", "delete", "info", "watch",
    "rwatch", "awatch", "regs", "x", "disas", "data", "noirq", "irq", "hcalls", "idt",
    "host", "status", "pgtable", "catch", "patches", "trace", "console", "journey", "help",
    "quit",
)
ALIASES = {
    "c": "continue", "cont": "continue", "si": "stepi", "b": "break", "br": "break",
    "tb": "tbreak", "d": "delete", "i": "info", "disassemble": "disas", "q": "quit",
    "exit": "quit", "h": "help", "registers": "regs", "rsi": "reverse-stepi",
    "rc": "reverse-continue",
}
# Commands that resume the guest (Ctrl-C stops them).
RUNNING = frozenset(("continue", "stepi", "step-irq", "reverse-stepi", "reverse-continue"))
# What an empty line repeats in the interactive REPL, as in gdb.
REPEATABLE = frozenset(("stepi", "x", "step-irq", "reverse-stepi"))

SUBCOMMANDS = {
    "info": ("breakpoints", "watchpoints", "registers", "catchpoints"),
    "irq": ("raise", "clear", "stepping"),
    "catch": CATCH_KINDS + ("list", "delete"),
    "trace": ("on", "off"),
    "journey": ("next", "prev"),
    "step-irq": ("--until",),
    "data": ("--layout",),
}
# Commands whose arguments are addresses (symbols complete there).
ADDRESS_COMMANDS = frozenset(("break", "tbreak", "watch", "rwatch", "awatch", "x", "disas",
                              "data"))

REG_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
             "cs", "ss", "ds", "es", "fs", "gs")
REG_ALIASES = {"pc": "eip", "sp": "esp", "fp": "ebp"}

EFLAGS_BITS = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
               (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"),
               (19, "VIF"), (20, "VIP"), (21, "ID"))
RINGS = {0: "ring 0 (the Host's level)", 1: "ring 1 (the Guest kernel, as lguest runs it)",
         2: "ring 2 (unused by lguest)", 3: "ring 3 (Guest user mode)"}

X_SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}
X_FORMATS = "xduotacfsi"
X_PER_LINE = {1: 8, 2: 8, 4: 4, 8: 2}
X_MAX_UNITS = 4096


def resolve_command(word):
    """The full command name for what was typed, or CommandError."""
    if word in COMMANDS:
        return word
    if word in ALIASES:
        return ALIASES[word]
    matches = [c for c in COMMANDS if c.startswith(word)] if word else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CommandError("ambiguous command %r: %s" % (word, ", ".join(matches)))
    raise CommandError("unknown command %r (try `help`)" % word)


def split_command(line):
    """'x/4xw $esp' -> ('x', '/4xw $esp'); 'break foo' -> ('break', 'foo')."""
    line = line.strip()
    m = re.match(r"([A-Za-z][\w-]*)(.*)$", line, re.S)
    if not m:
        raise CommandError("not a command: %r (try `help`)" % line)
    return m.group(1), m.group(2).strip() if not m.group(2).startswith("/") else m.group(2)


class Breakpoint:
    def __init__(self, number, kind, addr, spec, length=None, temporary=False):
        self.number, self.kind, self.addr, self.spec = number, kind, addr, spec
        self.length, self.temporary, self.hits = length, temporary, 0
        self.old = None         # a watchpoint's last known bytes

    @property
    def is_watch(self):
        return self.kind in ("watch", "rwatch", "awatch")


class Commands:
    """The REPL's commands on one Machine, writing text to `out` (errors to `err`)."""

    def __init__(self, machine, out=None, err=None, symbols=None, image_path=None,
                 debugger=None):
        self.m = machine
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else self.out
        self.image_path = image_path or getattr(getattr(machine, "image", None), "path", None)
        if symbols is None and self.image_path:
            from .symbols import Symbols
            try:
                symbols = Symbols(self.image_path)
            except UsageError:
                symbols = None
        self.symbols = symbols
        self.dbg = debugger or Debugger(machine)
        self.breakpoints = []
        self._next_bp = 1
        self.console_text = []
        self.tracing = False
        self.quit_requested = False
        self.last_command = None
        self._x_next = None
        self._x_fmt, self._x_size = "x", 4
        self._journey_at = None
        self._tour = None
        self._funcs = None
        machine.subscribe(self._on_event)
        launcher = getattr(machine, "launcher", None)
        if launcher is not None and getattr(launcher, "output", None) is None:
            launcher.output = self.console_output      # the guest's console, as it arrives

    # ------------------------------------------------------------------ plumbing
    _midline = False         # the guest's console left a line unfinished

    def say(self, text=""):
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.write(text + "\n")
        self.out.flush()

    def fail(self, text):
        lines = (text or "").strip().splitlines()
        self.err.write((lines[0] if lines else "error") + "\n")
        self.err.flush()

    def console_output(self, data):
        """The machine's output callback: the guest's console, as it arrives."""
        text = data.decode("latin-1") if isinstance(data, (bytes, bytearray)) else str(data)
        if not text:
            return
        self.console_text.append(text)
        self.out.write(text)
        self.out.flush()
        self._midline = not text.endswith("\n")

    def _on_event(self, event):
        if self.tracing and event["kind"] != "console":
            self.say("[trace] " + self.describe_event(event))

    def sym(self, addr):
        """render's `sym` callable: 'name+off' or None."""
        if self.symbols is None or addr is None:
            return None
        return self.symbols.symbolize(addr)

    def where(self):
        """What the prompt shows: the symbol at EIP, else the address."""
        eip = self.m.cpu.reg("eip")
        return self.sym(eip) or "%#x" % eip

    def prompt(self):
        state = ""
        if self.m.dead:
            state = "(dead) "
        return "%s%s> " % (state, self.where())

    def execute(self, line):
        """Run one command line; True if it succeeded (an empty line does)."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        try:
            word, rest = split_command(line)
            name = resolve_command(word)
            method = getattr(self, "cmd_" + name.replace("-", "_"))
            self.last_command = name
            method(rest)
            return True
        except CommandError as e:
            self.fail(str(e))
        except UsageError as e:           # symbols, Debugger, machine: user mistakes
            self.fail(str(e))
        except LgdbgError as e:
            self.fail(str(e))
        except Exception as e:            # a bug: still one line, the REPL goes on
            self.fail("internal error: %s: %s" % (type(e).__name__, e))
        return False

    def interrupt(self):
        """Stop a running guest (Ctrl-C, from a signal handler or another thread)."""
        self._interrupted = True
        self.dbg.interrupt()

    _interrupted = False

    # ------------------------------------------------------------------ arguments
    def address(self, text):
        """An address expression: numbers, symbols, $registers joined by + and -."""
        text = text.strip()
        if text.startswith("*"):
            text = text[1:].strip()
        if text.startswith("&"):
            text = text[1:].strip()
        if not text:
            raise CommandError("an address is needed")
        total, pos = 0, 0
        for m in re.finditer(r"\s*([+-]?)\s*([^\s+-]+)\s*", text):
            if m.start() != pos:
                raise CommandError("cannot parse address %r" % text)
            pos = m.end()
            sign, term = m.group(1), m.group(2)
            if not sign and m.start() != 0:
                raise CommandError("cannot parse address %r" % text)
            value = self._term(term)
            total = total - value if sign == "-" else total + value
        if pos != len(text):
            raise CommandError("cannot parse address %r" % text)
        return total & 0xFFFFFFFF

    def _term(self, term):
        if term.startswith("$"):
            name = REG_ALIASES.get(term[1:].lower(), term[1:].lower())
            if name not in REG_NAMES:
                raise CommandError("no register %r" % term)
            return self.m.cpu.reg(name)
        try:
            return int(term, 0)
        except ValueError:
            pass
        if self.symbols is None:
            raise CommandError("no symbol %r (the image has no symbols)" % term)
        if term not in self.symbols.by_name:
            raise CommandError("no symbol %r in %s" % (term, self._image_name()))
        return self.symbols.by_name[term]

    def _image_name(self):
        import os
        return os.path.basename(self.image_path) if self.image_path else "the image"

    @staticmethod
    def number(text, what="a number", minimum=None):
        try:
            value = int(text, 0)
        except (TypeError, ValueError):
            raise CommandError("%s: expected %s, not %r" % (what, "a number", text))
        if minimum is not None and value < minimum:
            raise CommandError("%s must be at least %d" % (what, minimum))
        return value

    def read(self, addr, length):
        try:
            return self.m.read_memory(addr, length)
        except Exception:
            raise CommandError("Cannot access memory at address %#x" % addr)

    def read_partial(self, addr, length):
        """As many bytes as are readable from addr, up to length (for disassembly)."""
        while length > 0:
            try:
                return self.m.read_memory(addr, length)
            except Exception:
                length //= 2
        raise CommandError("Cannot access memory at address %#x" % addr)

    # ------------------------------------------------------------------ running
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

    def cmd_step_irq(self, args):
        """step-irq [--until]: deliver one virtual interrupt now, or say why not.

        With --until, step instructions until the Host delivers one, reporting
        each change of its reason (the same words as gdb's lguest-step-irq)."""
        words = args.split()
        if any(w != "--until" for w in words):
            raise CommandError("step-irq takes only --until")
        report = self.dbg.step_irq(until=bool(words))
        self.say(render.render_step_irq(report, self.sym))
        self.show_location()

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

    def _insn_line(self, row, current, mode="sym", func_start=None):
        a, _size, text = row
        mark = "=> " if a == current else "   "
        if mode == "offset" and func_start is not None:
            where = "%#010x <+%d>" % (a, a - func_start)
        else:
            name = self.sym(a)
            where = "%#010x <%s>" % (a, name) if name else "%#010x" % a
        return "%s%s:\t%s" % (mark, where, text)

    def disassemble(self, addr, count):
        from .disasm import disassemble
        code = self.read_partial(addr, 16 * count)
        rows = disassemble(code, addr, count)
        if not rows:
            raise CommandError("cannot disassemble at %#x" % addr)
        return rows

    # ------------------------------------------------------------------ breakpoints
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
    def cmd_regs(self, args):
        """regs: the registers, EFLAGS decoded, selectors decoded, the privilege level."""
        if args:
            raise CommandError("regs takes no arguments")
        self.say(self.render_regs())

    def render_regs(self):
        r = self.m.cpu.regs()
        out = []
        for row in (("eax", "ebx", "ecx", "edx"), ("esi", "edi", "ebp", "esp")):
            out.append("  ".join("%-3s %#010x" % (n, r[n]) for n in row))
        out.append("eip %s" % render.addr(r["eip"], self.sym))
        fl = r["eflags"]
        names = [n for bit, n in EFLAGS_BITS if fl & (1 << bit)]
        out.append("eflags %#010x [ %s ] IOPL %d" % (fl, " ".join(names), (fl >> 12) & 3))
        for seg in ("cs", "ss", "ds", "es", "fs", "gs"):
            sel = r[seg]
            out.append("%s %#06x  index %d, %s, RPL %d" % (seg, sel, sel >> 3,
                                                          "LDT" if sel & 4 else "GDT", sel & 3))
        cpl = r["cs"] & 3
        out.append("privilege level: %d, %s" % (cpl, RINGS[cpl]))
        ld = self.m.host.lguest_data
        if ld is not None:
            enabled = self.m.mem.read_u32(ld + abi.LD_IRQ_ENABLED)
            out.append("virtual IF (lguest_data.irq_enabled): %#x (%s)"
                       % (enabled, "enabled" if enabled else "disabled"))
        return "\n".join(out)

    def cmd_x(self, args):
        """x/FMT ADDR: examine memory like gdb: x/4xw $esp, x/8xb ADDR, x/s ADDR, x/3i $pc.

        FMT is a count, a format (x d u o t a c f s i) and a size (b h w g); the
        format and size stick, and `x` alone goes on where the last one ended."""
        fmt = ""
        if args.startswith("/"):
            m = re.match(r"/(\S*)\s*(.*)$", args, re.S)
            fmt, args = m.group(1), m.group(2).strip()
        mm = re.fullmatch(r"(\d*)([a-z]*)", fmt)
        if not mm:
            raise CommandError("bad x format %r: COUNT then letters, as in x/4xw" % fmt)
        count = int(mm.group(1)) if mm.group(1) else 1
        letters = mm.group(2)
        form, size = self._x_fmt, None
        for ch in letters:
            if ch in X_SIZES:
                size = X_SIZES[ch]
            elif ch in X_FORMATS:
                form = ch
            else:
                raise CommandError("bad x format letter %r (formats %s, sizes bhwg)"
                                   % (ch, X_FORMATS))
        if size is None:
            size = {"a": 4, "c": 1}.get(form, self._x_size if form not in "ac" else 4)
            if form not in "acsi" and self._x_fmt in "ac" and self._x_size != 4:
                size = self._x_size
        if form == "f" and size not in (4, 8):
            size = 8 if "g" in letters else 4
        if count < 1 or count * size > X_MAX_UNITS * 8:
            raise CommandError("x: count must be between 1 and %d" % X_MAX_UNITS)
        if args:
            addr = self.address(args)
        elif self._x_next is not None:
            addr = self._x_next
        else:
            raise CommandError("x wants an address (for example x/4xw $esp)")
        if form == "i":
            lines, nxt = self._x_insns(addr, count)
        elif form == "s":
            lines, nxt = self._x_strings(addr, count)
        else:
            lines, nxt = self._x_units(addr, count, form, size)
        self._x_fmt = form
        if form not in "si":
            self._x_size = size
        self._x_next = nxt
        self.say("\n".join(lines))

    def _label(self, addr):
        name = self.sym(addr)
        return "%#010x <%s>:" % (addr, name) if name else "%#010x:" % addr

    def _x_units(self, addr, count, form, size):
        raw = self.read(addr, count * size)
        per = 8 if form == "c" else X_PER_LINE[size]
        lines = []
        for i in range(0, count, per):
            cells = []
            for j in range(i, min(i + per, count)):
                chunk = raw[j * size:(j + 1) * size]
                cells.append(self._format_unit(chunk, form, size))
            lines.append(self._label(addr + i * size) + "\t" + "\t".join(cells))
        return lines, addr + count * size

    def _format_unit(self, chunk, form, size):
        u = int.from_bytes(chunk, "little")
        if form == "x":
            return "0x%0*x" % (2 * size, u)
        if form == "d":
            return "%d" % int.from_bytes(chunk, "little", signed=True)
        if form == "u":
            return "%d" % u
        if form == "o":
            return "0%o" % u if u else "0"
        if form == "t":
            return format(u, "0%db" % (8 * size))
        if form == "a":
            return render.addr(u, self.sym)
        if form == "c":
            v = int.from_bytes(chunk[:1], "little", signed=True)
            c = chunk[0]
            shown = chr(c) if 32 <= c < 127 else "\\%03o" % c
            return "%d '%s'" % (v, shown.replace("'", "\\'"))
        if form == "f":
            return repr(struct.unpack("<f" if size == 4 else "<d", chunk)[0])
        raise CommandError("bad format %r" % form)

    def _x_strings(self, addr, count):
        lines = []
        for _ in range(count):
            raw = bytearray()
            a = addr
            while len(raw) < 200:
                b = self.read(a, 1)[0] if not raw else self._read_byte(a)
                if b is None or b == 0:
                    break
                raw.append(b)
                a += 1
            text = "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else
                           {10: "\\n", 9: "\\t", 34: '\\"', 92: "\\\\"}.get(c, "\\%03o" % c)
                           for c in raw)
            lines.append('%s\t"%s"%s' % (self._label(addr), text, "..." if len(raw) >= 200 else ""))
            addr = a + 1
        return lines, addr

    def _read_byte(self, a):
        try:
            return self.m.read_memory(a, 1)[0]
        except Exception:
            return None

    def _x_insns(self, addr, count):
        rows = self.disassemble(addr, count)
        eip = self.m.cpu.reg("eip")
        lines = [self._insn_line(r, eip) for r in rows]
        last = rows[-1]
        return lines, last[0] + last[1]

    def cmd_disas(self, args):
        """disas [ADDR] [N]: disassemble (capstone, Intel syntax) with symbols.

        Without N: the whole function around ADDR (default EIP); with N: N
        instructions from ADDR.  The current instruction is marked =>."""
        words = args.split()
        count = None
        if len(words) >= 2:
            try:
                count = int(words[-1], 0)
                words = words[:-1]
            except ValueError:
                pass
        if count is not None and not 1 <= count <= 10000:
            raise CommandError("disas: N must be between 1 and 10000")
        if len(words) == 1 and count is None and re.fullmatch(r"\d+", words[0]) \
                and int(words[0]) < 0x1000:
            count, words = int(words[0]), []        # `disas 5`: 5 from EIP
        addr = self.address(" ".join(words)) if words else self.m.cpu.reg("eip")
        eip = self.m.cpu.reg("eip")
        if count is None:
            func = self.function_at(addr)
            if func is not None:
                name, start, end = func
                rows = self._disas_range(start, end)
                out = ["Dump of assembler code for function %s:" % name]
                out += [self._insn_line(r, eip, mode="offset", func_start=start) for r in rows]
                out.append("End of assembler dump.")
                self.say("\n".join(out))
                return
            count = 10
        rows = self.disassemble(addr, count)
        self.say("\n".join(self._insn_line(r, eip) for r in rows))

    def _disas_range(self, start, end):
        from .disasm import disassemble
        code = self.read(start, max(1, end - start))
        rows = disassemble(code, start, 2000)
        return rows or [(start, 1, "(bad)")]

    def function_at(self, addr):
        """(name, start, end) of the function containing addr, from ELF sizes."""
        if self._funcs is None:
            self._funcs = self._load_functions()
        best = None
        for name, start, size in self._funcs:
            if start <= addr < start + size and (best is None or start > best[1]):
                best = (name, start, start + size)
        if best is None and self.symbols is not None:
            name = self.symbols.symbolize(addr)
            if name:
                base = name.split("+")[0]
                start = self.symbols.by_name[base]
                later = sorted(a for a in set(self.symbols.by_name.values()) if a > start)
                end = later[0] if later else start + 64
                if end - start <= 4096:
                    best = (base, start, end)
        return best

    def _load_functions(self):
        funcs = []
        if not self.image_path:
            return funcs
        try:
            from elftools.elf.elffile import ELFFile
            with open(self.image_path, "rb") as f:
                symtab = ELFFile(f).get_section_by_name(".symtab")
                for s in (symtab.iter_symbols() if symtab else ()):
                    if s["st_info"]["type"] == "STT_FUNC" and s["st_size"] and s.name:
                        funcs.append((s.name, s["st_value"], s["st_size"]))
        except Exception:
            return []
        return funcs

    # ------------------------------------------------------------------ lguest state
    def cmd_data(self, args):
        """data [ADDR] [--layout 2.6.23|2.6.24]: struct lguest_data field by field."""
        words = args.split()
        version = abi.DEFAULT_LAYOUT
        if "--layout" in words:
            i = words.index("--layout")
            if i + 1 >= len(words):
                raise CommandError("--layout wants 2.6.23 or 2.6.24")
            version = words[i + 1]
            del words[i:i + 2]
        if version not in abi.LAYOUTS:
            raise CommandError("unknown layout %r (%s)" % (version, ", ".join(abi.LAYOUTS)))
        if words:
            addr = self.address(" ".join(words))
        elif self.m.host.lguest_data is not None:
            addr = self.m.host.lguest_data + self.m.host.page_offset
        elif self.symbols is not None and "lguest_data" in self.symbols.by_name:
            addr = self.symbols.by_name["lguest_data"]
        else:
            raise CommandError("lguest_data is not registered yet (no LGUEST_INIT) "
                               "and the image has no lguest_data symbol: give an ADDR")
        raw = self.read(addr, abi.layout(version)["size"])
        decoded = abi.decode_lguest_data(raw, version)
        self.say(render.render_lguest_data(decoded, addr, self.sym, version))

    def cmd_noirq(self, args):
        """noirq: is EIP inside the noirq window?  The window disassembled, EIP marked."""
        if args:
            raise CommandError("noirq takes no arguments")
        host = self.m.host
        eip = self.m.cpu.reg("eip")
        start, end = host.noirq_start, host.noirq_end
        rows = []
        if start or end:
            # From the start of the function holding the window, so the
            # instructions that lead into it show too.
            func = self.function_at(start)
            first = func[1] if func and func[1] <= start else start
            last = max(end, func[2]) if func else end
            rows = [(a, text) for a, _, text in self._disas_range(first, min(last, first + 256))]
        self.say(render.render_noirq(eip, start, end, self.sym, rows))

    def cmd_irq(self, args):
        """irq [raise N | clear N | stepping on|off]: pending irqs and what the Host would decide."""
        words = args.split()
        if words:
            sub = words[0]
            if sub in ("raise", "clear"):
                if len(words) != 2:
                    raise CommandError("irq %s wants one irq number" % sub)
                n = self.number(words[1], "irq")
                if sub == "raise":
                    self.m.raise_irq(n)
                    self.say("irq %d raised (pending; delivery is tried at the next Host entry)" % n)
                else:
                    self.m.clear_irq(n)
                    self.say("irq %d cleared" % n)
            elif sub == "stepping":
                if len(words) != 2 or words[1] not in ("on", "off"):
                    raise CommandError("irq stepping on|off")
                self.dbg.irq_stepping = words[1] == "on"
                self.say("interrupt delivery while single-stepping: %s" % words[1])
                return
            else:
                raise CommandError("irq [raise N | clear N | stepping on|off]")
        self.say(render.render_irq_decision(inspect.irq_decision(self.m), self.sym))

    def cmd_hcalls(self, args):
        """hcalls [N]: the last N hypercalls (default 10) with decoded arguments."""
        n = self.number(args, "hcalls count", minimum=0) if args else 10
        self.say(render.render_hcalls(inspect.hcalls(self.m, n), self.sym))

    def cmd_idt(self, args):
        """idt: the IDT entries the guest loaded with LOAD_IDT_ENTRY."""
        if args:
            raise CommandError("idt takes no arguments")
        self.say(render.render_idt(inspect.idt(self.m), self.sym))

    def cmd_host(self, args):
        """host: the Host-side state: GDT, kernel stack, TS, irqs, halted, clock, Host tick."""
        if args:
            raise CommandError("host takes no arguments")
        self.say(render.render_host(inspect.host_state(self.m), self.sym))

    def cmd_status(self, args):
        """status: a short summary of the lguest state (as `monitor lguest status`)."""
        if args:
            raise CommandError("status takes no arguments")
        self.say(render.render_status(inspect.status(self.m), self.sym))

    def cmd_pgtable(self, args):
        """pgtable [ADDR] [--cr3 N]: ADDR through the Guest's page tables beside the
        Host's shadow entry; without ADDR the Host's four shadow page directories."""
        words = args.split()
        cr3 = None
        if "--cr3" in words:
            i = words.index("--cr3")
            if i + 1 >= len(words):
                raise CommandError("--cr3 wants the physical address of a page directory")
            cr3 = self.address(words[i + 1])
            del words[i:i + 2]
        if len(words) > 1:
            raise CommandError("usage: pgtable [ADDR] [--cr3 N]")
        try:
            addr, cr3 = pgtable_view.parse_args(
                ["%#x" % self.address(w) for w in words]
                + ([] if cr3 is None else ["--cr3", "%#x" % cr3]))
        except UsageError as e:
            raise CommandError(str(e))
        if addr is None:
            self.say(render.render_pgtable_summary(pgtable_view.summary(self.m)))
        else:
            self.say(render.render_pgtable_walk(pgtable_view.walk(self.m, addr, cr3), self.sym))

    def cmd_catch(self, args):
        """catch hcall [NAME|N] | irq [N] | trap [N] | kill | list | delete N: lguest catchpoints."""
        words = args.split()
        if not words or words[0] == "list":
            if len(words) > 1:
                raise CommandError("catch list takes no arguments")
            rows = [{"number": c.number, "kind": c.kind, "arg": c.arg}
                    for c in self.dbg.catchpoints]
            self.say(render.render_catchpoints(rows))
            return
        kind = words[0]
        if kind == "delete":
            if len(words) < 2:
                raise CommandError("catch delete wants catchpoint numbers")
            numbers = [self.number(w, "catchpoint number") for w in words[1:]]
            known = {c.number for c in self.dbg.catchpoints}
            for n in numbers:
                if n not in known:
                    raise CommandError("no catchpoint number %d" % n)
            for n in numbers:
                self.dbg.delete_catch(n)
            return
        if kind not in CATCH_KINDS:
            raise CommandError("catch what? (%s, list, delete N)" % ", ".join(CATCH_KINDS))
        if len(words) > 2 or (kind == "kill" and len(words) > 1):
            raise CommandError("catch %s takes %s" % (kind, "no argument" if kind == "kill"
                                                       else "at most one argument"))
        arg = None
        if len(words) == 2:
            if kind == "hcall":
                arg = words[1]
            else:
                arg = self.number(words[1], "%s number" % kind, minimum=0)
        cp = self.dbg.add_catch(kind, arg)
        self.say("Catchpoint %d (%s)" % (cp.number, cp.describe()))

    def cmd_patches(self, args):
        """patches: each lgstart_X/lgend_X template, its bytes and disassembly, and its call sites."""
        if args:
            raise CommandError("patches takes no arguments")
        self.say(render.render_patches(self.patch_rows(), self.sym))

    def patch_rows(self):
        if self.symbols is None:
            return []
        from .disasm import disassemble
        from .patches import patch_rows, templates_from_names
        names = self.symbols.by_name
        return patch_rows(templates_from_names(names), names.get, self.m.read_memory,
                          lambda start, raw: [(a, t) for a, _, t in disassemble(raw, start)])

    # ------------------------------------------------------------------ trace, console
    def cmd_trace(self, args):
        """trace on|off: print the Host's events (hypercalls, irqs, traps...) as they happen."""
        if args not in ("on", "off"):
            raise CommandError("trace on|off")
        self.tracing = args == "on"
        self.say("tracing %s" % args)

    def describe_event(self, e):
        kind = e.get("kind")
        head = ("%10s " % e["icount"]) if "icount" in e else ""
        a = lambda v: render.addr(v, self.sym)            # noqa: E731
        if kind == "hcall":
            # The words of `hcalls` and gdb's lguest-hcalls (lgdbg.render).
            call = render._describe_call(e["nr"], (list(e["args"]) + [0, 0, 0])[:3], self.sym)
            text = "hcall %s at %s%s" % (call, a(e["eip"]),
                                         " (async)" if e.get("async") else "")
        elif kind == "irq":
            text = "irq %d delivered: vector %#x through an %s gate to %s, interrupted %s" % (
                e["irq"], e["vector"], e["gate"], a(e["handler"]), a(e["from_eip"]))
        elif kind == "irq-deferred":
            text = "irq %d deferred (%s) at %s" % (e["irq"], e["reason"], a(e["eip"]))
        elif kind == "trap":
            name = abi.TRAP_NAMES.get(e["vector"], "")
            text = "trap %d%s errcode %#x at %s%s%s" % (
                e["vector"], " " + name if name else "", e.get("errcode", 0), a(e["eip"]),
                " cr2 %#x" % e["cr2"] if e.get("cr2") is not None else "",
                "" if e.get("delivered") else (" (emulated)" if e.get("emulated")
                                               else " (not delivered)"))
        elif kind == "raise":
            text = "irq %d raised (%s)" % (e["irq"], e["source"])
        elif kind == "clock":
            text = "clock fired" if e.get("fired") else (
                "clock armed for %d ns" % e["armed"] if e.get("armed") else "clock stopped")
        elif kind == "kill":
            text = "kill: %s" % e["reason"]
        elif kind == "console":
            text = "console %r" % e.get("text")
        else:
            rest = {k: v for k, v in e.items() if k not in ("kind", "icount", "time_ns")}
            text = kind + ("" if not rest else " " + " ".join("%s=%s" % kv for kv in rest.items()))
        return head + text

    def cmd_console(self, args):
        """console [send TEXT]: the guest's console output so far, or type TEXT
        (and Enter) into its console; it gets the line when it next waits for input."""
        if args.split()[:1] == ["send"]:
            text = args.strip()[len("send"):].lstrip()
            self.m.launcher.input.send(text.encode("latin-1", "replace") + b"\n")
            self.say("queued %d bytes for the guest's console" % (len(text) + 1))
            return
        if args:
            raise CommandError("console takes no arguments but `send TEXT`")
        text = "".join(self.console_text)
        if not text:
            self.say("(the guest has printed nothing yet)")
        else:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    # ------------------------------------------------------------------ journey
    def cmd_journey(self, args):
        """journey [next|prev]: the narrative fragment for EIP's source line, or walk the tour."""
        if args not in ("", "next", "prev"):
            raise CommandError("journey [next|prev]")
        tour = self._load_tour()
        if not tour:
            raise CommandError("no narrative fragments (/*G:NNN ... :*/) in this guest's sources")
        from . import journey
        if args == "" or self._journey_at is None:
            here = self._fragment_at_pc(tour)
            if args == "" or here is not None:
                if here is None:
                    raise CommandError(self._no_fragment_reason())
                self._journey_at = here
            else:
                self._journey_at = tour[0] if args == "next" else tour[-1]
                args = ""
        if args:
            prev, nxt = journey.neighbours(tour, self._journey_at)
            target = nxt if args == "next" else prev
            if target is None:
                raise CommandError("%s of the tour" % ("end" if args == "next" else "start"))
            self._journey_at = target
        frag = self._journey_at
        address = None
        if frag.code_line is not None and self.symbols is not None:
            address = self.symbols.address_of_line(frag.path, frag.code_line)
        self.say(journey.render_fragment(frag, tour, address))

    def _load_tour(self):
        if self._tour is not None:
            return self._tour
        from . import journey, images
        import os
        tour = []
        path = os.path.abspath(self.image_path) if self.image_path else None
        for name in images.NAMES:
            if path and os.path.abspath(images.path_of(name)) == path:
                tour = journey.example_tour(name)
                break
        else:
            files = []
            for _, f, _ in (self.symbols.lines if self.symbols else []):
                cand = f if os.path.isabs(f) else os.path.join(os.path.dirname(path or "."), f)
                if cand not in files and os.path.isfile(cand):
                    files.append(cand)
            if files:
                tour = journey.tour(journey.extract_files(files))
        self._tour = tour
        return tour

    def _fragment_at_pc(self, tour):
        from . import journey
        line = self.symbols.line_of(self.m.cpu.reg("eip")) if self.symbols else None
        if line is None:
            return None
        return journey.fragment_at(tour, line[0], line[1])

    def _no_fragment_reason(self):
        eip = self.m.cpu.reg("eip")
        line = self.symbols.line_of(eip) if self.symbols else None
        if line is None:
            return "no source line for EIP %s (no line tables)" % render.addr(eip, self.sym)
        return "no narrative fragment covers or precedes %s:%d" % line

    # ------------------------------------------------------------------ help, quit
    def cmd_help(self, args):
        """help [CMD]: list the commands, or say what one does."""
        if args:
            name = resolve_command(args.split()[0])
            doc = getattr(self, "cmd_" + name.replace("-", "_")).__doc__ or name
            lines = [line.strip() for line in doc.strip().splitlines()]
            aliases = sorted(a for a, n in ALIASES.items() if n == name and "-" not in a)
            if aliases:
                lines.append("aliases: " + ", ".join(aliases))
            self.say("\n".join(lines))
            return
        out = ["Commands (help CMD for more; unique prefixes work):"]
        for name in COMMANDS:
            doc = getattr(self, "cmd_" + name.replace("-", "_")).__doc__ or name
            first = doc.strip().splitlines()[0]
            usage, _, what = first.partition(": ")
            if len(usage) > 26:
                out.append("  %s\n  %-26s %s" % (usage, "", what))
            else:
                out.append("  %-26s %s" % (usage, what))
        out.append("Addresses: 0xNUMBER, SYMBOL, SYMBOL+OFFSET, $REGISTER, *ADDR.  "
                   "Ctrl-C stops a running guest; Ctrl-D quits.")
        self.say("\n".join(out))

    def cmd_quit(self, args):
        """quit: leave the REPL (Ctrl-D does too)."""
        self.quit_requested = True

    # ------------------------------------------------------------------ completion
    @staticmethod
    def completion_prefix(text_before_cursor):
        """The part of the line that a completion replaces."""
        text = text_before_cursor.lstrip()
        if not re.search(r"[\s/]", text):
            return text
        return re.split(r"\s", text)[-1].lstrip("*&")

    def completions(self, text_before_cursor):
        """Words that complete the last word of the line (commands, subcommands, symbols)."""
        text = text_before_cursor.lstrip()
        if not re.search(r"[\s/]", text):
            names = sorted(set(COMMANDS) | {a for a in ALIASES if "-" not in a and len(a) > 2})
            return [n for n in names if n.startswith(text)]
        word = re.split(r"[\s/]", text, 1)[0]
        try:
            name = resolve_command(word)
        except CommandError:
            return []
        last = re.split(r"\s", text)[-1]
        prefix = last.lstrip("*&")
        words = text.split()
        first_arg = len(words) == 1 or (len(words) == 2 and not text[-1].isspace())
        out = []
        if name in SUBCOMMANDS and first_arg:
            out += [s for s in SUBCOMMANDS[name] if s.startswith(prefix)]
        if name == "help" and first_arg:
            out += [c for c in COMMANDS if c.startswith(prefix)]
        if name == "catch" and len(words) >= 2 and words[1] == "hcall":
            out += [n for n in sorted(abi.HCALL_NUMBERS) if n.startswith(prefix.upper())]
        if name in ADDRESS_COMMANDS and not prefix.startswith("/"):
            if prefix.startswith("$"):
                out += sorted("$" + r for r in REG_NAMES + tuple(REG_ALIASES)
                              if r.startswith(prefix[1:]))
            elif self.symbols is not None and prefix:
                out += [s for s in self.symbols.names() if s.startswith(prefix)]
            elif self.symbols is not None and name != "data":
                out += [s for s in self.symbols.names()]
        return out
