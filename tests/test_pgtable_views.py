"""Page-table views: `monitor info mem|tlb` against real QEMU, `pgtable` words.

The same page table (PDE 256 -> a PTE page with one entry of each kind of
flags) is built by a multiboot guest under QEMU and by an lguest guest under
lgdbg; QEMU's own `info mem` and `info tlb` are the reference for ours, line
for line, for that region (the rest differs: each needs its kernel mapped
where it runs).
"""


import pytest

from lgdbg.core.debugger import Debugger
from lgdbg.gdbstub.monitor import Monitor
from lgdbg.machine import Machine
from lgdbg.views.symbols import Symbols
from gdbmi import Gdb
from guestbuild import INIT, build_guest, own_tables
from qemu import MULTIBOOT_HEADER, QEMU, Qemu, build_multiboot

# PTE flags of the test entries: plain, RW, user, user RW, accessed, dirty,
# global, PWT and PCD, and a hole (not present) between two runs.
FLAGS = [0x01, 0x03, 0x05, 0x07, 0x27, 0x67, 0x163, 0x0F, 0x13, 0x00, 0x07, 0x07]

FILL = "".join("\tmovl\t$%#x, %s + %d\n" % (((0x300 + i) << 12) | f, "%(pt)s", 4 * i)
               for i, f in enumerate(FLAGS))

MULTIBOOT = MULTIBOOT_HEADER + """
	.globl	_start
_start:
	xorl	%%eax, %%eax			/* identity-map the first 4 MiB for ourselves */
1:	movl	%%eax, %%edx
	shll	$12, %%edx
	orl	$0x3, %%edx
	movl	%%edx, low_pt(,%%eax,4)
	incl	%%eax
	cmpl	$1024, %%eax
	jne	1b
	movl	$low_pt + 0x3, pgdir
	movl	$test_pt + 0x7, pgdir + 256 * 4
%(fill)s
	movl	$pgdir, %%eax
	movl	%%eax, %%cr3
	movl	%%cr0, %%eax
	orl	$0x80010000, %%eax
	movl	%%eax, %%cr0
	.globl	paging_on
paging_on:
	jmp	paging_on
	.bss
	.balign	4096
pgdir:	.fill	1024, 4, 0
low_pt:	.fill	1024, 4, 0
test_pt: .fill	1024, 4, 0
	.section .note.GNU-stack, "", @progbits
"""

LGUEST_TEXT = own_tables("\tmovl\t$__PA(test_pt) + 0x7, pgdir + 256 * 4\n"
                         + FILL % {"pt": "test_pt"})
LGUEST_DATA = """
	.data
	.balign	4096
pgdir:	.fill	1024, 4, 0
pt_kernel: .fill	1024, 4, 0
test_pt: .fill	1024, 4, 0
"""


def region(text):
    return [line for line in text.splitlines() if line.startswith("0000000040")]


@pytest.fixture(scope="module")
def lgdbg_views(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lg")
    elf = build_guest(tmp, INIT + "\tcall\town_tables\n\t.globl\tpaging_on\npaging_on:\n",
                      text=LGUEST_TEXT, data=LGUEST_DATA)
    m = Machine(elf)
    m.cpu.add_breakpoint(Symbols(elf).lookup("paging_on"))
    assert m.run().kind == "breakpoint"
    mon = Monitor(m, Debugger(m))
    return m, mon


@pytest.fixture(scope="module")
def qemu_views(tmp_path_factory):
    if QEMU is None:
        pytest.skip("qemu-system-i386 is not installed (tools/install-deps.sh test)")
    image = build_multiboot(tmp_path_factory.mktemp("qemu"),
                            MULTIBOOT % {"fill": FILL % {"pt": "test_pt"}})
    with Qemu(image) as qemu, Gdb(args=[image]) as gdb:
        gdb.cli("target remote %s" % qemu.address)
        gdb.cli("break paging_on")
        gdb.cli("continue")
        gdb.wait_stopped()
        return gdb.cli("monitor info mem").output, gdb.cli("monitor info tlb").output


def test_info_mem_and_tlb_are_qemus_lines(lgdbg_views, qemu_views):
    _, mon = lgdbg_views
    q_mem, q_tlb = qemu_views
    assert region(q_tlb) and region(q_mem)            # the reference saw our table
    assert region(mon.run("info tlb")) == region(q_tlb)
    assert region(mon.run("info mem")) == region(q_mem)


def test_info_mem_shows_the_kernel_mapping_as_one_range(lgdbg_views):
    m, mon = lgdbg_views
    lines = mon.run("info mem").splitlines()
    assert "00000000c0000000-00000000c0400000 0000000000400000 -rw" in lines


def test_pgtable_states_and_summary(lgdbg_views):
    m, mon = lgdbg_views
    w = mon.run("pgtable 0x40005000")              # P|RW|A|D, never touched
    assert "physical: 0x305000" in w and "not faulted in yet" in w
    assert "present rw user accessed dirty" in w
    assert "not present" in mon.run("pgtable 0x40009000")
    assert "user space" in mon.run("pgtable 0x40009000")
    top = mon.run("pgtable")
    assert "<- current" in top and "(unused)" in top
    with pytest.raises(Exception, match="not page-aligned"):
        mon.run("pgtable 0x40000000 --cr3 0x123")
