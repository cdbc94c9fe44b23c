"""The Host's interrupt rules at every edge, in both directions (§7.2, §7.3).

Each test stops one purpose-made guest (real unicorn, no mocks) at a known
place, sets up exactly one condition the way a debugger would (irq_enabled
and blocked_interrupts in guest memory, EIP, a pending irq) and makes one
delivery attempt: Machine.try_deliver, the Host entry's maybe_do_interrupt.
It then checks what the Host did (events, pending bits, the pushed frame,
irq_enabled, the timestamp) and what it said (the decision record the
debugger prints), on both sides of each boundary.  `make mutation` runs
these against mutants of lgdbg/machine/host.py.
"""

import re
import struct

import pytest

from lgdbg import abi
from lgdbg.errors import UsageError
from lgdbg.machine import Machine
from lgdbg.views.symbols import Symbols
from guestbuild import INIT, USER_SEGMENTS, build_guest

TEXT = """
irq_handler:
	incl	handled
	jmp	lguest_iret
pf_handler:				/* a reflected #PF, through a trap gate */
	movl	12(%esp), %eax		/* errcode, eip, cs, eflags */
	movl	%eax, pf_eflags
	addl	$4, %esp
	addl	$10, (%esp)		/* skip the 10-byte store */
	jmp	lguest_iret
"""
DATA = """
	.data
handled: .long 0
pf_eflags: .long 0x55
"""
BODY = INIT + """
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE	/* irq 1 */
	SET_GATE 0x22, irq_handler, TRAP_GATE		/* irq 2 */
	SET_GATE 0x3f, irq_handler, INTERRUPT_GATE	/* irq 31, the last */
	SET_GATE 0x40, irq_handler, INTERRUPT_GATE	/* "irq 32": ignored */
	SET_GATE 14, pf_handler, TRAP_GATE
	UNBLOCK_IRQ 0
	movl	$0x200, lguest_data
	.globl	ready
ready:
	nop
	movl	$0x42, 0x5678		/* #PF, reflected */
	hcall	LHCALL_HALT
	.globl	after_halt
after_halt:
	POWER_OFF
"""


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    return build_guest(tmp_path_factory.mktemp("rules"), BODY, text=TEXT, data=DATA)


@pytest.fixture(scope="module")
def syms(elf):
    return Symbols(elf)


class Guest:
    """A fresh machine stopped at `ready`, with the helpers the tests share."""

    def __init__(self, elf, syms):
        # A small budget: a mutant that swallows a fault loops, and must end soon.
        self.m = Machine(elf, max_insns=20_000)
        self.syms = syms
        self.events = []
        self.m.subscribe(self.events.append)
        self.run_to("ready")
        self.events.clear()

    def run_to(self, name):
        addr = self.syms.lookup(name)
        self.m.cpu.add_breakpoint(addr)
        stop = self.m.run()
        self.m.cpu.remove_breakpoint(addr)
        assert (stop.kind, stop.addr) == ("breakpoint", addr), stop
        return stop

    def halt(self):
        """Run on into the HALT, with nothing pending: halted for ever."""
        stop = self.m.run()
        assert stop.kind == "halted-forever" and self.m.host.halted, stop

    def ld(self, offset):
        return self.m.mem.read_u32(self.m.host.lguest_data + offset)

    def set_ld(self, offset, value):
        self.m.mem.write_u32(self.m.host.lguest_data + offset, value)

    def kinds(self, kind):
        return [e for e in self.events if e["kind"] == kind]

    def deliver(self, *irqs):
        for irq in irqs:
            self.m.raise_irq(irq)
        return self.m.try_deliver()

    def frame(self):
        """eip, cs, eflags the Host pushed for the last delivery."""
        return struct.unpack("<III", self.m.read_memory(self.m.cpu.reg("esp"), 12))

    def timestamp(self):
        return self.m.mem.read(self.m.host.lguest_data + abi.LD_TIME, 8)


@pytest.fixture
def g(elf, syms):
    return Guest(elf, syms)


# --- step 5: the noirq window, half-open [noirq_start, noirq_end) ------------------------

