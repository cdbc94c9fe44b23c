"""The 3.2 Host's rules at their edges, with purpose-built 3.2 guests (issue 18).

Each guest (tests/guestbuild32.py) boots like a 3.2 vmlinux: physical entry,
linear mode, LGUEST_INIT with the 3.2 lguest_data, NEW_PGTABLE with its own
page directory.  Each test reads the expected behaviour off the routine named
in its comment (shared/kernel-3.2/src/drivers/lguest/, the Launcher in
Documentation/virtual/lguest/lguest.c), runs the guest on the real machine
(unicorn, no mocks) and checks what the Guest saw, what the Host said, or
why the run ended, on both sides of each edge.
"""

import struct

import pytest

from guestbuild import IRET_TO_USER
from guestbuild32 import PAGE_OFFSET, boot32

MEM = 32 << 20
# Launcher main(): RAM, then the device page, then the console's two
# virtqueues of vring_size(256, 4096) = 3 pages each; guest_limit covers them.
GUEST_LIMIT = MEM + (1 + 2 * 3) * 4096
IF = 0x200

HANDLERS = """
gp_handler:
	popl	gp_err
	popl	gp_eip
	popl	gp_cs
	movl	%esp, gp_esp
	SHUTDOWN "gp", 3
pf_handler:
	popl	pf_err
	movl	lguest_data + LD_cr2, %eax
	movl	%eax, pf_cr2
	SHUTDOWN "pf", 3
irq_handler:
	incl	handled
	pushl	%eax
	movl	4(%esp), %eax
	movl	%eax, irq_eip
	movl	8(%esp), %eax
	movl	%eax, irq_cs
	movl	12(%esp), %eax
	movl	%eax, irq_eflags
	popl	%eax
	jmp	lguest_iret
never:
	SHUTDOWN "never", 3
"""
HANDLER_DATA = """
	.balign	4
gp_err:	.long 0x55
gp_eip:	.long 0
gp_cs:	.long 0
gp_esp:	.long 0
pf_err:	.long 0x55
pf_cr2:	.long 0
handled: .long 0
irq_eip: .long 0
irq_cs:	.long 0
irq_eflags: .long 0
result:	.long 0x55
result2: .long 0x55
result3: .long 0x55
"""
GATES = """
	SET_GATE 13, gp_handler, INTERRUPT_GATE
	SET_GATE 14, pf_handler, INTERRUPT_GATE
"""


def guest(tmp_path, body="", data="", text="", **kw):
    return boot32(tmp_path, body=GATES + body, text=HANDLERS + text,
                  data=HANDLER_DATA + data, **kw)


def outcome(g, reason):
    """No kill reason expected: a clean power-off; else that kill."""
    if reason is None:
        return ended(g, "poweroff")
    return ended(g, "killed", reason)


def ended(g, kind, reason=None):
    stop = g.run()
    assert stop.kind == kind, stop
    if reason is not None:
        assert stop.reason == reason, stop
    return stop


# --- the boot state: Launcher main / load_initrd, x86/core.c lguest_arch_setup_regs --------

def test_boot_zero_page(tmp_path):
    g = guest(tmp_path, pre="""
	movw	0x206(%esi), %ax		/* through ESI, as startup_32 reads it */
	movw	%ax, PA(result)
	movb	0x23c(%esi), %al
	movb	%al, PA(result2)
""", machine={"cmdline": "root=/dev/vda quiet"})
    zp = g.phys(0, 4096)
    assert struct.unpack_from("<H", zp, 0x206)[0] == 0x207            # hdr.version
    assert struct.unpack_from("<I", zp, 0x23C)[0] == 1                # hardware_subarch lguest
    assert zp[0x211] & 0x40                                           # KEEP_SEGMENTS
    assert zp[0x1E8] == 1                                             # e820_entries
    assert struct.unpack_from("<QQI", zp, 0x2D0) == (0, MEM, 1)       # {0, mem, E820_RAM}
    assert struct.unpack_from("<I", zp, 0x228)[0] == 0x1000           # cmd_line_ptr
    assert g.phys(0x1000, 20) == b"root=/dev/vda quiet\0"
    assert struct.unpack_from("<I", zp, 0x230)[0] == 0x1000000        # kernel_alignment
    # No initrd: the zeroed page keeps ramdisk_* and type_of_loader 0.
    assert struct.unpack_from("<II", zp, 0x218) == (0, 0) and zp[0x210] == 0
    g.run_to("linear_start", phys=True)
    assert g.word("result") & 0xFFFF == 0x207 and g.word("result2") & 0xFF == 1


def test_boot_initrd_fields(tmp_path):
    initrd = bytes(range(256)) * 20 + b"end"          # 5123 bytes: two pages
    g = guest(tmp_path, machine={"initrd": initrd})
    zp = g.phys(0, 4096)
    # load_initrd maps it at mem - page_align(size) and returns the ALIGNED
    # length, which main() stores as ramdisk_size.
    assert struct.unpack_from("<II", zp, 0x218) == (MEM - 8192, 8192)
    assert zp[0x210] == 0xFF
    assert g.phys(MEM - 8192, len(initrd)) == initrd


def test_boot_registers(tmp_path):
    g = guest(tmp_path, pre="\tpushfl\n\tpopl\tPA(result)\n")
    # e_entry is physical: the Guest starts at virtual == physical.
    assert g.m.cpu.reg("eip") == g.pa("guest_entry") == 0x100000
    g.run_to("linear_start", phys=True)
    # eax, ebx, ecx, edx, esi (the zero page), edi, ebp, esp: all 0.
    assert [g.word("boot_regs", 4 * i) for i in range(8)] == [0] * 8
    assert [g.word("boot_regs", 32 + 4 * i) & 0xFFFF for i in range(4)] == \
        [0x61, 0x69, 0x69, 0x69]                      # cs, ds, es, ss
    assert g.word("result") == 0x202                  # X86_EFLAGS_IF | 0x2


# --- hypercalls.c initialize: the first hypercall must be LHCALL_LGUEST_INIT --------------

