"""Step first, set second: a breakpoint, watchpoint or catchpoint set after
the code around it already ran must still stop the Guest (issue 14, item 1).

unicorn decides whether translated code calls memory and code hooks when it
translates a block: a block translated before a read watchpoint existed
would read the variable for ever without stopping.  Each test steps over
the instruction first (so its block is translated), then sets the stop, then
continues, through real gdb and real lldb.  The loop reads `var` and writes
`var2`; both live on a page of their own, away from code.  A missed stop
runs on to the `int $3` after 1000 passes, which kills the Guest (no IDT).
"""

import os
import shutil
import subprocess
from contextlib import contextmanager

import pytest

from gdbmi import Gdb, Serve
from guestbuild import INIT, build_guest

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/usr/bin/gdb"), reason="needs gdb"),
    pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")),
                       reason="needs gcc and ld to build test guests"),
]
LLDB = shutil.which("lldb") or shutil.which("lldb-14")

LOOP = INIT + """\
	.globl	loop
loop:
	.globl	load
load:
	movl	var, %eax
	incl	%ebx
	movl	%ebx, var2
	.globl	trap_here
trap_here:
	cmpl	$1000, %ebx
	jne	loop
	hcall	LHCALL_SET_CLOCKEVENT, $0
	int	$3
	jmp	loop
"""
DATA = """\
	.data
	.balign	4096
	.globl	var
var:	.long	5
	.globl	var2
var2:	.long	0
"""


def symbol(elf, name):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[0], 16) for line in out.splitlines()
                if line.split()[-1] == name)


@pytest.fixture(scope="module")
def loop_elf(tmp_path_factory):
    return build_guest(tmp_path_factory.mktemp("loop"), LOOP, data=DATA)


@contextmanager
def stepped_over_load(elf):
    """gdb on a fresh stub, stopped just after `load` ran once (tbreak, continue, stepi)."""
    with Serve(elf) as serve, Gdb() as gdb:
        gdb.cli("file %s" % elf)
        gdb.mi("-target-select remote %s" % serve.address)
        gdb.cli("tbreak load")
        gdb.mi("-exec-continue")
        assert gdb.wait_stopped()["reason"] == "breakpoint-hit"
        gdb.mi("-exec-next-instruction")
        assert gdb.wait_stopped()["reason"] == "end-stepping-range"
        assert gdb.register("eip") == symbol(elf, "load") + 5
        yield gdb


@pytest.mark.parametrize("command,reason", [
    ("rwatch *(int *)&var", "read-watchpoint-trigger"),
    ("awatch *(int *)&var", "access-watchpoint-trigger"),
    ("watch *(int *)&var2", "watchpoint-trigger"),
    ("break load", "breakpoint-hit"),
])
def test_gdb_stop_set_after_stepping_fires(loop_elf, command, reason):
    with stepped_over_load(loop_elf) as gdb:
        gdb.cli(command)
        gdb.mi("-exec-continue")
        stop = gdb.wait_stopped(60)
        assert stop["reason"] == reason, stop
        # On the next pass round the loop, not 1000 passes later.
        assert gdb.register("ebx") <= 2


def test_gdb_watchpoint_removed_after_stepping_stops_no_more(loop_elf):
    with stepped_over_load(loop_elf) as gdb:
        gdb.cli("rwatch *(int *)&var")
        gdb.mi("-exec-continue")
        assert gdb.wait_stopped(60)["reason"] == "read-watchpoint-trigger"
        gdb.cli("delete")
        gdb.mi("-exec-continue")
        stop = gdb.wait_stopped(60)
        # On to the `int $3` after 1000 passes (a trap with no handler).
        assert stop["reason"] == "signal-received", stop
        assert gdb.register("ebx") == 1000


def test_gdb_catchpoint_set_after_stepping_fires(loop_elf):
    # Catchpoints are Host events, not unicorn hooks: this guards that they
    # need no translated code at all.
    with stepped_over_load(loop_elf) as gdb:
        gdb.cli("monitor catch hcall SET_CLOCKEVENT")
        gdb.mi("-exec-continue")
        records = gdb.wait_for(lambda r: r["type"] == "notify" and r["message"] == "stopped", 60)
        said = "".join(r["payload"] for r in records if r["type"] == "target")
        assert "catchpoint 1 (hcall SET_CLOCKEVENT)" in said, said
        assert gdb.register("ebx") == 1000


@pytest.mark.skipif(LLDB is None, reason="lldb is not installed (apt-get install -y lldb)")
def test_lldb_read_watchpoint_set_after_stepping_fires(loop_elf):
    load = symbol(loop_elf, "load")
    var = symbol(loop_elf, "var")
    with Serve(loop_elf) as serve:
        proc = subprocess.run(
            [LLDB, "--batch", "--no-lldbinit", loop_elf,
             "-o", "gdb-remote %s" % serve.address,
             "-o", "breakpoint set --address %#x" % load,
             "-o", "continue",
             "-o", "breakpoint delete --force",
             "-o", "thread step-inst",
             "-o", "watchpoint set expression -w read -s 4 -- %#x" % var,
             "-o", "continue",
             "-o", "register read eip ebx",
             "-o", "process detach"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert "Watchpoint created" in out, out
        assert "stop reason = watchpoint" in out, out
        # Stopped after the load on the second pass, not at the limit.
        assert "ebx = 0x00000001" in out, out
        assert "eip = %#010x" % (load + 5) in out, out
