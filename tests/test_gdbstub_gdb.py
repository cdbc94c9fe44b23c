"""Real gdb (through MI) against `lgdbg serve`: the session a user has.

Every wait is on an MI token or a *stopped record, never on quiet time
(tests/gdbmi.py).  Purpose-made guests are built with gcc -m32 / ld -m
elf_i386 from the examples' macros (tests/guestbuild.py).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from gdbmi import ROOT, Gdb, Serve
from guestbuild import INIT, build_guest

IRET = os.path.join(ROOT, "lgdbg", "images", "iret.elf")
HELLO = os.path.join(ROOT, "lgdbg", "images", "hello.elf")

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/gdb"), reason="needs gdb")
needs_toolchain = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")),
                                     reason="needs gcc and ld to build test guests")

SPIN = """\
	.globl	spin
spin:
	decl	%ecx
	jnz	spin
	jmp	spin
"""

# irq 0 has a handler behind an interrupt gate; the guest enables interrupts
# and idles in a loop that never leaves the Guest.
IRQ_GUEST = INIT + """\
	SET_GATE FIRST_EXTERNAL_VECTOR + 0, handler, INTERRUPT_GATE
	UNBLOCK_IRQ 0
	movl	$X86_EFLAGS_IF, lguest_data + LGUEST_DATA_irq_enabled
	.globl	idle
idle:
	jmp	idle
"""
IRQ_TEXT = """\
	.globl	handler
handler:
	incl	handled
	jmp	lguest_iret
"""
IRQ_DATA = """\
	.data
	.globl	handled
