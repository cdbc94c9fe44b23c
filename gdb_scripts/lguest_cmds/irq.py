"""lguest-irq and lguest-step-irq: virtual interrupt delivery, through lgdbg's stub."""

import gdb

from lgdbg import abi
from lgdbg.views import render

from .common import LguestCommand, flush_registers, host_state, monitor, sym, write
from .data import window_sym


def parse_irq(text, command):
    try:
        n = int(text, 0)
    except ValueError:
        raise gdb.GdbError("%s: %r is not an irq number (0-%d)"
                           % (command, text, abi.LGUEST_IRQS - 1))
    if not 0 <= n < abi.LGUEST_IRQS:
        raise gdb.GdbError("%s: irq %d is out of range: lguest has irqs 0-%d"
                           % (command, n, abi.LGUEST_IRQS - 1))
    return n


class LguestIrq(LguestCommand):
    """Explain what the Host would decide about virtual interrupts right now.

Usage: lguest-irq [raise N | clear N]

Shows the pending and blocked irqs and, step by step, what the Host's
maybe_do_interrupt would decide now and why: blocked, inside the noirq
window, disabled, no handler, or "would deliver irq N to HANDLER through an
interrupt gate".  `raise N` marks irq N pending (as the Launcher's LHREQ_IRQ
does) and `clear N` withdraws it, before explaining.  Needs lgdbg's stub."""

    NAME = "lguest-irq"
    CLASS = gdb.COMMAND_RUNNING

    def run(self, argv, from_tty):
        if argv:
            if len(argv) != 2 or argv[0] not in ("raise", "clear"):
                self.usage("expected `raise N` or `clear N`")
            n = parse_irq(argv[1], self.NAME)
            host_state("lguest status", self.NAME)      # says so if not lgdbg's stub
            monitor("irq %s %d" % (argv[0], n), self.NAME)
        decision = host_state("lguest irq", self.NAME)
        write(render.render_irq_decision(decision, window_sym()))


class LguestStepIrq(LguestCommand):
    """Single-step virtual interrupt delivery.

Usage: lguest-step-irq [--until]

If an interrupt is deliverable now, performs exactly one delivery and stops
on the handler's first instruction, printing the decision, the frame pushed
(eflags with its IF, cs, eip; ss/esp on a privilege change) and irq_enabled
before and after.  If it is not deliverable, says why.  With --until it
steps instructions until delivery happens, reporting how many instructions
delivery was deferred by and each change of reason.  Needs lgdbg's stub."""

    NAME = "lguest-step-irq"
    CLASS = gdb.COMMAND_RUNNING

    def run(self, argv, from_tty):
        until = False
        for a in argv:
            if a == "--until":
                until = True
            else:
                self.usage("unknown argument %r" % a)
        report = host_state("step-irq" + (" --until" if until else ""), self.NAME)
        # The stub moved the guest (a delivery, or --until's steps): gdb's
        # register cache and frames are stale.
        if report.get("delivered") or report.get("steps"):
            flush_registers()
        write(render.render_step_irq(report, window_sym()))
        if report.get("delivered") or report.get("steps"):
            try:
                write(gdb.execute("frame", to_string=True).rstrip("\n"))
            except gdb.error:
                pass


def register():
    LguestIrq()
    LguestStepIrq()
