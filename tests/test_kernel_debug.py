"""Debugging the real 2.6.23 kernel: breakpoints by virtual address, memory as
the Guest maps it, lldb, and reverse execution across page-table work.

The Guest is ../shared/kernel's vmlinux (or LGDBG_TEST_KERNEL) with an initrd
whose /init is tests/kernel_init/bptest.c: it calls twice() at its own address,
then maps the same page of its file at another address and calls it there.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

import kernelboot
from kernelboot import vmlinux  # noqa: F401  (the session fixture)
from gdbmi import GDB, Gdb, Serve

if kernelboot.missing_kernel() and not kernelboot.in_ci():
    pytest.skip(kernelboot.missing_kernel(), allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.path.join(ROOT, "gdb_scripts", "lguest.py")
CONTINUE_TIMEOUT = 300


@pytest.fixture(scope="module")
def bptest(tmp_path_factory):
    progs = kernelboot.build_programs(tmp_path_factory.mktemp("bptest"))
    initrd = kernelboot.build_initrd(tmp_path_factory.mktemp("initrd") / "bptest.cpio",
                                     progs["bptest"], compress=False)
    return progs["bptest"], initrd


def symbol(elf, name):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^([0-9a-f]+) \w %s$" % name, out, re.M).group(1), 16)


def test_user_breakpoint_set_before_boot_stops_only_at_its_own_address(vmlinux, bptest):  # noqa: F811
    init, initrd = bptest
    twice = symbol(init, "twice")
    with Serve(vmlinux, "--initrd", initrd) as stub, Gdb() as gdb:
        gdb.cli("source %s" % LOADER)
        gdb.cli("file %s" % vmlinux)
        gdb.mi("-target-select remote %s" % stub.address)
        # Set at the kernel's first instruction: nothing maps 0x0804.... yet.
        assert gdb.cli("x/i %#x" % twice, check=False).message == "error"
        gdb.cli("break *%#x" % twice)
        gdb.cli("break *%#x" % symbol(init, "both_done"))
        gdb.cli("continue")
        gdb.wait_stopped(timeout=CONTINUE_TIMEOUT)
        assert gdb.register("eip") == twice
        assert gdb.register("cs") & 3 == 3                      # in /init, in ring 3
        assert gdb.register("cs") == 0x73
        # The user page reads as the Guest maps it now: twice()'s own bytes.
        with open(init, "rb") as f:
            elf = f.read()
        code = gdb.cli("x/4xb %#x" % twice).console
        want = bytes.fromhex("".join(re.findall(r"\b0x([0-9a-f]{2})\b", code)))
        assert want in elf
        # The second mapping runs the same physical page at another address:
        # no stop there; the next stop is both_done.
        gdb.cli("continue")
        gdb.wait_stopped(timeout=CONTINUE_TIMEOUT)
        assert gdb.register("eip") == symbol(init, "both_done")
        alias = int(gdb.cli("print/x *(unsigned *)%#x" % symbol(init, "alias_addr"))
                    .console.split("=")[1], 16)
        assert alias != twice and alias & 0xFFF == twice & 0xFFF
        pages = [gdb.cli("monitor pgtable %#x" % a).output for a in (twice, alias)]
        physical = [re.search(r"physical: (0x[0-9a-f]+)", p).group(1) for p in pages]
        assert physical[0] == physical[1]                       # one page, two addresses
        assert "bptest: twice(21) = 42 through the second mapping" in stub.stdout.decode()
        gdb.cli("delete")
        res = gdb.cli("continue")
        gdb.wait_for(lambda r: r.get("message") == "stopped" or "exited" in str(r),
                     timeout=CONTINUE_TIMEOUT)
        assert "bptest: done" in stub.stdout.decode()


def test_unmapped_address_is_an_error_not_a_guest_fault(vmlinux, bptest):  # noqa: F811
    _, initrd = bptest
    with Serve(vmlinux, "--initrd", initrd) as stub, Gdb() as gdb:
        gdb.cli("file %s" % vmlinux)
        gdb.mi("-target-select remote %s" % stub.address)
        gdb.cli("break do_test_wp_bit")
        gdb.cli("continue")
        gdb.wait_stopped(timeout=CONTINUE_TIMEOUT)
        before = gdb.cli("monitor json lguest host").output
        assert gdb.cli("x/x 0x40000000", check=False).message == "error"
        assert gdb.cli("set var *(int *)0x40000000 = 1", check=False).message == "error"
        assert gdb.cli("monitor json lguest host").output == before   # nothing reflected
        # Kernel data reads and writes go through the Guest's own mapping.
        gdb.cli("set var lguest_data.reserve_mem = 0x400000")
        assert "0x400000" in gdb.cli("print/x lguest_data.reserve_mem").console


@pytest.mark.skipif(not shutil.which("lldb"), reason="lldb is not installed")
def test_lldb_reads_a_kernel_and_a_user_address(vmlinux, bptest):  # noqa: F811
    init, initrd = bptest
    twice = symbol(init, "twice")
    with Serve(vmlinux, "--initrd", initrd) as stub:
        script = [
            "gdb-remote %s" % stub.address,
            "breakpoint set --address %#x" % twice,
            "continue",
            "register read eip cs",
            "memory read --size 4 --format x --count 1 0xc01ca264",   # blocked_interrupts
            "memory read --size 1 --format x --count 4 %#x" % twice,
            "kill",
        ]
        args = ["lldb", "--no-lldbinit", "--batch"]
        for line in script:
            args += ["-o", line]
        out = subprocess.run(args, capture_output=True, text=True, timeout=CONTINUE_TIMEOUT).stdout
    assert re.search(r"eip = 0x%08x" % twice, out), out
    assert re.search(r"cs = 0x00000073", out), out
    assert re.search(r"0xc01ca264: 0x0000000[01]", out), out
    with open(init, "rb") as f:
        elf = f.read()
    got = re.search(r"0x%08x: ((?:0x[0-9a-f]{2} ?){4})" % twice, out).group(1)
    assert bytes(int(b, 16) for b in got.split()) in elf


def test_reverse_across_demand_faults_page_table_calls_and_a_context_switch(vmlinux, bptest):  # noqa: F811,E501
    from lgdbg.debugger import Debugger
    from lgdbg.machine import Machine
    from lgdbg.snapshot import ram_digest, register_state
    init, initrd = bptest
    with open(initrd, "rb") as f:
        data = f.read()
    # Where the kernel switches to /init's address space (NEW_PGTABLE in exec).
    scout = Machine(vmlinux, initrd=data)
    switches = []
    scout.subscribe(lambda e: switches.append(e["icount"])
                    if e.get("name") == "NEW_PGTABLE" else None)
    scout.cpu.add_breakpoint(symbol(init, "twice"))
    assert scout.run().kind == "breakpoint"
    switch = switches[-1]

    m = Machine(vmlinux, initrd=data)
    dbg = Debugger(m, history=True)
    events = []
    m.subscribe(events.append)
    assert m.run(max_insns=switch - 300).kind == "step"

    def state(step=0):
        # All of RAM is hashed every 25 steps (30 ms a time); registers, the
        # shadow tables and the count at every step.
        digest = ram_digest(m) if step % 25 == 0 else None
        return register_state(m), digest, m.pt.save_state()["pages"], m.icount
    states = []
    for step in range(600):
        states.append(state(step))
        dbg.stepi(1)
    seen = {e["name"] for e in events if e["kind"] == "hcall"}
    assert "NEW_PGTABLE" in seen and {"SET_PTE", "SET_PMD", "FLUSH_TLB"} & seen, seen
    assert any(e.get("demand") for e in events)
    end = state(600)
    for step in reversed(range(600)):
        assert dbg.reverse_stepi().kind == "step"
        assert state(step) == states[step]
    for step, want in list(enumerate(states))[1:] + [(600, end)]:
        dbg.stepi(1)
        assert state(step) == want
