"""The example guests shipped in lgdbg/images/ are exactly what examples/ builds.

The images are package data so that `lgdbg run` works without binutils; this
test rebuilds them from source in a temporary directory (a different path from
the checkout, so the build must not depend on where it happens) and compares
the bytes.  It also checks the shape every lguest 2.6.23 image needs.
"""

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IMAGES = ROOT / "lgdbg" / "images"
GUESTS = ("hello", "timer", "iret", "faults")
SOURCES = tuple("%s.S" % g for g in GUESTS) + ("lguest.h", "guest.lds")

MAGIC = b"GenuineLguest"
PAGE_OFFSET = 0xC0000000
LD_SIZE = 1128
LD_NOIRQ_START = 1120
LD_NOIRQ_END = 1124


def _have_toolchain():
    for tool in ("make", "gcc", "ld"):
        if shutil.which(tool) is None:
            return "%s not installed" % tool
    return None


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    missing = _have_toolchain()
    if missing:
        pytest.skip("cannot rebuild the example guests: " + missing)
    work = tmp_path_factory.mktemp("rebuild") / "elsewhere" / "examples"
    work.mkdir(parents=True)
    for name in SOURCES + ("Makefile",):
        shutil.copy2(EXAMPLES / name, work / name)
    proc = subprocess.run(["make", "-C", str(work)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work / "build"


@pytest.mark.parametrize("guest", GUESTS)
def test_shipped_image_is_reproducible(rebuilt, guest):
    built = (rebuilt / ("%s.elf" % guest)).read_bytes()
    shipped = (IMAGES / ("%s.elf" % guest)).read_bytes()
    assert built == shipped, (
        "lgdbg/images/%s.elf is stale: run `make -C examples install`" % guest)


@pytest.mark.parametrize("name", SOURCES)
def test_shipped_sources_match_examples(name):
    assert (IMAGES / name).read_bytes() == (EXAMPLES / name).read_bytes(), (
        "lgdbg/images/%s differs from examples/%s: run `make -C examples install`"
        % (name, name))


def _symbols(elf):
    symtab = elf.get_section_by_name(".symtab")
    return {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}


def _read_virt(elf, vaddr, size):
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_LOAD":
            continue
        off = vaddr - seg["p_vaddr"]
        if 0 <= off and off + size <= seg["p_filesz"]:
            return seg.data()[off:off + size]
    raise AssertionError("%#x not in any loaded segment" % vaddr)


@pytest.mark.parametrize("guest", GUESTS)
def test_image_shape(guest):
    with open(IMAGES / ("%s.elf" % guest), "rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 32 and elf["e_machine"] == "EM_386"
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        first = [s for s in loads if s["p_paddr"] == 0x100000]
        assert first and first[0]["p_vaddr"] == 0xC0100000
        for seg in loads:
            assert seg["p_vaddr"] - seg["p_paddr"] == PAGE_OFFSET

        # The Launcher enters the byte after the first "GenuineLguest".
        data = first[0].data()
        assert data.startswith(MAGIC)
        syms = _symbols(elf)
        assert syms["guest_entry"] == 0xC0100000 + len(MAGIC)

        # struct lguest_data: size and the static initial values.
        assert "lguest_data" in syms
        ld = _read_virt(elf, syms["lguest_data"], LD_SIZE)
        irq_enabled, blocked = struct.unpack_from("<II", ld, 0)
        assert (irq_enabled, blocked) == (0, 1)
        assert ld[20:84] == b"\xff" * 64
        noirq = struct.unpack_from("<II", ld, LD_NOIRQ_START)
        if guest == "hello":
            assert noirq == (0, 0)
        else:
            for name in ("lguest_iret", "lguest_noirq_start", "lguest_noirq_end"):
                assert name in syms, name
            assert noirq == (syms["lguest_noirq_start"], syms["lguest_noirq_end"])
            assert syms["lguest_noirq_start"] == syms["lguest_iret"] + 5
            assert syms["lguest_noirq_end"] == syms["lguest_noirq_start"] + 8


def test_iret_guest_templates_and_lguest_iret():
    with open(IMAGES / "iret.elf", "rb") as f:
        elf = ELFFile(f)
        syms = _symbols(elf)
        ld = struct.pack("<I", syms["lguest_data"])
        expect = {
            "cli": b"\xc7\x05" + ld + b"\x00\x00\x00\x00",
            "sti": b"\xc7\x05" + ld + b"\x00\x02\x00\x00",
            "popf": b"\xa3" + ld,
            "pushf": b"\xa1" + ld,
        }
        for name, code in expect.items():
            start, end = syms["lgstart_" + name], syms["lgend_" + name]
            assert _read_virt(elf, start, end - start) == code, name
        iret = _read_virt(elf, syms["lguest_iret"], 13)
        assert iret == b"\x50\x8b\x44\x24\x0c\x36\xa3" + ld + b"\x58\xcf"
        assert "main_loop" in syms and "timer_interrupt" in syms