@pytest.mark.parametrize("nr, shown", [(4, 4), (17, 17), (0, 0), (2, 2), (0xFFFFFFFF, -1)])
def test_hypercall_before_init(tmp_path, nr, shown):
    g = guest(tmp_path, init=False, pre="\thcall %d, $PA(result)\n" % nr)
    ended(g, "killed", "hypercall %d before INIT" % shown)


def test_ring_is_not_drained_by_init(tmp_path):
    # do_hypercalls: the INIT call returns straight after initialize; the
    # ring is first looked at by the next hypercall.
    g = guest(tmp_path, pre="\tQUEUE 0, LHCALL_NOTIFY, PA(ring_msg), pa=0xC0000000\n",
              linear="""
after_init:
	hcall	LHCALL_SEND_INTERRUPTS
after_send:
""", data='ring_msg: .asciz "from the ring"\n')
    g.run_to("after_init", phys=True)
    assert g.text == b"" and g.ld(24) & 0xFF == 0
    g.run_to("after_send", phys=True)
    assert g.text == b"from the ring" and g.ld(24) & 0xFF == 0xFF
    assert g.hcalls() == [(1, False), (17, True), (19, False)]


# --- initialize: lguest_arch_init_hypercalls, page_table_guest_data_init -------------------

@pytest.mark.parametrize("addr, bad", [
    (GUEST_LIMIT - 1392, True),        # ends exactly at guest_limit: lguest_address_ok refuses
    (GUEST_LIMIT - 1393, False),
    (0xFFFFFC00, True),                # wraps past 4 GiB
])
def test_init_bad_guest_page(tmp_path, addr, bad):
    pre = ""
    if addr < GUEST_LIMIT:      # a valid syscall_vec and kernel_address there
        pre = "\tmovl\t$0x80, %#x\n\tmovl\t$0xC0000000, %#x\n" % (addr + 1388, addr + 1384)
    g = guest(tmp_path, init=False, pre=pre + "\thcall LHCALL_LGUEST_INIT, $%#x\n" % addr)
    stop = g.run()
    if bad:
        assert stop.kind == "killed" and stop.reason.startswith("bad guest page"), stop
    else:
        assert stop.kind == "poweroff", stop
        assert g.m.mem.read_u32(addr + 1368) == 4 << 20     # reserve_mem, at that address


@pytest.mark.parametrize("vec, reason", [(0x80, None), (0x81, "bad syscall vector"),
                                         (0, "bad syscall vector")])
def test_init_syscall_vector(tmp_path, vec, reason):
    g = guest(tmp_path, syscall_vec=vec)
    outcome(g, reason)


@pytest.mark.parametrize("kaddr, reason", [
    (0xFF800000, None), (0xFFBFFFFF, None),            # pgd index 1022
    (0xFFC00000, "bad kernel address 0xffc00000"),     # 1023 = SWITCHER_PGD_INDEX
    (0xFFFFFFFF, "bad kernel address 0xffffffff"),
])
def test_init_kernel_address(tmp_path, kaddr, reason):
    g = guest(tmp_path, kernel_address=kaddr)
    outcome(g, reason)


def test_init_writes_reserve_mem_tsc_khz_and_time(tmp_path):
    g = guest(tmp_path, reserve_mem=0x12345678, tsc_khz=0x1234,
              pre="\tmovl\t$0xdeadbeef, PA(lguest_data) + LD_time\n"
                  "\tmovl\t$0xdeadbeef, PA(lguest_data) + LD_time + 4\n")
    assert (g.ld(1368), g.ld(1372)) == (0x12345678, 0x1234)
    g.run_to("linear_start", phys=True)
    assert g.ld(1368) == 4 << 20                       # RESERVE_MEM (4) MiB
    assert g.ld(1372) == 0                             # tsc_khz: no constant TSC
    assert (g.ld(12), g.ld(16)) != (0xDEADBEEF, 0xDEADBEEF)   # write_timestamp
    assert g.ld(16) < 1_000_000_000


# --- interrupts: interrupt_pending + try_deliver_interrupt ---------------------------------

IRQ_BODY = """
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE	/* irq 1 */
	SET_GATE 0x22, irq_handler, TRAP_GATE		/* irq 2 */
	andl	$~6, lguest_data + LD_blocked_interrupts
	movl	$0, lguest_data + LD_irq_enabled
	.globl	ready
ready:
	nop
	hcall	LHCALL_HALT
	.globl	after_halt
after_halt:
	nop
"""


@pytest.fixture
def irq_guest(tmp_path):
    g = guest(tmp_path, body=IRQ_BODY)
    g.run_to("ready")
    g.set_ld(12, 0x11111111)        # a timestamp the Host has not written
    g.set_ld(16, 0x22222222)
    g.events.clear()
    return g


def deliver(g, *irqs):
    for irq in irqs:
        g.m.raise_irq(irq)
    return g.m.try_deliver()


def frame(g):
    return struct.unpack("<III", g.m.read_memory(g.m.cpu.reg("esp"), 12))


def test_irq_pending_set_when_disabled_and_never_cleared(irq_guest):
    g = irq_guest
    assert g.ld(20) == 0
    irq, _ = deliver(g, 1)
    assert irq is None and g.ld(20) == IF              # "make sure they know"
    assert (g.ld(12), g.ld(16)) == (0x11111111, 0x22222222)   # no timestamp then
    assert g.m.host.irqs_pending == 1 << 1
    g.set_ld(0, IF)
    irq, _ = deliver(g)
    assert irq == 1 and g.m.host.irqs_pending == 0
    # 3.2.65: `more` holds find_next_bit's index (32 when none), so it is
    # always true and irq_pending is never put back to 0.
    assert g.ld(20) == IF
    assert (g.ld(12), g.ld(16)) != (0x11111111, 0x22222222)   # write_timestamp