WINDOW_EDGES = [("start-1", -1, None, False), ("start", 0, None, True),
                ("start+1", 1, None, True), ("end-1", None, -1, True),
                ("end", None, 0, False), ("end+1", None, 1, False)]


@pytest.mark.parametrize("name, from_start, from_end, inside", WINDOW_EDGES,
                         ids=[e[0] for e in WINDOW_EDGES])
def test_noirq_window_edges(g, name, from_start, from_end, inside):
    h = g.m.host
    eip = h.noirq_start + from_start if from_end is None else h.noirq_end + from_end
    g.m.cpu.set_reg("eip", eip)
    irq, decision = g.deliver(1)
    if inside:
        assert irq is None and decision.verdict == "noirq"
        assert [(e["irq"], e["reason"], e["eip"]) for e in g.kinds("irq-deferred")] == \
            [(1, "noirq", eip)]
        assert g.m.cpu.reg("eip") == eip and h.irqs_pending == 1 << 1
        assert decision.steps[-1] == "5. EIP %#x is inside the noirq window [%#x, %#x)" % (
            eip, h.noirq_start, h.noirq_end)
    else:
        assert irq == 1 and decision.verdict == "deliver"
        assert g.kinds("irq")[0]["from_eip"] == eip and g.frame()[0] == eip
        assert "5. EIP %#x is outside the noirq window [%#x, %#x)" % (
            eip, h.noirq_start, h.noirq_end) in decision.steps
        assert not g.kinds("irq-deferred") and h.irqs_pending == 0


# --- the order of the steps ------------------------------------------------------------------

def test_noirq_is_decided_before_disabled(g):
    # Inside the window with irq_enabled 0: the reason is the window (step 5),
    # not the disabled check (step 6) that follows it.
    g.set_ld(abi.LD_IRQ_ENABLED, 0)
    g.m.cpu.set_reg("eip", g.m.host.noirq_start)
    irq, decision = g.deliver(1)
    assert (irq, decision.verdict) == (None, "noirq")
    assert [e["reason"] for e in g.kinds("irq-deferred")] == ["noirq"]
    assert [s.split(".")[0] for s in decision.steps] == ["2", "3", "4", "5"]


def test_disabled_outside_the_window(g):
    g.set_ld(abi.LD_IRQ_ENABLED, 0)
    irq, decision = g.deliver(1)
    assert (irq, decision.verdict) == (None, "disabled")
    assert [e["reason"] for e in g.kinds("irq-deferred")] == ["disabled"]
    assert decision.steps[-1] == "6. lguest_data.irq_enabled is 0"


def test_halted_guest_is_not_woken_inside_the_window(g):
    g.halt()
    g.set_ld(abi.LD_IRQ_ENABLED, 0)      # (the #PF handler's lguest_iret wrote it)
    g.m.cpu.set_reg("eip", g.m.host.noirq_start + 1)
    irq, decision = g.deliver(1)
    assert (irq, decision.verdict, decision.wake) == (None, "noirq", False)
    assert g.m.host.halted and g.ld(abi.LD_IRQ_ENABLED) == 0
    assert not g.kinds("wake")


def test_halted_guest_is_woken_with_irq_enabled_0(g):
    # §7.5: a halted Guest gets the irq even with irq_enabled 0 ("sti; hlt"),
    # and the frame carries IF because the Host forced 0x200 first.
    g.halt()
    g.set_ld(abi.LD_IRQ_ENABLED, 0)      # (the #PF handler's lguest_iret wrote it)
    after = g.syms.lookup("after_halt")
    irq, decision = g.deliver(2)                   # trap gate: irq_enabled stays
    assert (irq, decision.verdict, decision.wake) == (2, "deliver", True)
    assert g.m.host.halted is False            # `monitor json lguest status` says false
    assert [e["kind"] for e in g.events][-3:] == ["raise", "wake", "irq"]
    assert g.ld(abi.LD_IRQ_ENABLED) == abi.X86_EFLAGS_IF
    eip, cs, eflags = g.frame()
    assert (eip, cs) == (after, 0x61) and eflags & abi.X86_EFLAGS_IF


