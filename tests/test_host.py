"""One test per Host rule (shared/docs/lguest-abi.md sections in the names).

Each builds a purpose-made guest with tests/guestbuild.py and runs it on the
real machine (real unicorn, no mocks), then checks the Host's decisions in
its events and in guest memory.
"""

import struct

import pytest

from lgdbg import abi
from lgdbg.machine import Machine
from lgdbg.machine.clock import EPOCH_SEC
from guestbuild import INIT, USER_GDT, kinds, to_user_mode
from guestbuild import boot as _boot


def boot(tmp_path, body, **kw):
    kw.setdefault("max_insns", 200_000)       # a broken guest (or a mutant Host) fails soon
    return _boot(tmp_path, body, **kw)


def ld(m, offset):
    return m.mem.read_u32(m.host.lguest_data + offset)


# --- §3.2 / §8.3: hypercalls and kill reasons --------------------------------------

@pytest.mark.parametrize("body, reason", [
    ("\thcall LHCALL_LOAD_IDT_ENTRY, $0x20, $0, $0\n", "hypercall 6 before LGUEST_INIT"),
    (INIT + "\thcall 99\n", "Bad hypercall 99\n"),      # do_hcall's "%li\n"
    (INIT + "\thcall 11\n", "Bad hypercall 11\n"),
    (INIT + "\thcall 0xffffffff\n", "Bad hypercall -1\n"),
    ("\thcall 0x80000000\n", "hypercall -2147483648 before LGUEST_INIT"),
    (INIT + INIT, "already have lguest_data"),
    (INIT + "\thcall LHCALL_LOAD_IDT_ENTRY, $0x21, $0, $0x8500\n", "bad IDT type 5"),
    (INIT + "\thcall LHCALL_SET_STACK, $0x68, $stack_top, $1\n", "bad stack segment 104"),
    (INIT + "\thcall LHCALL_SET_STACK, $0xfffffffe, $stack_top, $1\n", "bad stack segment -2"),
    (INIT + "\thcall LHCALL_SET_STACK, $0x69, $stack_top, $3\n", "bad stack pages 3"),
    (INIT + "\thcall LHCALL_LOAD_GDT, $0, $33\n", "too many gdt entries 33"),
    (INIT + "\thcall LHCALL_LOAD_GDT, $0, $0xffffffff\n", "too many gdt entries -1"),
    # initialize's "%p": eight hex digits, no 0x
    ("\thcall LHCALL_LGUEST_INIT, $0x7fffffff\n", "bad guest page 7fffffff"),
    ("\thcall LHCALL_LGUEST_INIT, $0x2000c00\n", "bad guest page 02000c00"),
    (INIT + "\tCRASH_MSG \"it hurts\"\n", "CRASH: it hurts"),
])
def test_kill_reasons(tmp_path, body, reason):
    m, events = boot(tmp_path, body)
    stop = m.run()
    assert stop.kind == "killed"
    assert stop.reason == reason
    assert kinds(events, "kill") == [dict(kinds(events, "kill")[0], reason=reason)]


def test_crash_message_is_cut_at_127_bytes(tmp_path):
    m, _ = boot(tmp_path, INIT + '\tCRASH_MSG "%s"\n' % ("x" * 300))
    assert m.run().reason == "CRASH: " + "x" * 127


def test_power_down_is_poweroff(tmp_path):
    m, _ = boot(tmp_path, INIT + "\tPOWER_OFF\n")
    assert m.run().kind == "poweroff"


