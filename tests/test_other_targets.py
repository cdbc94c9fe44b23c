"""The memory-only gdb commands on targets that are not lgdbg: QEMU and a core file.

The README says lguest-data, lguest-noirq, $lguest_in_noirq() and
$lguest_irq_enabled() need only memory and symbols.  Here a multiboot guest
with the examples' lguest_data and lguest_iret runs on qemu-system-i386's
gdbstub; it writes blocked_interrupts and (through lguest_iret's store)
irq_enabled at run time, so the values the commands print come from the
target, not from the ELF's initialisers.  The same state is then written as
a core file by QEMU (`monitor dump-guest-memory`: gdb's own gcore cannot
dump a bare-metal remote target) and read back with `core-file`.  The
Host-side commands must refuse both with one clear line.
"""

import os

import pytest

from gdbmi import Gdb, ROOT
from qemu import QEMU, Qemu, build_multiboot
from test_gdb_commands import LOADER, error_of

pytestmark = pytest.mark.skipif(
    QEMU is None or not os.path.exists("/usr/bin/gdb"),
    reason="needs qemu-system-i386 and gdb (apt-get install qemu-system-x86 gdb)")

# A multiboot kernel (loaded at 1 MiB, flat segments, paging off) that goes
# through lguest_iret with a frame it built, then spins.
GUEST = """\
#include "lguest.h"
	.text
	.align	4
	.long	0x1BADB002, 0, -0x1BADB002	/* multiboot: magic, flags, checksum */
	.globl	_start
_start:
	cli
	movl	$stack_top, %esp
	movl	$0x5a5a0000, lguest_data + LGUEST_DATA_blocked_interrupts
	pushfl				/* the frame lguest_iret returns through */
	pushl	%cs
	pushl	$spin
	jmp	lguest_iret
	.globl	spin
spin:
	jmp	spin
	LGUEST_IRET
	LGUEST_DATA lguest_noirq_start, lguest_noirq_end
	STACK	stack_top, 4096
	.section .note.GNU-stack, "", @progbits
"""
BLOCKED = 0x5a5a0000


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build_multiboot(tmp_path_factory.mktemp("qemu"), GUEST,
                           cflags=("-g", "-I", os.path.join(ROOT, "examples")))


def gdb_with(elf):
    g = Gdb()
    g.cli("source %s" % LOADER)
    g.cli("file %s" % elf)
    return g


def value(g, expr):
    return int(g.cli("output/d %s" % expr).console.strip())


def check_inside_the_window(g):
    """Stopped after lguest_iret's store, before its pop: what memory says."""
    eip = value(g, "$pc")
    assert eip == value(g, "(unsigned)&lguest_noirq_start") + 6
    assert value(g, "$lguest_in_noirq()") == 1
    text = g.cli("lguest-noirq").console
    assert text.startswith("inside the noirq window: yes (EIP %#010x <lguest_iret+11>)" % eip)
    # irq_enabled is the eflags slot of the frame (saved eax, eip, cs, eflags).
    eflags = value(g, "*(unsigned *)($esp + 12)")
    assert value(g, "$lguest_irq_enabled()") == eflags
    data = g.cli("lguest-data").console
    assert "irq_enabled         %#x" % eflags in data
    irqs = ", ".join(str(i) for i in range(32) if BLOCKED >> i & 1)
    assert "blocked_interrupts  %#x (blocked irqs %s)" % (BLOCKED, irqs) in data
    # The Host's side is not in memory: one clear refusal, no traceback.
    assert "only lgdbg's stub has" in error_of(g, "lguest-irq")


def stop_inside_the_window(g, qemu):
    assert g.mi("-target-select remote 127.0.0.1:%d" % qemu.port).message == "connected"
    g.cli("break *(lguest_noirq_start + 6)")
    g.mi("-exec-continue")
    stop = g.wait_stopped(30)
    assert stop["reason"] == "breakpoint-hit", stop


def test_memory_commands_on_qemu(image):
    qemu = Qemu(image)
    g = gdb_with(image)
    try:
        stop_inside_the_window(g, qemu)
        check_inside_the_window(g)
        # pop and iret: out of the window, at spin.
        for _ in range(2):
            g.mi("-exec-step-instruction")
            g.wait_stopped(30)
        assert value(g, "$pc") == value(g, "(unsigned)&spin")
        assert value(g, "$lguest_in_noirq()") == 0
        assert g.cli("lguest-noirq").console.startswith("inside the noirq window: no")
    finally:
        g.close()
        qemu.close()


def test_memory_commands_on_a_core_file(image, tmp_path):
    core = str(tmp_path / "vmcore")
    qemu = Qemu(image)
    g = gdb_with(image)
    try:
        stop_inside_the_window(g, qemu)
        g.cli("monitor dump-guest-memory %s" % core)
    finally:
        g.close()
        qemu.close()
    assert os.path.getsize(core) > 16 << 20
    g = gdb_with(image)
    try:
        g.cli("core-file %s" % core)
        check_inside_the_window(g)
    finally:
        g.close()
