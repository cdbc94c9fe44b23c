"""The front ends on the real Linux 3.2.65 Guest (the later lguest ABI, issue 18).

One `lgdbg serve VMLINUX32` with the real /usr/bin/gdb attached through MI
(tests/gdbmi.py) serves the module; the tests run in file order and only move
the Guest forward: its first hypercalls (caught), lguest_iret's first hit (the
WP test's fault, ~8 M instructions in), then rest_init (after apply_paravirt).
Then gdb on the kernel without debug info, the REPL's batch mode, and a trace.

Expectations come from elsewhere than lgdbg: struct lguest_data's fields as
gdb evaluates them from the DWARF, the hypercall numbers from the 3.2 source's
asm/lguest_hcall.h, the patch-site table read with pyelftools, the patch type
numbers as gdb computes offsetof(struct paravirt_patch_template, X) / 4.

The kernel comes from LGDBG_TEST_KERNEL32 or ../shared/kernel-3.2/
(kernelboot.vmlinux32): without one these tests skip, or fail when CI=true.
"""

import json
import os
import re
import struct
import subprocess
import sys

import pytest

import kernelboot
from gdbmi import GDB, ROOT, Gdb, Serve, cli, cont, refused, value
from kernelboot import vmlinux32  # noqa: F401  (the session fixture)

if kernelboot.missing_kernel("3.2") and not kernelboot.in_ci():
    pytest.skip(kernelboot.missing_kernel("3.2"), allow_module_level=True)
pytestmark = pytest.mark.skipif(not os.path.exists(GDB), reason="needs gdb (%s)" % GDB)

LOADER = os.path.join(ROOT, "gdb_scripts", "lguest.py")
SRC = kernelboot.KERNEL32_SRC
BUILD_DIR = "linux-3.2.65"                      # the DWARF's (relative) paths
RUN_TIMEOUT = 300
FIELDS = ("irq_enabled", "blocked_interrupts", "cr2", "irq_pending", "reserve_mem",
          "tsc_khz", "noirq_start", "noirq_end", "kernel_address", "syscall_vec")


def header_hcalls():
    """{number: name} from the 3.2 source's arch/x86/include/asm/lguest_hcall.h."""
    with open(os.path.join(SRC, "arch/x86/include/asm/lguest_hcall.h")) as f:
        return {int(n): name for name, n in
                re.findall(r"^#define LHCALL_(\w+)\s+(\d+)\s*$", f.read(), re.M)
                if name != "RING_SIZE"}             # the ring's length, not a call


class Kernel:
    """The 3.2 kernel's patch-site table and symbols, read with pyelftools."""

    def __init__(self, path):
        from elftools.elf.elffile import ELFFile
        with open(path, "rb") as f:
            elf = ELFFile(f)
            raw = elf.get_section_by_name(".parainstructions").data()
        self.sites = [struct.unpack_from("<IBBH", raw, i) for i in range(0, len(raw), 8)]

    def count(self, ptype):
        return sum(1 for _, t, _, _ in self.sites if t == ptype)


@pytest.fixture(scope="module")
def kernel(vmlinux32):  # noqa: F811
    return Kernel(vmlinux32)


@pytest.fixture(scope="module")
def session(vmlinux32):  # noqa: F811
    """gdb on `lgdbg serve vmlinux32`, at the kernel's first instruction."""
    stub = Serve(vmlinux32, "--mem", "64")
    g = Gdb(timeout=60)
    try:
        g.cli("source %s" % LOADER)
        g.cli("file %s" % vmlinux32, timeout=120)
        g.cli("set substitute-path %s %s" % (BUILD_DIR, SRC))
        g.mi("-target-select remote %s" % stub.address, timeout=60)
        yield g
    finally:
        g.close()
        stub.close()


# ---- at the first instruction, and the first hypercalls ----------------------------

def test_the_stub_tells_the_abi(session):
    g = session
    status = json.loads(cli(g, "monitor json lguest status"))
    assert (status["abi"], status["layout"]) == ("3.2", "3.2")
    assert status["eip"] == value(g, "$pc")
    assert "ABI:           3.2 (lguest_data layout 3.2)" in cli(g, "monitor lguest status")
    assert "ABI: lguest 3.2 (lguest_data layout 3.2)" in cli(g, "lguest-status")


