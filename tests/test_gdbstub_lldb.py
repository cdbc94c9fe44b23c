"""lldb, a second real client of the gdb remote protocol: gdb-remote works."""

import os
import shutil
import subprocess

import pytest

from gdbmi import ROOT, Serve

LLDB = shutil.which("lldb") or shutil.which("lldb-14")


@pytest.mark.skipif(LLDB is None, reason="lldb is not installed (apt-get install -y lldb); "
                                         ".ci/run installs it")
def test_lldb_reads_registers_and_memory():
    image = os.path.join(ROOT, "lgdbg", "images", "iret.elf")
    with Serve(image) as serve:
        proc = subprocess.run(
            [LLDB, "--batch", "--no-lldbinit",
             "-o", "gdb-remote %s" % serve.address,
             "-o", "register read eip esp cs eflags",
             "-o", "register write eax 0x1234abcd",
             "-o", "register read eax",
             "-o", "memory read --size 1 --count 13 0xc0100000",
             "-o", "stepi",
             "-o", "register read eip",
             "-o", "process detach"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        out = proc.stdout
        assert "eip = 0xc010000d" in out, out + proc.stderr
        assert "cs = 0x00000061" in out
        assert "eax = 0x1234abcd" in out
        assert "GenuineLguest" in out
        # stepi executed `movl $stack_top, %esp` (5 bytes).
        assert "eip = 0xc0100012" in out, out
        # After lldb detaches, the stub is still there for the next client.
        assert serve.proc.poll() is None