def test_blocked_before_everything(g):
    # Blocked (steps 2-4) wins over the window and over halted: a blocked
    # irq never wakes a halted Guest.
    g.set_ld(abi.LD_BLOCKED, 1 << 1)
    g.halt()
    g.m.cpu.set_reg("eip", g.m.host.noirq_start)
    irq, decision = g.deliver(1)
    assert (irq, decision.verdict, decision.irq) == (None, "blocked", 1)
    assert g.m.host.halted and not g.kinds("wake")
    assert [(e["irq"], e["reason"]) for e in g.kinds("irq-deferred")] == [(1, "blocked")]


def test_unblocked_irq_is_chosen_over_a_lower_blocked_one(g):
    g.set_ld(abi.LD_BLOCKED, 1 << 1)
    irq, decision = g.deliver(1, 2)
    assert (irq, decision.verdict) == (2, "deliver")
    assert g.m.host.irqs_pending == 1 << 1


def test_no_handler_wakes_and_keeps_the_irq_pending(g):
    g.halt()
    irq, decision = g.deliver(3)
    assert (irq, decision.verdict, decision.wake) == (None, "no-handler", True)
    assert not g.m.host.halted and g.m.host.irqs_pending == 1 << 3
    assert [(e["irq"], e["reason"]) for e in g.kinds("irq-deferred")] == [(3, "no-handler")]


def test_nothing_pending_says_so(g):
    irq, decision = g.m.try_deliver()
    assert (irq, decision.verdict, decision.irq) == (None, "none", None)
    assert not g.kinds("irq-deferred") and not g.kinds("irq")


# --- irq numbers: 31 is the last, 32 does not exist --------------------------------------

def test_irq_31_is_delivered_through_vector_0x3f(g):
    irq, decision = g.deliver(31)
    assert (irq, decision.vector) == (31, 0x3f)
    assert g.kinds("irq")[0]["vector"] == 0x3f


def test_irq_31_can_be_blocked(g):
    g.set_ld(abi.LD_BLOCKED, 1 << 31)
    irq, decision = g.deliver(31)
    assert (irq, decision.verdict, decision.irq) == (None, "blocked", 31)


def test_lowest_irq_first_up_to_31(g):
    assert g.deliver(31, 1)[0] == 1
    assert g.m.host.irqs_pending == 1 << 31


def test_vector_0x40_is_not_an_irq_gate_and_irq_32_cannot_be_raised(g):
    assert 0x3f in g.m.host.idt and 0x40 not in g.m.host.idt
    with pytest.raises(UsageError, match="irq 32 out of range"):
        g.m.raise_irq(32)
    assert g.m.host.irqs_pending == 0 and not g.kinds("raise")


# --- step 6 and §7.3: irq_enabled, "non-zero" here, the IF bit in the frame ----------------

ENABLED_VALUES = [0x1, 0x200, 0x201, 0x246, 0x80000000, 0xFFFFFDFF, 0xFFFFFFFF]


@pytest.mark.parametrize("value", ENABLED_VALUES, ids=hex)
def test_any_nonzero_irq_enabled_delivers_and_if_follows_its_bit(g, value):
    g.set_ld(abi.LD_IRQ_ENABLED, value)
    cpu_eflags = g.m.cpu.reg("eflags")
    assert cpu_eflags & abi.X86_EFLAGS_IF                # ring 1: always set
    irq, decision = g.deliver(2)                          # trap gate: irq_enabled stays
    assert (irq, decision.verdict) == (2, "deliver")
    assert "6. irq_enabled = %#x (enabled: not 0)" % value in decision.steps
    eflags = g.frame()[2]
    want_if = value & abi.X86_EFLAGS_IF
    assert eflags == (cpu_eflags if want_if else cpu_eflags & ~abi.X86_EFLAGS_IF)
    assert g.ld(abi.LD_IRQ_ENABLED) == value


@pytest.mark.parametrize("value", [0x200, 0x1])
def test_interrupt_gate_writes_irq_enabled_0(g, value):
    g.set_ld(abi.LD_IRQ_ENABLED, value)
    assert g.deliver(1)[0] == 1
    assert g.ld(abi.LD_IRQ_ENABLED) == 0


