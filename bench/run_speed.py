"""How fast does a guest run on the machine, against bare unicorn in the same process?

A tight `dec ecx; jnz` loop with the clock event ticking every 1 ms of
(virtual or real) time, run through lgdbg's Machine on both clocks, compared
with the same loop run by unicorn directly:

    realtime clock  vs  unicorn with no hooks          goal >= 0.8x
    icount clock    vs  unicorn's own counted mode     goal >= 0.9x

Each figure is the median of several runs; ratios are what to quote (this
machine is noisy).  Needs gcc and ld (the guest is assembled here).
"""

import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from guestbuild import INIT, build_guest  # noqa: E402

LOOPS = 50_000_000          # 100M instructions
REPEAT = 3

BODY = INIT + """
	SET_GATE 0x20, tick, INTERRUPT_GATE
	UNBLOCK_IRQ 0
	movl	$0x200, lguest_data
	hcall	LHCALL_SET_CLOCKEVENT, $1000000
	movl	$%d, %%ecx
	.globl	spin
spin:
	decl	%%ecx
	jnz	spin
	.globl	spin_end
spin_end:
	POWER_OFF
""" % LOOPS

TEXT = """
tick:
	pushl	%eax
	pushl	%ebx
	pushl	%ecx
	pushl	%edx
	incl	ticks
	hcall	LHCALL_SET_CLOCKEVENT, $1000000
	popl	%edx
	popl	%ecx
	popl	%ebx
	popl	%eax
	jmp	lguest_iret
"""
DATA = "\t.data\nticks: .long 0\n"


def run_machine(elf, clock):
    from lgdbg.machine import Machine
    m = Machine(elf, clock=clock)
    t0 = time.perf_counter()
    stop = m.run()
    dt = time.perf_counter() - t0
    assert stop.kind == "poweroff", stop
    return dt


def run_bare(elf, counted):
    """The same loop, straight on unicorn: no Host, no hooks."""
    from unicorn import Uc, UC_ARCH_X86, UC_MODE_32
    from lgdbg.image import load_image
    from lgdbg.views.symbols import Symbols
    img = load_image(elf, 32 << 20)
    syms = Symbols(elf)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(img.page_offset, 32 << 20)
    for seg in img.segments:
        uc.mem_write(seg.vaddr, seg.data)
    from unicorn import x86_const as X
    uc.reg_write(X.UC_X86_REG_ECX, LOOPS)
    t0 = time.perf_counter()
    uc.emu_start(syms.lookup("spin"), syms.lookup("spin_end"),
                 count=(2 * LOOPS + 10) if counted else 0)
    dt = time.perf_counter() - t0
    assert uc.reg_read(X.UC_X86_REG_ECX) == 0
    return dt


def median(fn, *args):
    return statistics.median(fn(*args) for _ in range(REPEAT))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        elf = build_guest(tmp, BODY, text=TEXT, data=DATA)
        insns = 2 * LOOPS
        bare = median(run_bare, elf, False)
        counted = median(run_bare, elf, True)
        real = median(run_machine, elf, "realtime")
        icount = median(run_machine, elf, "icount")
    mips = lambda dt: insns / dt / 1e6  # noqa: E731
    print("run_speed: %d M instructions, timer every 1 ms, median of %d" % (insns // 10**6, REPEAT))
    print("  bare unicorn (no hooks)      %7.1f M insn/s" % mips(bare))
    print("  unicorn counted mode         %7.1f M insn/s" % mips(counted))
    print("  lgdbg --clock realtime       %7.1f M insn/s  ratio %.2fx bare      (goal >= 0.8x)"
          % (mips(real), bare / real))
    print("  lgdbg --clock icount         %7.1f M insn/s  ratio %.2fx counted   (goal >= 0.9x)"
          % (mips(icount), counted / icount))


if __name__ == "__main__":
    main()