def test_irq_pending_untouched_when_blocked_or_in_window(irq_guest):
    g = irq_guest
    g.set_ld(4, 1 << 1)                                # irq 1 blocked
    assert deliver(g, 1)[0] is None and g.ld(20) == 0  # interrupt_pending: none
    g.set_ld(4, 0)
    g.m.cpu.set_reg("eip", g.sym("lguest_noirq_start"))
    assert deliver(g)[0] is None and g.ld(20) == 0     # the window returns first
    g.m.cpu.set_reg("eip", g.sym("lguest_noirq_end"))
    assert deliver(g)[0] is None and g.ld(20) == IF


def test_timestamp_written_even_without_a_gate(irq_guest):
    # try_deliver_interrupt: no present gate, nothing delivered, but
    # write_timestamp still runs; the irq stays pending.
    g = irq_guest
    g.set_ld(0, IF)
    g.set_ld(4, 0)
    irq, _ = deliver(g, 3)
    assert irq is None and g.m.host.irqs_pending == 1 << 3
    assert (g.ld(12), g.ld(16)) != (0x11111111, 0x22222222)


@pytest.mark.parametrize("where, delta, inside", [
    ("lguest_noirq_start", -1, False), ("lguest_noirq_start", 0, True),
    ("lguest_noirq_end", -1, True), ("lguest_noirq_end", 0, False)])
def test_noirq_window_edges(irq_guest, where, delta, inside):
    g = irq_guest
    g.set_ld(0, IF)
    eip = g.sym(where) + delta
    g.m.cpu.set_reg("eip", eip)
    irq, _ = deliver(g, 1)
    if inside:
        assert irq is None and g.m.cpu.reg("eip") == eip and g.m.host.irqs_pending == 2
    else:
        assert irq == 1 and frame(g)[0] == eip


def test_noirq_window_is_read_once_at_init(tmp_path):
    # initialize reads noirq_start/end once; later changes are not seen.
    g = guest(tmp_path, body="""
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE
	andl	$~2, lguest_data + LD_blocked_interrupts
	movl	$other_start, lguest_data + LD_noirq_start
	movl	$other_end, lguest_data + LD_noirq_end
	movl	$0x200, lguest_data + LD_irq_enabled
ready:
	nop
other_start:
	nop
other_end:
	nop
""")
    g.run_to("ready")
    g.m.cpu.set_reg("eip", g.sym("other_start"))
    assert deliver(g, 1)[0] == 1
    g.m.cpu.set_reg("eip", g.sym("lguest_noirq_start"))
    assert deliver(g, 1)[0] is None


def test_halted_guest_woken_with_irq_enabled(irq_guest):
    g = irq_guest
    stop = g.run()
    assert stop.kind == "halted-forever" and g.m.host.halted, stop
    assert g.ld(0) == 0
    irq, _ = deliver(g, 2)                             # trap gate: irq_enabled stays
    assert irq == 2 and not g.m.host.halted
    assert g.ld(0) == IF                               # put_user(X86_EFLAGS_IF, ...)
    eip, cs, eflags = frame(g)
    assert (eip, cs) == (g.sym("after_halt"), 0x61) and eflags & IF
    assert g.ld(20) == 0                               # the halted path never sets it


def test_halted_guest_not_woken_by_a_blocked_irq(irq_guest):
    g = irq_guest
    g.run()
    g.set_ld(4, 1 << 2)
    assert deliver(g, 2)[0] is None and g.m.host.halted and g.ld(0) == 0


@pytest.mark.parametrize("insn, delivered", [
    ("hcall LHCALL_SEND_INTERRUPTS", True),
    ("hcall LHCALL_TS, $0", True),                     # any hypercall exit will do
    ("nop", False),
])
def test_send_interrupts(tmp_path, insn, delivered):
    # With irq_pending set, lg_restore_fl makes SEND_INTERRUPTS: the exit
    # lets run_guest deliver.  Without an exit nothing happens.
    g = guest(tmp_path, body="""
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE
	andl	$~2, lguest_data + LD_blocked_interrupts
	movl	$0, lguest_data + LD_irq_enabled
ready:
	movl	$0x200, lguest_data + LD_irq_enabled
	%s
after:
	nop
	nop
done:
""" % insn)
    g.run_to("ready")
    g.m.raise_irq(1)
    g.run_to("done")
    if delivered:
        assert g.word("handled") == 1 and g.word("irq_eip") == g.sym("after")
        assert g.word("irq_cs") == 0x61
    else:
        assert g.word("handled") == 0 and g.m.host.irqs_pending == 2


# --- the async ring: hypercalls.c do_async_hcalls, core.c run_guest ------------------------

def test_ring_five_word_slots_in_order_stopping_at_notify(tmp_path):
    log, holder = [], {}
    g = guest(tmp_path, linear="""
	QUEUE 0, LHCALL_NOTIFY, PA(msg1), pa=0xC0000000
	QUEUE 1, LHCALL_TS, 1, pa=0xC0000000
	QUEUE 2, LHCALL_NOTIFY, PA(msg2), pa=0xC0000000
	QUEUE 3, LHCALL_FLUSH_ASYNC, pa=0xC0000000
	hcall	LHCALL_SEND_INTERRUPTS
after:
""", data='msg1: .asciz "one"\nmsg2: .asciz "two"\n',
        machine={"output": lambda data: log.append((data, holder["g"].m.host.ts))})
    holder["g"] = g
    g.run_to("after", phys=True)
    # The first NOTIFY goes to the Launcher before slot 1's TS is done.
    assert log == [(b"one", 0), (b"two", 1)]
    assert [h for h in g.hcalls() if h[0] != 1] == [(17, True), (8, True), (17, True),
                                                    (0, True), (19, False)]
    assert g.phys(g.pa("lguest_data") + 24, 5) == b"\xff" * 5