def test_lguest_init_fills_host_fields(tmp_path):
    m, events = boot(tmp_path, INIT + "\thcall LHCALL_HALT\n")
    m.run()
    assert ld(m, abi.LD_RESERVE_MEM) == 4 << 20
    assert ld(m, abi.LD_TSC_KHZ) == 0
    # The timestamp INIT wrote, untouched since (nothing was ever pending).
    init = kinds(events, "hcall")[0]
    stamp = struct.unpack("<II", m.mem.read(m.host.lguest_data + abi.LD_TIME, 8))
    assert stamp == (EPOCH_SEC + init["time_ns"] // 10**9, init["time_ns"] % 10**9)
    assert m.host.noirq_start < m.host.noirq_end
    assert m.host.noirq_end - m.host.noirq_start == 8        # the seed's window
    hc = kinds(events, "hcall")[0]
    assert hc["name"] == "LGUEST_INIT" and hc["args"][0] == m.host.lguest_data
    # eip is the int $0x1f itself
    assert m.read_memory(hc["eip"], 2) == b"\xcd\x1f"


def test_load_gdt_fixups(tmp_path):
    # Entry 12 with DPL 0 (becomes 1), entry 14 DPL 3 (kept), entry 10 is the Host's.
    data = """
	.data
	.balign 8
gdt:	.fill 10, 8, 0
	.long 0x1234ffff, 0x00cf9a00	/* 10: must be ignored */
	.long 0, 0
	.long 0x0000ffff, 0x00cf9a00	/* 12: kernel code, DPL 0 */
	.long 0x0000ffff, 0x00cf9200	/* 13 */
	.long 0x0000ffff, 0x00cffa00	/* 14: user code, DPL 3 */
"""
    m, _ = boot(tmp_path, INIT + "\thcall LHCALL_LOAD_GDT, $__PA(gdt), $15\n\tPOWER_OFF\n", data=data)
    host10 = m.cpu.gdt[10]
    m.run()
    hi = lambda i: struct.unpack("<II", m.cpu.gdt[i])[1]   # noqa: E731
    assert m.cpu.gdt[10] == host10
    assert hi(12) == 0x00cfbb00          # DPL 1, accessed
    assert hi(13) == 0x00cfb300
    assert hi(14) == 0x00cffb00          # DPL 3 kept, accessed set


def test_load_idt_entry_storage_and_ignored_vectors(tmp_path):
    body = INIT + "".join(
        "\thcall LHCALL_LOAD_IDT_ENTRY, $%d, $0x00681234, $0xc0109f00\n" % v
        for v in (2, 8, 15, 0x1f, 0x20, 0x80, 0x50)) + "\tPOWER_OFF\n"
    m, _ = boot(tmp_path, body)
    m.run()
    assert sorted(m.host.idt) == [0x20, 0x80]
    lo, hi = m.host.idt[0x20]
    assert lo == (0x61 << 16) | 0x1234            # selector forced to __KERNEL_CS|1
    assert hi == 0xc0109f00 & 0xFFFFEF00


def test_not_present_gate_clears_entry(tmp_path):
    body = INIT + "\thcall LHCALL_LOAD_IDT_ENTRY, $0x20, $0x00601234, $0xc0108e00\n" \
                  "\thcall LHCALL_LOAD_IDT_ENTRY, $0x20, $0, $0\n\tPOWER_OFF\n"
    m, _ = boot(tmp_path, body)
    m.run()
    assert 0x20 not in m.host.idt


# --- §3.4 the async ring ------------------------------------------------------------

def test_async_ring_drained_before_the_synchronous_call(tmp_path):
    body = INIT + """
	QUEUE_HCALL 0, LHCALL_TS, 8
	QUEUE_HCALL 1, LHCALL_SET_STACK, KERNEL_DS, 0xc0200000, 1
	QUEUE_HCALL 3, LHCALL_TS, 0		/* after a gap: not reached */
	hcall	LHCALL_LOAD_IDT_ENTRY, $0x20, $0x00601234, $0xc0108e00
	POWER_OFF
"""
    m, events = boot(tmp_path, body)
    m.run()
    calls = [(e["name"], e["async"]) for e in kinds(events, "hcall")]
    assert calls[1:4] == [("TS", True), ("SET_STACK", True), ("LOAD_IDT_ENTRY", False)]
    status = m.mem.read(m.host.lguest_data + abi.LD_HCALL_STATUS, 4)
    assert status[0] == status[1] == 0xFF and status[3] == 0
    assert m.host.next_hcall == 2
    assert m.host.ts == 8 and m.host.esp1 == 0xc0200000
    async_eips = {e["eip"] for e in kinds(events, "hcall") if e["async"]}
    sync = kinds(events, "hcall")[3]
    assert async_eips == {sync["eip"]}       # the exit that drained them


def test_async_ring_stops_at_send_dma(tmp_path):
    data = """
	.data
	.balign 4
msg:	.ascii "ring!\\n"
dma:	.long 0, __PA(msg)
	.fill 15, 4, 0
	.short 6
	.fill 15, 2, 0
"""
    body = INIT + """
	QUEUE_HCALL 0, LHCALL_SEND_DMA, 0, __PA(dma)
	QUEUE_HCALL 1, LHCALL_TS, 8
	hcall	LHCALL_FLUSH_ASYNC
	POWER_OFF
"""
    m, events = boot(tmp_path, body, data=data)
    m.run()
    assert kinds(events, "console")[0]["text"] == "ring!\n"
    names = [e["name"] for e in kinds(events, "hcall")]
    # SEND_DMA, back to the Launcher, then the rest of the ring, then the sync call.
    assert names[1:4] == ["SEND_DMA", "TS", "FLUSH_ASYNC"]
    # The Launcher stored the bytes it took in the DMA's used_len.
    dma = kinds(events, "hcall")[1]["args"][1]
    assert m.mem.read_u32(dma + abi.DMA_USED_LEN) == len("ring!\n")


# --- §7.2 maybe_do_interrupt ------------------------------------------------------

HANDLERS = """
irq_handler:
	incl	handled
	jmp	lguest_iret
"""
COUNTERS = """
	.data
handled: .long 0
"""


def gate(vector, handler="irq_handler", kind="INTERRUPT_GATE"):
    return "\tSET_GATE %d, %s, %s\n" % (vector, handler, kind)


def test_blocked_irq_is_deferred_and_named(tmp_path):
    # irq 0 is blocked from boot (blocked_interrupts = 1).
    body = INIT + gate(0x20) + "\tmovl $0x200, lguest_data\n\tnop\n\thcall LHCALL_FLUSH_ASYNC\n\tPOWER_OFF\n"
    m, events = boot(tmp_path, body, text=HANDLERS, data=COUNTERS, irqs=[(0, 20)])
    m.run()
    deferred = kinds(events, "irq-deferred")
    assert deferred and deferred[0]["reason"] == "blocked" and deferred[0]["irq"] == 0
    assert len(deferred) == 1                    # once per change of reason
    assert not kinds(events, "irq")


def test_disabled_then_delivered_lowest_first(tmp_path):
    body = INIT + gate(0x21) + gate(0x22) + """
	UNBLOCK_IRQ 0
	nop
	nop
	nop
	movl	$0x200, lguest_data
	hcall	LHCALL_FLUSH_ASYNC
	hcall	LHCALL_FLUSH_ASYNC
	POWER_OFF
"""
    m, events = boot(tmp_path, body, text=HANDLERS, data=COUNTERS, irqs=[(2, 25), (1, 25)])
    stop = m.run()
    assert stop.kind == "poweroff"
    raises = kinds(events, "raise")
    assert [r["irq"] for r in raises] == [1, 2]         # same icount: by irq number
    assert all(r["icount"] == 25 and r["source"] == "schedule" for r in raises)
    d = kinds(events, "irq-deferred")
    assert d[0]["reason"] == "disabled" and d[0]["irq"] == 1 and d[0]["icount"] == 25
    delivered = [e["irq"] for e in kinds(events, "irq")]
    assert delivered == [1, 2]                  # lowest first, one per Host entry


def test_interrupt_gate_clears_irq_enabled_trap_gate_does_not(tmp_path):
    text = """
irq_handler:
	movl	lguest_data, %eax
	movl	%eax, seen_int
	jmp	lguest_iret
trap_handler:
	movl	lguest_data, %eax
	movl	%eax, seen_trap
	jmp	lguest_iret
"""
    data = "\t.data\nseen_int: .long 0x55\nseen_trap: .long 0x55\n"
    body = INIT + gate(0x21) + gate(0x22, "trap_handler", "TRAP_GATE") + """
	movl	$0x200, lguest_data
	hcall	LHCALL_FLUSH_ASYNC
	hcall	LHCALL_FLUSH_ASYNC
	hcall	LHCALL_FLUSH_ASYNC
	POWER_OFF
"""
    m, events = boot(tmp_path, body, text=text, data=data, irqs=[(1, 12), (2, 12)])
    assert m.run().kind == "poweroff"
    sym = {}
    import subprocess
    for line in subprocess.run(["nm", m.image.path], capture_output=True, text=True).stdout.split("\n"):
        if line:
            a, _, n = line.split()
            sym[n] = int(a, 16)
    read = lambda name: struct.unpack("<I", m.read_memory(sym[name], 4))[0]   # noqa: E731
    assert read("seen_int") == 0
    assert read("seen_trap") & 0x200      # left as lguest_iret restored it
    gates = {e["irq"]: e["gate"] for e in kinds(events, "irq")}
    assert gates == {1: "interrupt", 2: "trap"}


def test_frame_eflags_if_follows_irq_enabled(tmp_path):
    # Halted with irq_enabled 0: the Host wakes the guest and forces 0x200,
    # so the pushed eflags carries IF; the frame's eip is after the HALT.
    text = """
irq_handler:
	movl	8(%esp), %eax
	movl	%eax, pushed_eflags
	movl	(%esp), %eax
	movl	%eax, pushed_eip
	jmp	lguest_iret
"""
    data = "\t.data\npushed_eflags: .long 0\npushed_eip: .long 0\n"
    body = INIT + gate(0x21) + "\thcall LHCALL_HALT\nafter_halt:\n\tPOWER_OFF\n"
    m, events = boot(tmp_path, body, text=text, data=data, irqs=[(1, 1000)])
    assert m.run().kind == "poweroff"
    irq = kinds(events, "irq")[0]
    assert kinds(events, "halt") and kinds(events, "wake")
    frame = m.read_memory(irq["esp"], 12)
    eip, cs, eflags = struct.unpack("<III", frame)
    assert cs == 0x61 and eflags & 0x200
    assert m.read_memory(eip - 2, 2) == b"\xcd\x1f"
    assert irq["from_eip"] == eip


def test_halt_wakes_with_interrupts_on_even_without_handler(tmp_path):
    body = INIT + "\tUNBLOCK_IRQ 3\n\thcall LHCALL_HALT\n\tPOWER_OFF\n"
    m, events = boot(tmp_path, body, irqs=[(3, 5)])
    m.run(max_insns=10_000)
    assert kinds(events, "wake")
    assert ld(m, abi.LD_IRQ_ENABLED) == 0x200
    assert kinds(events, "irq-deferred")[-1]["reason"] == "no-handler"
    assert m.host.irqs_pending == 1 << 3          # stays pending


def test_halted_forever_ends_the_run(tmp_path):
    m, _ = boot(tmp_path, INIT + "\thcall LHCALL_HALT\n")
    stop = m.run()
    assert stop.kind == "halted-forever"


def test_noirq_window_defers_delivery(tmp_path):
    # Jump into lguest_iret with a hand-made frame while irqs are pending:
    # inside the window the Host must wait, then deliver after the iret.
    body = INIT + gate(0x21) + """
	movl	$0x200, lguest_data
	pushl	$0x202
	pushl	$0x61
	pushl	$back
	movl	$0, lguest_data		/* disabled until the window's store */
	jmp	lguest_iret
back:
	hcall	LHCALL_FLUSH_ASYNC
	POWER_OFF
"""
    m, events = boot(tmp_path, body, text=HANDLERS, data=COUNTERS)
    from lgdbg.views.symbols import Symbols
    # Stop inside the window, after the irq_enabled store: "enabled", yet
    # the Host must not deliver there.
    m.cpu.add_breakpoint(Symbols(m.image.path).lookup("lguest_noirq_start+6"))
    stop = m.run()
    assert stop.kind == "breakpoint"
    m.raise_irq(1)
    m.cpu.remove_breakpoint(stop.addr)
    irq, decision = m.try_deliver()
    assert irq is None and decision.verdict == "noirq"
    m.run()
    assert [e["reason"] for e in kinds(events, "irq-deferred")][0] == "noirq"
    assert kinds(events, "irq")[0]["from_eip"] not in range(m.host.noirq_start, m.host.noirq_end)


# --- §7.4 traps -----------------------------------------------------------------------

def test_unhandled_page_fault_kills_with_cr2(tmp_path):
    m, events = boot(tmp_path, INIT + "bad:\tmovl 0x1234, %eax\n")
    stop = m.run()
    eip = kinds(events, "trap")[0]["eip"]
    assert stop.reason == "unhandled trap 14 at %#x (0x1234)" % eip
    assert m.host.killed_by_trap
    t = kinds(events, "trap")[0]
    assert t["cr2"] == 0x1234 and t["delivered"] is False and t["errcode"] == 0


def test_page_fault_reflected_with_cr2_and_errcode(tmp_path):
    text = """
pf_handler:
	movl	lguest_data + LGUEST_DATA_cr2, %eax
	movl	%eax, got_cr2
	popl	%eax
	movl	%eax, got_err
	addl	$10, (%esp)		/* skip the 10-byte store */
	jmp	lguest_iret
"""
    data = "\t.data\ngot_cr2: .long 0\ngot_err: .long 0\n"
    body = INIT + gate(14, "pf_handler") + "\tmovl $0x42, 0x5678\n\tPOWER_OFF\n"
    m, events = boot(tmp_path, body, text=text, data=data)
    assert m.run().kind == "poweroff"
    t = kinds(events, "trap")[0]
    assert (t["vector"], t["errcode"], t["cr2"], t["delivered"]) == (14, 2, 0x5678, True)
    assert ld(m, abi.LD_CR2) == 0x5678


def test_many_faults_in_a_row(tmp_path):
    # unicorn escalates the second caught fault to a double fault unless the
    # Host resets its exception state: ten unpatched cli in a row must each
    # arrive as #GP(0).
    text = """
gp_handler:
	addl	$4, %esp		/* error code */
	incl	(%esp)			/* skip the 1-byte cli */
	incl	gps
	jmp	lguest_iret
"""
    body = INIT + gate(13, "gp_handler", "TRAP_GATE") + "\t.rept 10\n\tcli\n\t.endr\n\tPOWER_OFF\n"
    m, events = boot(tmp_path, body, text=text, data="\t.data\ngps: .long 0\n")
    assert m.run().kind == "poweroff"
    traps = kinds(events, "trap")
    assert [(t["vector"], t["errcode"]) for t in traps] == [(13, 0)] * 10


def test_in_out_emulation(tmp_path):
    body = INIT + """
	movl	$0x12345678, %eax
	inb	$0x60, %al
	movl	%eax, r1
	movl	$0x12345678, %eax
	movw	$0x3f8, %dx
	inl	%dx, %eax
	movl	%eax, r2
	outb	%al, $0x80
	POWER_OFF
"""
    m, events = boot(tmp_path, body, data="\t.data\nr1: .long 0\nr2: .long 0\n")
    assert m.run().kind == "poweroff"
    traps = kinds(events, "trap")
    assert len(traps) == 3 and all(t["emulated"] and not t["delivered"] and t["vector"] == 13
                                   for t in traps)
    import subprocess
    syms = dict(reversed(l.split()[::2]) for l in subprocess.run(
        ["nm", m.image.path], capture_output=True, text=True).stdout.splitlines())
    r1 = struct.unpack("<I", m.read_memory(int(syms["r1"], 16), 4))[0]
    r2 = struct.unpack("<I", m.read_memory(int(syms["r2"], 16), 4))[0]
    assert r1 == 0x1234FFFF          # even opcode: EAX |= 0xFFFF
    assert r2 == 0xFFFFFFFF          # odd opcode: EAX = all ones


# --- §7.6 the clock ---------------------------------------------------------------------

def test_clock_event_fires_at_the_deadline(tmp_path):
    body = INIT + gate(0x20) + """
	UNBLOCK_IRQ 0
	hcall	LHCALL_SET_CLOCKEVENT, $5000
	hcall	LHCALL_HALT
	POWER_OFF
"""
    m, events = boot(tmp_path, body, text=HANDLERS, data=COUNTERS)
    assert m.run().kind == "poweroff"
    armed = kinds(events, "clock")[0]
    fired = kinds(events, "clock")[1]
    assert armed["armed"] == armed["time_ns"] + 5000
    assert fired["fired"] is True and fired["time_ns"] == armed["armed"]
    assert fired["icount"] == kinds(events, "halt")[0]["icount"]     # time skipped while halted
    r = kinds(events, "raise")[0]
    assert (r["irq"], r["source"]) == (0, "clock")


def test_clockevent_zero_stops_it(tmp_path):
    body = INIT + "\thcall LHCALL_SET_CLOCKEVENT, $5000\n\thcall LHCALL_SET_CLOCKEVENT, $0\n" \
                  "\thcall LHCALL_HALT\n"
    m, events = boot(tmp_path, body)
    assert m.run().kind == "halted-forever"
    assert kinds(events, "clock")[-1]["armed"] == 0


def test_host_tick_is_a_host_entry(tmp_path):
    # A pending, enabled irq with no hypercall to come is delivered at the
    # next Host tick, not before.
    body = INIT + gate(0x21) + """
	movl	$0x200, lguest_data
1:	cmpl	$0, handled
	je	1b
	POWER_OFF
"""
    m, events = boot(tmp_path, body, text=HANDLERS, data=COUNTERS, host_tick=10_000)
    m.raise_irq(1)
    assert m.run().kind == "poweroff"
    assert kinds(events, "irq")[0]["icount"] == 10_000


def test_same_image_same_trace(tmp_path):
    from lgdbg import images
    traces = []
    for _ in range(2):
        m = Machine(images.path_of("timer"), irqs=[(1, 600)])
        ev = []
        m.subscribe(ev.append)
        m.run()
        traces.append(ev)
    assert traces[0] == traces[1]


# --- user mode (ring 3) -------------------------------------------------------------

USER_TEXT = """
syscall_handler:			/* int $0x80, trap gate with DPL 3 */
	movl	%eax, sys_eax
	movl	4(%esp), %ecx
	movl	%ecx, sys_cs
	movl	%esp, sys_esp
	jmp	lguest_iret
pf_handler:
	movl	lguest_data + LGUEST_DATA_cr2, %ecx
	movl	%ecx, pf_cr2
	popl	%ecx
	movl	%ecx, pf_err
	addl	$5, (%esp)		/* skip movl 0x1000, %eax */
	jmp	lguest_iret
gp_handler:
	popl	%ecx
	movl	%ecx, gp_err
	movl	4(%esp), %ecx
	movl	%ecx, gp_cs
	POWER_OFF
user_code:
	movl	$42, %eax
	int	$0x80
	movl	0x1000, %eax
	int	$0x1f			/* the hypercall gate is not for user mode */
1:	jmp	1b
"""
USER_DATA = USER_GDT + """
	.data
sys_eax: .long 0
sys_cs:	.long 0
sys_esp: .long 0
pf_cr2:	.long 0
pf_err:	.long 0
gp_err:	.long 0
gp_cs:	.long 0
"""
USER_BODY = INIT + """
	movl	$syscall_handler, %eax
	movl	%eax, %ecx
	andl	$0xffff0000, %ecx
	orl	$0xef00, %ecx			/* trap gate, DPL 3 */
	andl	$0xffff, %eax
	orl	$0x00600000, %eax
	movl	%eax, %ebx
	hcall	LHCALL_LOAD_IDT_ENTRY, $0x80, %ebx, %ecx
	SET_GATE 14, pf_handler, INTERRUPT_GATE
	SET_GATE 13, gp_handler, INTERRUPT_GATE
	movl	$0x200, lguest_data
""" + to_user_mode()


def test_user_mode_syscall_fault_and_hypercall_gp(tmp_path):
    m, events = boot(tmp_path, USER_BODY, text=USER_TEXT, data=USER_DATA)
    stop = m.run()
    assert stop.kind == "poweroff", stop
    from lgdbg.views.symbols import Symbols
    syms = Symbols(m.image.path)
    word = lambda name: struct.unpack("<I", m.read_memory(syms.lookup(name), 4))[0]  # noqa: E731
    # int $0x80 from ring 3 arrived on the SET_STACK stack with the user CS.
    assert word("sys_eax") == 42 and word("sys_cs") == 0x73
    kstack = syms.lookup("kstack_top")
    assert word("sys_esp") == kstack - 20          # eip, cs, eflags, esp, ss
    # A user-mode read of an unmapped address: #PF with the user bit.
    assert (word("pf_cr2"), word("pf_err")) == (0x1000, 4)
    # int $0x1f from ring 3: #GP with error code 0x1f*8+2 = 0xfa, from user CS.
    assert (word("gp_err"), word("gp_cs")) == (0xFA, 0x73)
    traps = [(e["vector"], e["errcode"]) for e in kinds(events, "trap")]
    assert traps == [(0x80, 0), (14, 4), (13, 0xFA)]
    assert not [e for e in kinds(events, "hcall") if e["nr"] not in (1, 3, 6, 7, 2)]
