"""Soak: scripted gdb sessions against one stub for a while (issue 7).

Each session starts a real gdb (pygdbmi), connects, single-steps, sets a
breakpoint and continues to it, deletes it, continues and interrupts, checks
that the Guest's counter moved and detaches.  One `lgdbg serve` (default
options: history on) serves them all.  Its resident memory (VmRSS) and open
file descriptors are measured after a warm-up session and at the end.

LGDBG_SOAK_SECONDS sets the duration (default 20: the CI run).  The figures are
printed (pytest -s) for the README's reliability table.  Asserted: no session
failed, fds back to where they were, RSS growth under a generous bound.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from gdbmi import Gdb, Serve
from guestbuild import INIT, build_guest

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/gdb") and shutil.which("gcc") and shutil.which("ld")),
    reason="needs gdb, gcc and ld")

SECONDS = float(os.environ.get("LGDBG_SOAK_SECONDS", 20))
RSS_BOUND_KB = 16 * 1024          # generous: allocator slack and caches
# Reverse-execution history keeps a checkpoint before every stepi and continue
# (up to reverse.MAX_CHECKPOINTS): growth by design, not a leak.  The leak
# check runs without it; LGDBG_SOAK_HISTORY=1 soaks the default instead.
HISTORY = os.environ.get("LGDBG_SOAK_HISTORY") == "1"

BODY = INIT + """
	SET_GATE FIRST_EXTERNAL_VECTOR + 0, tick, INTERRUPT_GATE
	UNBLOCK_IRQ 0
	hcall	LHCALL_SET_CLOCKEVENT, $5000
	movl	$X86_EFLAGS_IF, lguest_data + LGUEST_DATA_irq_enabled
	.globl	loop
loop:
	incl	counter
	movl	$50, %ecx
	.globl	inner
inner:
	decl	%ecx
	jnz	inner
	jmp	loop
"""
TEXT = """
	.globl	tick
tick:
	pushl	%eax
	pushl	%edx
	incl	ticks
	hcall	LHCALL_SET_CLOCKEVENT, $5000
	popl	%edx
	popl	%eax
	jmp	lguest_iret
"""
DATA = "\t.data\n\t.globl counter\ncounter:\t.long 0\n\t.globl ticks\nticks:\t.long 0\n"


def proc_figures(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss, fds


def read_int(gdb, expr):
    text = gdb.cli("p/x %s" % expr).console
    return int(re.search(r"= (0x[0-9a-f]+)", text).group(1), 16)


def session(serve, elf, loop_addr):
    with Gdb() as gdb:
        gdb.cli("file %s" % elf)
        assert gdb.mi("-target-select remote %s" % serve.address).message == "connected"
        for _ in range(3):
            gdb.mi("-exec-step-instruction")
            gdb.wait_stopped()
        gdb.mi("-break-insert *%#x" % loop_addr)
        gdb.mi("-exec-continue")
        stop = gdb.wait_stopped()
        assert stop.get("reason") == "breakpoint-hit", stop
        assert int(stop["frame"]["addr"], 16) == loop_addr
        gdb.mi("-break-delete")
        before = read_int(gdb, "*(int *)&counter")
        gdb.mi("-exec-step-instruction")                 # incl counter
        gdb.wait_stopped()
        assert read_int(gdb, "*(int *)&counter") == before + 1
        gdb.mi("-exec-continue")
        gdb.wait_running()
        gdb.mi("-exec-interrupt")
        stop = gdb.wait_stopped()
        assert stop.get("signal-name") == "SIGINT", stop
        gdb.cli("detach")


def test_soak(tmp_path):
    elf = build_guest(tmp_path, BODY, text=TEXT, data=DATA)
    loop_addr = int(subprocess.run(["nm", elf], capture_output=True, text=True).stdout
                    .split(" T loop")[0].split()[-1], 16)
    failures, sessions = [], 0
    with Serve(elf, *([] if HISTORY else ["--no-history"])) as serve:
        pid = serve.proc.pid
        session(serve, elf, loop_addr)                     # warm-up
        rss0, fds0 = proc_figures(pid)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            try:
                session(serve, elf, loop_addr)
            except Exception as e:                         # counted, reported below
                failures.append("%s: %s" % (type(e).__name__, e))
            sessions += 1
        rss1, fds1 = proc_figures(pid)
        alive = serve.proc.poll() is None
        errors = serve.stderr
    print("soak%s: %d gdb sessions in %.0f s, %d failed; stub RSS %d -> %d kB (%+d kB), "
          "fds %d -> %d" % (" (history on)" if HISTORY else "", sessions, SECONDS, len(failures), rss0, rss1, rss1 - rss0,
                            fds0, fds1))
    for f in failures[:5]:
        print("soak failure:", f[:500])
    assert alive
    assert not failures, failures[:3]
    assert sessions >= 1
    assert fds1 <= fds0 + 2, (fds0, fds1)
    if not HISTORY:
        assert rss1 - rss0 < RSS_BOUND_KB, (rss0, rss1)
    assert "Traceback" not in errors and "internal error" not in errors, errors