def test_catch_takes_the_3_2_hypercall_names(session):
    g = session
    names = header_hcalls()
    assert "CRASH" not in names.values() and names[2] == "SHUTDOWN"     # the source's word
    err = refused(g, "lguest-catch hcall CRASH")        # 2.6.23's name for 2
    assert "unknown hypercall 'CRASH' in the 3.2 ABI" in err and "SHUTDOWN" in err
    assert "no hypercall number 3 in the 3.2 ABI" in refused(g, "lguest-catch hcall 3")
    cli(g, "lguest-catch hcall 2")
    assert re.search(r"^1\s+catch hcall\s+%s \(2\)$" % names[2], cli(g, "lguest-catch list"),
                     re.M)
    cli(g, "lguest-catch delete 1")
    assert "lguest catchpoint 2 (hcall LOAD_GDT_ENTRY)" in \
        cli(g, "lguest-catch hcall load_gdt_entry")
    stop = cont(g)
    assert stop["frame"]["func"] == "lguest_load_gdt", stop
    cli(g, "lguest-catch delete 2")
    events = json.loads(cli(g, "monitor json hcalls 3"))
    assert [e["name"] for e in events] == [names[e["nr"]] for e in events] == \
        ["LGUEST_INIT", "NEW_PGTABLE", "LOAD_GDT_ENTRY"]
    text = cli(g, "lguest-hcalls 3")
    assert "LGUEST_INIT lguest_data=%#x" % (value(g, "&lguest_data") - 0xC0000000) in text
    gdt_entry = next(line for line in text.splitlines() if "LOAD_GDT_ENTRY" in line)
    # LOAD_GDT_ENTRY's arguments by the 3.2 registers: EBX index, ECX lo, EDX hi
    assert re.search(r"LOAD_GDT_ENTRY index=0x0 lo=%#x hi=%#x$" % tuple(events[2]["args"][1:3]),
                     gdt_entry), gdt_entry


# ---- lguest_iret's first hit ------------------------------------------------------------

def test_lguest_data_is_the_3_2_struct(session):
    g = session
    cli(g, "tbreak lguest_iret")
    assert cont(g)["frame"]["func"] == "lguest_iret"
    text = cli(g, "lguest-data")
    ld = value(g, "&lguest_data")
    # the DWARF's struct matched the built-in 3.2 layout, five-word ring slots included
    assert text.startswith("struct lguest_data at %#010x <lguest_data> (layout 3.2)" % ld), text
    for field in FIELDS:
        # blocked_interrupts is an array of one word: its first
        want = value(g, "lguest_data.%s" % field + ("[0]" if field == "blocked_interrupts" else ""))
        m = re.search(r"^\s+%s\s+(0x[0-9a-f]+|\d+)" % field, text, re.M)
        assert m, (field, text)
        assert int(m.group(1), 0) == want, (field, text)
    assert value(g, "&lguest_data.noirq_start") - ld == 1376            # not 2.6.23's 1120
    assert "guestid" not in text
    pending = sum(1 for i in range(64) if value(g, "lguest_data.hcall_status[%d]" % i) != 0xFF)
    assert ("all 64 slots done" in text) == (pending == 0), text


def test_noirq_window_is_the_3_2_one(session):
    g = session
    start, end = value(g, "&lguest_noirq_start"), value(g, "&lguest_noirq_end")
    assert (value(g, "lguest_data.noirq_start"), value(g, "lguest_data.noirq_end")) == \
        (start, end)
    text = cli(g, "lguest-noirq")
    assert text.startswith("inside the noirq window: no (EIP %#010x <lguest_iret>)"
                           % value(g, "&lguest_iret")), text
    assert "[%#010x <lguest_noirq_start>, %#010x <lguest_noirq_end>), %d bytes" \
        % (start, end, end - start) in text

    def in_noirq(arg=""):
        return value(g, "$lguest_in_noirq(%s)" % arg)
    assert in_noirq() == 0
    assert in_noirq("%#x" % (start - 1)) == 0 and in_noirq("%#x" % start) == 1
    assert in_noirq("%#x" % (end - 1)) == 1 and in_noirq("%#x" % end) == 0
    # The words at 2.6.23's offsets (1120/1124) are a slot of 3.2's hypercall ring:
    # whatever they hold, the window stays the 3.2 fields'.
    ld = value(g, "&lguest_data")
    saved = [value(g, "*(unsigned *)%#x" % (ld + off)) for off in (1120, 1124)]
    try:
        cli(g, "set var *(unsigned *)%#x = %#x" % (ld + 1120, start - 0x100))
        cli(g, "set var *(unsigned *)%#x = %#x" % (ld + 1124, end + 0x100))
        assert in_noirq() == 0 and in_noirq("%#x" % (start - 1)) == 0
        assert "%d bytes" % (end - start) in cli(g, "lguest-noirq")
    finally:
        for off, v in zip((1120, 1124), saved):
            cli(g, "set var *(unsigned *)%#x = %#x" % (ld + off, v))
    cli(g, "stepi 2")                                   # push; mov: at lguest_noirq_start
    assert value(g, "$pc") == start and in_noirq() == 1
    assert cli(g, "lguest-noirq").startswith("inside the noirq window: yes")
    assert value(g, "$lguest_irq_enabled()") == value(g, "lguest_data.irq_enabled")


