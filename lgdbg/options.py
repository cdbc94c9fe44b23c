"""The options every command that builds a Machine shares, and building it.

A leaf that every front end may import (run, serve, gdb, repl, explore):
the front ends themselves never import each other.
"""

from . import images
from .errors import UsageError
from .machine.machine import DEFAULT_HOST_TICK, DEFAULT_MEM_MIB


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
    parser.add_argument("--cmdline", default="", metavar="TEXT",
                        help="kernel command line (the Launcher puts a space after each word)")
    parser.add_argument("--irq", action="append", default=[], metavar="IRQ@ICOUNT",
                        help="raise virtual IRQ when ICOUNT instructions have retired (repeatable)")
    parser.add_argument("--host-tick", type=int, default=None, metavar="N",
                        help="a Host entry every N instructions (default %d)" % DEFAULT_HOST_TICK)
    parser.add_argument("--clock", choices=("icount", "realtime"), default="icount",
                        help="icount: deterministic virtual time (default); realtime: free-running")
    add_initrd_option(parser)
    parser.add_argument("--abi", choices=("2.6.23", "3.2"), default=None,
                        help="the lguest ABI (default: from the image: the GenuineLguest "
                             "magic is 2.6.23, a physical ELF entry point is 3.2)")
    parser.add_argument("--disk", metavar="FILE",
                        help="3.2 ABI: a virtio block device backed by FILE (read-write)")
    parser.add_argument("--disk-readonly", action="store_true",
                        help="offer --disk read-only (VIRTIO_BLK_F_RO; writes fail)")


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
              initrd=read_initrd(getattr(args, "initrd", None)),
              abi_profile=getattr(args, "abi", None), disk=getattr(args, "disk", None),
              disk_readonly=getattr(args, "disk_readonly", False))
    if kw["disk_readonly"] and kw["disk"] is None:
        raise UsageError("--disk-readonly needs --disk FILE")
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
