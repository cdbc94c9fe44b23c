"""Every lguest-* command on the real Linux 2.6.23 Guest, in the real /usr/bin/gdb (issue 13).

One kernel boot serves the whole module: `lgdbg serve VMLINUX --initrd INITRD`
with gdb attached through MI (tests/gdbmi.py), stopped first at lguest_iret's
first hit (in do_test_wp_bit, ~2 M instructions in).  The tests run in file
order and only move the Guest forward: the first ones look at that first
stop, later ones run on to the clock handler, then to free_initmem (after the
patching) and to /init's execve (after .init was freed).  Another boot runs the
REPL's batch mode over the same views.

Expectations come from the kernel itself: symbols through gdb, the patch-site
table read here independently with pyelftools, the IDT through gdb's own view.

The kernel comes from LGDBG_TEST_KERNEL or ../shared/kernel/ (kernelboot.vmlinux):
without one these tests skip with one line, or fail when CI=true.
"""

import collections
import os
import re
import struct
import subprocess
import sys

import pytest

import kernelboot
from gdbmi import GDB, ROOT, Gdb, Serve
from kernelboot import vmlinux  # noqa: F401  (the session fixture)

if kernelboot.missing_kernel() and not kernelboot.in_ci():
    pytest.skip(kernelboot.missing_kernel(), allow_module_level=True)
pytestmark = pytest.mark.skipif(not os.path.exists(GDB), reason="needs gdb (%s)" % GDB)

LOADER = os.path.join(ROOT, "gdb_scripts", "lguest.py")
KERNEL_SRC = os.path.normpath(os.path.join(ROOT, "..", "shared", "kernel", "src"))
BUILD_DIR = "/usr/src/linux-2.6.23.17-stm"         # the DWARF's paths
RUN_TIMEOUT = 600                                  # seconds for a continue to a later stop
# The four operations lguest_patch has templates for (lguest_insns in lguest.c).
TEMPLATE_TYPES = {"save_fl": "pushf", "restore_fl": "popf", "irq_disable": "cli",
                  "irq_enable": "sti"}


# ---- what the ELF file says, read here with pyelftools ------------------------------

class Kernel:
    """The patch-site table and symbols of vmlinux, independently of lgdbg."""

    def __init__(self, path):
        from elftools.elf.elffile import ELFFile
        with open(path, "rb") as f:
            elf = ELFFile(f)
            raw = elf.get_section_by_name(".parainstructions").data()
            symtab = elf.get_section_by_name(".symtab")
            self.symbols = {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}
        self.sites = [struct.unpack_from("<IBBH", raw, i) for i in range(0, len(raw), 8)]

    def in_init(self, address):
        return self.symbols["__init_begin"] <= address < self.symbols["__init_end"]


@pytest.fixture(scope="module")
def kernel(vmlinux):  # noqa: F811
    return Kernel(vmlinux)


# ---- the gdb session ------------------------------------------------------------------

