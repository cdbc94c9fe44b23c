"""A Guest that powered off or was killed is a program that has exited, for
every client, including one that attaches afterwards (issue 14, item 2).

Before: a new client's `?` got a T05 stop with EIP in an interrupt handler,
as if the Guest were alive, and a continue ran a dead machine.  Now `?` is
W00 after a power-off and X09 after kill_guest; a resume is refused with one
line saying why, and the same W/X.
"""

import os
import shutil
import subprocess

import pytest

from gdbmi import ROOT, Gdb, Serve
from guestbuild import INIT, build_guest
from lgdbg.gdbstub import packets
from test_hardening_connections import Raw

HELLO = os.path.join(ROOT, "lgdbg", "images", "hello.elf")
LLDB = shutil.which("lldb") or shutil.which("lldb-14")
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/gdb"), reason="needs gdb")


def ask_all(raw, payload):
    """The console text (O packets) and the final reply to one packet."""
    raw.send(packets.frame(payload))
    said = []
    reply = raw.reply(console=said)
    return "".join(said), reply


def run_to_the_end(serve, image, reason):
    with Gdb() as gdb:
        gdb.cli("file %s" % image)
        gdb.mi("-target-select remote %s" % serve.address)
        gdb.mi("-exec-continue")
        stop = gdb.wait_stopped(60)
        assert stop["reason"] == reason, stop


def test_reattach_after_poweroff_is_an_exited_program():
    with Serve(HELLO) as serve:
        run_to_the_end(serve, HELLO, "exited-normally")
        # gdb: `target remote` to a program that exited is refused by gdb itself.
        with Gdb() as gdb:
            gdb.cli("file %s" % HELLO)
            r = gdb.mi("-target-select remote %s" % serve.address, check=False)
            assert r.message == "error" and "not running" in r.error, r
        raw = Raw(serve.port)
        assert ask_all(raw, b"?") == ("", b"W00")
        said, reply = ask_all(raw, b"vCont;c")
        assert reply == b"W00"
        assert said == ("lgdbg: the guest powered off: it cannot run again; start a new "
                        "`lgdbg serve` for a new one\n")
        said, reply = ask_all(raw, b"s")
        assert reply == b"W00" and "cannot run again" in said
        raw.detach()


@pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")), reason="needs gcc, ld")
def test_reattach_after_a_kill_is_an_exited_program(tmp_path):
    elf = build_guest(tmp_path, INIT + '\tCRASH_MSG "test guest gives up"\n', iret=False)
    with Serve(elf) as serve:
        # The first client sees the kill as a stop (registers to inspect)...
        with Gdb() as gdb:
            gdb.cli("file %s" % elf)
            gdb.mi("-target-select remote %s" % serve.address)
            gdb.mi("-exec-continue")
            assert gdb.wait_stopped(60)["signal-name"] == "SIGABRT"
            gdb.cli("detach")
        # ...a later one finds a program killed by a signal.
        raw = Raw(serve.port)
        assert ask_all(raw, b"?") == ("", b"X09")
        said, reply = ask_all(raw, b"c")
        assert reply == b"X09"
        assert said.startswith("lgdbg: the guest was killed (CRASH: test guest gives up): "
                               "it cannot run again"), said
        # The Host's state stays readable: the reason is there.
        said, reply = ask_all(raw, b"qRcmd," + b"lguest status".hex().encode())
        assert reply == b"OK" and "gives up" in said
        raw.detach()


@pytest.mark.skipif(LLDB is None, reason="lldb is not installed")
def test_lldb_attaching_after_poweroff_gives_up_at_once():
    # lldb 14 waits for ever when `?` answers W or X after it asked
    # qProcessInfo; the stub answers it an error, and lldb says so.
    with Serve(HELLO) as serve:
        run_to_the_end(serve, HELLO, "exited-normally")
        proc = subprocess.run([LLDB, "--batch", "--no-lldbinit", "-o",
                               "gdb-remote %s" % serve.address, "-o", "register read eip"],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert "eip = " not in out, out
        assert "no stop reply packet was received" in out, out
