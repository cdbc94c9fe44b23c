"""Hardening: misbehaving guests (issue 7, "Guest faults").

Every guest here is built for the occasion (tests/guestbuild.py) and run twice
over: on the Machine API, where the Host's decisions are checked in its events,
and through `lgdbg run` in a subprocess, where only what a user sees counts:
the exit status and one clear reason line on stderr, never a traceback and
never a hang (every subprocess has a timeout, every Machine a --max-insns).

Cases: fault storms (hundreds of reflected faults of every kind in a row, the
unicorn #1883 escalation), endless fault loops (must run on to --max-insns),
stacks and frames that run below PAGE_OFFSET, recursive faults in handlers,
self-modifying code (guest, Host and debugger writes), and hypercalls with
wild pointers (the Host's kill reasons, as 2.6.23's lgread/lgwrite give them).
"""

import os
import subprocess
import sys
import threading

import pytest

from lgdbg.machine import Machine
from guestbuild import INIT, build_guest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEM_TOP = (32 << 20) + 4096          # pfn_limit * 4096 with the default 32 MiB
CASES = {"api": 0, "cli": 0}          # counted for the README's reliability table


def boot(tmp_path, body, text="", data="", **kw):
    elf = build_guest(tmp_path, body, text=text, data=data)
    kw.setdefault("max_insns", 5_000_000)       # a broken guest fails, never hangs
    m = Machine(elf, **kw)
    events = []
    m.subscribe(events.append)
    CASES["api"] += 1
    return m, events, elf