def test_ring_drained_only_at_hypercall_exits(tmp_path):
    # run_guest: "if (cpu->hcall) do_hypercalls(cpu)": a #GP, a page fault or
    # a timer entry leaves the ring alone.
    g = guest(tmp_path, linear="""
	QUEUE 0, LHCALL_NOTIFY, PA(msg1), pa=0xC0000000
	movl	0x900000, %eax			/* a demand fault */
	movl	$300, %ecx
1:	inb	$0x60, %al			/* a #GP exit, emulated */
	loop	1b
spun:
	hcall	LHCALL_FLUSH_ASYNC
flushed:
""", data='msg1: .asciz "ring"\n', machine={"irqs": [(5, 200)], "host_tick": 100})
    g.run_to("spun", phys=True)
    assert g.kinds("raise") and len([e for e in g.events if e["kind"] == "trap"]) >= 300
    assert g.text == b"" and g.ld(24) & 0xFF == 0
    assert not [h for h in g.hcalls() if h[1]]
    g.run_to("flushed", phys=True)
    assert g.text == b"ring" and g.ld(24) & 0xFF == 0xFF


# --- hypercalls.c do_hcall: SHUTDOWN ---------------------------------------------------------

@pytest.mark.parametrize("text, reason, kind, why", [
    ("Power down", 1, "poweroff", "CRASH: Power down"),
    ("Power down", 0, "poweroff", "CRASH: Power down"),    # only RESTART is special
    ("bye", 1, "killed", "CRASH: bye"),
    ("Power down", 2, "restart", None),                   # lg->dead = -ERESTART
    ("reboot", 2, "restart", None),
])
def test_shutdown(tmp_path, text, reason, kind, why):
    g = guest(tmp_path, body='\tSHUTDOWN "%s", %d\n' % (text, reason))
    ended(g, kind, why)


def test_shutdown_message_is_cut_at_127_bytes(tmp_path):
    g = guest(tmp_path, body='\tSHUTDOWN "%s", 1\n' % ("a" * 200))
    ended(g, "killed", "CRASH: " + "a" * 127)


@pytest.mark.parametrize("addr, why, kind", [
    (GUEST_LIMIT - 128, "bad read address %#x len 128" % (GUEST_LIMIT - 128), "killed"),
    (GUEST_LIMIT - 129, "CRASH: ", "killed"),         # a zeroed vring page
    (0x40000000, None, "restart"),                    # lguest_restart's __pa(NULL)
])
def test_shutdown_message_read(tmp_path, addr, why, kind):
    reason = 2 if kind == "restart" else 1
    g = guest(tmp_path, body="\thcall LHCALL_SHUTDOWN, $%#x, $%d\n" % (addr, reason))
    ended(g, kind, why)


# --- unknown numbers: do_hcall default + lguest_arch_do_hcall ------------------------------

@pytest.mark.parametrize("nr, shown", [(13, 13), (3, 3), (11, 11), (12, 12), (20, 20),
                                       (0xFFFFFFFF, -1)])
def test_bad_hypercall(tmp_path, nr, shown):
    # 13 = SET_PMD exists only with CONFIG_X86_PAE; this Host is non-PAE.
    g = guest(tmp_path, body="\thcall %d, $0, $0\n" % nr)
    ended(g, "killed", "Bad hypercall %d\n" % shown)


def test_bad_hypercall_from_the_ring(tmp_path):
    g = guest(tmp_path, body="\tQUEUE 0, LHCALL_SET_PMD\n\thcall LHCALL_FLUSH_ASYNC\n")
    ended(g, "killed", "Bad hypercall 13\n")


# --- linear mode: page_tables.c demand_page / guest_new_pagetable / guest_pa ---------------

def test_linear_mode_is_virtual_equals_physical(tmp_path):
    g = guest(tmp_path, linear="""
	movl	PA(marker), %eax
	movl	%eax, PA(result)
	movl	$0x5a17, 0x1f00000		/* 31 MiB, mapped by no table */
	movl	0x1000, %eax			/* the command line */
	movl	%eax, PA(result2)
	cli					/* at a physical EIP, CPL 1: emulated */
	movl	$1, PA(result3)
""", data="marker: .long 0xfeedf00d\n", machine={"cmdline": "abcd"})
    ended(g, "poweroff")
    assert g.word("result") == 0xFEEDF00D and g.word("result2") == 0x64636261
    assert g.phys(0x1F00000, 4) == (0x5A17).to_bytes(4, "little")
    assert g.word("result3") == 1


@pytest.mark.parametrize("addr, killed", [
    (GUEST_LIMIT - 4, False),          # the last vring page: pfn < pfn_limit
    (GUEST_LIMIT, True),               # check_gpte: pfn >= pfn_limit
    (PAGE_OFFSET + 0x100000, True),    # a kernel virtual address, taken as physical
])
def test_linear_mode_beyond_guest_memory(tmp_path, addr, killed):
    g = guest(tmp_path, linear="\tmovl\t%#x, %%eax\n" % addr)
    if killed:
        ended(g, "killed", "bad page table entry")
    else:
        ended(g, "poweroff")


def test_new_pgtable_drops_the_linear_mappings(tmp_path):
    g = guest(tmp_path, linear="\tmovl\t$0x11, 0x800000\n", body="""
	movl	0x1000, %eax			/* the Guest's own PDE 0: fine */
	movl	%eax, result
	movl	0x800000, %eax			/* linear before, unmapped now */
""")
    ended(g, "killed", "CRASH: pf")
    assert g.phys(0x800000, 4) == (0x11).to_bytes(4, "little")
    assert g.word("pf_cr2") == 0x800000 and g.word("pf_err") & 1 == 0
    assert g.word("result") == 0          # no cmdline: a zeroed page


def test_guest_pa_walks_the_guest_tables(tmp_path):
    # emulate_insn reads the instruction at guest_pa(eip): a walk of the
    # Guest's tables.  0x40000000 - PAGE_OFFSET is nowhere near io_page.
    g = guest(tmp_path, tables="""
	movl	$PA(pt_user) + 0x67, PA(pgdir) + 256 * 4
	movl	$PA(io_page) + 0x63, PA(pt_user)
""", body="""
	movl	$0x12345678, %eax
	movl	$0x40000000, %ecx
	call	*%ecx
	movl	%eax, result
""", text="""
	.balign	4096
io_page:
	inb	$0x60, %al
	ret
	.balign	4096
""", data="""
	.balign	4096
pt_user: .fill 1024, 4, 0
""")
    ended(g, "poweroff")
    assert g.word("result") == 0x123456FF
    assert [e["eip"] for e in g.kinds("trap") if e.get("emulated")] == [0x40000000]


