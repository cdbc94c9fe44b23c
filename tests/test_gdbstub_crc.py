"""qCRC, `compare-sections` and `load` (issue 14, item 4).

The stub serves Guest VIRTUAL addresses only (README, "Addresses"); gdb's
compare-sections and load use the sections' LOAD addresses.  So:
  - qCRC works, over virtual addresses: on an image linked with page_offset
    0 (load address = link address) compare-sections matches, and sees a
    changed byte;
  - on the examples (loaded at physical 0x100000, running at 0xc0100000)
    plain gdb gets an error for compare-sections ("target memory fault"),
    never a false MIS-MATCHED, and with lgdbg's gdb commands loaded both
    commands are refused with one line saying why.
"""

import os
import shutil
import subprocess

import pytest

from gdbmi import ROOT, Gdb, Serve

IRET = os.path.join(ROOT, "lgdbg", "images", "iret.elf")
SCRIPTS = os.path.join(ROOT, "gdb_scripts", "lguest.py")
EXAMPLES = os.path.join(ROOT, "examples")
pytestmark = [
    pytest.mark.skipif(not os.path.exists("/usr/bin/gdb"), reason="needs gdb"),
    pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")), reason="needs gcc, ld"),
]

LOW_GUEST = """\
#include "lguest.h"
	.section .init.text, "ax", @progbits
	.ascii	"GenuineLguest"
	.globl	guest_entry
guest_entry:
	decl	%ecx
	jmp	guest_entry
	.data
	.globl	words
words:	.long	1, 2, 3
	.section .note.GNU-stack, "", @progbits
"""


@pytest.fixture(scope="module")
def low_elf(tmp_path_factory):
    """An lguest image whose load addresses are its link addresses (page_offset 0)."""
    tmp = tmp_path_factory.mktemp("low")
    with open(os.path.join(EXAMPLES, "guest.lds")) as f:
        lds = f.read().replace("PAGE_OFFSET = 0xC0000000;", "PAGE_OFFSET = 0;")
    (tmp / "low.lds").write_text(lds)
    (tmp / "low.S").write_text(LOW_GUEST)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("gcc", "-m32", "-I", EXAMPLES, "-c", str(tmp / "low.S"), "-o", str(tmp / "low.o"))
    run("ld", "-m", "elf_i386", "--build-id=none", "--no-warn-rwx-segments",
        "-T", str(tmp / "low.lds"), "-o", str(tmp / "low.elf"), str(tmp / "low.o"))
    return str(tmp / "low.elf")


def attach(serve, elf, scripts=False):
    gdb = Gdb()
    gdb.cli("file %s" % elf)
    if scripts:
        gdb.cli("source %s" % SCRIPTS)
    gdb.mi("-target-select remote %s" % serve.address)
    return gdb


def test_qcrc_serves_compare_sections_where_load_and_link_addresses_agree(low_elf):
    with Serve(low_elf) as serve, attach(serve, low_elf) as gdb:
        gdb.cli("set debug remote 1")
        r = gdb.cli("compare-sections")
        gdb.cli("set debug remote 0")
        assert r.console.count("matched.") == 2 and "MIS" not in r.console, r.console
        # gdb used qCRC (it falls back to reading memory without it).
        assert "qCRC:100000," in r.log and "Packet received: C" in r.log, r.log
        gdb.cli("set {int}&words = 7")
        out = gdb.cli("compare-sections").console
        lines = {line.split(",")[0]: line for line in out.splitlines()}
        assert lines["Section .data"].endswith("MIS-MATCHED!"), out
        assert lines["Section .text"].endswith("matched."), out


def test_compare_sections_by_physical_address_is_an_error_not_a_mismatch():
    with Serve(IRET) as serve, attach(serve, IRET) as gdb:
        r = gdb.cli("compare-sections", check=False)
        assert "MIS-MATCHED" not in r.console
        assert r.message == "error" and r.error.startswith("target memory fault, section .text")


@pytest.mark.parametrize("command", ["compare-sections", "load"])
def test_lgdbg_commands_refuse_load_addresses_with_the_reason(command):
    with Serve(IRET) as serve, attach(serve, IRET, scripts=True) as gdb:
        r = gdb.cli(command, check=False)
        assert r.message == "error", r
        assert r.error.startswith("lgdbg: `%s` uses the sections' load (physical) addresses, "
                                  "but lgdbg's stub serves only the Guest's virtual addresses"
                                  % command), r.error
        assert "Loading section" not in r.console and "MIS-MATCHED" not in r.console
        # Nothing was written: the Guest is intact.
        assert "GenuineLguest" in gdb.cli("x/s guest_entry-13").console
