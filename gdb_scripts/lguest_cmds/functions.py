"""Convenience functions for conditions: `break foo if $lguest_in_noirq()`."""

import gdb

from lgdbg import abi

from .common import (current_pc, guest_abi, host_state, lguest_data_address, noirq_window,
                     read_u32, value_address)


class _Function(gdb.Function):
    NAME = None

    def __init__(self):
        super().__init__(self.NAME)

    def invoke(self, *args):
        try:
            return self.call(*args)
        except gdb.GdbError:
            raise
        except (gdb.error, gdb.MemoryError) as e:
            raise gdb.GdbError("$%s: %s" % (self.NAME, e))


class IrqEnabled(_Function):
    """$lguest_irq_enabled() - lguest_data.irq_enabled: 0x200 when the guest has
interrupts enabled, 0 when disabled (read from guest memory)."""

    NAME = "lguest_irq_enabled"

    def call(self, *args):
        if args:
            raise gdb.GdbError("$lguest_irq_enabled takes no arguments")
        address, _ = lguest_data_address("$" + self.NAME)
        return read_u32(address + abi.offset_of("irq_enabled", guest_abi()[1]))


class InNoirq(_Function):
    """$lguest_in_noirq([ADDR]) - 1 when the pc (or ADDR) is inside the noirq
window [noirq_start, noirq_end) where the Host never delivers interrupts, else 0."""

    NAME = "lguest_in_noirq"

    def call(self, *args):
        if len(args) > 1:
            raise gdb.GdbError("$lguest_in_noirq takes at most one argument (an address)")
        pc = value_address(args[0]) if args else current_pc("$" + self.NAME)
        start, end = noirq_window("$" + self.NAME)
        return 1 if start <= pc < end else 0


class Pending(_Function):
    """$lguest_pending([IRQ]) - the Host's bitmap of pending virtual irqs, or
1/0 for irq IRQ alone.  Needs lgdbg's stub."""

    NAME = "lguest_pending"

    def call(self, *args):
        if len(args) > 1:
            raise gdb.GdbError("$lguest_pending takes at most one argument (an irq)")
        st = host_state("lguest status", "$" + self.NAME)
        bitmap = 0
        for irq in st.get("pending", []):
            bitmap |= 1 << irq
        if args:
            irq = int(args[0])
            if not 0 <= irq < abi.LGUEST_IRQS:
                raise gdb.GdbError("$lguest_pending: irq %d is out of range (0-%d)"
                                   % (irq, abi.LGUEST_IRQS - 1))
            return (bitmap >> irq) & 1
        return bitmap


def register():
    IrqEnabled()
    InNoirq()
    Pending()