# --- SET_PGD (15): page_tables.c guest_set_pgd ----------------------------------------------

@pytest.mark.parametrize("pgdir, index, fresh", [
    ("PA(pgdir)", 256, True),
    ("PA(pgdir)", 255, False),         # another entry: the shadow of 256 stays
    ("PA(pgdir)", 1023, False),        # >= SWITCHER_PGD_INDEX: ignored
    ("PA(pt_a)", 256, False),          # not a page directory the Host knows
])
def test_set_pgd(tmp_path, pgdir, index, fresh):
    g = guest(tmp_path, tables="""
	movl	$PA(pt_a) + 0x67, PA(pgdir) + 256 * 4
	movl	$PA(page_a) + 0x63, PA(pt_a)
	movl	$PA(page_b) + 0x63, PA(pt_b)
""", body="""
	movl	0x40000000, %%eax
	movl	%%eax, result
	movl	$PA(pt_b) + 0x67, pgdir + 256 * 4	/* no hypercall: stale */
	movl	0x40000000, %%eax
	movl	%%eax, result2
	hcall	LHCALL_SET_PGD, $%s, $%d
	movl	0x40000000, %%eax
	movl	%%eax, result3
""" % (pgdir, index), data="""
	.balign	4096
pt_a:	.fill 1024, 4, 0
pt_b:	.fill 1024, 4, 0
page_a:	.fill 1024, 4, 0xaaaaaaaa
page_b:	.fill 1024, 4, 0xbbbbbbbb
""")
    ended(g, "poweroff")
    assert (g.word("result"), g.word("result2")) == (0xAAAAAAAA, 0xAAAAAAAA)
    assert g.word("result3") == (0xBBBBBBBB if fresh else 0xAAAAAAAA)


# --- LOAD_GDT_ENTRY (18): segments.c load_guest_gdt_entry, fixup_gdt_table -----------------

@pytest.mark.parametrize("num, reason", [(32, "too many gdt entries 32"),
                                         (0xFFFFFFFF, "too many gdt entries -1"),
                                         (31, None)])
def test_gdt_entry_bounds(tmp_path, num, reason):
    g = guest(tmp_path, body="\thcall LHCALL_LOAD_GDT_ENTRY, $%#x, $0xffff, $0xcf9a00\n" % num)
    outcome(g, reason)


def test_gdt_entry_fixup(tmp_path):
    g = guest(tmp_path, body="""
	hcall	LHCALL_LOAD_GDT_ENTRY, $20, $0x0000ffff, $0x00cf9a00	/* DPL 0 */
	hcall	LHCALL_LOAD_GDT_ENTRY, $21, $0x0000ffff, $0x00cff200	/* DPL 3 */
	movl	$0xa1, %eax
	larl	%eax, %ebx
	movl	%ebx, result
	movl	$0xab, %eax
	larl	%eax, %ebx
	movl	%ebx, result2
""")
    ended(g, "poweroff")
    # lar: the access rights (hi & 0x00F0FF00)
    assert g.word("result") == 0x00C0BB00      # DPL 0 -> GUEST_PL, accessed set
    assert g.word("result2") == 0x00C0F300     # DPL 3 kept, accessed set


@pytest.mark.parametrize("num", [10, 11, 16, 31])
def test_gdt_host_entries_ignored(tmp_path, num):
    g = guest(tmp_path, body="""
ready:
	hcall	LHCALL_LOAD_GDT_ENTRY, $%d, $0x12345678, $0x00cff200
after:
""" % num)
    g.run_to("ready")
    before = bytes(g.m.cpu.gdt[num])
    g.run_to("after")
    assert bytes(g.m.cpu.gdt[num]) == before
    ended(g, "poweroff")


# --- LOAD_IDT_ENTRY (6): interrupts_and_traps.c load_guest_idt_entry, set_trap -------------

@pytest.mark.parametrize("num, reason", [(255, None), (256, "Setting idt entry 256"),
                                         (0xFFFFFFFF, "Setting idt entry 4294967295")])
def test_idt_entry_bounds(tmp_path, num, reason):
    g = guest(tmp_path, body="\tSET_GATE %#x, never, INTERRUPT_GATE\n" % num)
    if reason is None:
        ended(g, "poweroff")
        assert 255 in g.m.host.idt
    else:
        ended(g, "killed", reason)


@pytest.mark.parametrize("num, kept", [(2, False), (8, False), (15, False), (0x1f, False),
                                       (3, True), (0x80, True)])
def test_idt_ignored_vectors(tmp_path, num, kept):
    g = guest(tmp_path, body="\tSET_GATE %#x, never, INTERRUPT_GATE\n" % num)
    ended(g, "poweroff")                   # the hypercall gate still works
    assert (num in g.m.host.idt) == kept


@pytest.mark.parametrize("gate_type, reason", [(0xC, "bad IDT type 12"), (0x6, "bad IDT type 6"),
                                               (0x7, "bad IDT type 7")])
def test_idt_bad_type_is_stored_anyway(tmp_path, gate_type, reason):
    g = guest(tmp_path, body="\tSET_GATE 0x30, never, %#x\n" % (0x8000 | gate_type << 8))
    ended(g, "killed", reason)
    assert 0x30 in g.m.host.idt


def test_idt_gate_takes_the_hosts_selector_and_not_present_clears(tmp_path):
    g = guest(tmp_path, body="""
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE, sel=0x1234
	SET_GATE 0x22, irq_handler, INTERRUPT_GATE
	hcall	LHCALL_LOAD_IDT_ENTRY, $0x22, $0, $0	/* not present: zeroed */
	andl	$~6, lguest_data + LD_blocked_interrupts
	movl	$0x200, lguest_data + LD_irq_enabled
ready:
	nop
""")
    g.run_to("ready")
    irq, decision = deliver(g, 2)
    assert irq is None and decision.verdict == "no-handler"
    irq, _ = deliver(g, 1)
    assert irq == 1 and frame(g)[1] == 0x61
    stop = g.run()
    assert stop.kind == "poweroff" and g.word("irq_cs") == 0x61 and g.word("handled") == 1


