"""Counting rep string instructions: steps, runs and irq schedules agree (issue 14, item 5).

The block of tests/test_rep_string_qemu.py, on the Machine itself: every
stop of a run with an instruction limit (what --irq@ICOUNT, Host ticks and
reverse execution use) is a stop that single-stepping makes too, with the
same registers at the same count; no stop leaves EIP on a rep instruction
whose ECX already reached 0.
"""

import shutil

import pytest

from guestbuild import build_guest
from lgdbg.debugger import Debugger
from lgdbg.machine.machine import Machine
from lgdbg.symbols import Symbols
from test_rep_string_qemu import BLOCK, DATA

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")),
                                reason="needs gcc and ld to build test guests")


def state(m):
    return m.icount, m.cpu.regs()


def block_end(elf):
    return Symbols(elf).lookup("block_end")


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    return build_guest(tmp_path_factory.mktemp("rep"), BLOCK, data=DATA, iret=False)


def stepped(elf):
    """(icount, registers) at every stepi stop from the entry to block_end."""
    m = Machine(elf)
    end = block_end(elf)
    out = [state(m)]
    while m.cpu.reg("eip") != end:
        assert m.step().kind == "step"
        out.append(state(m))
    return out


def test_no_stop_after_the_last_iteration(elf):
    for i, (_, regs) in enumerate(stepped(elf)[1:], 1):
        m = Machine(elf)
        code = m.cpu.read_virt(regs["eip"], 2).lstrip(b"\x66")
        # ECX 0 on a rep instruction is only right before a zero-count one.
        if code[:1] in (b"\xf2", b"\xf3") and regs["ecx"] == 0:
            assert m.cpu.read_virt(regs["eip"] - 2, 2) == b"\x31\xc9", i   # xorl %ecx, %ecx


def test_runs_with_a_limit_stop_where_steps_stop(elf):
    steps = stepped(elf)
    by_count = {icount: regs for icount, regs in steps}
    total = steps[-1][0]
    for limit in range(1, total + 1):
        m = Machine(elf)
        m.run(max_insns=limit)
        icount, regs = state(m)
        # At the limit, or one past it when the limit fell on a rep's last pass.
        assert icount in (limit, limit + 1), limit
        assert icount in by_count, limit
        assert regs == by_count[icount], limit


def test_reverse_stepi_lands_on_the_stops_stepping_makes(elf):
    # Going back replays from a checkpoint to "one instruction earlier"; the
    # count of a rep instruction's final pass is no stop, so the replay must
    # land on the stop before it, not run past it and stay where it was.
    by_count = {icount: regs for icount, regs in stepped(elf)}
    m = Machine(elf)
    dbg = Debugger(m, history=True)
    m.cpu.add_breakpoint(block_end(elf))
    assert dbg.cont().kind == "breakpoint"
    seen = []
    while m.icount > 0:
        assert dbg.reverse_stepi().kind == "step"
        icount, regs = state(m)
        assert icount in by_count and regs == by_count[icount], icount
        assert not seen or icount < seen[-1], seen[-3:] + [icount]
        seen.append(icount)
    assert len(seen) == len(by_count) - 1
