"""Reverse execution through real gdb: reverse-stepi and reverse-continue.

The forward run is recorded (registers and a memory hash at every step);
going back must reproduce each recorded state exactly, including the step
that did nothing but deliver an interrupt (irq stepping on).
"""

import hashlib
import json
import os

import pytest

from gdbmi import ROOT, Gdb, Serve

IRET = os.path.join(ROOT, "lgdbg", "images", "iret.elf")
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/gdb"), reason="needs gdb")

# The iret guest lives in its first MiB after the kernel start: hashing the
# pages it uses (code, data, bss with the stack) keeps each check fast.
HASHED = ("0xc0100000", 0x6000)


def attach(serve):
    gdb = Gdb()
    gdb.cli("file %s" % IRET)
    assert gdb.mi("-target-select remote %s" % serve.address).message == "connected"
    return gdb


def snapshot(gdb):
    regs = gdb.mi("-data-list-register-values x 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15")
    values = tuple((r["number"], r["value"]) for r in regs.payload["register-values"])
    mem = gdb.mi("-data-read-memory-bytes %s %d" % HASHED).payload["memory"]
    digest = hashlib.sha1("".join(m["contents"] for m in mem).encode()).hexdigest()
    return values, digest


def test_reverse_stepi_replays_200_steps_exactly():
    with Serve(IRET) as serve, attach(serve) as gdb:
        gdb.cli("break main_loop")
        gdb.mi("-exec-continue")
        assert gdb.wait_stopped()["reason"] == "breakpoint-hit"
        gdb.cli("delete")
        # An interrupt is pending and irq stepping is on: the first stepi
        # delivers it (no instruction runs) and lands on the handler.
        gdb.cli("monitor irq raise 0")
        gdb.cli("monitor irq stepping on")
        handler = int(gdb.cli("p/x &timer_interrupt").console.split("=")[1], 16)
        states = []
        for i in range(200):
            states.append(snapshot(gdb))
            gdb.mi("-exec-step-instruction")
            gdb.wait_stopped()
            if i == 0:
                assert gdb.register("eip") == handler
        gdb.cli("monitor irq stepping off")
        for i in range(199, -1, -1):
            gdb.mi("-exec-step-instruction --reverse")
            gdb.wait_stopped()
            assert snapshot(gdb) == states[i], "state differs after reverse-stepi to step %d" % i
        # Back at the interrupted instruction, with the interrupt pending again.
        assert gdb.register("eip") == int(gdb.cli("p/x &main_loop").console.split("=")[1], 16)
        assert json.loads(gdb.cli("monitor json lguest status").output)["pending"] == [0]


def test_reverse_stepi_across_a_continue_and_reverse_continue():
    with Serve(IRET) as serve, attach(serve) as gdb:
        gdb.cli("break timer_interrupt")
        hits = []
        for _ in range(3):
            gdb.mi("-exec-continue")
            assert gdb.wait_stopped()["reason"] == "breakpoint-hit"
            hits.append(snapshot(gdb))
        # Back to the previous hit, then the one before.
        gdb.mi("-exec-continue --reverse")
        stop = gdb.wait_stopped()
        assert stop["reason"] == "breakpoint-hit", stop
        assert snapshot(gdb) == hits[1]
        gdb.mi("-exec-continue --reverse")
        assert gdb.wait_stopped()["reason"] == "breakpoint-hit"
        assert snapshot(gdb) == hits[0]
        # Forward again reaches the same future.
        gdb.mi("-exec-continue")
        gdb.wait_stopped()
        assert snapshot(gdb) == hits[1]
        # reverse-stepi from a breakpoint inside a long continue: replayed,
        # then forward stepi comes back to the same state.
        gdb.cli("delete")
        gdb.mi("-exec-step-instruction --reverse")
        gdb.wait_stopped()
        back = snapshot(gdb)
        assert back != hits[1]
        gdb.mi("-exec-step-instruction")
        gdb.wait_stopped()
        assert snapshot(gdb) == hits[1]
        # Before the oldest checkpoint there is no history: gdb says so.
        gdb.mi("-exec-continue --reverse")
        stop = gdb.wait_stopped()
        assert stop.get("reason") in ("no-history", None), stop
        assert gdb.register("eip") == int(gdb.cli("p/x &guest_entry").console.split("=")[1], 16)


def test_monitor_snapshot_save_restore():
    with Serve(IRET) as serve, attach(serve) as gdb:
        gdb.cli("break main_loop")
        gdb.mi("-exec-continue")
        gdb.wait_stopped()
        saved = snapshot(gdb)
        assert "saved here" in gdb.cli("monitor snapshot save here").output
        gdb.mi("-exec-continue")
        gdb.wait_stopped()
        assert snapshot(gdb) != saved
        assert "here" in gdb.cli("monitor snapshot list").output
        gdb.cli("monitor snapshot restore here")
        gdb.cli("flushregs")
        assert snapshot(gdb) == saved
        r = gdb.cli("monitor snapshot restore nosuch", check=False)
        assert r.message == "error"


def test_repl_reverse_commands():
    import subprocess
    import sys
    script = "break timer_interrupt\ncontinue\ncontinue\nreverse-continue\nstepi 3\n" \
             "reverse-stepi 3\nreverse-stepi\nreverse-continue\n"
    r = subprocess.run([sys.executable, "-m", "lgdbg", "repl", "iret"], input=script,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # reverse-continue lands on the first hit; stepping from it moves on.
    assert out.count("Breakpoint 1, 0xc0100201 <timer_interrupt>") == 3
    assert "timer_interrupt+30> reverse-stepi 3" in out
    # One more step back from the handler's entry: the interrupted instruction.
    assert "timer_interrupt> reverse-stepi\n" in out
    assert "main_loop+42> reverse-continue" in out
    assert "No more reverse-execution history." in out


def test_the_iret_walkthrough_runs():
    import subprocess
    import sys
    script = os.path.join(ROOT, "examples", "walkthrough-iret.lgdbg")
    r = subprocess.run([sys.executable, "-m", "lgdbg", "repl", "iret", "--batch", script],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "inside the noirq window: yes" in out
    assert "deferred by 2 instructions" in out
    assert "delivered irq 0 (vector 0x20) through an interrupt gate" in out
    assert "timer_interrupt> reverse-stepi" in out
    assert "G:040" in out
