"""`lgdbg run`: boot a guest on the emulated machine, like the Launcher does.

stdout carries only the Guest's console; everything lgdbg says goes to stderr.
Exit status: 0 powered off, 1 killed (or halted for ever), 2 bad usage or
image, 3 --max-insns reached, 4 stuck (the same page fault for ever).
"""

import sys

from . import images
from .errors import UsageError
from .machine.machine import DEFAULT_HOST_TICK, DEFAULT_MEM_MIB

STATUS = {"poweroff": 0, "killed": 1, "halted-forever": 1, "max-insns": 3, "stuck": 4}


def parse_irq(text):
    """'3@150000' -> (3, 150000)."""
    irq, sep, count = text.partition("@")
    try:
        if not sep:
            raise ValueError
        irq, count = int(irq, 0), int(count, 0)
    except ValueError:
        raise UsageError("--irq wants IRQ@ICOUNT (for example 3@150000), not %r" % text)
    if count < 0:
        raise UsageError("--irq %s: the instruction count must not be negative" % text)
    return irq, count


def add_machine_options(parser):
    """The options every command that builds a Machine takes."""
    parser.add_argument("image", nargs="?", default=None,
                        help="guest ELF image (default: the bundled %s example)" % images.DEFAULT)
    parser.add_argument("--mem", type=int, default=DEFAULT_MEM_MIB, metavar="MIB",
                        help="guest RAM in MiB (default %d)" % DEFAULT_MEM_MIB)
    parser.add_argument("--cmdline", default="", metavar="TEXT", help="kernel command line")
    parser.add_argument("--irq", action="append", default=[], metavar="IRQ@ICOUNT",
                        help="raise virtual IRQ when ICOUNT instructions have retired (repeatable)")
    parser.add_argument("--host-tick", type=int, default=None, metavar="N",
                        help="a Host entry every N instructions (default %d)" % DEFAULT_HOST_TICK)
    parser.add_argument("--clock", choices=("icount", "realtime"), default="icount",
                        help="icount: deterministic virtual time (default); realtime: free-running")
    add_initrd_option(parser)


def add_initrd_option(parser):
    parser.add_argument("--initrd", metavar="FILE",
                        help="initial ramdisk (cpio newc, gzip'ed or not) at the top of RAM")


def add_console_input_option(parser):
    parser.add_argument("--console-input", metavar="FILE",
                        help="what the Guest's console reads (one line each time it waits)")


def read_initrd(path):
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError("cannot read --initrd %s: %s" % (path, e.strerror or e))


def open_console_input(path):
    from .machine.console_input import ConsoleInput
    if path is None:
        return None
    try:
        return ConsoleInput(open(path, "rb"))
    except OSError as e:
        raise UsageError("cannot read --console-input %s: %s" % (path, e.strerror or e))


def machine_kwargs(args):
    irqs = [parse_irq(t) for t in args.irq]
    kw = dict(mem_mib=args.mem, cmdline=args.cmdline, clock=args.clock, irqs=irqs,
              initrd=read_initrd(getattr(args, "initrd", None)))
    if getattr(args, "console_input", None) is not None:
        kw["console_input"] = open_console_input(args.console_input)
    if args.host_tick is not None:
        if args.clock == "realtime":
            raise UsageError("--host-tick counts instructions: it needs --clock icount")
        kw["host_tick"] = args.host_tick
    return kw


def build_machine(args, **extra):
    from .machine import Machine      # unicorn is imported only by commands that run guests
    kw = machine_kwargs(args)
    kw.update(extra)
    return Machine(images.resolve(args.image), **kw)


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
                            console_input=ConsoleInput(sys.stdin.buffer))
    trace = None
    if args.trace:
        from .machine.events import TraceWriter
        try:
            trace_file = open(args.trace, "w")
        except OSError as e:
            raise UsageError("cannot write trace %s: %s" % (args.trace, e.strerror))
        trace = TraceWriter(trace_file)
        machine.subscribe(trace)
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
    elif stop.kind == "max-insns":
        say("lgdbg: stopped at --max-insns %s, eip %#x" % (where, machine.cpu.reg("eip")))
    elif stop.kind == "stuck":
        say(format_registers(machine.cpu.regs()))
        say("lgdbg: guest %s, in %s, %s" % (stop.reason, symbol_at(machine, stop.addr), where))
    else:
        say("lgdbg: guest %s: %s %s" % ("killed" if stop.kind == "killed" else "stopped",
                                        stop.reason, where))
        say(format_registers(machine.cpu.regs()))


def symbol_at(machine, addr):
    """'name+0xoff' from the image's symbols, or the bare address."""
    try:
        from .symbols import Symbols
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
