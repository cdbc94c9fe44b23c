"""The Guest's flags survive every exit it never sees, and every one it does;
a breakpoint stops once per execution, also when a silent fault repeats it.

unicorn computes EFLAGS lazily, and with instruction counting (the icount
clock, watchpoints) it instruments each instruction in a way that, when the
instruction leaves its translation block in the middle, pairs a stale
operation with the flags it already computed (see Cpu.clear_exception_state).
The Guest then resumed with a wrong carry after a demand fault the Host filled
silently: `cmp; store to a fresh page; jbe` took the wrong branch, and the
real 2.6.23 kernel corrupted its bootmem bitmap under the debugger.

Each guest here sets flags, makes an exit happen in the very next instruction
(a demand fault on a store or a load, a write the snapshot tracker withholds,
an emulated `in`, a hypercall, a virtual rdtsc), and then branches on the
flags: a wrong branch kills it with "flags lost".  Every clock, with and
without reverse-execution history.
"""

import pytest

from guestbuild import INIT, build_guest
from lgdbg.core.debugger import Debugger
from lgdbg.machine import Machine

# (setup that leaves flags, the exiting instruction, the branch that must be taken)
CASES = {
    "cmp-store": ("movl $0x20, (%esp)\n\tcmpl $0xfff, (%esp)", "movl %edx, 0x14(%ebx)", "jbe"),
    "cmp-load": ("movl $0x20, %eax\n\tcmpl $0xfff, %eax", "movl 0x14(%ebx), %edx", "jbe"),
    "cmp-cmp-store": ("cmpl $1, %esp\n\tmovl $0x20, %eax\n\tcmpl $0xfff, %eax",
                      "movl %edx, 0x14(%ebx)", "jbe"),
    "sub-store-jc": ("movl $1, %eax\n\tsubl $2, %eax", "movl %edx, 0x14(%ebx)", "jc"),
    "add-store-jc": ("movl $0xffffffff, %eax\n\taddl $2, %eax", "movl %edx, 0x14(%ebx)", "jc"),
    "test-store-jz": ("xorl %eax, %eax\n\ttestl %eax, %eax", "movl %edx, 0x14(%ebx)", "jz"),
    "inc-store-jo": ("movl $0x7fffffff, %eax\n\tincl %eax", "movl %edx, 0x14(%ebx)", "jo"),
    "cmp-in": ("movl $0x20, %eax\n\tcmpl $0xfff, %eax", "inb $0x64, %al", "jbe"),
    "cmp-rdtsc": ("movl $0x20, %eax\n\tcmpl $0xfff, %eax", "rdtsc", "jbe"),
    "cmp-hypercall": ("movl $0x20, %esi\n\tcmpl $0xfff, %esi",
                      "movl $LHCALL_FLUSH_ASYNC, %eax\n\tint $LGUEST_TRAP_ENTRY", "jbe"),
}
ROUNDS = 12          # a fresh page each round: a demand fault each time

BODY = INIT + """
	movl	$pages, %%ebx
	movl	$%d, %%ecx
1:	%s
	.globl	exit_at
exit_at:
	%s
	%s	2f
	hcall	LHCALL_CRASH, $__PA(bad)
2:	addl	$4096, %%ebx
	loop	1b
	hcall	LHCALL_CRASH, $__PA(good)
"""
DATA = """
	.data
bad:	.asciz "flags lost"
good:	.asciz "Power down"
	.bss
	.align	4096
pages:	.space	4096 * %d
""" % (ROUNDS + 1)


@pytest.fixture(scope="module")
def guests(tmp_path_factory):
    d = tmp_path_factory.mktemp("flags")
    return {name: build_guest(d, BODY % ((ROUNDS,) + case), data=DATA,
                              name=name.replace("-", "_"))
            for name, case in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("how", ["icount", "realtime", "history", "stepi",
                                 "realtime-breakpoint", "icount-breakpoint"])
def test_flags_survive_the_exit(guests, name, how):
    m = Machine(guests[name], clock="realtime" if how.startswith("realtime") else "icount")
    events = []
    m.subscribe(events.append)
    if how == "history":
        stop = Debugger(m, history=True).cont()
    elif how.endswith("breakpoint"):
        # A breakpoint is a code hook: unicorn instruments that instruction
        # even without counting.  And it stops once per execution of the
        # instruction, not again when a silent fault makes it run twice.
        from lgdbg.views.symbols import Symbols
        m.cpu.add_breakpoint(Symbols(guests[name]).lookup("exit_at"))
        stop = m.run()
        hits = 0
        while stop.kind == "breakpoint":
            hits += 1
            stop = m.run()
        assert hits == ROUNDS
    elif how == "stepi":
        # A debugger's stepi over each instruction: one exit per step, and
        # the flags it reads at every stop are the ones the Guest goes on with.
        dbg = Debugger(m)
        stop = dbg.stepi(1)
        while stop.kind == "step":
            stop = dbg.stepi(1)
    else:
        stop = m.run()
    assert stop.kind == "poweroff", (stop, m.dead)
    if name.endswith("store") or name.endswith("jc") or name.endswith("jz") \
            or name.endswith("jo") or name == "cmp-load":
        # The exit under test really happened: a demand fault per round.
        assert sum(1 for e in events if e.get("demand") and e["eip"] > 0) >= ROUNDS


def test_a_broken_repair_would_be_seen(guests):
    """The cases above fail without the repair: the same guest with the
    counted run's flag repair switched off takes the wrong branch."""
    from lgdbg.machine import cpu
    m = Machine(guests["cmp-store"])
    real = cpu.Cpu.clear_exception_state
    m.cpu.clear_exception_state = lambda clear=True, flags=None: real(m.cpu, clear)
    assert m.run().reason == "CRASH: flags lost"