# --- int $0x80 and copy_traps / lguest_arch_handle_trap's "case 32 ... 255" ----------------

@pytest.mark.parametrize("gate, dpl, outcome", [
    ("TRAP_GATE", 3, "direct"),        # copy_traps copies the trap gate: the CPU delivers
    ("INTERRUPT_GATE", 3, "ignored"),  # default_idt_entry: the Host sees 0x80, ignores it
    ("INTERRUPT_GATE", 1, "ignored"),
    ("INTERRUPT_GATE", 0, "gp"),       # DPL 0 from ring 1: #GP(0x80 * 8 + 2)
])
def test_int_0x80(tmp_path, gate, dpl, outcome):
    g = guest(tmp_path, body="""
	SET_GATE 0x80, irq_handler, %s, %d
	int	$0x80
after:
	movl	$1, result
""" % (gate, dpl))
    stop = g.run()
    if outcome == "gp":
        assert stop.kind == "killed" and stop.reason == "CRASH: gp", stop
        assert g.word("gp_err") == 0x80 * 8 + 2
        return
    assert stop.kind == "poweroff", stop
    assert g.word("result") == 1
    if outcome == "direct":
        assert g.word("handled") == 1 and g.word("irq_eip") == g.sym("after")
    else:
        assert g.word("handled") == 0
        assert [e["vector"] for e in g.kinds("trap") if e.get("ignored")] == [0x80]


def test_int_above_31_other_than_0x80_is_gp(tmp_path):
    # copy_traps gives the Guest's DPL only to direct traps: 0x40 keeps DPL 0.
    g = guest(tmp_path, body="\tSET_GATE 0x40, never, INTERRUPT_GATE, 3\n\tint $0x40\n")
    ended(g, "killed", "CRASH: gp")
    assert g.word("gp_err") == 0x40 * 8 + 2


# --- SET_STACK (7): interrupts_and_traps.c guest_set_stack ----------------------------------

@pytest.mark.parametrize("ss, pages, reason", [
    (0x69, 2, None), (0x69, 0, None),
    (0x68, 1, "bad stack segment 104"), (0x6b, 1, "bad stack segment 107"),
    (0x69, 3, "bad stack pages 3"),
    (0x68, 3, "bad stack segment 104"),          # the first kill is the one kept
])
def test_set_stack(tmp_path, ss, pages, reason):
    g = guest(tmp_path, body="\thcall LHCALL_SET_STACK, $%#x, $kstack_top, $%d\n" % (ss, pages),
              data="\t.balign 4096\n\t.space 4096\nkstack_top:\n")
    outcome(g, reason)


# --- #GP: x86/core.c lguest_arch_handle_trap case 13, emulate_insn --------------------------

@pytest.mark.parametrize("insn, eax", [
    ("inb $0x60, %al", 0x123456FF),    # E4: AL only, |= 0xFF
    ("inb %dx, %al", 0x123456FF),      # EC
    ("inw $0x60, %ax", 0x1234FFFF),    # 66 E5
    ("inw %dx, %ax", 0x1234FFFF),      # 66 ED
    ("inl $0x60, %eax", 0xFFFFFFFF),   # E5
    ("inl %dx, %eax", 0xFFFFFFFF),     # ED
    ("outb %al, $0x80", 0x12345678),   # E6: ignored
    ("outw %ax, %dx", 0x12345678),     # 66 EF
    ("outl %eax, %dx", 0x12345678),    # EF
    ("cli", 0x12345678),               # FA: skipped
])
def test_gp_emulated_at_cpl1(tmp_path, insn, eax):
    g = guest(tmp_path, body="""
	movl	$0x12345678, %%eax
	movw	$0x60, %%dx
insn:
	%s
	movl	%%eax, result
""" % insn)
    ended(g, "poweroff")
    assert g.word("result") == eax
    assert [e["eip"] for e in g.kinds("trap") if e.get("emulated")] == [g.sym("insn")]


@pytest.mark.parametrize("code", [".byte 0x66, 0xfa", "hlt", "insb"])
def test_gp_not_emulated_at_cpl1(tmp_path, code):
    # emulate_insn tests 0xFA before the prefix: "66 fa" is reflected.
    g = guest(tmp_path, body="\tmovw $0x60, %%dx\n\tmovl $result, %%edi\ninsn:\n\t%s\n" % code)
    ended(g, "killed", "CRASH: gp")
    assert (g.word("gp_err"), g.word("gp_eip"), g.word("gp_cs")) == (0, g.sym("insn"), 0x61)


@pytest.mark.parametrize("insn", ["inb $0x60, %al", "cli", "outb %al, $0x80"])
def test_gp_from_ring3_is_reflected(tmp_path, insn):
    g = guest(tmp_path, body="""
	hcall	LHCALL_LOAD_GDT_ENTRY, $14, $0x0000ffff, $0x00cffa00
	hcall	LHCALL_LOAD_GDT_ENTRY, $15, $0x0000ffff, $0x00cff200
	hcall	LHCALL_SET_STACK, $0x69, $kstack_top, $1
""" + IRET_TO_USER, text="""
user_code:
	movl	$0x12345678, %%eax
user_insn:
	%s
	jmp	user_code
""" % insn, data="""
	.balign	4096
	.space	4096
kstack_top:
	.space	4096
ustack_top:
""")
    ended(g, "killed", "CRASH: gp")
    assert (g.word("gp_err"), g.word("gp_eip"), g.word("gp_cs")) == \
        (0, g.sym("user_insn"), 0x73)
    assert g.sym("kstack_top") - 4096 < g.word("gp_esp") <= g.sym("kstack_top")
    assert not [e for e in g.kinds("trap") if e.get("emulated")]


# --- NOTIFY (17): the Launcher's handle_output ----------------------------------------------