@pytest.fixture(scope="module")
def initrd(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernel_gdb")
    programs = kernelboot.build_programs(d / "programs")
    return kernelboot.build_initrd(d / "hello.cpio", programs["hello"], compress=False)


def no_traceback(res):
    text = res.console + res.log + (res.error or "")
    assert "Traceback" not in text and "Error occurred in Python" not in text, text


def cli(g, command):
    res = g.cli(command, timeout=120)
    no_traceback(res)
    return res.console


def run_to(g, location):
    """A temporary breakpoint at location, continue, and the stop's frame."""
    g.cli("tbreak %s" % location)
    g.mi("-exec-continue")
    stop = g.wait_stopped(timeout=RUN_TIMEOUT)
    assert stop.get("reason") == "breakpoint-hit", stop
    return stop["frame"]


@pytest.fixture(scope="module")
def session(vmlinux, initrd):  # noqa: F811
    """gdb on `lgdbg serve vmlinux --initrd hello.cpio`, stopped at lguest_iret's first hit."""
    stub = Serve(vmlinux, "--mem", "64", "--initrd", initrd)
    g = Gdb(timeout=60)
    try:
        g.cli("source %s" % LOADER)
        g.cli("file %s" % vmlinux, timeout=120)
        g.cli("set substitute-path %s %s" % (BUILD_DIR, KERNEL_SRC))
        g.mi("-target-select remote %s" % stub.address, timeout=60)
        frame = run_to(g, "lguest_iret")
        assert frame["func"] == "lguest_iret", frame
        yield g
    finally:
        g.close()
        stub.close()


def address_of(g, name):
    return int(re.search(r"0x[0-9a-f]+", cli(g, "p/x &%s" % name)).group(0), 16)


# ---- the first stop: lguest_iret in do_test_wp_bit ---------------------------------

def test_lguest_data_is_the_kernels_struct(session):
    g = session
    text = cli(g, "lguest-data")
    ld = address_of(g, "lguest_data")
    assert text.startswith("struct lguest_data at %#010x <lguest_data>" % ld), text
    assert re.search(r"irq_enabled\s+0x0 \(disabled\)", text)     # lguest_iret runs with them off
    assert re.search(r"blocked_interrupts\s+0x00000001 \(blocked irqs 0\)", text)  # no clock yet
    assert re.search(r"cr2\s+0xffbea000$", text, re.M)           # the WP test's fault address
    assert re.search(r"reserve_mem\s+0x400000 \(4 MiB\)", text)
    start, end = address_of(g, "lguest_noirq_start"), address_of(g, "lguest_noirq_end")
    assert re.search(r"noirq_start\s+%#010x <lguest_noirq_start>$" % start, text, re.M), text
    # not lguest_dev_match, the function that starts at the same address
    assert re.search(r"noirq_end\s+%#010x <lguest_noirq_end>$" % end, text, re.M), text
    assert "lguest_dev_match" in cli(g, "info symbol %#x" % end)


def test_lguest_noirq_and_the_function(session):
    g = session
    start, end = address_of(g, "lguest_noirq_start"), address_of(g, "lguest_noirq_end")
    text = cli(g, "lguest-noirq")
    assert text.startswith("inside the noirq window: no (EIP %#010x <lguest_iret>)"
                           % address_of(g, "lguest_iret")), text
    assert "noirq window: [%#010x <lguest_noirq_start>, %#010x <lguest_noirq_end>), %d bytes" \
        % (start, end, end - start) in text
    marked = [line for line in text.splitlines() if "=>" in line]
    assert len(marked) == 1 and "<lguest_iret>" in marked[0] and "push" in marked[0]
    assert re.search(r"<lguest_noirq_start\+\d+>:\s+iret", text)
    text = cli(g, "lguest-noirq %#x" % (end - 1))                  # the iret itself
    assert text.startswith("inside the noirq window: yes")

    def fn(arg=""):
        return int(cli(g, "print $lguest_in_noirq(%s)" % arg).split("=")[1])
    assert fn() == 0                                                 # the pc: lguest_iret
    assert fn("lguest_noirq_start") == 1 and fn("%#x" % (end - 1)) == 1
    assert fn("lguest_noirq_end") == 0 and fn("lguest_iret") == 0


def test_journey_shows_g045_at_lguest_iret(session):
    g = session
    text = cli(g, "lguest-journey")
    lines = text.splitlines()
    assert re.match(r"pc 0x\w+ <lguest_iret> has no line information; lguest_iret is "
                    r"defined at drivers/lguest/lguest_asm.S:\d+; the journey there:", lines[0])
    assert lines[1].startswith("G:045 drivers/lguest/lguest_asm.S:")
    assert "There is one final paravirt_op that the Guest implements" in text
    assert "lguest_noirq_start:" in text and "lguest_noirq_end:" in text
    assert re.search(r"^prev: G:0\d\d  next: G:050$", text, re.M), text
    nxt = cli(g, "lguest-journey next")
    assert nxt.startswith("G:050 drivers/lguest/lguest.c:")
    # without a way to the sources: one clear line; with `directory`: the same fragment
    g.cli("unset substitute-path")
    try:
        res = g.cli("lguest-journey", check=False)
        no_traceback(res)
        assert res.message == "error" and "set substitute-path" in res.error, res.error
        g.cli("directory %s" % KERNEL_SRC)
        assert "\nG:045 drivers/lguest/lguest_asm.S:" in cli(g, "lguest-journey")
    finally:
        g.cli("set substitute-path %s %s" % (BUILD_DIR, KERNEL_SRC))


parse_summary = kernelboot.parse_patch_summary


def by_type(g, kernel):
    """({type name: n} from the ELF table, {type: name}), the names from gdb's
    own `ptype/o struct paravirt_ops` (type = offset / 4)."""
    names = {}
    for line in cli(g, "ptype/o struct paravirt_ops").splitlines():
        m = re.match(r"/\*\s+(\d+)\s+\|\s+4 \*/\s+.*?(?:\(\*(\w+)\)\(.*\)|\b(\w+));$", line)
        if m:
            names[int(m.group(1)) // 4] = m.group(2) or m.group(3)
    return collections.Counter(names[t] for _, t, _, _ in kernel.sites), names


def test_patches_before_apply_paravirt_are_all_original(session, kernel):
    """At do_test_wp_bit (mem_init) the kernel has not run check_bugs ->
    apply_paravirt yet: every site still holds its indirect call."""
    g = session
    text = cli(g, "lguest-patches --summary")
    assert text.startswith("%d paravirt patch sites, from the .parainstructions of "
                           % len(kernel.sites)), text
    states, types = parse_summary(text)
    assert states == {"original": len(kernel.sites)}
    expected, names = by_type(g, kernel)
    assert {t: sum(c.values()) for t, c in types.items()} == dict(expected)
    assert [names[i] for i in range(28, 32)] == ["save_fl", "restore_fl", "irq_disable",
                                                 "irq_enable"]
    rows = cli(g, "lguest-patches --type iret")
    iret = [a for a, t, _, _ in kernel.sites if names[t] == "iret"]
    for a in iret:
        assert re.search(r"^\s*%#010x <\S+>\s+iret\s+7\s+original indirect call" % a, rows,
                         re.M), rows


def test_hcalls_idt_irq_host(session):
    g = session
    text = cli(g, "lguest-hcalls 2")
    calls = text.strip().splitlines()[1:]
    assert len(calls) == 2
    # __set_fixmap(FIX_WP_TEST) read-only, then lguest's flush_tlb_single clears it
    assert "SET_PTE pgdir=0x1ed000 vaddr=0xffbea000 pte=0x1ed025" in calls[0]
    assert "SET_PTE pgdir=0x1ed000 vaddr=0xffbea000 pte=0x0" in calls[1]
    text = cli(g, "lguest-idt")
    for vector, name, gate, dpl in ((0x0e, "page_fault", "interrupt", 0),
                                    (0x20, "irq_entries_start", "interrupt", 0),
                                    (0x80, "system_call", "trap", 3)):
        handler = address_of(g, name)
        assert re.search(r"^%#04x\s+\S+\s+%#010x <%s>\s+%s\s+%d\s+the (CPU|Host)" % (
            vector, handler, name, gate, dpl), text, re.M), text
    text = cli(g, "lguest-irq")
    assert "verdict: nothing to deliver (no irq is pending)" in text
    text = cli(g, "lguest-host")
    assert "kernel stack (SET_STACK): ss1 0x69" in text and "halted: no" in text
    assert re.search(r"page tables: cr3 0x1ed000, \d+ page-table hypercalls", text), text


# ---- later: the clock ------------------------------------------------------------------

def test_step_irq_until_delivers_the_clock_into_the_kernel(session):
    g = session
    run_to(g, "lguest_time_irq")             # the first tick: irq 0 is unblocked now
    run_to(g, "lguest_iret")                 # and its return through lguest_iret
    assert "pending irqs: 0" in cli(g, "lguest-irq raise 0")
    handler = re.search(r"^0x20\s+0\s+(0x[0-9a-f]+) <(\S+)>", cli(g, "lguest-idt"), re.M)
    text = cli(g, "lguest-step-irq --until")
    assert "delivered irq 0 (vector 0x20) through an interrupt gate" in text, text
    assert "handler:     %s <%s>" % handler.groups() in text
    n = int(re.search(r"deferred by (\d+) instructions", text).group(1))
    assert n >= 3                     # out of lguest_iret, the window, then the iret
    assert re.search(r"after 0 instructions: interrupts disabled at 0x\w+ <lguest_iret>", text)
    assert re.search(r"after \d+ instructions: inside the noirq window at 0x\w+ "
                     r"<lguest_noirq_start>", text), text
    assert re.search(r"after %d instructions: deliverable at" % n, text)
    assert g.register("eip") == int(handler.group(1), 16)
    # the kernel's own clock handler runs the tick
    frame = run_to(g, "lguest_time_irq")
    assert frame["func"] == "lguest_time_irq"
    assert "irq=0" in cli(g, "frame")


def test_catch_set_clockevent(session):
    g = session
    text = cli(g, "lguest-catch hcall SET_CLOCKEVENT")
    number = re.match(r"lguest catchpoint (\d+)", text).group(1)
    g.mi("-exec-continue")
    g.wait_stopped(timeout=RUN_TIMEOUT)
    last = cli(g, "lguest-hcalls 1").strip().splitlines()[-1]
    assert re.search(r"<lguest_clockevent_set_next_event\+\d+>\s+SET_CLOCKEVENT delta_ns=\d+",
                     last), last
    assert "lguest_clockevent_set_next_event" in cli(g, "bt 1")
    cli(g, "lguest-catch delete %s" % number)
    assert cli(g, "lguest-catch list").strip() == "No lguest catchpoints."


def test_bt_finish_next_until_in_c(session):
    """gdb's own stepping through the kernel's C code (it has .debug_frame):
    what the README promises, and where it stops (common_interrupt has no CFI)."""
    g = session
    run_to(g, "do_timer")
    bt = cli(g, "bt")
    funcs = re.findall(r"^#\d+\s+(?:0x\w+ in )?(\w+|\?\?) \(", bt, re.M)
    assert funcs[:5] == ["do_timer", "tick_periodic", "tick_handle_periodic",
                         "lguest_time_irq", "do_IRQ"], bt
    assert "common_interrupt" in funcs
    g.mi("-exec-finish")
    stop = g.wait_stopped(timeout=RUN_TIMEOUT)
    assert stop["reason"] == "function-finished" and stop["frame"]["func"] == "tick_periodic"
    line = int(stop["frame"]["line"])
    g.mi("-exec-next")
    stop = g.wait_stopped(timeout=RUN_TIMEOUT)
    assert stop["reason"] == "end-stepping-range" and stop["frame"]["func"] == "tick_periodic"
    assert int(stop["frame"]["line"]) > line
    g.mi("-exec-until")
    stop = g.wait_stopped(timeout=RUN_TIMEOUT)
    assert stop["reason"] == "end-stepping-range", stop


# ---- after the patching, and after .init was freed --------------------------------------

def expected_states(kernel, names, freed):
    want = collections.Counter()
    for address, ptype, length, _ in kernel.sites:
        name = names[ptype]
        if freed and kernel.in_init(address):
            want["freed"] += 1
        elif name in TEMPLATE_TYPES:
            want["template"] += 1
        elif name in ("iret", "irq_enable_sysexit"):
            want["jmp"] += 1
    return want


def test_patches_after_boot(session, kernel):
    g = session
    run_to(g, "free_initmem")
    _, names = by_type(g, kernel)
    states, types = parse_summary(cli(g, "lguest-patches --summary"))
    want = expected_states(kernel, names, freed=False)
    assert states["template"] == want["template"] and states["jmp"] == want["jmp"]
    # everything else: a direct call, or NOPs for what lguest leaves as paravirt_nop
    assert states["call"] + states["nops"] == len(kernel.sites) - want["template"] - want["jmp"]
    assert set(states) == {"template", "jmp", "call", "nops"}, states
    assert types["iret"] == {"jmp": 2} and types["irq_disable"] == {"template": sum(
        1 for _, t, _, _ in kernel.sites if names[t] == "irq_disable")}
    rows = cli(g, "lguest-patches --type read_cr2")
    assert re.search(r"call 0x\w+ <lguest_read_cr2> \(paravirt_patch_default\)", rows), rows
    assert "lguest_iret" in cli(g, "lguest-patches --type iret")
    # the templates are lguest's own bytes
    for op, tmpl in TEMPLATE_TYPES.items():
        rows = cli(g, "lguest-patches --type %s --state template" % op)
        assert "template %s (lguest_patch's copy" % tmpl in rows
    for bad, words in (("--state bogus", "unknown state"), ("--type", "needs a value"),
                       ("--type nope", "no patch site of type 'nope'"),
                       ("extra", "unknown argument")):
        res = g.cli("lguest-patches %s" % bad, check=False)
        no_traceback(res)
        assert res.message == "error" and words in res.error, (bad, res.error)
    run_to(g, "sys_execve")                   # /init: .init is freed and poisoned now
    states, _ = parse_summary(cli(g, "lguest-patches --summary"))
    want = expected_states(kernel, names, freed=True)
    assert states["freed"] == want["freed"] and states["template"] == want["template"]


# ---- the REPL: the same views, one more boot --------------------------------------------

REPL_SCRIPT = """\
journey
journey source {src}
break lguest_iret
continue
data
noirq
journey
patches --summary
hcalls 2
idt
irq
host
delete 1
break free_initmem
continue
patches --summary
patches --type iret
"""


@pytest.fixture(scope="module")
def repl(vmlinux, initrd, tmp_path_factory):  # noqa: F811
    """{command: its output} of one `lgdbg repl --batch` over the kernel."""
    script = tmp_path_factory.mktemp("repl") / "views.lgdbg"
    script.write_text(REPL_SCRIPT.format(src=KERNEL_SRC))
    r = subprocess.run([sys.executable, "-m", "lgdbg", "repl", "--batch", str(script),
                        "--mem", "64", "--initrd", initrd, vmlinux],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    # one command fails on purpose (journey before `journey source`): status 1
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        "no narrative fragments (/*G:NNN ... :*/) in this guest's sources that can be "
        "found; a kernel's: `journey source DIR`"], r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr
    outputs, current = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"^\S+> (.*)$", line)
        if m and m.group(1) in REPL_SCRIPT.format(src=KERNEL_SRC).splitlines():
            current = m.group(1)
            outputs.setdefault(current, [])
            outputs[current].append([])
        elif current:
            outputs[current][-1].append(line)
    return {k: ["\n".join(run) for run in v] for k, v in outputs.items()}, r.stderr


def test_repl_views_at_lguest_iret(repl, kernel):
    out, _ = repl
    data = out["data"][0]
    assert re.search(r"noirq_end\s+0x\w+ <lguest_noirq_end>", data)
    assert re.search(r"cr2\s+0xffbea000$", data, re.M)
    noirq = out["noirq"][0]
    assert noirq.startswith("inside the noirq window: no (EIP 0x")
    assert "<lguest_noirq_start>, " in noirq and "<lguest_noirq_end>), 8 bytes" in noirq
    assert re.search(r"=> 0x\w+ <lguest_iret>:\s+push", noirq), noirq   # from lguest_iret on
    assert out["journey"][0] == ""            # its error went to stderr (the fixture)
    journey = out["journey"][1]
    assert "lguest_iret is defined at drivers/lguest/lguest_asm.S" in journey
    assert "\nG:045 drivers/lguest/lguest_asm.S:" in journey
    states, types = parse_summary(out["patches --summary"][0])
    assert states == {"original": len(kernel.sites)}
    assert "SET_PTE pgdir=0x1ed000 vaddr=0xffbea000 pte=0x0" in out["hcalls 2"][0]
    assert re.search(r"^0x80\s+syscall\s+0x\w+ <system_call>\s+trap\s+3\s+the CPU \(direct trap\)$",
                     out["idt"][0], re.M)
    assert "verdict: nothing to deliver" in out["irq"][0]
    # a constant symbol (CF_MASK = 1) names no address
    assert "blocked_interrupts = 0x00000001 (irqs 0)" in out["irq"][0], out["irq"][0]
    assert "halted: no" in out["host"][0]


def test_repl_patches_after_boot(repl, kernel):
    out, _ = repl
    states, types = parse_summary(out["patches --summary"][1])
    assert "types named from include/asm-i386/paravirt.h (sizeof paravirt_ops = 316)" in \
        out["patches --summary"][1]
    assert types["iret"] == {"jmp": 2}
    templates = sum(1 for _, t, _, _ in kernel.sites if 28 <= t <= 31)
    assert states["template"] == templates and set(states) == {"template", "jmp", "call", "nops"}
    assert "jmp 0x" in out["patches --type iret"][0] and "<lguest_iret>" in \
        out["patches --type iret"][0]