def lgdbg_run(*args, timeout=60):
    """`lgdbg run ARGS` in a subprocess: (status, stdout, stderr lines)."""
    p = subprocess.run([sys.executable, "-m", "lgdbg", "run", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    CASES["cli"] += 1
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr.splitlines()


def kill_line(stderr_lines, reason):
    """The CLI's first stderr line names the kill reason (registers follow)."""
    first = stderr_lines[0]
    # (a reason's own final newline, "Bad hypercall %li\n", is not printed)
    assert first.startswith("lgdbg: guest killed: %s after " % reason.rstrip("\n")), stderr_lines
    return first


def symbols(elf):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (l.split() for l in out.splitlines())
            if len(parts) == 3}


def kinds(events, kind):
    # Demand faults are the shadow page tables' own business: the Guest never
    # sees them, and these tests are about what the Guest sees.
    return [e for e in events if e["kind"] == kind and not e.get("demand")]


def gate(vector, handler, kind="TRAP_GATE"):
    return "\tSET_GATE %d, %s, %s\n" % (vector, handler, kind)


# --- fault storms ---------------------------------------------------------------------------

# name: (vector, has error code, is a trap (EIP already past it), set-up, faulting insn)
FAULTS = {
    "divide": (0, False, False, "\txorl %ecx, %ecx\n", "divl %ecx"),
    "int3": (3, False, True, "", "int3"),
    "into": (4, False, True, "\tmovl $0x7fffffff, %eax\n\taddl $1, %eax\n", "into"),
    "bound": (5, False, False, "\tmovl $5, %eax\n", "bound %eax, bounds"),
    "ud2": (6, False, False, "", "ud2"),
    "cli": (13, True, False, "", "cli"),
    "hlt": (13, True, False, "", "hlt"),
    "badseg": (13, True, False, "\tmovl $0x1234, %eax\n", "movw %ax, %fs"),
    "pf-read": (14, True, False, "", "movl 0x10, %eax"),
    "pf-write": (14, True, False, "", "movl $1, 0xbffffff0"),
    "pf-fetch": (14, True, False, "\tmovl $0x1000, %eax\n", "call *%eax"),
}
STORM = 300


def _label(name):
    return "f_" + name.replace("-", "_")


def storm_guest(names, rounds):
    """One loop of `rounds` iterations that faults once for every name in it."""
    vectors = sorted({FAULTS[n][0] for n in names})
    body = INIT
    body += "\tmovl $0x200, lguest_data + LGUEST_DATA_irq_enabled\n"
    # One gate per vector: several names may share a vector (13, 14); they share
    # a handler then, and the instruction length comes from a per-vector table.
    by_vector = {}
    for n in names:
        by_vector.setdefault(FAULTS[n][0], []).append(n)
    text = ""
    for vec, group in by_vector.items():
        _, has_err, is_trap, _, _ = FAULTS[group[0]]
        text += "h_%d:\n\tincl count_%d\n" % (vec, vec)
        if has_err:
            text += "\taddl $4, %esp\n"
        if "pf-fetch" in group:
            # A fetch at 0x1000 (the call's target): back to the caller with
            # the frame's cs and eflags, dropping the call's return address.
            text += ("\tcmpl $0x1000, (%esp)\n\tjne 1f\n"
                     "\tpopl %eax\n\tpopl %ecx\n\tpopl %edx\n\tpopl %eax\n"
                     "\tpushl %edx\n\tpushl %ecx\n\tpushl %eax\n\tjmp lguest_iret\n1:\n")
        if not is_trap:
            # skip the instruction: its length is stored just before it
            text += "\tpushl %eax\n\tmovl 4(%esp), %eax\n\tmovzbl -1(%eax), %eax\n" \
                    "\taddl %eax, 4(%esp)\n\tpopl %eax\n"
        text += "\tjmp lguest_iret\n"
        # int3 and into are software interrupts: the CPU checks the gate's
        # DPL, and a DPL-0 gate (TRAP_GATE) would turn them into #GP(n*8+2)
        # (copy_traps copies a direct trap's gate as given).  DPL 1 lets the
        # Guest kernel use them, as direct traps.
        body += gate(vec, "h_%d" % vec, "0xaf00" if vec in (3, 4) else "TRAP_GATE")
    body += "\tmovl $%d, %%esi\n1:\n" % rounds
    for n in names:
        _, _, is_trap, setup, insn = FAULTS[n]
        lab = _label(n)
        body += setup
        if is_trap or n == "pf-fetch":
            body += "%s_insn:\n\t%s\n%s_end:\n" % (lab, insn, lab)
        else:
            # a 2-byte jump over the length byte, then the instruction
            body += "\tjmp %s_insn\n\t.byte %s_end - %s_insn\n%s_insn:\n\t%s\n%s_end:\n" % (
                lab, lab, lab, lab, insn, lab)
    body += "\tdecl %esi\n\tjnz 1b\n"
    for vec in vectors:
        expect = rounds * sum(1 for n in names if FAULTS[n][0] == vec)
        body += "\tcmpl $%d, count_%d\n\tjne storm_lost\n" % (expect, vec)
    body += "\tPOWER_OFF\nstorm_lost:\n\tCRASH_MSG \"a fault was lost\"\n"
    data = "\t.data\n\t.balign 4\nbounds:\t.long 0, 1\n" + "".join(
        "count_%d:\t.long 0\n" % v for v in vectors)
    return body, text, data


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_storm_one_kind(tmp_path, name):
    body, text, data = storm_guest([name], STORM)
    m, events, elf = boot(tmp_path, body, text=text, data=data)
    stop = m.run()
    assert stop.kind == "poweroff", stop
    traps = kinds(events, "trap")
    vector = FAULTS[name][0]
    assert len(traps) == STORM
    assert {(t["vector"], t["delivered"]) for t in traps} == {(vector, True)}
    # Each one arrived as itself: never escalated to a double fault (8).
    assert not [e for e in events if e["kind"] == "trap" and e["vector"] == 8]
    assert len({t["eip"] for t in traps}) == 1
    rc, out, err = lgdbg_run(elf)
    assert rc == 0 and err[0].startswith("lgdbg: guest powered off"), err


def test_fault_storm_every_kind_interleaved(tmp_path):
    names = sorted(FAULTS)
    rounds = 120
    body, text, data = storm_guest(names, rounds)
    m, events, elf = boot(tmp_path, body, text=text, data=data)
    stop = m.run()
    assert stop.kind == "poweroff", stop
    traps = kinds(events, "trap")
    assert len(traps) == rounds * len(names)          # 1320 faults in a row
    seq = [t["vector"] for t in traps[:len(names)]]
    assert seq == [FAULTS[n][0] for n in names]
    assert all(t["delivered"] for t in traps)
    # deterministic: the same storm again gives the same trace
    m2 = Machine(elf, max_insns=5_000_000)
    ev2 = []
    m2.subscribe(ev2.append)
    m2.run()
    assert ev2 == events
    rc, out, err = lgdbg_run(elf)
    assert rc == 0, err


def test_page_fault_storm_reports_every_cr2(tmp_path):
    text = """
pf_handler:
	movl	lguest_data + LGUEST_DATA_cr2, %eax
	cmpl	%eax, %esi
	jne	1f
	incl	matched
1:	addl	$4, %esp
	addl	$6, (%esp)		/* movl (%esi), %eax is 2 bytes: skip it and the nop pad */
	jmp	lguest_iret
"""
    body = INIT + gate(14, "pf_handler", "INTERRUPT_GATE") + """
	xorl	%esi, %esi
1:	movl	(%esi), %eax
	.byte 0x8d, 0x74, 0x26, 0x00	/* lea 0(%esi,%eiz,1), %esi: a 4-byte nop */
	addl	$0x1000, %esi
	cmpl	$0x00400000, %esi
	jb	1b
	cmpl	$1024, matched
	jne	2f
	POWER_OFF
2:	CRASH_MSG "wrong cr2"
"""
    m, events, _ = boot(tmp_path, body, text=text, data="\t.data\nmatched: .long 0\n")
    stop = m.run()
    assert stop.kind == "poweroff", stop
    cr2s = [t["cr2"] for t in kinds(events, "trap")]
    assert cr2s == list(range(0, 0x400000, 0x1000))


@pytest.mark.parametrize("target", [0, 1, 0x1000, 0xbffffffc, 0xfffffff0])
def test_call_through_a_wild_pointer(tmp_path, target):
    # A NULL function pointer is the commonest of all: 0 is also the address
    # unicorn would treat as "until" and silently stop at, without a fault.
    body = INIT + "\tmovl $%#x, %%eax\n\t.globl at\nat:\tcall *%%eax\n" % target
    m, events, elf = boot(tmp_path, body, max_insns=100_000)
    stop = m.run()
    reason = "unhandled trap 14 at %#x (%#x)" % (target, target)
    assert (stop.kind, stop.reason) == ("killed", reason)
    assert m.icount == 2 + 3 + 2            # entry, INIT, movl and the call retired
    rc, _, err = lgdbg_run(elf)
    assert rc == 1
    kill_line(err, reason)


def test_null_pointer_call_with_a_page_fault_handler(tmp_path):
    # The handler returns to the caller: a loop of NULL calls, each one a #PF.
    text = """
pf_handler:
	incl	faults
	addl	$4, %esp
	popl	%eax			/* eip (0) */
	popl	%ecx			/* cs */
	popl	%edx			/* eflags */
	popl	%eax			/* the call's return address */
	pushl	%edx
	pushl	%ecx
	pushl	%eax
	jmp	lguest_iret
"""
    body = INIT + gate(14, "pf_handler") + """
	movl	$200, %esi
1:	xorl	%eax, %eax
	call	*%eax
	decl	%esi
	jnz	1b
	cmpl	$200, faults
	jne	2f
	POWER_OFF
2:	CRASH_MSG "lost a fault"
"""
    m, events, elf = boot(tmp_path, body, text=text, data="\t.data\nfaults: .long 0\n")
    assert m.run().kind == "poweroff"
    assert [t["cr2"] for t in kinds(events, "trap")] == [0] * 200
    m.cpu.add_breakpoint(0)          # a breakpoint at 0 must not confuse it either
    m2 = Machine(elf, max_insns=100_000)
    m2.cpu.add_breakpoint(0)
    assert m2.run().kind == "poweroff"


def test_single_steps_into_a_null_call(tmp_path):
    body = INIT + "\txorl %eax, %eax\n\tcall *%eax\n"
    m, events, _ = boot(tmp_path, body)
    kinds_seen = [m.step().kind for _ in range(10)]
    assert kinds_seen[:6] == ["step"] * 6 and kinds_seen[-1] == "killed", kinds_seen
    assert m.dead == "unhandled trap 14 at 0x0 (0x0)"


# --- endless fault loops -------------------------------------------------------------------

LOOP_TEXT = """
gp_handler:
	addl	$4, %esp		/* drop the error code, do NOT skip the cli */
	incl	faults
	jmp	lguest_iret
"""
LOOP_BODY = INIT + gate(13, "gp_handler") + "forever:\n\tcli\n\tjmp forever\n"
LOOP_DATA = "\t.data\nfaults: .long 0\n"


def test_endless_fault_loop_runs_on_to_max_insns(tmp_path):
    m, events, elf = boot(tmp_path, LOOP_BODY, text=LOOP_TEXT, data=LOOP_DATA,
                          max_insns=60_000)
    stop = m.run()
    assert stop.kind == "max-insns"
    assert 60_000 <= m.icount <= 60_010
    n = len(kinds(events, "trap"))
    assert n > 5000
    assert m.mem.read_u32(symbols(elf)["faults"] - 0xC0000000) == n
    # run() keeps saying so; the machine stays inspectable
    assert m.run().kind == "max-insns"
    assert m.cpu.reg("cs") & 3 == 1
    rc, out, err = lgdbg_run(elf, "--max-insns", 60_000)
    assert rc == 3 and len(err) == 1 and "--max-insns" in err[0], err


def test_endless_fault_loop_stops_on_request(tmp_path):
    m, events, _ = boot(tmp_path, LOOP_BODY, text=LOOP_TEXT, data=LOOP_DATA, max_insns=None)
    timer = threading.Timer(0.3, m.request_stop)
    timer.start()
    try:
        stop = m.run()
    finally:
        timer.cancel()
    assert stop.kind == "interrupted"
    assert len(kinds(events, "trap")) > 100
    # and it can be resumed and stopped again
    assert m.step().kind == "step"


def test_endless_fault_loop_in_realtime_is_stoppable(tmp_path):
    m, events, _ = boot(tmp_path, LOOP_BODY, text=LOOP_TEXT, data=LOOP_DATA,
                        max_insns=None, clock="realtime")
    timer = threading.Timer(0.3, m.request_stop)
    timer.start()
    try:
        stop = m.run()
    finally:
        timer.cancel()
    assert stop.kind == "interrupted"


# --- stacks into unmapped memory, recursive faults -------------------------------------------

def test_stack_runs_below_page_offset_with_handler(tmp_path):
    # The guest's own push faults (#PF at 0xbffffffc); the Host then pushes
    # the frame on the same stack and its first write falls outside Guest
    # memory: lgwrite's kill.
    body = INIT + gate(14, "pf_handler", "INTERRUPT_GATE") + \
        "\tmovl $0xc0000100, %esp\n1:\tpushl %eax\n\tjmp 1b\n"
    text = "pf_handler:\n\tPOWER_OFF\n"
    m, events, elf = boot(tmp_path, body, text=text)
    stop = m.run()
    reason = "bad write address 0xfffffffc"
    assert (stop.kind, stop.reason) == ("killed", reason)
    t = kinds(events, "trap")[-1]
    assert (t["vector"], t["cr2"], t["errcode"]) == (14, 0xbffffffc, 2)
    assert kinds(events, "kill") == [dict(kinds(events, "kill")[0], reason=reason)]
    rc, out, err = lgdbg_run(elf)
    assert rc == 1
    kill_line(err, reason)


def test_stack_runs_below_page_offset_without_handler(tmp_path):
    body = INIT + "\tmovl $0xc0000040, %esp\nrecurse:\n\tcall recurse\n"
    m, events, elf = boot(tmp_path, body)
    stop = m.run()
    eip = symbols(elf)["recurse"]
    reason = "unhandled trap 14 at %#x (0xbffffffc)" % eip
    assert (stop.kind, stop.reason) == ("killed", reason)
    assert m.host.killed_by_trap
    assert m.cpu.reg("esp") == 0xc0000000
    rc, out, err = lgdbg_run(elf)
    assert rc == 1
    kill_line(err, reason)


@pytest.mark.parametrize("vector, fault, handler", [
    # a #PF handler that is not mapped: every delivery faults again
    (14, "\tmovl 0x10, %eax\n", "0x00001000"),
    # a #UD handler that is itself ud2
    (6, "\tud2\n", "ud_handler"),
    # a #GP handler that executes cli
    (13, "\tcli\n", "gp_handler"),
])
def test_recursive_faults_exhaust_the_stack(tmp_path, vector, fault, handler):
    text = "ud_handler:\n\tud2\ngp_handler:\n\tcli\n"
    if handler.startswith("0x"):
        gate_code = ("\tmovl $0x00601000, %%ebx\n\tmovl $0x00008f00, %%ecx\n"
                     "\tmovl $%d, %%edx\n\tmovl $LHCALL_LOAD_IDT_ENTRY, %%eax\n"
                     "\tint $LGUEST_TRAP_ENTRY\n" % vector)
    else:
        gate_code = gate(vector, handler)
    body = INIT + gate_code + "\tmovl $0xc0001000, %esp\n" + fault
    m, events, elf = boot(tmp_path, body, text=text)
    stop = m.run()
    reason = "bad write address 0xfffffffc"
    assert (stop.kind, stop.reason) == ("killed", reason)
    traps = kinds(events, "trap")
    frame = 16 if vector in (13, 14) else 12
    assert len(traps) == 0x1000 // frame + 1
    assert {t["vector"] for t in traps} == {vector}          # never a double fault
    rc, out, err = lgdbg_run(elf)
    assert rc == 1
    kill_line(err, reason)


@pytest.mark.parametrize("name", ["divide", "ud2", "cli", "pf-read", "int3", "bound"])
def test_trap_with_no_handler_kills(tmp_path, name):
    vector, has_err, is_trap, setup, insn = FAULTS[name]
    body = INIT + setup + "\t.globl at\nat:\t%s\n\tPOWER_OFF\n" % insn
    m, events, elf = boot(tmp_path, body, data="\t.data\nbounds: .long 0, 1\n")
    stop = m.run()
    assert stop.kind == "killed" and m.host.killed_by_trap
    if name == "int3":
        # No direct trap for 3: the Host's default gate (DPL 0) refuses a
        # software int3 from ring 1 with #GP(3*8+2), and there is no #GP
        # handler either (default_idt_entry, interrupts_and_traps.c).
        vector = 13
        assert stop.reason.endswith("(0x1a)")
    assert stop.reason.startswith("unhandled trap %d at " % vector)
    rc, out, err = lgdbg_run(elf)
    assert rc == 1
    kill_line(err, stop.reason)


def test_fault_before_lguest_init_kills(tmp_path):
    m, events, elf = boot(tmp_path, "\tud2\n")
    stop = m.run()
    assert stop.kind == "killed" and stop.reason.startswith("unhandled trap 6 at ")
    rc, _, err = lgdbg_run(elf)
    assert rc == 1


def test_interrupt_gate_with_wild_stack_for_irq_delivery(tmp_path):
    # An irq arrives while ESP is just above PAGE_OFFSET: the frame push fails.
    body = INIT + gate(0x21, "irq_handler", "INTERRUPT_GATE") + """
	UNBLOCK_IRQ 1
	movl	$0x200, lguest_data + LGUEST_DATA_irq_enabled
	movl	$0xc0000004, %esp
1:	jmp	1b
"""
    text = "irq_handler:\n\tPOWER_OFF\n"
    m, events, elf = boot(tmp_path, body, text=text, irqs=[(1, 200)])
    stop = m.run()
    assert (stop.kind, stop.reason) == ("killed", "bad write address 0xfffffffc")
    rc, out, err = lgdbg_run(elf, "--irq", "1@200")
    assert rc == 1
    kill_line(err, "bad write address 0xfffffffc")


# --- self-modifying code ---------------------------------------------------------------------

PATCH_TEXT = """
	.globl	patchme
patchme:
	movl	$1, %eax
	ret
"""


def test_guest_patches_code_it_already_ran(tmp_path):
    body = INIT + """
	call	patchme			/* translated now, returns 1 */
	cmpl	$1, %eax
	jne	stale
	movl	$2, patchme + 1		/* the immediate of movl $1, %eax */
	call	patchme
	cmpl	$2, %eax
	jne	stale
	POWER_OFF
stale:	CRASH_MSG "stale code ran"
"""
    m, events, elf = boot(tmp_path, body, text=PATCH_TEXT)
    assert m.run().kind == "poweroff"
    rc, _, err = lgdbg_run(elf)
    assert rc == 0, err


def test_guest_patches_the_next_instruction_in_its_block(tmp_path):
    body = INIT + """
	movl	$2, 1f + 1
1:	movl	$1, %eax
	cmpl	$2, %eax
	jne	stale
	POWER_OFF
stale:	CRASH_MSG "stale code ran"
"""
    m, _, elf = boot(tmp_path, body)
    assert m.run().kind == "poweroff"


def test_guest_counter_lives_in_an_immediate(tmp_path):
    # 1000 iterations, each runs an instruction the previous one rewrote.
    body = INIT + """
	movl	$1000, %esi
1:
	.globl	counter_insn
counter_insn:
	movl	$0, %eax
	incl	counter_insn + 1
	decl	%esi
	jnz	1b
	cmpl	$999, %eax
	jne	stale
	POWER_OFF
stale:	CRASH_MSG "stale code ran"
"""
    m, _, elf = boot(tmp_path, body)
    assert m.run().kind == "poweroff"
    assert m.read_memory(symbols(elf)["counter_insn"] + 1, 4) == (1000).to_bytes(4, "little")


def test_host_write_over_translated_code_is_seen(tmp_path):
    # A SEND_DMA whose struct lguest_dma overlaps code: the Launcher's write
    # of used_len lands in the immediate of "movl $imm, %eax" (already run and
    # translated).  The Host writes straight into the RAM buffer, which unicorn
    # does not notice: the Machine must drop the translated block itself.
    text = """
	.balign	4
	.globl	dmacode
dmacode:
	.byte	0xb8			/* movl $used_len, %eax */
	.long	0			/* lguest_dma.used_len */
	.long	dmamsg - PAGE_OFFSET	/* addr[0]; its low byte 0xc3 is "ret" */
	.fill	15, 4, 0
	.short	5			/* len[0] */
	.fill	15, 2, 0
"""
    data = "\t.data\n\t.balign 256\n\t.skip 0xc3\ndmamsg:\t.ascii \"hello\"\n"
    body = INIT + """
	call	dmacode
	testl	%eax, %eax
	jne	stale
	hcall	LHCALL_SEND_DMA, $LGUEST_CONSOLE_DMA_KEY, $(dmacode + 1 - PAGE_OFFSET)
	call	dmacode
	cmpl	$5, %eax
	jne	stale
	POWER_OFF
stale:	CRASH_MSG "stale code ran"
"""
    out = []
    elf = build_guest(tmp_path, body, text=text, data=data)
    assert symbols(elf)["dmamsg"] & 0xFF == 0xC3
    m = Machine(elf, max_insns=100_000, output=out.append)
    stop = m.run()
    assert stop.kind == "poweroff", stop
    assert b"".join(out) == b"hello"
    rc, stdout, err = lgdbg_run(elf)
    assert (rc, stdout) == (0, "hello"), err


def test_debugger_write_over_translated_code_is_seen(tmp_path):
    body = INIT + """
	call	patchme
	.globl	after_first
after_first:
	call	patchme
	cmpl	$7, %eax
	jne	stale
	POWER_OFF
stale:	CRASH_MSG "stale code ran"
"""
    m, _, elf = boot(tmp_path, body, text=PATCH_TEXT)
    sym = symbols(elf)
    m.cpu.add_breakpoint(sym["after_first"])
    stop = m.run()
    assert (stop.kind, stop.addr) == ("breakpoint", sym["after_first"])
    assert m.cpu.reg("eax") == 1
    m.write_memory(sym["patchme"] + 1, (7).to_bytes(4, "little"))
    assert m.run().kind == "poweroff"


# --- hypercalls with wild pointers -------------------------------------------------------------

WILD = [
    # (id, body after INIT (None: replaces INIT), reason or None = runs on)
    # initialize's "bad guest page %p": the kernel's %p is eight hex digits, no 0x
    ("init-ffffffff", "\thcall LHCALL_LGUEST_INIT, $0xffffffff\n", "bad guest page ffffffff"),
    ("init-straddles-top", "\thcall LHCALL_LGUEST_INIT, $%d\n" % (MEM_TOP - 100),
     "bad guest page %08x" % (MEM_TOP - 100)),
    ("init-virtual-address", "\thcall LHCALL_LGUEST_INIT, $lguest_data\n", "bad guest page %08x"),
    ("crash-wild", INIT + "\thcall LHCALL_CRASH, $0x7fffffff\n",
     "bad read address 0x7fffffff len 128"),
    ("crash-wraps", INIT + "\thcall LHCALL_CRASH, $0xfffffff0\n",
     "bad read address 0xfffffff0 len 128"),
    ("crash-at-top", INIT + "\thcall LHCALL_CRASH, $%d\n" % (MEM_TOP - 16),
     "bad read address %#x len 128" % (MEM_TOP - 16)),
    ("load-gdt-wild", INIT + "\thcall LHCALL_LOAD_GDT, $0x7fffffff, $32\n",
     "bad read address 0x7fffffff len 256"),
    ("load-gdt-wraps", INIT + "\thcall LHCALL_LOAD_GDT, $0xfffffff8, $2\n",
     "bad read address 0xfffffff8 len 16"),
    ("load-gdt-virtual", INIT + "\thcall LHCALL_LOAD_GDT, $lguest_data, $32\n",
     "bad read address %#x len 256"),
    ("load-gdt-huge-count", INIT + "\thcall LHCALL_LOAD_GDT, $0, $0xffffffff\n",
     "too many gdt entries -1"),                       # load_guest_gdt's %i
    ("load-tls-wild", INIT + "\thcall LHCALL_LOAD_TLS, $0x7fffffff, $0\n",
     "bad read address 0x7fffffff len 24"),
    ("load-tls-top", INIT + "\thcall LHCALL_LOAD_TLS, $%d, $0\n" % (MEM_TOP - 8),
     "bad read address %#x len 24" % (MEM_TOP - 8)),
    # The Launcher checks a DMA (check_pointer) before anything reads it.
    ("send-dma-wild", INIT + "\thcall LHCALL_SEND_DMA, $0, $0x7fffffff\n",
     "Launcher: invalid address 0x7fffffff (100 bytes)"),
    ("send-dma-entry-wild", INIT + """
	subl	$LGUEST_DMA_SIZE, %esp
	movl	$0x7fffffff, LGUEST_DMA_addr(%esp)
	movw	$5, LGUEST_DMA_len(%esp)
	movw	$0, LGUEST_DMA_len + 2(%esp)
	leal	-PAGE_OFFSET(%esp), %ebx
	hcall	LHCALL_SEND_DMA, $0, %ebx
""", "Launcher: invalid address 0x7fffffff (5 bytes)"),
    # ... and before it looks for a device watching the key.
    ("send-dma-other-key", INIT + "\thcall LHCALL_SEND_DMA, $0x1234, $0x7fffffff\n",
     "Launcher: invalid address 0x7fffffff (100 bytes)"),
    # pin_stack_pages pins esp1 - 1 - i * PAGE_SIZE through the shadow and
    # names that address.
    ("set-stack-wild", INIT + "\thcall LHCALL_SET_STACK, $0x69, $0x1000, $1\n",
     "bad stack page 0xfff"),
    ("set-stack-top", INIT + "\thcall LHCALL_SET_STACK, $0x69, $0xffffffff, $2\n",
     "attempt to access switcher pages"),
    ("set-stack-end-of-ram", INIT + "\thcall LHCALL_SET_STACK, $0x69, $%d, $2\n"
     % (0xC0000000 + MEM_TOP), "bad stack page %#x" % (0xC0000000 + MEM_TOP - 1)),
    ("set-stack-second-page", INIT + "\thcall LHCALL_SET_STACK, $0x69, $0xc0000800, $2\n",
     "bad stack page 0xbffff7ff"),
    ("set-stack-good", INIT + "\thcall LHCALL_SET_STACK, $0x69, $stack_top, $2\n", None),
    # A user address in a toplevel we have no shadow of: nothing to update.
    ("set-pte-wild-pfn", INIT + "\thcall LHCALL_SET_PTE, $0, $0, $0x7ffff067\n", None),
    ("set-pte-kernel-wild-pfn", INIT + "\thcall LHCALL_SET_PTE, $0, $0xc0000000, $0x7ffff067\n",
     "bad page table entry"),
    # The next fetch makes demand_page read the wild toplevel: lgread kills.
    ("new-pgtable-wild", INIT + "\thcall LHCALL_NEW_PGTABLE, $0xfffff000\n",
     "bad read address 0xfffffc00"),
    ("bind-dma-wild", INIT + "\thcall LHCALL_BIND_DMA, $1, $0xfffffff0, $0x0101\n",
     "bad dma key 0x1"),
    ("bind-dma-key-past-memory", INIT + "\thcall LHCALL_BIND_DMA, $0x7ffffff0, $0, $0x0101\n",
     "bad dma key 0x7ffffff0"),
    ("async-load-tls-wild", INIT + "\tQUEUE_HCALL 0, LHCALL_LOAD_TLS, 0x7fffffff\n"
     "\thcall LHCALL_FLUSH_ASYNC\n", "bad read address 0x7fffffff len 24"),
    ("async-crash-wild", INIT + "\tQUEUE_HCALL 5, LHCALL_CRASH, 0xfffffffc\n"
     "\tQUEUE_HCALL 0, LHCALL_CRASH, 0xfffffffc\n"
     "\thcall LHCALL_FLUSH_ASYNC\n", "bad read address 0xfffffffc len 128"),
    ("async-bad-hcall", INIT + "\tQUEUE_HCALL 0, 0xdeadbeef\n\thcall LHCALL_FLUSH_ASYNC\n",
     "Bad hypercall -559038737\n"),                    # do_hcall's "%li\n"
]


@pytest.mark.parametrize("body, reason", [w[1:] for w in WILD], ids=[w[0] for w in WILD])
def test_hypercall_with_wild_pointer(tmp_path, body, reason):
    if not body.startswith("\thcall LHCALL_LGUEST_INIT") and INIT not in body:
        body = INIT + body
    m, events, elf = boot(tmp_path, body + "\tPOWER_OFF\n")
    if reason and "%" in reason:
        reason = reason % (symbols(elf)["lguest_data"])
    stop = m.run()
    if reason is None:
        # Wrong but harmless for the Host (it never dereferences it): runs on.
        assert stop.kind == "poweroff", stop
    else:
        assert (stop.kind, stop.reason) == ("killed", reason)
        assert len(kinds(events, "kill")) == 1           # only the first reason
    rc, _, err = lgdbg_run(elf)
    if reason is None:
        assert rc == 0, err
    else:
        assert rc == 1
        kill_line(err, reason)