def test_irq_and_host_on_3_2(session):
    g = session
    irq = cli(g, "lguest-irq")
    assert "blocked irqs: 0" in irq and "verdict:" in irq
    host = cli(g, "lguest-host")
    assert re.search(r"ss1 0x69\s+esp1 0x", host), host


# ---- after apply_paravirt ----------------------------------------------------------------

def patch_type(g, name):
    """PARAVIRT_PATCH(name), as gdb computes it from the DWARF."""
    return value(g, "(unsigned)&((struct paravirt_patch_template *)0)->%s / 4" % name)


def test_patches_on_3_2(session, kernel):
    g = session
    cli(g, "tbreak rest_init")
    assert cont(g)["frame"]["func"] == "rest_init"
    text = cli(g, "lguest-patches --summary")
    assert "%d paravirt patch sites" % len(kernel.sites) in text
    assert "types named from debug info (struct paravirt_patch_template)" in text
    states, types = kernelboot.parse_patch_summary(text)
    for name, counts in types.items():
        assert sum(counts.values()) == kernel.count(patch_type(g, name)), name
    # lguest_patch (boot.c) copies its template (lguest_insns: cli for irq_disable,
    # pushf for save_fl) into every site of that type long enough to hold it,
    # and leaves the rest to paravirt_patch_default.
    templates = 0
    for op, tmpl in (("irq_disable", "cli"), ("save_fl", "pushf")):
        length = value(g, "(char *)&lgend_%s - (char *)&lgstart_%s" % (tmpl, tmpl))
        ptype = patch_type(g, "pv_irq_ops." + op)
        fits = sum(1 for _, t, n, _ in kernel.sites if t == ptype and n >= length)
        assert types["pv_irq_ops." + op].get("template", 0) == fits, (op, types)
        templates += fits
    assert states.get("template", 0) == templates
    iret = cli(g, "lguest-patches --type pv_cpu_ops.iret")
    assert re.search(r"jmp 0x\w+ <lguest_iret>", iret), iret
    session.summary = text.splitlines()[-1]


def test_journey_on_3_2(session):
    g = session
    cli(g, "tbreak lguest_iret")
    cont(g)
    text = cli(g, "lguest-journey")
    assert text.startswith("pc %#010x <lguest_iret> is at arch/x86/lguest/i386_head.S:"
                           % value(g, "&lguest_iret")), text
    assert "\nG:045 arch/x86/lguest/i386_head.S:" in text
    assert "lguest_noirq_start:" in text and "lguest_noirq_end:" in text


# ---- without debug info ------------------------------------------------------------------

@pytest.fixture(scope="module")
def nodebug(vmlinux32, tmp_path_factory):  # noqa: F811
    """The kernel with its symbols but without DWARF (objcopy --strip-debug)."""
    out = tmp_path_factory.mktemp("nodebug") / "vmlinux"
    subprocess.run(["objcopy", "--strip-debug", vmlinux32, str(out)], check=True)
    return str(out)


def test_without_debug_info_the_stub_says_3_2(session, nodebug, vmlinux32):  # noqa: F811
    """The same stop, the symbols only: the layout is the stub's ABI's."""
    g = session
    with_dwarf = cli(g, "lguest-data")
    cli(g, "file %s" % nodebug)
    try:
        res = g.cli("ptype struct lguest_data", check=False)
        assert res.message == "error"                     # really no DWARF now
        assert cli(g, "lguest-data") == with_dwarf
        assert value(g, "$lguest_in_noirq(lguest_noirq_start)") == 1
    finally:
        cli(g, "file %s" % vmlinux32)