@pytest.mark.parametrize("value, if_set", [(0, False), (0x1, False), (0x200, True),
                                           (0xFFFFFFFF, True)], ids=hex)
def test_reflected_trap_frame_if_follows_irq_enabled(g, value, if_set):
    # A #PF reflected through a trap gate, with the CPU's own IF set as
    # always at ring 1: the pushed IF is irq_enabled's bit, not the CPU's.
    g.set_ld(abi.LD_IRQ_ENABLED, value)
    cpu_eflags = g.m.cpu.reg("eflags")
    g.run_to("pf_handler")
    trap = g.kinds("trap")[0]
    assert (trap["vector"], trap["delivered"]) == (14, True)
    err, eip, cs, eflags = struct.unpack("<IIII", g.m.read_memory(g.m.cpu.reg("esp"), 16))
    assert (err, cs) == (2, 0x61)
    assert eflags == (cpu_eflags if if_set else cpu_eflags & ~abi.X86_EFLAGS_IF)
    assert g.ld(abi.LD_IRQ_ENABLED) == value             # trap gate: left alone


# --- step 8: the timestamp, written iff step 7 was reached --------------------------------

TIMESTAMP_CASES = {
    "none": (lambda g: None, (), False),
    "blocked": (lambda g: g.set_ld(abi.LD_BLOCKED, 1 << 1), (1,), False),
    "noirq": (lambda g: g.m.cpu.set_reg("eip", g.m.host.noirq_start), (1,), False),
    "disabled": (lambda g: g.set_ld(abi.LD_IRQ_ENABLED, 0), (1,), False),
    "no-handler": (lambda g: None, (3,), True),
    "deliver": (lambda g: None, (1,), True),
}


@pytest.mark.parametrize("verdict", list(TIMESTAMP_CASES))
def test_timestamp_written_iff_step_7_is_reached(g, verdict):
    setup, irqs, written = TIMESTAMP_CASES[verdict]
    setup(g)
    stale = struct.pack("<II", 7, 7)
    g.m.mem.write(g.m.host.lguest_data + abi.LD_TIME, stale)
    _, decision = g.deliver(*irqs)
    assert decision.verdict == verdict
    assert decision.timestamp is written
    now = struct.pack("<II", *g.m.clock.timespec())
    assert now != stale
    assert g.timestamp() == (now if written else stale)


# --- one decision path: what the debugger prints is what the Host did -------------------

def test_explanation_is_the_record_the_host_carried_out(g):
    from lgdbg.views import inspect
    g.set_ld(abi.LD_IRQ_ENABLED, 0)
    g.m.raise_irq(1)
    before = inspect.irq_decision(g.m)
    irq, decision = g.m.try_deliver()
    assert before == inspect.decision_data(decision)
    assert before["verdict"] == "disabled" and irq is None


# --- the words: every step the debugger prints, for every verdict ---------------------------

def _window(g):
    return "the noirq window [%#x, %#x)" % (g.m.host.noirq_start, g.m.host.noirq_end)


def _no_irqs(g):
    return []


def _blocked(g):
    g.set_ld(abi.LD_BLOCKED, 1 << 1 | 1 << 5)
    return [5, 1]


def _inside(g):
    g.m.cpu.set_reg("eip", g.m.host.noirq_start)
    return [2, 1]


def _disabled(g):
    g.set_ld(abi.LD_IRQ_ENABLED, 0)
    return [1]


def _halted_no_handler(g):
    g.halt()
    return [3]


def _trap_gate(g):
    return [2]


def _interrupt_gate(g):
    return [1, 31]


STEP_2_3_NONE = ["2. blocked_interrupts = 0x00000000 (none)",
                 "3. pending = 0x00000000 (none); pending and not blocked = none"]


