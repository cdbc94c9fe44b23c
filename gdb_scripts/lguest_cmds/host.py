"""lguest-hcalls, lguest-idt, lguest-host, lguest-status: the Host's records."""

import gdb

from lgdbg.views import render

from .common import LguestCommand, host_state, sym, write


class LguestHcalls(LguestCommand):
    """Show the last hypercalls the guest made, with decoded arguments.

Usage: lguest-hcalls [N]

The last N hypercalls (default 10), oldest first: instruction count, virtual
time, the calling EIP, the call's name and its arguments by meaning; calls
taken from the async ring are marked (async).  Needs lgdbg's stub."""

    NAME = "lguest-hcalls"
    CLASS = gdb.COMMAND_STATUS

    def run(self, argv, from_tty):
        n = 10
        if len(argv) > 1:
            self.usage("too many arguments")
        if argv:
            try:
                n = int(argv[0], 0)
            except ValueError:
                self.usage("N must be a number, not %r" % argv[0])
            if n < 0:
                self.usage("N must not be negative")
        write(render.render_hcalls(host_state("lguest hcalls %d" % n, self.NAME), sym))


class LguestIdt(LguestCommand):
    """Show the IDT entries the guest loaded with LOAD_IDT_ENTRY.

Usage: lguest-idt

One row per vector: the vector (and the irq it carries), the handler with
its symbol, the gate type (interrupt gates clear irq_enabled, trap gates do
not) and the DPL.  Needs lgdbg's stub."""

    NAME = "lguest-idt"
    CLASS = gdb.COMMAND_STATUS

    def run(self, argv, from_tty):
        if argv:
            self.usage("lguest-idt takes no arguments")
        write(render.render_idt(host_state("lguest idt", self.NAME), sym))


class LguestHost(LguestCommand):
    """Show the Host-side state of the guest.

Usage: lguest-host

The GDT entries the guest loaded, the kernel stack from SET_STACK (ss1/esp1),
TS, pending and blocked irqs, whether the guest is halted, the clock event
and the next Host tick.  Needs lgdbg's stub."""

    NAME = "lguest-host"
    CLASS = gdb.COMMAND_STATUS

    def run(self, argv, from_tty):
        if argv:
            self.usage("lguest-host takes no arguments")
        write(render.render_host(host_state("lguest host", self.NAME), sym))


class LguestStatus(LguestCommand):
    """Show a one-screen summary of the guest's lguest state.

Usage: lguest-status

Where lguest_data is, EIP against the noirq window, pending and blocked irqs,
halted or dead, instruction count, virtual time and the clock event.  Needs
lgdbg's stub."""

    NAME = "lguest-status"
    CLASS = gdb.COMMAND_STATUS

    def run(self, argv, from_tty):
        if argv:
            self.usage("lguest-status takes no arguments")
        write(render.render_status(host_state("lguest status", self.NAME), sym))


def register():
    LguestHcalls()
    LguestIdt()
    LguestHost()
    LguestStatus()
