"""lgdbg.paravirt and lgdbg.elf32: patch-site names and states, the tiny ELF reader.

The kernel tests (test_kernel_gdb.py) check them on the real 2.6.23 Guest;
these check the rules on bytes and files built here, and need no kernel.
"""

import struct
import subprocess

import pytest

from lgdbg import paravirt
from lgdbg.elf32 import Elf32, ElfError
from lgdbg.images import path_of

CLI_TEMPLATE = bytes.fromhex("c705 60a21cc0 00000000")      # movl $0, lguest_data


def test_names_follow_the_config():
    plain = paravirt.op_names_for()
    assert len(plain) == 79                        # the lguest kernel's sizeof = 316
    assert plain[28:32] == ["save_fl", "restore_fl", "irq_disable", "irq_enable"]
    assert plain[-2:] == ["irq_enable_sysexit", "iret"]
    apic = paravirt.op_names_for(local_apic=True)
    assert apic.index("flush_tlb_user") == plain.index("flush_tlb_user") + 6
    assert paravirt.op_names_for_size(316) == plain
    assert paravirt.op_names_for_size(len(apic) * 4) == apic
    assert paravirt.op_names_for_size(12) is None
    assert paravirt.type_name(plain, 78) == "iret" and paravirt.type_name(plain, 200) == \
        "type 200"


def test_names_from_fields_by_offset():
    assert paravirt.op_names_from_fields([("a", 0), ("c", 8), ("odd", 9)]) == \
        ["a", "type 1", "c"]
    assert paravirt.op_names_from_fields([]) is None


def test_parse_sites():
    raw = struct.pack("<IBBH", 0xc0101000, 30, 10, 7) + struct.pack("<IBBH", 0xc0102000, 78,
                                                                       7, 0) + b"\x01\x02"
    assert paravirt.parse_sites(raw) == [(0xc0101000, 30, 10, 7), (0xc0102000, 78, 7, 0)]


@pytest.mark.parametrize("raw, nops", [
    (b"", True), (b"\x90" * 3, True), (bytes.fromhex("8d742600 90"), True),
    (bytes.fromhex("666690 6690"), True), (bytes.fromhex("0f1f440000"), True),
    (bytes.fromhex("8d7401"), False), (b"\xcc", False)])
def test_is_nops(raw, nops):
    assert paravirt.is_nops(raw) is nops


def test_classify_each_state():
    site = 0xc0101000
    original = bytes.fromhex("5152ff1518f31bc05a59")   # push; push; call *paravirt_ops+..
    c = paravirt.classify
    assert c(None, original, CLI_TEMPLATE, site) == ("unreadable", None)
    assert c(CLI_TEMPLATE, original, CLI_TEMPLATE, site) == ("template", None)
    assert c(original, original, CLI_TEMPLATE, site) == ("original", None)
    # a template padded with NOPs where the site is longer
    assert c(bytes.fromhex("a160a21cc0") + bytes.fromhex("8d742600 90"), original,
             bytes.fromhex("a160a21cc0"), site)[0] == "template"
    call = b"\xe8" + struct.pack("<i", 0x100 - 5) + b"\x90" * 5
    assert c(call, original, None, site) == ("call", site + 0x100)
    jmp = b"\xe9" + struct.pack("<i", -0x1000 - 5) + b"\x89\xf6"
    assert c(jmp, original, None, site) == ("jmp", site - 0x1000)
    assert c(b"\x90" * 10, original, None, site) == ("nops", None)
    assert c(b"\xcc" * 10, original, None, site, freed_init=True) == ("freed", None)
    assert c(b"\xcc" * 10, original, None, site) == ("other", None)
    assert c(b"\x0f\x0b" + b"\x90" * 8, original, None, site) == ("other", None)   # ud2a


def test_elf32_reads_the_iret_example():
    elf = Elf32(path_of("iret"))
    sec = elf.section(".parainstructions")
    assert sec is not None and len(elf.contents(sec)) % 8 == 0
    addr, size = elf.symbol("lguest_data")
    assert addr == 0xc0100610
    text = elf.section(".text")
    assert elf.read(text.addr, 4) == elf.contents(text)[:4]
    assert elf.read(0x1000, 4) is None
    assert elf.symbol("paravirt_ops") is None            # an example, not a paravirt kernel


def test_elf32_refuses_other_files(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an elf at all" * 4)
    with pytest.raises(ElfError, match="not an ELF file"):
        Elf32(str(junk))
    with pytest.raises(ElfError, match="cannot read"):
        Elf32(str(tmp_path / "missing"))
    cut = tmp_path / "cut"
    cut.write_bytes(open(path_of("iret"), "rb").read()[:200])
    with pytest.raises(ElfError, match="cut short"):
        Elf32(str(cut))
    obj = tmp_path / "x64.o"
    src = tmp_path / "x.c"
    src.write_text("int x;\n")
    if subprocess.run(["gcc", "-c", str(src), "-o", str(obj)]).returncode == 0:
        with pytest.raises(ElfError, match="32-bit"):
            Elf32(str(obj))