def _past_the_window(g, pending, irq, *later):
    """Steps 2-5 for unblocked irqs `pending` (a bitmap) with EIP outside the window."""
    words = _irq_words_of(pending)
    return ["2. blocked_interrupts = 0x00000000 (none)",
            "3. pending = %#010x (%s); pending and not blocked = %s" % (pending, words, words),
            "4. lowest candidate: irq %d" % irq,
            "5. EIP %#x is outside %s" % (g.m.cpu.reg("eip"), _window(g))] + list(later)


def _irq_words_of(bitmap):
    return "irqs " + ", ".join(str(i) for i in range(32) if bitmap >> i & 1)


def _delivering(kind):
    article = "an" if kind == "interrupt" else "a"
    return "7. would deliver irq %%d to %%#x through %s %s gate" % (article, kind)


EXPLANATIONS = {
    "none": (_no_irqs, "none", lambda g: STEP_2_3_NONE + ["4. no irq is pending"]),
    "blocked": (_blocked, "blocked", lambda g: [
        "2. blocked_interrupts = 0x00000022 (irqs 1, 5)",
        "3. pending = 0x00000022 (irqs 1, 5); pending and not blocked = none",
        "4. irq 1 is pending but blocked"]),
    "noirq": (_inside, "noirq", lambda g: [
        "2. blocked_interrupts = 0x00000000 (none)",
        "3. pending = 0x00000006 (irqs 1, 2); pending and not blocked = irqs 1, 2",
        "4. lowest candidate: irq 1",
        "5. EIP %#x is inside %s" % (g.m.host.noirq_start, _window(g))]),
    "disabled": (_disabled, "disabled", lambda g: _past_the_window(
        g, 0x2, 1, "6. lguest_data.irq_enabled is 0")),
    "no-handler": (_halted_no_handler, "no-handler", lambda g: _past_the_window(
        g, 0x8, 3, "6. the Guest is halted: the Host wakes it and sets irq_enabled = 0x200",
        "7. no IDT entry for vector 0x23 (irq 3 stays pending)")),
    "trap gate": (_trap_gate, "deliver", lambda g: _past_the_window(
        g, 0x4, 2, "6. irq_enabled = 0x200 (enabled: not 0)",
        _delivering("trap") % (2, g.syms.lookup("irq_handler")))),
    "interrupt gate": (_interrupt_gate, "deliver", lambda g: _past_the_window(
        g, 0x80000002, 1, "6. irq_enabled = 0x200 (enabled: not 0)",
        _delivering("interrupt") % (1, g.syms.lookup("irq_handler")))),
}


@pytest.mark.parametrize("case", list(EXPLANATIONS))
def test_the_explanation_word_for_word(g, case):
    from lgdbg.views import inspect
    setup, verdict, expected = EXPLANATIONS[case]
    for irq in setup(g):
        g.m.raise_irq(irq)
    decision = g.m.host.decide_interrupt()
    steps = expected(g)
    assert decision.steps == steps
    assert (decision.verdict, decision.detail) == (verdict, steps[-1].split(". ", 1)[1])
    assert decision.vector == (0x20 + decision.irq if len(steps) == 6 else None)
    data = inspect.decision_data(decision)
    assert (data["pending"], data["blocked"]) == (abi.irq_list(g.m.host.irqs_pending),
                                                  abi.irq_list(g.ld(abi.LD_BLOCKED)))


def test_the_explanation_before_lguest_init(elf):
    from lgdbg.views import inspect
    m = Machine(elf)
    decision = m.host.decide_interrupt()
    words = "lguest_data is not registered yet (no LGUEST_INIT)"
    assert (decision.verdict, decision.detail, decision.steps) == ("none", words, ["1. " + words])
    assert inspect.decision_data(decision) == {
        "verdict": "none", "irq": None, "detail": words, "steps": ["1. " + words],
        "pending": [], "blocked": []}
    assert m.try_deliver()[0] is None and m.host.irqs_pending == 0


# --- deferrals are traced once per change of reason ---------------------------------------

