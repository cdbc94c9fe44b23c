"""lguest-catch: stop when the guest makes a hypercall, takes an irq or a
trap, or is killed (catchpoints kept by lgdbg's stub)."""

import gdb

from lgdbg import abi
from lgdbg.views import render

from .common import LguestCommand, guest_abi, host_state, monitor, write
from .irq import parse_irq


class LguestCatch(LguestCommand):
    """Stop when the guest makes a hypercall, takes an irq or a trap, or is killed.

Usage: lguest-catch hcall [NAME|N] | irq [N] | trap [N] | kill
       lguest-catch list | lguest-catch delete N

The catchpoint is kept by lgdbg's stub: `continue` stops right after the
Host handled the event (for a hypercall, with the guest past its int $0x1f).
Without an argument, any hypercall, irq or trap stops.  `list` shows the
catchpoints like `info breakpoints`; `delete N` removes one.
Example: lguest-catch hcall SET_CLOCKEVENT.  Needs lgdbg's stub."""

    NAME = "lguest-catch"
    CLASS = gdb.COMMAND_BREAKPOINTS

    KINDS = ("hcall", "irq", "trap", "kill", "list", "delete")

    def complete(self, text, word):
        line = text.split()
        if len(line) == 0 or (len(line) == 1 and not text.endswith(" ")):
            return [k for k in self.KINDS if k.startswith(word or "")]
        if line[0] == "hcall":
            names = abi.profile(guest_abi()[0]).hcall_numbers
            return sorted(n for n in names if n.startswith((word or "").upper()))
        return []

    def run(self, argv, from_tty):
        if not argv:
            self.usage("catch what?")
        kind, args = argv[0], argv[1:]
        if kind == "list":
            if args:
                self.usage("`list` takes no arguments")
            write(render.render_catchpoints(self._rows(), guest_abi()[0]))
            return
        if kind == "delete":
            if len(args) != 1 or not args[0].isdigit():
                self.usage("`delete` needs one catchpoint number")
            numbers = [r["number"] for r in self._rows()]
            if int(args[0]) not in numbers:
                raise gdb.GdbError("lguest-catch: no lguest catchpoint number %s "
                                   "(see `lguest-catch list`)" % args[0])
            monitor("catch delete %s" % args[0], self.NAME)
            return
        if kind not in ("hcall", "irq", "trap", "kill"):
            self.usage("unknown catchpoint kind %r" % kind)
        if len(args) > 1 or (kind == "kill" and args):
            self.usage("too many arguments")
        arg = args[0] if args else None
        if arg is not None:
            if kind == "hcall":
                # The Guest's own hypercalls: 3.2 renumbered them (SHUTDOWN is 2).
                profile = guest_abi()[0]
                names = abi.profile(profile).hcall_numbers
                if arg.isdigit():
                    if int(arg) not in abi.hcall_names(profile):
                        raise gdb.GdbError("lguest-catch: no hypercall number %s in the %s "
                                           "ABI" % (arg, profile))
                elif arg.upper() not in names:
                    raise gdb.GdbError("lguest-catch: unknown hypercall %r in the %s ABI "
                                       "(known: %s)" % (arg, profile, " ".join(names)))
                else:
                    arg = arg.upper()
            elif kind == "irq":
                parse_irq(arg, self.NAME)
            elif kind == "trap":
                try:
                    if not 0 <= int(arg, 0) < 256:
                        raise ValueError
                except ValueError:
                    raise gdb.GdbError("lguest-catch: a trap is a vector 0-255, not %r" % arg)
        cp = host_state("catch %s%s" % (kind, "" if arg is None else " " + arg), self.NAME)
        write("lguest catchpoint %d (%s)" % (cp["number"], cp.get("what") or kind))

    def _rows(self):
        rows = host_state("lguest catch list", self.NAME)
        return rows if isinstance(rows, list) else rows.get("catchpoints", [])


def register():
    LguestCatch()
