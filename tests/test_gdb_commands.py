"""The lguest-* gdb commands, in the real /usr/bin/gdb (never a mock).

Memory-only commands run on the bare ELF (gdb reads an image's static memory
without a target); the Host-side ones run against `lgdbg serve` on the
example guests.  Every command goes through MI with a numeric token and the
test reads until that token's result record (tests/gdbmi.py).
"""

import os
import re
import shutil
import subprocess

import pytest

from gdbmi import GDB, ROOT, Gdb, GdbError, Serve

IMAGES = os.path.join(ROOT, "lgdbg", "images")
LOADER = os.path.join(ROOT, "gdb_scripts", "lguest.py")
HAVE_STUB = os.path.isfile(os.path.join(ROOT, "lgdbg", "gdbstub", "serve_command.py"))

COMMANDS = ("lguest-data", "lguest-noirq", "lguest-irq", "lguest-step-irq", "lguest-hcalls",
            "lguest-idt", "lguest-host", "lguest-catch", "lguest-patches", "lguest-journey",
            "lguest-pgtable", "lguest-virtio")

pytestmark = pytest.mark.skipif(not os.path.exists(GDB), reason="needs gdb (%s)" % GDB)
needs_stub = pytest.mark.skipif(not HAVE_STUB, reason="lgdbg/gdbstub (the RSP stub) is "
                                "not written yet: Host-side commands need it")


def image(name):
    return os.path.join(IMAGES, name + ".elf")


def gdb_on(name=None):
    g = Gdb()
    g.cli("source %s" % LOADER)
    if name:
        g.cli("file %s" % image(name))
    return g


def no_traceback(res):
    text = res.console + res.log + (res.error or "")
    assert "Traceback" not in text and "Error occurred in Python" not in text, text


def error_of(g, command):
    res = g.cli(command, check=False)
    assert res.message == "error", (command, res.console)
    no_traceback(res)
    return res.error


@pytest.fixture
def plain():
    g = gdb_on("iret")
    yield g
    g.close()


@pytest.fixture
def bare():
    g = gdb_on()
    yield g
    g.close()


def connected(name, *serve_args):
    """gdb attached to `lgdbg serve NAME`, stopped at the guest's entry."""
    stub = Serve(image(name), *serve_args)
    g = gdb_on(name)
    g.mi("-target-select remote %s" % stub.address)
    return stub, g


@pytest.fixture
def iret():
    stub, g = connected("iret")
    yield g
    g.close()
    stub.close()


def run_to(g, location):
    g.cli("tbreak %s" % location)
    g.mi("-exec-continue")
    stop = g.wait_stopped()
    assert stop.get("reason") == "breakpoint-hit", stop
    return stop


# --------------------------------------------------------------- help, loading

def test_help_lguest_lists_every_command(plain):
    text = plain.cli("help lguest").console
    for cmd in COMMANDS:
        assert cmd in text
    for fn in ("$lguest_irq_enabled", "$lguest_in_noirq", "$lguest_pending"):
        assert fn in text


def test_apropos_finds_the_commands(plain):
    text = plain.cli("apropos lguest").console
    for cmd in COMMANDS:
        assert re.search(r"^%s -- " % re.escape(cmd), text, re.M), (cmd, text)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help_with_usage(plain, cmd):
    text = plain.cli("help %s" % cmd).console
    first = text.strip().splitlines()[0]
    assert first.endswith("."), first          # one sentence
    assert "Usage: %s" % cmd in text


def test_readline_is_never_imported_and_completion_works(plain):
    plain.cli("lguest-data")
    plain.cli("lguest-patches")
    text = plain.cli('python import sys; print(sorted(m for m in ("readline", '
                     '"prompt_toolkit", "unicorn", "capstone", "pygdbmi") if m in sys.modules))'
                     ).console
    assert text.strip() == "[]"
    # gdb's own completion still answers, for our commands and gdb's.
    res = plain.mi('-complete "lguest-ca"')
    assert "lguest-catch" in res.payload["matches"]
    res = plain.mi('-complete "lguest-catch hcall SET_C"')
    assert any(m.endswith("SET_CLOCKEVENT") for m in res.payload["matches"])
    res = plain.mi('-complete "info registe"')
    assert res.payload["matches"]