@pytest.mark.parametrize("addr, reason", [
    (GUEST_LIMIT, "Bad NOTIFY %#x" % GUEST_LIMIT),
    (0xFFFFFFFF, "Bad NOTIFY 0xffffffff"),
    (GUEST_LIMIT - 1, None),           # early console: strnlen up to guest_limit
])
def test_notify_limit(tmp_path, addr, reason):
    g = guest(tmp_path, body="\thcall LHCALL_NOTIFY, $%#x\n" % addr)
    if reason is None:
        ended(g, "poweroff")
        assert g.text == b""
    else:
        ended(g, "killed", reason)


def test_notify_ram_string_is_early_console(tmp_path):
    g = guest(tmp_path, body="""
	hcall	LHCALL_NOTIFY, $PA(hello)
	hcall	LHCALL_NOTIFY, $PA(hello) + 6
""", data='hello: .asciz "hello\\n"\n\t.asciz "world"\n')
    ended(g, "poweroff")
    assert g.text == b"hello\n"


# --- the virtual TSC: rdtsc under CR4.TSD answers virtual time --------------------------------

def test_virtual_tsc_is_deterministic(tmp_path):
    body = """
	rdtsc
	movl	%eax, result
	movl	%edx, result2
	movl	$1000, %ecx
1:	loop	1b
	rdtsc
	movl	%eax, result3
"""
    runs = []
    for name in ("a", "b"):
        sub = tmp_path / name
        sub.mkdir()
        g = guest(sub, body=body)
        ended(g, "poweroff")
        runs.append((g.word("result"), g.word("result2"), g.word("result3")))
        assert not [e for e in g.kinds("trap") if e.get("vector") == 13]
    assert runs[0] == runs[1]
    lo, hi, later = runs[0]
    assert hi == 0 and lo < later and later - lo >= 1000   # virtual ns, not a host TSC


# --- what the trace and the debugger say about 3.2's decisions, word for word ---------------

def test_emulated_gp_events_and_cli_runs_once(tmp_path):
    """Each emulated #GP is one trap event, exactly; `cli` moves EIP by one byte."""
    g = guest(tmp_path, body="""
	xorl	%ecx, %ecx
	incl	%ecx
at_cli:
	cli
	movl	%ecx, result
at_in:
	inb	$0x64, %al
""")
    ended(g, "poweroff")
    assert g.word("result") == 1          # the incl before the cli ran once
    emulated = [e for e in g.kinds("trap") if e.get("emulated")]
    base = {"vector": 13, "errcode": 0, "delivered": False, "emulated": True}
    assert [{k: e[k] for k in e if k not in ("icount", "time_ns", "kind")}
            for e in emulated] == [dict(base, eip=g.sym("at_cli")),
                                   dict(base, eip=g.sym("at_in"))]


def test_hypercall_events_carry_3_2_names_arguments_and_eips(tmp_path):
    g = guest(tmp_path, body="""
	movb	$0, LD + LD_hcall_status		/* slot 0: queued */
	movl	$LHCALL_FLUSH_ASYNC, LD + LD_hcalls
	movl	$LHCALL_SEND_INTERRUPTS, %eax
	movl	$1, %ebx
	movl	$2, %ecx
	movl	$3, %edx
	movl	$4, %esi
at_int:
	int	$0x1f
""", data="LD = lguest_data\n")
    ended(g, "poweroff")
    calls = [e for e in g.kinds("hcall") if e["eip"] == g.sym("at_int")]
    assert [(e["name"], e["args"], e["async"]) for e in calls] == [
        ("FLUSH_ASYNC", [0, 0, 0, 0], True),        # drained at this exit, with its eip
        ("SEND_INTERRUPTS", [1, 2, 3, 4], False)]   # 19: no such call in 2.6.23


def test_disabled_decision_in_words(irq_guest):
    """The debugger's words for 3.2's step 6 come from the Host's own record."""
    g = irq_guest
    g.m.raise_irq(1)
    d = g.m.host.decide_interrupt()
    assert (d.verdict, d.irq, d.irq_pending) == ("disabled", 1, IF)
    text = "lguest_data.irq_enabled is 0: the Host sets irq_pending = 0x200 and waits"
    assert d.detail == text and d.steps[-1] == "6. " + text


def test_int_0x80_through_an_interrupt_gate_is_one_ignored_trap_event(tmp_path):
    g = guest(tmp_path, body="""
	SET_GATE 0x80, irq_handler, INTERRUPT_GATE, 3
at_int:
	int	$0x80
""")
    ended(g, "poweroff")
    ignored = [e for e in g.kinds("trap") if e.get("ignored")]
    assert [{k: e[k] for k in e if k not in ("icount", "time_ns", "kind")}
            for e in ignored] == [{"vector": 0x80, "errcode": 0, "eip": g.sym("at_int") + 2,
                                   "delivered": False, "ignored": True}]


def test_restart_replaces_the_kill_reason(tmp_path):
    g = guest(tmp_path, body='\tSHUTDOWN "reboot", 2\n')
    stop = g.run()
    assert (stop.kind, stop.reason, g.m.host.dead) == ("restart", "RESTART", "RESTART")
    assert [e["kind"] for e in g.events][-2:] == ["kill", "restart"]
    assert g.kinds("kill")[-1]["reason"] == "CRASH: reboot"


# --- more edges from the mutation run (host_3_2.py) ------------------------------------------

def test_init_event_and_page_table_call_count(tmp_path):
    g = guest(tmp_path, body="""
	hcall	LHCALL_SET_PGD, $PA(pgdir), $5
	hcall	LHCALL_SET_PTE, $PA(pgdir), $0x1000, $0
	hcall	LHCALL_FLUSH_TLB, $0
	hcall	LHCALL_NEW_PGTABLE, $PA(pgdir)
""")
    ended(g, "poweroff")
    init = g.kinds("hcall")[0]
    assert {k: init[k] for k in ("nr", "name", "args", "async")} == {
        "nr": 1, "name": "LGUEST_INIT", "args": [g.pa("lguest_data"), 0, 0, 0], "async": False}
    # Linear mode: the int's physical address, in guest_entry before linear_start.
    assert g.pa("guest_entry") < init["eip"] < g.pa("linear_start")
    assert g.phys(init["eip"], 2) == b"\xcd\x1f"
    page_calls = [e for e in g.kinds("hcall")
                  if e["name"] in ("NEW_PGTABLE", "FLUSH_TLB", "SET_PTE", "SET_PGD")]
    assert g.m.host.page_table_calls == len(page_calls) >= 3


