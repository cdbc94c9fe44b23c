"""`lgdbg run`: boot a guest on the emulated machine, like the Launcher does.

stdout carries only the Guest's console; everything lgdbg says goes to stderr.
Exit status: 0 powered off, 1 killed (or halted for ever), 2 bad usage or
image, 3 --max-insns reached, 4 stuck (the same page fault for ever),
5 the Guest asked for a restart (3.2's SHUTDOWN with LGUEST_SHUTDOWN_RESTART:
the real Launcher re-executes itself and boots the Guest again; lgdbg ends
the run there and says so, so that a restart is never mistaken for either
a power-off or a crash).
"""

import sys

from .errors import UsageError
from .options import add_machine_options, build_machine

STATUS = {"poweroff": 0, "killed": 1, "halted-forever": 1, "max-insns": 3, "stuck": 4,
          "restart": 5}


def configure(parser):
    add_machine_options(parser)
    parser.add_argument("--max-insns", type=int, default=None, metavar="N",
                        help="stop (status 3) after N instructions")
    parser.add_argument("--trace", metavar="FILE", help="write Host events as JSON Lines")


def run(args):
    if args.max_insns is not None and args.clock == "realtime":
        raise UsageError("--max-insns counts instructions: it needs --clock icount")
    if args.max_insns is not None and args.max_insns < 0:
        raise UsageError("--max-insns must not be negative")
    out = sys.stdout.buffer

    def console(data):
        out.write(data)
        out.flush()

    from .machine.console_input import ConsoleInput
    # Like the Launcher, `run` gives the Guest's console our standard input.
    machine = build_machine(args, max_insns=args.max_insns, output=console,
                            console_input=ConsoleInput(getattr(sys.stdin, "buffer", None)))
    trace = None
    if args.trace:
        from .machine.events import TraceWriter
        try:
            trace_file = open(args.trace, "w")
        except OSError as e:
            raise UsageError("cannot write trace %s: %s" % (args.trace, e.strerror))
        trace = TraceWriter(trace_file)
        machine.subscribe(trace)
        # The trace's first line names the ABI the Host speaks.
        machine.emit("boot", abi=machine.profile, entry=machine.image.entry,
                     mem=machine.launcher.mem_size)
    try:
        stop = machine.run()
    finally:
        if trace is not None:
            trace_file.close()
    report(machine, stop)
    return STATUS.get(stop.kind, 1)


def report(machine, stop):
    say = lambda text: print(text, file=sys.stderr)  # noqa: E731
    where = "after %d instructions" % machine.icount if machine.clock.deterministic else ""
    if stop.kind == "poweroff":
        say("lgdbg: guest powered off %s" % where)
    elif stop.kind == "restart":
        say("lgdbg: guest asked for a restart %s; the Launcher would boot it again" % where)
    elif stop.kind == "max-insns":
        say("lgdbg: stopped at --max-insns %s, eip %#x" % (where, machine.cpu.reg("eip")))
    elif stop.kind == "stuck":
        say(format_registers(machine.cpu.regs()))
        say("lgdbg: guest %s, in %s, %s" % (stop.reason, symbol_at(machine, stop.addr), where))
    else:
        # One line: a reason's own final newline ("Bad hypercall %li\n") is not printed.
        say("lgdbg: guest %s: %s %s" % ("killed" if stop.kind == "killed" else "stopped",
                                        stop.reason.rstrip("\n"), where))
        say(format_registers(machine.cpu.regs()))


def symbol_at(machine, addr):
    """'name+0xoff' from the image's symbols, or the bare address."""
    try:
        from .views.symbols import Symbols
        name = Symbols(machine.image.path).symbolize(addr)
    except Exception:        # no symbols, a stripped or odd image: the number says enough
        name = None
    return name or "%#x" % addr


def format_registers(r):
    rows = [("eax", "ebx", "ecx", "edx"), ("esi", "edi", "ebp", "esp"),
            ("eip", "eflags")]
    lines = ["  " + "  ".join("%-6s %08x" % (n, r[n]) for n in row) for row in rows]
    lines.append("  " + "  ".join("%s %04x" % (n, r[n]) for n in ("cs", "ss", "ds", "es", "fs", "gs")))
    return "\n".join(lines)