def test_loading_twice_is_harmless(plain):
    plain.cli("source %s" % LOADER)
    assert "lguest-data" in plain.cli("help lguest").console


def test_auto_load_script_beside_the_image():
    g = Gdb(args=["-iex", "add-auto-load-safe-path %s" % IMAGES])
    try:
        g.cli("file %s" % image("timer"))
        text = g.cli("lguest-noirq lguest_noirq_start").console
        assert "inside the noirq window: yes" in text
        # the sources ship beside the image and gdb finds them
        assert "lguest_iret" in g.cli("list lguest_iret").console
    finally:
        g.close()


def test_every_image_has_an_auto_load_script():
    for name in ("hello", "timer", "iret", "faults"):
        assert os.path.isfile(image(name) + "-gdb.py")


# --------------------------------------------------------------- memory only

def test_lguest_data_on_the_plain_elf(plain):
    text = plain.cli("lguest-data").console
    assert "struct lguest_data at 0xc0100610 <lguest_data> (layout 2.6.23)" in text
    assert re.search(r"irq_enabled\s+0x0 \(disabled\)", text)
    assert re.search(r"blocked_interrupts\s+0x00000001 \(blocked irqs 0\)", text)
    # the window's own labels, not lguest_iret+5 / console_write at the same addresses
    assert re.search(r"noirq_start\s+0xc0100321 <lguest_noirq_start>", text)
    assert re.search(r"noirq_end\s+0xc0100329 <lguest_noirq_end>", text)
    assert re.search(r"hcall_status\s+all 64 slots done", text)
    # the same from an explicit address, and the later layout on request
    assert plain.cli("lguest-data 0xc0100610").console == text
    assert "unknown layout" in error_of(plain, "lguest-data --layout 9.9")


def test_lguest_data_layout_from_debug_info(tmp_path):
    """An image whose debug info has struct lguest_data (2.6.24's) decodes with it."""
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    src = tmp_path / "ld.c"
    src.write_text(
        "struct hcall_args { unsigned long arg0, arg2, arg3, arg1; };\n"
        "struct timespec { long tv_sec, tv_nsec; };\n"
        "struct lguest_data { unsigned long irq_enabled, blocked_interrupts, cr2;\n"
        "  struct timespec time; unsigned char hcall_status[64];\n"
        "  struct hcall_args hcalls[64]; unsigned long reserve_mem, tsc_khz, pgdir,\n"
        "  noirq_start, noirq_end, kernel_address; unsigned int syscall_vec; };\n"
        "struct lguest_data lguest_data = { .irq_enabled = 0x200, .tsc_khz = 1234,\n"
        "  .pgdir = 0x5000, .syscall_vec = 0x80, .hcall_status = {\n"
        "  [0 ... 63] = 0xff } };\n")
    obj = tmp_path / "ld.o"
    subprocess.run(["gcc", "-m32", "-g", "-c", "-ffreestanding", "-fno-pic", str(src),
                    "-o", str(obj)], check=True)
    g = gdb_on()
    try:
        g.cli("file %s" % obj)
        text = g.cli("lguest-data").console
        assert "(layout 2.6.24)" in text
        assert re.search(r"tsc_khz\s+1234", text)
        assert re.search(r"pgdir\s+0x5000", text)
        assert re.search(r"irq_enabled\s+0x200 \(enabled\)", text)
    finally:
        g.close()


def test_lguest_noirq_marks_the_instruction(plain):
    text = plain.cli("lguest-noirq 0xc0100327").console
    assert text.startswith("inside the noirq window: yes")
    assert "[0xc0100321 <lguest_noirq_start>, 0xc0100329 <lguest_noirq_end>)" in text
    marked = [l for l in text.splitlines() if "=>" in l]
    assert len(marked) == 1 and "0xc0100327" in marked[0] and "pop" in marked[0]
    assert "iret" in text
    text = plain.cli("lguest-noirq lguest_iret").console
    assert text.startswith("inside the noirq window: no")
    assert "=> 0xc010031c <lguest_iret>" in text


