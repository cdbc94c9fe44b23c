"""lguest-data and lguest-noirq: the Guest's side of the ABI, from memory alone."""

import gdb

from lgdbg import abi
from lgdbg.views import render

from .common import (LguestCommand, current_pc, disassemble, eval_address, guest_abi,
                     lguest_data_address, need_symbols, noirq_window, read_memory, sym,
                     symbol_address, write)


def window_sym():
    """gdb's `info symbol` may name lguest_noirq_end by another symbol at its
    address (lguest_dev_match in 2.6.23): the window's labels come first."""
    return render.prefer_labels(sym, symbol_address)


class LguestData(LguestCommand):
    """Show struct lguest_data field by field.

Usage: lguest-data [ADDR] [--layout 2.6.23|2.6.24|3.2]

Prints irq_enabled (value and enabled/disabled), blocked_interrupts as a
list of irqs, cr2, time, irq_pending (3.2), the async hypercall ring (pending
slots with call names and arguments), reserve_mem, guestid (2.6.23), tsc_khz,
noirq_start/noirq_end with their symbols, kernel_address and syscall_vec
(3.2).  The address is ADDR when given, else the `lguest_data` symbol, else
what lgdbg's stub reports.  The layout comes from the image's debug info when
it has struct lguest_data, else from the Guest's ABI as lgdbg's stub reports
it (or, on other targets, as the symbols show: 3.2 for a boot-protocol
kernel, else 2.6.23); --layout picks a built-in table.  Needs only memory and
symbols, so it works on any gdb target (lgdbg's stub, QEMU, a core file, the
bare ELF)."""

    NAME = "lguest-data"
    COMPLETE = gdb.COMPLETE_EXPRESSION

    def run(self, argv, from_tty):
        version = None
        rest = []
        it = iter(argv)
        for a in it:
            if a == "--layout":
                version = next(it, None)
                if version is None:
                    self.usage("--layout needs a version")
            elif a.startswith("--layout="):
                version = a.split("=", 1)[1]
            elif a.startswith("--"):
                self.usage("unknown option %s" % a)
            else:
                rest.append(a)
        if version is not None and version not in abi.LAYOUTS:
            self.usage("unknown layout %r (known: %s)"
                       % (version, ", ".join(sorted(abi.LAYOUTS))))
        if not rest and getattr(gdb.selected_inferior(), "connection", None) is None:
            need_symbols(self.NAME)
        address, _ = lguest_data_address(self.NAME, " ".join(rest) if rest else None)
        profile, layout = guest_abi()
        version = version or layout
        raw = read_memory(address, abi.layout(version)["size"])
        # The ring's call numbers are the Guest's ABI's, whatever layout was asked.
        write(render.render_lguest_data(abi.decode_lguest_data(raw, version), address,
                                        window_sym(), version, profile))


class LguestNoirq(LguestCommand):
    """Say whether EIP is inside lguest_iret's noirq window.

Usage: lguest-noirq [ADDR]

The Host never delivers a virtual interrupt while EIP is in
[noirq_start, noirq_end), whatever irq_enabled says.  Prints yes or no, the
window with its symbols, and the window disassembled with the current
instruction marked "=>".  ADDR stands in for EIP (useful without a running
target).  The window comes from lguest_data, else the lguest_noirq_start and
lguest_noirq_end symbols, else lgdbg's stub."""

    NAME = "lguest-noirq"
    COMPLETE = gdb.COMPLETE_EXPRESSION

    def run(self, argv, from_tty):
        eip = eval_address(" ".join(argv), self.NAME) if argv else current_pc(self.NAME)
        start, end = noirq_window(self.NAME)
        rows = []
        if start or end:
            # From the start of the function holding the window (lguest_iret)
            # through the instruction at the window's end.
            # lguest_iret may be a label of its own, not a symbol covering start.
            first = start
            iret = symbol_address("lguest_iret")
            name = sym(start)
            if iret is not None and 0 <= start - iret <= 64:
                first = iret
            elif name and "+" in name:
                off = int(name.rsplit("+", 1)[1])
                if off <= 64:
                    first = start - off
            try:
                rows = disassemble(first, end)
            except gdb.error:
                rows = []
        write(render.render_noirq(eip, start, end, sym, rows, window_sym()))


def register():
    LguestData()
    LguestNoirq()
