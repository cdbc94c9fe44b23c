"""The `lguest` command: `help lguest` lists every lguest-* command."""

import gdb

from .common import COMMANDS, write


def _listing():
    width = max(len(n) for n, _ in COMMANDS)
    lines = ["  %s -- %s" % (n.ljust(width), doc) for n, doc in COMMANDS]
    lines.append("  %s -- %s" % ("$lguest_irq_enabled()".ljust(width),
                                  "lguest_data.irq_enabled (0 or 0x200)"))
    lines.append("  %s -- %s" % ("$lguest_in_noirq()".ljust(width),
                                  "1 when the pc is inside the noirq window, else 0"))
    lines.append("  %s -- %s" % ("$lguest_pending([IRQ])".ljust(width),
                                  "the Host's pending-irq bitmap (or 1/0 for IRQ); needs lgdbg's stub"))
    return "\n".join(lines)


def register():
    doc = ("List lgdbg's commands for debugging lguest guests.\n\n"
           "Usage: lguest\n\n"
           "lgdbg explains an lguest Guest's paravirtual state: lguest_data, the noirq\n"
           "window around lguest_iret, virtual interrupt delivery, hypercalls and the\n"
           "Host's view.  Commands that need only memory and symbols work on any\n"
           "target; those that need the Host's state need lgdbg's stub.\n\n"
           "Commands:\n" + _listing())

    class Lguest(gdb.Command):
        __doc__ = doc

        def __init__(self):
            super().__init__("lguest", gdb.COMMAND_USER, gdb.COMPLETE_NONE)

        def invoke(self, arg, from_tty):
            if arg.strip():
                raise gdb.GdbError("lguest takes no arguments; the commands are lguest-*: "
                                   "see `help lguest`")
            write("lgdbg's lguest commands:\n" + _listing())

    Lguest()