def test_lguest_patches_on_the_plain_elf(plain):
    text = plain.cli("lguest-patches").console
    for name, size in (("cli", 10), ("sti", 10), ("popf", 5), ("pushf", 5)):
        assert re.search(r"^%s: \[0x\w+ <lgstart_%s>, .*\), %d bytes: " % (name, name, size),
                         text, re.M), text
    assert "c7 05 10 06 10 c0 00 00 00 00" in text       # movl $0, lguest_data
    assert "movl   $0x0,0xc0100610" in text
    assert text.count("not patched (yet)") == 4          # the guest patches them at boot


def test_functions_on_the_plain_elf(plain):
    assert plain.cli("print $lguest_in_noirq(0xc0100322)").console.strip().endswith("= 1")
    assert plain.cli("print $lguest_in_noirq(main_loop)").console.strip().endswith("= 0")
    assert plain.cli("print $lguest_irq_enabled()").console.strip().endswith("= 0")


# --------------------------------------------------------------- misuse

def test_host_commands_off_the_stub_say_so(plain):
    for cmd in ("lguest-irq", "lguest-step-irq", "lguest-hcalls", "lguest-idt", "lguest-host",
                "lguest-catch hcall", "lguest-irq raise 0", "print $lguest_pending()"):
        assert "lgdbg's stub" in error_of(plain, cmd), cmd


def test_misuse_is_a_clean_error(plain, bare):
    assert "file IMAGE" in error_of(bare, "lguest-data")
    assert "file IMAGE" in error_of(bare, "lguest-patches")
    assert "file IMAGE" in error_of(bare, "lguest-journey")
    assert "no registers" in error_of(plain, "lguest-noirq")
    assert "out of range" in error_of(plain, "lguest-irq raise 99")
    assert "Usage: lguest-irq" in error_of(plain, "lguest-irq poke")
    assert "unknown hypercall" in error_of(plain, "lguest-catch hcall NOPE")
    assert "Usage: lguest-catch" in error_of(plain, "lguest-catch")
    assert "N must be a number" in error_of(plain, "lguest-hcalls many")
    assert "cannot evaluate" in error_of(plain, "lguest-noirq no_such_symbol")
    assert "no fragment" in error_of(plain, "lguest-journey G:999")
    assert "Usage: lguest-step-irq" in error_of(plain, "lguest-step-irq --now")
    # the site filters belong to a paravirt kernel's view, not the examples'
    assert "paravirt kernel" in error_of(plain, "lguest-patches --summary")


def test_journey_walks_without_a_target(plain):
    text = plain.cli("lguest-journey G:070").console
    assert text.startswith("G:070 lgdbg/images/iret.S:")
    assert "break *0xc0100201 to go there" in text
    nxt = plain.cli("lguest-journey next").console
    assert nxt.startswith("G:080 ") and "prev: G:070  next: (end of tour)" in nxt
    assert "end of the tour" in error_of(plain, "lguest-journey next")
    assert plain.cli("lguest-journey prev").console.startswith("G:070 ")


# --------------------------------------------------------------- against the stub

@needs_stub
def test_irq_explains_and_step_irq_lands_on_the_handler(iret):
    g = iret
    run_to(g, "main_loop")
    text = g.cli("lguest-irq").console
    assert "verdict: nothing to deliver (no irq is pending)" in text
    text = g.cli("lguest-irq raise 0").console
    assert "pending irqs: 0" in text
    assert ("would deliver irq 0 to 0xc0100201 <timer_interrupt> through an interrupt gate"
            in text)
    g.register("eip")                     # gdb caches the registers here
    text = g.cli("lguest-step-irq").console
    assert "delivered irq 0 (vector 0x20) through an interrupt gate" in text
    assert "handler:     0xc0100201 <timer_interrupt>" in text
    assert "eflags  0x246 (IF set)" in text
    assert "cs      0x61" in text
    assert "irq_enabled: 0x200 -> 0x0" in text
    assert "#0  timer_interrupt ()" in text            # the frame, from fresh registers
    assert g.register("eip") == 0xc0100201
    assert "timer_interrupt" in g.cli("info registers eip").console
    text = g.cli("lguest-step-irq").console
    assert text.splitlines()[-1].startswith("not delivered: no irq is pending")