def test_a_deferral_is_traced_once_per_reason_and_again_after_delivery(g):
    def reasons():
        return [(e["irq"], e["reason"]) for e in g.kinds("irq-deferred")]
    g.set_ld(abi.LD_IRQ_ENABLED, 0)
    g.m.raise_irq(1)
    g.m.try_deliver()
    g.m.try_deliver()
    assert reasons() == [(1, "disabled")]
    eip = g.m.cpu.reg("eip")
    g.m.cpu.set_reg("eip", g.m.host.noirq_start)
    g.m.try_deliver()
    g.m.cpu.set_reg("eip", eip)
    g.m.try_deliver()
    g.m.try_deliver()
    assert reasons() == [(1, "disabled"), (1, "noirq"), (1, "disabled")]
    g.set_ld(abi.LD_IRQ_ENABLED, 0x200)
    assert g.m.try_deliver()[0] == 1
    irq = g.kinds("irq")[0]
    assert (irq["handler"], irq["vector"], irq["gate"], irq["from_eip"], irq["esp"]) == (
        g.syms.lookup("irq_handler"), 0x21, "interrupt", eip, g.m.cpu.reg("esp"))
    # Delivered: the next deferral of irq 1 is news again.
    g.m.cpu.set_reg("eip", eip)
    g.m.raise_irq(1)
    g.m.try_deliver()
    assert reasons() == [(1, "disabled"), (1, "noirq"), (1, "disabled"), (1, "disabled")]


# --- §7.3 from user mode: the SET_STACK stack, SS:ESP pushed, the Guest's kernel ring -----

USER_DATA = USER_SEGMENTS + """
	.long 0, 0, 0, 0		/* 16, 17: the Host's TSS and LDT slots */
	.long 0x0000ffff, 0x00cf9200	/* 18 another kernel data: the kernel stack's */
	.bss
	.balign 16
	.space 4096
	.globl	kstack_top
kstack_top:
	.space 4096
	.globl	ustack_top
ustack_top:
"""
USER_BODY = INIT + """
	hcall	LHCALL_LOAD_GDT, $__PA(gdt), $19
	hcall	LHCALL_SET_STACK, $0x91, $kstack_top, $1	/* ss1: entry 18, RPL 1 */
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE
	UNBLOCK_IRQ 0
	movl	$0x7b, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	$0x200, %ss:lguest_data
	pushl	$0x7b
	pushl	$ustack_top
	pushl	$0x202
	pushl	$0x73
	pushl	$user_spin
	iret
	.globl	user_spin
user_spin:
	jmp	user_spin
"""


def test_interrupt_from_user_mode_switches_to_the_set_stack_stack(tmp_path):
    elf = build_guest(tmp_path, USER_BODY, text=TEXT, data=USER_DATA + DATA)
    syms = Symbols(elf)
    m = Machine(elf, max_insns=20_000)
    m.cpu.add_breakpoint(syms.lookup("user_spin"))
    assert m.run().kind == "breakpoint"
    user = m.cpu.regs()
    assert (user["cs"], user["ss"]) == (0x73, 0x7b)
    m.raise_irq(1)
    irq, _ = m.try_deliver()
    assert irq == 1
    kstack = syms.lookup("kstack_top")
    regs = m.cpu.regs()
    assert (regs["eip"], regs["cs"], regs["ss"], regs["esp"]) == (
        syms.lookup("irq_handler"), 0x61, 0x91, kstack - 20)
    assert m.cpu.cpl == 1
    frame = struct.unpack("<5I", m.read_memory(kstack - 20, 20))
    assert frame == (user["eip"], 0x73, user["eflags"], user["esp"], 0x7b)


# --- §7.4: a trap with no handler; the in/out emulation's forms ----------------------------

def test_unhandled_trap_kills_naming_vector_eip_and_errcode(tmp_path):
    body = INIT + "\t.globl\tfaulting\nfaulting:\n\tcli\n\tPOWER_OFF\n"    # #GP(0), no gate
    elf = build_guest(tmp_path, body)
    m = Machine(elf, max_insns=20_000)
    stop = m.run()
    at = Symbols(elf).lookup("faulting")
    assert stop.kind == "killed" and m.host.killed_by_trap
    assert re.fullmatch(r"unhandled trap 13 at (0x)?%x \((0x)?0\)" % at, stop.reason), stop.reason