@pytest.mark.parametrize("hi, stored", [
    (0x8E00 | 0xFF, 0x8E00),              # the low byte of hi is dropped (& 0xFFFFEF00)
    (0x0E01, None),                       # not present, whatever the other bits: cleared
])
def test_idt_entry_as_the_host_stores_it(tmp_path, hi, stored):
    g = guest(tmp_path, body="""
	hcall	LHCALL_LOAD_IDT_ENTRY, $0x21, $0x00001234, $0x8e00
	hcall	LHCALL_LOAD_IDT_ENTRY, $0x21, $0x00005678, $%#x
ready:
	nop
""" % hi)
    g.run_to("ready")
    if stored is None:
        assert 0x21 not in g.m.host.idt
    else:
        # The Host's own selector, __KERNEL_CS | GUEST_PL, whatever the Guest gave.
        assert g.m.host.idt[0x21] == ((0x61 << 16) | 0x5678, stored)


def test_set_stack_pins_the_stack_pages(tmp_path):
    g = guest(tmp_path, body="""
	hcall	LHCALL_SET_STACK, $0x69, $kstack_top, $2
ready:
	nop
""", data="\t.balign 4096\n\t.space 8192\nkstack_top:\n")
    g.run_to("ready")
    top = g.sym("kstack_top")
    for page in (top - 1, top - 1 - 4096):
        assert g.m.pt.shadow_entry(page) & 3 == 3       # present and writable now


def test_int_0x20_through_a_dpl1_gate_is_gp(tmp_path):
    # 32 is the first vector that is no direct trap: its gate keeps DPL 0.
    g = guest(tmp_path, body="\tSET_GATE 0x20, never, INTERRUPT_GATE, 1\n\tint $0x20\n")
    ended(g, "killed", "CRASH: gp")
    assert g.word("gp_err") == 0x20 * 8 + 2


def test_the_other_3_2_hypercalls_reach_their_routines(tmp_path):
    g = guest(tmp_path, body="""
	hcall	LHCALL_SET_CLOCKEVENT, $5000
	hcall	LHCALL_LOAD_TLS, $PA(tls), $0
	hcall	LHCALL_SET_PTE, $PA(pgdir), $0x1000, $0
	hcall	LHCALL_FLUSH_TLB, $1
ready:
	hcall	LHCALL_LGUEST_INIT, $PA(lguest_data)
""", data="""
	.balign	8
tls:	.long	0x0000ffff, 0x00cf9200, 0, 0, 0, 0
""")
    g.run_to("ready")
    assert g.m.clock.deadline_ns is not None          # SET_CLOCKEVENT armed the timer
    lo, hi = struct.unpack("<II", g.m.cpu.gdt[6])     # LOAD_TLS took entry 6, fixed up
    assert (lo, hi & 0x6100) == (0x0000ffff, 0x2100)  # DPL 1, accessed
    stop = g.run()
    assert stop.kind == "killed" and stop.reason == "already have lguest_data", stop


def test_the_debuggers_walk_in_linear_mode(tmp_path):
    """Before NEW_PGTABLE a debugger reads memory as the Host fakes it:
    virtual == physical up to the top of guest memory, nothing beyond."""
    from unicorn import UcError
    g = guest(tmp_path, linear="linear_stop:\n\tnop\n")
    g.run_to("linear_stop", phys=True)
    pt = g.m.pt
    assert pt.linear_pages and pt.cr3[pt.pgdidx] == 0     # the slot new_pgdir took for 0
    at = g.pa("lguest_data") + 0x123
    assert pt.guest_walk(at) == (0x67, (at & ~0xFFF) | 0x3, at)
    assert g.m.read_memory(at, 8) == g.phys(at, 8)
    top = g.m.mem.limit
    assert pt.guest_walk(top - 1)[2] == top - 1
    with pytest.raises(UcError):
        g.m.read_memory(top, 4)


def test_frame_push_through_a_hole_is_bad_address(tmp_path):
    """3.2's guest_pa: the Host walks the Guest's tables for the stack of an
    interrupt frame, and a hole there kills the Guest with "Bad address"."""
    g = guest(tmp_path, body="""
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE
	andl	$~2, lguest_data + LD_blocked_interrupts
	movl	$0x200, lguest_data + LD_irq_enabled
	movl	$0xC0800000, %esp		/* no page table maps it */
ready:
	jmp	ready
""")
    g.run_to("ready")
    g.m.raise_irq(1)
    stop = g.run()
    assert (stop.kind, stop.reason) == ("killed", "Bad address 0xc0800000"), stop


def test_not_present_gate_for_a_vector_never_set(tmp_path):
    g = guest(tmp_path, body="\thcall LHCALL_LOAD_IDT_ENTRY, $0x33, $0, $0\n")
    ended(g, "poweroff")
    assert 0x33 not in g.m.host.idt


def test_gdt_entry_with_a_base_above_2_gib(tmp_path):
    g = guest(tmp_path, body="""
	hcall	LHCALL_LOAD_GDT_ENTRY, $7, $0x0000ffff, $0xc0cf9200
ready:
	nop
""")
    g.run_to("ready")
    assert struct.unpack("<II", g.m.cpu.gdt[7]) == (0x0000ffff, 0xc0cfb300)   # DPL 1, accessed


def test_ring_arguments_are_unsigned(tmp_path):
    g = guest(tmp_path, body="""
	QUEUE	0, LHCALL_SET_STACK, 0x69, kstack_top, 0xffffffff
	hcall	LHCALL_FLUSH_ASYNC
""", data="\t.balign 4096\n\t.space 4096\nkstack_top:\n")
    ended(g, "killed", "bad stack pages 4294967295")