@needs_stub
def test_step_irq_until_reports_the_deferral(iret):
    g = iret
    run_to(g, "*0xc010031d")                 # lguest_iret+1, just before the window
    g.cli("lguest-irq raise 0")
    text = g.cli("lguest-step-irq").console
    assert "not delivered" in text
    text = g.cli("lguest-step-irq --until").console
    assert "delivered irq 0" in text
    assert re.search(r"deferred by \d+ instructions", text)
    assert "inside the noirq window at 0xc0100321 <lguest_noirq_start>" in text


def at_idle_loop_after_a_tick(g):
    """timer: just back from the first HALT (woken, the tick handled and
    returned through lguest_iret), so irq_enabled is 0x200."""
    text = g.cli("x/8i idle_loop").console
    after_halt = re.search(r"int\s+\$0x1f\n\s*(0x[0-9a-f]+)", text).group(1)
    run_to(g, "*" + after_halt)
    # lguest_iret copied the frame's whole EFLAGS word: non-zero means enabled
    assert int(g.cli("print $lguest_irq_enabled()").console.split("=")[1]) & 0x200


@needs_stub
@pytest.mark.parametrize("irq, gate, after, handler", [
    (0, "an interrupt gate", "0x0", "timer_interrupt"),
    (1, "a trap gate", "unchanged", "irq1_trap"),
])
def test_timer_guest_gates(irq, gate, after, handler):
    stub, g = connected("timer")
    try:
        at_idle_loop_after_a_tick(g)
        g.cli("lguest-irq raise %d" % irq)
        text = g.cli("lguest-step-irq").console
        assert "delivered irq %d (vector %#x) through %s" % (irq, 0x20 + irq, gate) in text
        before_after = re.search(r"^  irq_enabled: (0x\w+) -> (0x\w+)$", text, re.M)
        assert before_after, text
        before, now = before_after.groups()
        assert int(before, 16) & 0x200
        assert now == (before if after == "unchanged" else after)
        assert "eflags  0x2" in text and "(IF set)" in text
        assert handler in g.cli("info registers eip").console
        text = g.cli("lguest-idt").console
        assert re.search(r"0x20\s+0\s+0x\w+ <timer_interrupt>\s+interrupt", text)
        assert re.search(r"0x21\s+1\s+0x\w+ <irq1_trap>\s+trap", text)
    finally:
        g.close()
        stub.close()


@needs_stub
def test_hcalls_idt_host_status(iret):
    g = iret
    run_to(g, "main_loop")
    text = g.cli("lguest-hcalls 3").console
    lines = text.strip().splitlines()
    assert lines[0].split() == ["icount", "time_ns", "eip", "call"] and len(lines) == 4
    assert "SET_CLOCKEVENT delta_ns=50000" in lines[-1]
    assert "LOAD_IDT_ENTRY vector=0x20" in text and "interrupt gate to 0xc0100201" in text
    assert g.cli("lguest-hcalls 0").console.strip() == "no hypercalls yet"
    text = g.cli("lguest-idt").console
    assert re.search(r"^0x20\s+0\s+0xc0100201 <timer_interrupt>\s+interrupt\s+0\s+the Host$",
                     text, re.M)
    text = g.cli("lguest-host").console
    assert "GDT entries" in text and "kernel stack (SET_STACK)" in text
    assert "clock event: fires at" in text and "next Host tick:" in text
    assert "halted: no" in text
    text = g.cli("lguest-status").console
    assert "lguest_data: 0xc0100610 <lguest_data>" in text
    text = g.cli("lguest-data").console
    assert re.search(r"irq_enabled\s+0x200 \(enabled\)", text)
    assert re.search(r"reserve_mem\s+0x400000 \(4 MiB\)", text)
    assert "call sites (1):" in g.cli("lguest-patches").console
    assert "not patched" not in g.cli("lguest-patches").console