handled:	.long	0
"""


def symbol(elf, name):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts[-1] == name:
            return int(parts[0], 16)
    raise KeyError(name)


def attach(serve, image):
    gdb = Gdb()
    gdb.cli("file %s" % image)
    r = gdb.mi("-target-select remote %s" % serve.address)
    assert r.message == "connected"
    return gdb


def cont(gdb, timeout=20):
    gdb.mi("-exec-continue")
    return gdb.wait_stopped(timeout)


def test_registers_memory_breakpoints_and_stepi():
    with Serve(IRET) as serve, attach(serve, IRET) as gdb:
        entry = symbol(IRET, "guest_entry")
        assert gdb.register("eip") == entry
        assert gdb.register("cs") == 0x61 and gdb.register("ss") == 0x69
        # The x87 and SSE registers of the 308-byte layout are there too.
        assert "fstat" in gdb.cli("info registers fstat").console
        assert "uint128" in gdb.cli("p $xmm0").console

        # Registers: P writes one, g reads them back.
        gdb.cli("set $eax = 0x12345678")
        gdb.cli("set $edi = 0xdeadbeef")
        gdb.cli("flushregs")
        assert gdb.register("eax") == 0x12345678
        assert gdb.register("edi") == 0xdeadbeef

        # Memory: the signature just before the entry point, then a write.
        text = gdb.cli("x/s 0x%x" % (entry - 13)).console
        assert "GenuineLguest" in text
        gdb.cli("set {int}&loops = 0x5a5a1234")
        r = gdb.mi("-data-read-memory-bytes &loops 4")
        assert r.payload["memory"][0]["contents"] == "34125a5a"
        gdb.cli("set {int}&loops = 0")

        # An unmapped address is an error, not a dead stub.
        r = gdb.mi("-data-read-memory-bytes 0x1000 4", check=False)
        assert r.message == "error"

        # Breakpoint on a symbol, continue, then stepi.
        gdb.cli("set $eax = 0")
        gdb.cli("break main_loop")
        stop = cont(gdb)
        assert stop["reason"] == "breakpoint-hit"
        assert int(stop["frame"]["addr"], 16) == symbol(IRET, "main_loop")
        gdb.mi("-exec-next-instruction")
        stop = gdb.wait_stopped()
        assert stop["reason"] == "end-stepping-range"
        assert gdb.register("eip") != symbol(IRET, "main_loop")
        # Continuing from the breakpoint does not hit it again at once: the
        # next stop is main_loop on the next pass, with loops counted up.
        loops = int(gdb.cli("p {int}&loops").console.split("=")[1])
        stop = cont(gdb)
        assert stop["reason"] == "breakpoint-hit"
        assert int(gdb.cli("p {int}&loops").console.split("=")[1]) == loops + 1


@needs_toolchain
def test_watchpoint_stops_on_the_hosts_write_at_delivery(tmp_path):
    elf = build_guest(tmp_path, IRQ_GUEST, text=IRQ_TEXT, data=IRQ_DATA)
    with Serve(elf, "--host-tick", "1000") as serve, attach(serve, elf) as gdb:
        gdb.cli("break idle")
        assert cont(gdb)["reason"] == "breakpoint-hit"
        gdb.cli("delete")
        gdb.cli("watch *(int *)&lguest_data")
        out = gdb.cli("monitor irq raise 0").output
        assert "pending" in out
        stop = cont(gdb)
        # The Host's write to irq_enabled when it delivers through the
        # interrupt gate: the frame is pushed, EIP is the handler's first insn.
        assert stop["reason"] == "watchpoint-trigger", stop
        assert stop["value"] == {"old": "512", "new": "0"}
        assert gdb.register("eip") == symbol(elf, "handler")
        status = json.loads(gdb.cli("monitor json lguest status").output)
        assert status["pending"] == []


@needs_toolchain
def test_ctrl_c_stops_an_endless_loop_promptly(tmp_path):
    elf = build_guest(tmp_path, SPIN, iret=False)
    with Serve(elf) as serve, attach(serve, elf) as gdb:
        gdb.mi("-exec-continue")
        gdb.wait_running()
        time.sleep(0.2)            # let it spin: Ctrl-C must stop a running Guest
        t0 = time.monotonic()
        gdb.mi("-exec-interrupt")
        stop = gdb.wait_stopped(10)
        delay = time.monotonic() - t0
        assert stop["reason"] == "signal-received" and stop["signal-name"] == "SIGINT"
        assert delay < 1.0
        eip = gdb.register("eip")
        assert symbol(elf, "spin") <= eip < symbol(elf, "spin") + 5
        # ...and it can be continued and interrupted again.
        gdb.mi("-exec-continue")
        gdb.wait_running()
        gdb.mi("-exec-interrupt")
        assert gdb.wait_stopped(10)["signal-name"] == "SIGINT"


def test_detach_refuse_second_client_and_reattach():
    with Serve(IRET) as serve:
        gdb = attach(serve, IRET)
        gdb.cli("break main_loop")
        cont(gdb)
        eip, esp = gdb.register("eip"), gdb.register("esp")
        status = json.loads(gdb.cli("monitor json lguest status").output)

        # A second client is refused with a message while the first is attached.
        with socket.create_connection((serve.host, serve.port), timeout=5) as s:
            s.sendall(b"+$qSupported#37")
            reply = b""
            while b"#" not in reply:
                chunk = s.recv(1024)
                if not chunk:
                    break
                reply += chunk
        assert b"already attached" in reply

        gdb.cli("detach")
        gdb.close()
        # The machine is intact for the next client: same place, same time.
        with attach(serve, IRET) as gdb2:
            assert gdb2.register("eip") == eip and gdb2.register("esp") == esp
            again = json.loads(gdb2.cli("monitor json lguest status").output)
            assert again["icount"] == status["icount"]
            # gdb removed its breakpoint on detach: continuing runs on to the end.
            stop = cont(gdb2)
            assert stop["reason"] == "exited-normally"


def test_dropped_connection_keeps_machine_and_drops_breakpoints():
    with Serve(IRET) as serve:
        gdb = attach(serve, IRET)
        gdb.cli("break main_loop")
        cont(gdb)
        eip = gdb.register("eip")
        gdb.ctl.gdb_process.kill()         # no detach: the connection just drops
        gdb.ctl.gdb_process.wait()
        gdb.close()
        with attach(serve, IRET) as gdb2:
            assert gdb2.register("eip") == eip
            assert cont(gdb2)["reason"] == "exited-normally"


def test_kill_ends_the_stub():
    with Serve(IRET) as serve:
        with attach(serve, IRET) as gdb:
            gdb.cli("kill")
        assert serve.wait(10) == 0


def test_poweroff_is_the_end_of_the_program():
    with Serve(HELLO) as serve, attach(serve, HELLO) as gdb:
        gdb.mi("-exec-continue")
        records = gdb.wait_for(lambda r: r["type"] == "notify" and r["message"] == "stopped")
        assert records[-1]["payload"]["reason"] == "exited-normally"
        # The console went to gdb as O packets while the guest ran.
        said = "".join(r["payload"] for r in records if r["type"] == "target")
        assert "Hello from an lguest Guest" in said


@needs_toolchain
@pytest.mark.parametrize("how,signal", [
    ("\tmovl\t0x1000, %eax\n", "SIGSEGV"),                 # unhandled #PF: no IDT
    ('\tCRASH_MSG "test guest gives up"\n', "SIGABRT"),    # kill_guest by CRASH
])
def test_killed_guest_stops_before_dying(tmp_path, how, signal):
    elf = build_guest(tmp_path, INIT + "\t.globl\tfault_here\nfault_here:\n" + how,
                      iret=False)
    with Serve(elf) as serve, attach(serve, elf) as gdb:
        gdb.mi("-exec-continue")
        records = gdb.wait_for(lambda r: r["type"] == "notify" and r["message"] == "stopped")
        stop = records[-1]["payload"]
        assert stop["reason"] == "signal-received" and stop["signal-name"] == signal
        said = "".join(r["payload"] for r in records if r["type"] == "target")
        assert "guest killed" in said
        assert ("unhandled trap 14" in said) if signal == "SIGSEGV" else ("gives up" in said)
        # Registers and memory at the fault are there to inspect.
        eip = gdb.register("eip")
        if signal == "SIGSEGV":
            assert eip == symbol(elf, "fault_here")
        status = json.loads(gdb.cli("monitor json lguest status").output)
        assert status["dead"]
        # Continuing ends the program.
        stop = cont(gdb)
        assert stop["reason"] == "exited-signalled" and stop["signal-name"] == "SIGKILL"


def test_monitor_commands_and_catchpoints():
    with Serve(IRET) as serve, attach(serve, IRET) as gdb:
        assert "monitor irq raise N" in gdb.cli("monitor help").output
        status = json.loads(gdb.cli("monitor json lguest status").output)
        assert status["init"] is False and status["icount"] == 0
        r = gdb.cli("monitor catch hcall SET_CLOCKEVENT")
        assert "Catchpoint 1" in r.output
        stop = cont(gdb)
        assert stop["reason"] == "signal-received"
        last = json.loads(gdb.cli("monitor json hcalls 1").output)
        assert last[-1]["name"] == "SET_CLOCKEVENT"
        assert json.loads(gdb.cli("monitor json catch list").output)[0]["kind"] == "hcall"
        gdb.cli("monitor catch delete 1")
        assert "pending" in gdb.cli("monitor irq").output
        idt = json.loads(gdb.cli("monitor json lguest idt").output)
        assert any(row["irq"] == 0 for row in idt)
        json.loads(gdb.cli("monitor json lguest host").output)
        data = json.loads(gdb.cli("monitor json lguest data").output)
        assert isinstance(data, dict)
        gdb.cli("monitor irq stepping on")
        # Misuse is an error with a message, and the stub lives on.
        r = gdb.cli("monitor frobnicate", check=False)
        assert r.message == "error"
        assert "unknown monitor command" in r.output
        r = gdb.cli("monitor irq raise 99", check=False)
        assert r.message == "error"
        assert gdb.register("eip")


def test_stdio_session():
    cmd = "%s -m lgdbg serve --stdio %s" % (sys.executable, IRET)
    with Gdb() as gdb:
        gdb.cli("cd %s" % ROOT)
        gdb.cli("file %s" % IRET)
        gdb.cli("target remote | %s" % cmd)
        assert gdb.register("eip") == symbol(IRET, "guest_entry")
        gdb.cli("set $ebx = 0x55")
        gdb.cli("flushregs")
        assert gdb.register("ebx") == 0x55
        gdb.cli("break main_loop")
        assert cont(gdb)["reason"] == "breakpoint-hit"
        gdb.mi("-exec-next-instruction")
        assert gdb.wait_stopped()["reason"] == "end-stepping-range"
        assert "GenuineLguest" in gdb.cli("x/s guest_entry-13").console
        gdb.cli("delete")
        assert cont(gdb)["reason"] == "exited-normally"


def test_lgdbg_gdb_runs_gdb_against_the_stub():
    proc = subprocess.run(
        [sys.executable, "-m", "lgdbg", "gdb", "iret", "--", "-batch", "-nx",
         "-ex", "info registers eip", "-ex", "break main_loop", "-ex", "continue",
         "-ex", "monitor lguest status"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "guest_entry" in proc.stdout
    assert "Breakpoint 1, " in proc.stdout
    assert "LGUEST_INIT:   done" in proc.stdout + proc.stderr


HALT_GUEST = INIT + """\
	SET_GATE FIRST_EXTERNAL_VECTOR + 0, handler, INTERRUPT_GATE
	UNBLOCK_IRQ 0
