"""The REPL's session: the state every command shares and the one place
that runs a line (Session.execute).

Rules every command keeps (execute enforces the first, each command the second):
  * A failing command prints one line (on the error stream) and returns
    False; it never raises, never prints a traceback.
  * Arguments are parsed in full before anything happens, so a mistyped
    command (unknown name, bad number, unknown symbol) never changes the
    guest's state.
"""

import re
import sys

from ..core.debugger import CATCH_KINDS, Debugger
from ..errors import LgdbgError, UsageError


class CommandError(LgdbgError):
    """A command failed: the message is the one line the user sees."""


# Name -> method suffix, in the order `help` lists them.
COMMANDS = (
    "continue", "stepi", "step-irq", "reverse-stepi", "reverse-continue", "break", "tbreak", "delete", "info", "watch",
    "rwatch", "awatch", "regs", "x", "disas", "data", "noirq", "irq", "hcalls", "idt",
    "host", "status", "pgtable", "virtio", "catch", "patches", "trace", "console", "journey",
    "help",
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
    "journey": ("next", "prev", "source"),
    "step-irq": ("--until",),
    "data": ("--layout",),
}
# Commands whose arguments are addresses (symbols complete there).
ADDRESS_COMMANDS = frozenset(("break", "tbreak", "watch", "rwatch", "awatch", "x", "disas",
                              "data"))

REG_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
             "cs", "ss", "ds", "es", "fs", "gs")
REG_ALIASES = {"pc": "eip", "sp": "esp", "fp": "ebp"}

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


class Session:
    """The REPL on one Machine, writing text to `out` (errors to `err`)."""

    """The REPL's commands on one Machine, writing text to `out` (errors to `err`)."""

    def __init__(self, machine, out=None, err=None, symbols=None, image_path=None,
                 debugger=None):
        self.m = machine
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else self.out
        self.image_path = image_path or getattr(getattr(machine, "image", None), "path", None)
        if symbols is None and self.image_path:
            from ..views.symbols import Symbols
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