@needs_stub
def test_catch_set_clockevent_then_continue_stops_there(iret):
    g = iret
    text = g.cli("lguest-catch hcall SET_CLOCKEVENT").console
    assert re.match(r"lguest catchpoint (\d+) \(hcall SET_CLOCKEVENT\)", text), text
    number = re.match(r"lguest catchpoint (\d+)", text).group(1)
    listed = g.cli("lguest-catch list").console
    assert re.search(r"^%s\s+catch hcall\s+SET_CLOCKEVENT$" % number, listed, re.M)
    g.mi("-exec-continue")
    g.wait_stopped()
    last = g.cli("lguest-hcalls 1").console
    assert "SET_CLOCKEVENT" in last
    eip = g.register("eip")
    # the event names the int $0x1f; the guest stopped right after it (2 bytes)
    call_eip = int(re.search(r"(0x[0-9a-f]+) <", last.splitlines()[-1]).group(1), 16)
    assert eip == call_eip + 2
    assert "int    $0x1f" in g.cli("x/i %#x" % call_eip).console
    g.cli("lguest-catch delete %s" % number)
    assert g.cli("lguest-catch list").console.strip() == "No lguest catchpoints."
    assert "no lguest catchpoint number" in error_of(g, "lguest-catch delete %s" % number)


@needs_stub
def test_convenience_functions_in_breakpoint_conditions(iret):
    g = iret
    g.cli("break main_loop if $lguest_in_noirq() == 0")
    g.mi("-exec-continue")
    stop = g.wait_stopped()
    assert stop["frame"]["func"] in ("main_loop", "iret_init"), stop
    assert g.register("eip") == 0xc01000fc
    assert g.cli("print $lguest_irq_enabled()").console.strip().endswith("= 512")
    assert g.cli("print $lguest_pending()").console.strip().endswith("= 0")
    g.cli("lguest-irq raise 3")
    assert g.cli("print $lguest_pending()").console.strip().endswith("= 8")
    assert g.cli("print $lguest_pending(3)").console.strip().endswith("= 1")
    g.cli("lguest-irq clear 3")
    g.cli("delete")
    g.cli("break *0xc0100327 if $lguest_in_noirq()")    # pop %eax, inside the window
    g.mi("-exec-continue")
    g.wait_stopped()
    assert g.register("eip") == 0xc0100327
    assert g.cli("lguest-noirq").console.startswith("inside the noirq window: yes")


@needs_stub
def test_journey_inside_lguest_iret(iret):
    g = iret
    run_to(g, "*0xc0100321")                # lguest_noirq_start, inside lguest_iret
    text = g.cli("lguest-journey").console
    lines = text.splitlines()
    assert lines[0].startswith("pc 0xc0100321 <lguest_iret+5> is at ./iret.S:294")
    assert lines[1].startswith("G:080 lgdbg/images/iret.S:")
    assert "And here is lguest_iret" in text
    assert "prev: G:070  next: (end of tour)" in text
    assert "break *0xc010031c to go there" in text
    prev = g.cli("lguest-journey prev").console
    assert prev.startswith("G:070 ") and "break *0xc0100201" in prev


@needs_stub
def test_pgtable_walk_summary_and_info_mem(iret):
    g = iret
    g.cli("break main_loop")
    g.cli("continue")
    g.wait_stopped()
    res = g.cli("lguest-pgtable &lguest_data")
    no_traceback(res)
    out = res.console
    assert "<lguest_data> in kernel: the linear map of RAM" in out
    assert re.search(r"physical: 0x1[0-9a-f]{5}\n", out)
    assert re.search(r"Host's shadow \(slot 0\): 0x[0-9a-f]{8}  present rw", out)
    assert "<- current" in g.cli("lguest-pgtable").console
    # Another toplevel: the Launcher's one is the only one; a bogus page has no shadow.
    out = g.cli("lguest-pgtable $pc --cr3 0x1000").console
    assert "no shadow" in out
    assert "one address at most" in error_of(g, "lguest-pgtable 1 2")
    mem = g.cli("monitor info mem").output
    assert re.search(r"^00000000c0000000-00000000c2000000 0000000002000000 urw$", mem, re.M)
