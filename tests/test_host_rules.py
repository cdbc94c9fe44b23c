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

import struct

import pytest

from lgdbg import abi
from lgdbg.errors import UsageError
from lgdbg.machine import Machine
from lgdbg.symbols import Symbols
from guestbuild import INIT, build_guest

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
        self.m = Machine(elf, max_insns=1_000_000)
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
    assert not g.m.host.halted and [e["kind"] for e in g.events][-3:] == ["raise", "wake", "irq"]
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
    from lgdbg import inspect
    g.set_ld(abi.LD_IRQ_ENABLED, 0)
    g.m.raise_irq(1)
    before = inspect.irq_decision(g.m)
    irq, decision = g.m.try_deliver()
    assert before == inspect.decision_data(decision)
    assert before["verdict"] == "disabled" and irq is None