IN_OUT = [  # label, instruction bytes, EAX after (EAX was 0x12345678)
    ("in_e4", "inb $0x60, %al", 0x1234FFFF),
    ("in_66e4", ".byte 0x66, 0xe4, 0x60", 0xFFFF5678),     # even opcode, prefix: upper half
    ("in_ec", "inb %dx, %al", 0x1234FFFF),
    ("in_66ec", ".byte 0x66, 0xec", 0xFFFF5678),
    ("in_e5", "inl $0x60, %eax", 0xFFFFFFFF),              # odd opcode: all ones
    ("in_66e5", "inw $0x60, %ax", 0xFFFFFFFF),
    ("in_ed", "inl %dx, %eax", 0xFFFFFFFF),
    ("out_e6", "outb %al, $0x80", 0x12345678),             # out: EAX untouched
    ("out_ef", "outl %eax, %dx", 0x12345678),
]


def test_in_out_emulation_every_form(tmp_path):
    body = INIT + "\tmovw\t$0x3f8, %dx\n"
    for label, insn, _ in IN_OUT:
        body += "\tmovl\t$0x12345678, %%eax\n\t.globl\t%s\n%s:\t%s\n\tmovl\t%%eax, r_%s\n" % (
            label, label, insn, label)
    body += "\tPOWER_OFF\n"
    data = "\t.data\n" + "".join("\t.globl\tr_%s\nr_%s: .long 0\n" % (l, l) for l, _, _ in IN_OUT)
    elf = build_guest(tmp_path, body, data=data)
    syms = Symbols(elf)
    m = Machine(elf, max_insns=20_000)
    events = []
    m.subscribe(events.append)
    assert m.run().kind == "poweroff"
    got = {l: struct.unpack("<I", m.read_memory(syms.lookup("r_" + l), 4))[0] for l, _, _ in IN_OUT}
    assert got == {l: want for l, _, want in IN_OUT}
    # (Page faults the Host served itself, shadow page tables filling in, aside.)
    traps = [{k: v for k, v in e.items() if k not in ("icount", "time_ns")}
             for e in events if e["kind"] == "trap" and not e.get("demand")]
    assert traps == [{"kind": "trap", "vector": 13, "errcode": 0, "eip": syms.lookup(l),
                      "delivered": False, "emulated": True} for l, _, _ in IN_OUT]


def test_a_demand_fault_is_traced_with_its_fields(tmp_path):
    # handle_trap's first step for a #PF: the shadow page tables serve it,
    # the Guest never sees it, and the trace says exactly that.
    from test_page_tables import P, RW, V, boot as pt_boot, map_v, stop_at
    body = map_v(P | RW) + "\t.globl\treading\nreading:\n\tmovl\t0x40000000, %eax\n" \
                           "\t.globl\tafter_read\nafter_read:\n"
    m, events, syms = pt_boot(tmp_path, body)
    stop_at(m, syms, "after_read")
    faults = [{k: v for k, v in e.items() if k not in ("icount", "time_ns")}
              for e in events if e["kind"] == "trap" and e.get("cr2") == V]
    assert faults == [{"kind": "trap", "vector": 14, "errcode": 0, "eip": syms.lookup("reading"),
                       "cr2": V, "delivered": False, "demand": True}]


def test_demand_faults_in_a_row_are_not_a_stuck_guest(tmp_path):
    # Each pass drops the user mapping's shadow (FLUSH_TLB) and reads it
    # again: the same #PF at the same EIP, every time served by the shadow
    # tables.  A fault the Host served is not the Guest being stuck.
    from lgdbg.machine.machine import STUCK_FAULTS
    from test_page_tables import P, RW, V, boot as pt_boot, map_v
    body = map_v(P | RW) + """
	movl	$%d, %%ecx
1:	movl	0x40000000, %%eax
	hcall	LHCALL_FLUSH_TLB, $0
	decl	%%ecx
	jnz	1b
""" % (STUCK_FAULTS + 5)
    m, events, _ = pt_boot(tmp_path, body)
    assert m.run().kind == "poweroff"
    assert len([e for e in events if e.get("demand") and e["cr2"] == V]) == STUCK_FAULTS + 5