again:
	hcall	LHCALL_HALT
	jmp	again
"""


@needs_toolchain
def test_halted_forever_is_a_stop_and_an_irq_raise_wakes_it(tmp_path):
    elf = build_guest(tmp_path, HALT_GUEST, text=IRQ_TEXT, data=IRQ_DATA)
    with Serve(elf) as serve, attach(serve, elf) as gdb:
        gdb.mi("-exec-continue")
        records = gdb.wait_for(lambda r: r["type"] == "notify" and r["message"] == "stopped")
        assert records[-1]["payload"]["signal-name"] == "SIGTRAP"
        said = "".join(r["payload"] for r in records if r["type"] == "target")
        assert "halted" in said and "monitor irq raise" in said
        gdb.cli("monitor irq raise 0")
        gdb.cli("break handler")
        stop = cont(gdb)
        assert stop["reason"] == "breakpoint-hit"
        assert gdb.register("eip") == symbol(elf, "handler")


def test_failing_monitor_command_is_one_line_and_still_an_error():
    """Issue 14, item 3: the stub's message and gdb's "Protocol error with
    Rcmd" (its only wording for a refused qRcmd) make one line, and the
    command still fails for MI and gdb.execute callers."""
    with Serve(IRET) as serve:
        proc = subprocess.run(
            ["gdb", "-batch", "-nx", "-ex", "file %s" % IRET,
             "-ex", "target remote %s" % serve.address,
             "-ex", "monitor irq raise 99",
             "-ex", "python\ntry:\n gdb.execute('monitor frobnicate', to_string=True)\n"
                    "except gdb.error as e:\n print('RAISED', e)\n",
             "-ex", "detach"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
            stdin=subprocess.DEVNULL)
        out = proc.stdout
        said = [line for line in out.splitlines() if "irq 99" in line or "Rcmd" in line]
        assert said[0] == ("lgdbg: irq 99 out of range (0-31); gdb reports the refusal as: "
                           "Protocol error with Rcmd"), out
        assert said[1] == "RAISED Protocol error with Rcmd", out
        assert len(said) == 2, out
        with attach(serve, IRET) as gdb:
            r = gdb.cli("monitor frobnicate", check=False)
            assert r.message == "error" and r.error == "Protocol error with Rcmd"
            assert r.output == ("lgdbg: unknown monitor command 'frobnicate' (see `monitor "
                                "help`); gdb reports the refusal as: ")