def test_bare_elf_without_debug_info(nodebug):
    """No target, no DWARF: the symbols say 3.2 (a boot-protocol kernel)."""
    with Gdb(timeout=60) as g:
        g.cli("source %s" % LOADER)
        g.cli("file %s" % nodebug, timeout=120)
        text = cli(g, "lguest-data")
        assert "(layout 3.2)" in text
        start = int(re.search(r"0x[0-9a-f]+", cli(g, "p/x &lguest_noirq_start")).group(0), 16)
        assert re.search(r"noirq_start\s+%#010x <lguest_noirq_start>" % start, text), text
        assert re.search(r"syscall_vec\s+0x80$", text, re.M), text
        assert value(g, "$lguest_in_noirq(%#x)" % start) == 1


# ---- the REPL and the trace --------------------------------------------------------------

REPL_SCRIPT = """\
catch hcall crash
catch hcall shutdown
catch list
break lguest_iret
continue
data
noirq
status
delete 1
break rest_init
continue
patches --summary
"""


@pytest.fixture(scope="module")
def repl(vmlinux32, tmp_path_factory):  # noqa: F811
    script = tmp_path_factory.mktemp("repl32") / "views.lgdbg"
    script.write_text(REPL_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "lgdbg", "repl", "--batch", str(script),
                        "--mem", "64", vmlinux32],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert "Traceback" not in r.stdout + r.stderr
    outputs, current = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"^\S+> (.*)$", line)
        if m and m.group(1) in REPL_SCRIPT.splitlines():
            current = m.group(1)
            outputs[current] = []
        elif current:
            outputs[current].append(line)
    return {k: "\n".join(v) for k, v in outputs.items()}, r


def test_repl_on_3_2(repl, session, kernel):
    out, r = repl
    assert r.returncode == 1                           # `catch hcall crash` fails on purpose
    assert r.stderr.strip().splitlines() == [
        "unknown 3.2 hypercall 'crash' (known: %s)" % " ".join(sorted(header_hcalls().values()))]
    assert re.search(r"^1\s+catch hcall\s+SHUTDOWN$", out["catch list"], re.M), out
    data = out["data"]
    assert data.splitlines()[0].endswith("<lguest_data> (layout 3.2)"), data
    g = session
    for field in ("noirq_start", "noirq_end", "kernel_address", "syscall_vec", "reserve_mem"):
        m = re.search(r"^\s+%s\s+(0x[0-9a-f]+)" % field, data, re.M)
        assert m and int(m.group(1), 16) == value(g, "lguest_data.%s" % field), field
    assert "<lguest_noirq_start>, " in out["noirq"] and "<lguest_noirq_end>), 8 bytes" in \
        out["noirq"]
    assert "ABI: lguest 3.2" in out["status"]
    # the REPL has no DWARF: its names come from the built-in 3.2 table, and say the same
    repl_summary = next(l for l in out["patches --summary"].splitlines()
                        if l.startswith("summary: "))
    assert "types named from arch/x86/include/asm/paravirt_types.h of 3.2" in \
        out["patches --summary"]
    assert repl_summary == session.summary


def test_trace_and_timeline_name_3_2_calls(vmlinux32, tmp_path):  # noqa: F811
    trace = tmp_path / "t.jsonl"
    r = subprocess.run([sys.executable, "-m", "lgdbg", "run", vmlinux32, "--mem", "64",
                        "--max-insns", "9000000", "--trace", str(trace)],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert r.returncode == 3, r.stderr
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert events[0]["kind"] == "boot" and events[0]["abi"] == "3.2"
    names = header_hcalls()
    hcalls = [e for e in events if e["kind"] == "hcall"]
    assert hcalls and all(e["name"] == names[e["nr"]] for e in hcalls)
    from lgdbg.timeline.trace import read_trace
    tl = read_trace(str(trace))
    titles = [tl.title(track, i) for lane in tl.lanes for track in lane.tracks.values()
              if track.name in ("hcall", "hcall-pt") for i in range(len(track))]
    gdt = [t for t in titles if t.startswith("LOAD_GDT_ENTRY ")]
    assert gdt and all(re.search(r"; LOAD_GDT_ENTRY index=0x[0-9a-f]+ lo=0x", t) for t in gdt)
    assert any("SET_PGD pgdir=" in t for t in titles) == \
        any(names[e["nr"]] == "SET_PGD" for e in hcalls)
