"""The Host held against the real 2.6.23 source (issue 16), one rule per test.

Each test builds a purpose-made guest (tests/guestbuild.py) whose behaviour
under the real Host is read off the routine named in the test's comment
(shared/kernel/src/drivers/lguest/), runs it on the real machine and checks
what the Guest saw: the words its handlers stored, the Host's kill reason.
"""

import struct

import pytest

from lgdbg import abi
from lgdbg.views.symbols import Symbols
from guestbuild import (INIT, KERNEL_GDT, TWO_STACKS, USER_GDT, boot, build_guest, kinds,
                        to_user_mode)

MEM_TOP = (32 << 20) + 4096          # pfn_limit * 4096 with the default 32 MiB


def words(m, *names):
    sym = Symbols(m.image.path)
    return [struct.unpack("<I", m.read_memory(sym.lookup(n), 4))[0] for n in names]


def addr(m, name):
    return Symbols(m.image.path).lookup(name)


# A #GP handler that records its frame (error code, EIP, CS, EFLAGS), the
# registers a string instruction changes, and powers off.
GP_TEXT = """
gp_handler:
	popl	gp_err
	popl	gp_eip
	popl	gp_cs
	popl	gp_eflags
	movl	%esi, gp_esi
	movl	%edi, gp_edi
	movl	%ecx, gp_ecx
	mov	%cs, gp_mycs
	POWER_OFF
"""
GP_DATA = """
	.data
gp_err:	.long 0x55
gp_eip:	.long 0
gp_cs:	.long 0
gp_eflags: .long 0
gp_esi:	.long 0
gp_edi:	.long 0
gp_ecx:	.long 0
gp_mycs: .long 0
"""
GP_GATE = "\tSET_GATE 13, gp_handler, INTERRUPT_GATE\n"


# --- item 1: `int n` meets the Host's default gates -------------------------------------
# default_idt_entry / direct_trap / copy_traps (interrupts_and_traps.c): every
# vector that is not a direct trap has an interrupt gate with DPL 0 (the
# hypercall gate DPL 1), so a software interrupt there from ring 1 is a #GP
# with error code vector*8+2.

@pytest.mark.parametrize("insn, vector", [
    ("int3", 3),                      # Linux 2.6.23's int3 gate is an interrupt gate
    ("int $3", 3),
    ("int $0x21", 0x21),              # an irq vector: never run by software
    ("int $14", 14),                  # never direct; crashed lgdbg (cr2 None)
    ("int $0x80", 0x80),              # the system call vector through an interrupt gate
    ("int $0x40", 0x40),              # a vector the Guest cannot even set
    ("into", 4),                      # (OF set below)
])
def test_software_int_off_the_direct_traps_is_gp(tmp_path, insn, vector):
    body = INIT + GP_GATE + """
	SET_GATE 3, never, INTERRUPT_GATE
	SET_GATE 4, never, INTERRUPT_GATE
	SET_GATE 14, never, INTERRUPT_GATE
	SET_GATE 0x21, never, INTERRUPT_GATE
	SET_GATE 0x80, never, INTERRUPT_GATE
	movl	$0x7fffffff, %%eax
	addl	$1, %%eax		/* OF for into */
	.globl	the_int
the_int:
	%s
	CRASH_MSG "int returned"
never:	CRASH_MSG "the own handler of the Guest ran"
""" % insn
    m, events = boot(tmp_path, body, text=GP_TEXT, data=GP_DATA)
    stop = m.run()
    assert stop.kind == "poweroff", stop
    # The #GP points at the int itself (it did not retire), whatever its length.
    err, eip, cs = words(m, "gp_err", "gp_eip", "gp_cs")
    assert (err, eip, cs) == (vector * 8 + 2, addr(m, "the_int"), 0x61)
    traps = [(t["vector"], t["errcode"]) for t in kinds(events, "trap")]
    assert traps == [(13, vector * 8 + 2)]


def test_int3_through_a_dpl0_trap_gate_is_gp_but_dpl1_is_direct(tmp_path):
    # A trap gate makes vector 3 a direct trap, but `int3` still meets the
    # gate's DPL: DPL 0 (as LOAD_IDT_ENTRY keeps it) refuses ring 1.
    body = INIT + GP_GATE + """
	SET_GATE 3, bp_handler, 0xaf00	/* trap gate, DPL 1 */
	.globl	the_int
the_int:
	int3
after:	SET_GATE 3, bp_handler, TRAP_GATE	/* DPL 0 */
	.globl	second
second:
	int3
	CRASH_MSG "int3 returned"
bp_handler:
	popl	bp_eip
	incl	bp_count
	jmp	after
"""
    data = GP_DATA + "bp_eip: .long 0\nbp_count: .long 0\n"
    m, events = boot(tmp_path, body, text=GP_TEXT, data=data)
    assert m.run().kind == "poweroff"
    bp_eip, count, err, gp_eip = words(m, "bp_eip", "bp_count", "gp_err", "gp_eip")
    assert (bp_eip, count) == (addr(m, "the_int") + 1, 1)
    assert (err, gp_eip) == (3 * 8 + 2, addr(m, "second"))


def test_user_int3_on_linux_interrupt_gate_is_sigsegv_not_sigtrap(tmp_path):
    # Linux 2.6.23 sets int3 with set_system_intr_gate (interrupt gate, DPL 3):
    # not a direct trap, so the CPU meets the Host's DPL-0 gate: #GP(0x1a).
    text = GP_TEXT + """
never:	CRASH_MSG "SIGTRAP: the #BP handler ran"
user_code:
	int3
"""
    body = INIT + GP_GATE + "\tSET_GATE 3, never, 0xee00\n" + to_user_mode()
    m, events = boot(tmp_path, body, text=text, data=GP_DATA + USER_GDT)
    assert m.run().kind == "poweroff"
    err, eip, cs = words(m, "gp_err", "gp_eip", "gp_cs")
    assert (err, eip, cs) == (0x1A, addr(m, "user_code"), 0x73)


# --- item 6: direct traps are the CPU's, not reflections ------------------------------

DIRECT_TEXT = """
sys_handler:				/* trap gate: a direct trap */
	movl	8(%esp), %eax
	movl	%eax, sys_eflags
	movl	lguest_data, %eax
	movl	%eax, sys_irq_enabled
	movzbl	lguest_data + LGUEST_DATA_hcall_status, %eax
	movl	%eax, sys_ring_status	/* still queued: no Host entry */
	jmp	lguest_iret
"""
DIRECT_DATA = """
	.data
sys_eflags: .long 0
sys_irq_enabled: .long 0x55
sys_ring_status: .long 0x55
"""


def test_direct_trap_pushes_the_cpus_if_and_is_no_host_entry(tmp_path):
    # direct_trap: 0x80 through a trap gate goes straight to the Guest.  The
    # CPU pushes EFLAGS with IF set (the Guest never really clears it), so
    # lguest_iret turns irq_enabled on; and the Host is not entered, so a
    # queued async hypercall is still pending inside the handler.
    body = INIT + """
	/* Fault in (writable) every page the handler touches first: a demand
	 * fault is a Host entry, which would drain the ring. */
	movl	$0, sys_eflags
	movl	$0x55, sys_irq_enabled
	movl	$0x55, sys_ring_status
	movl	sys_handler, %eax
	movl	lguest_iret, %eax
	pushl	$0				/* and the stack the CPU pushes onto */
	popl	%eax
	SET_GATE 0x80, sys_handler, 0xaf00	/* trap gate, DPL 1 */
	QUEUE_HCALL 0, LHCALL_TS, 8
	movl	$0, lguest_data		/* interrupts "off" */
	int	$0x80
	movl	lguest_data, %eax
	movl	%eax, after_irq_enabled
	hcall	LHCALL_FLUSH_ASYNC
	POWER_OFF
"""
    m, events = boot(tmp_path, body, text=DIRECT_TEXT,
                     data=DIRECT_DATA + "after_irq_enabled: .long 0x55\n")
    assert m.run().kind == "poweroff"
    eflags, seen, status, after = words(m, "sys_eflags", "sys_irq_enabled", "sys_ring_status",
                                        "after_irq_enabled")
    assert eflags & abi.X86_EFLAGS_IF
    assert seen == 0                          # a trap gate leaves irq_enabled alone
    assert after & abi.X86_EFLAGS_IF          # M:004: lguest_iret enables irqs
    assert status == 0                        # the ring was not drained
    trap = kinds(events, "trap")[0]
    assert (trap["vector"], trap["direct"], trap["delivered"]) == (0x80, True, True)


def test_direct_fault_and_reflected_fault_push_different_if(tmp_path):
    # ud2 (#UD, vector 6) through a trap gate is direct: IF from the CPU.
    # cli (#GP, vector 13, never direct) is reflected: IF from irq_enabled.
    text = """
ud_handler:
	movl	8(%esp), %eax
	movl	%eax, ud_eflags
	addl	$2, (%esp)
	iret
gp_handler:
	movl	12(%esp), %eax
	movl	%eax, gp_eflags
	addl	$4, %esp
	incl	(%esp)
	iret
"""
    body = INIT + """
	SET_GATE 6, ud_handler, TRAP_GATE
	SET_GATE 13, gp_handler, TRAP_GATE
	movl	$0, lguest_data
	ud2
	cli
	POWER_OFF
"""
    data = "\t.data\nud_eflags: .long 0\ngp_eflags: .long 0\n"
    m, events = boot(tmp_path, body, text=text, data=data)
    assert m.run().kind == "poweroff"
    ud, gp = words(m, "ud_eflags", "gp_eflags")
    assert ud & abi.X86_EFLAGS_IF and not gp & abi.X86_EFLAGS_IF
    assert [t.get("direct", False) for t in kinds(events, "trap")] == [True, False]


# --- item 2: emulate_insn's own rule ---------------------------------------------------

@pytest.mark.parametrize("code, source", [
    ("outsb", "$buf"),
    ("rep insb", "$buf"),
    ("rep outsl", "$buf"),
    (".byte 0x66, 0x66, 0xe5, 0x60	/* in $0x60 with two prefixes */", "$buf"),
    ("outsb", "$0x100"),                 # unmapped source: the #GP comes first
])
def test_string_io_and_double_prefix_are_gp0(tmp_path, code, source):
    # emulate_insn (core.c) knows E4-E7/EC-EF after at most one 0x66: the
    # rest is the #GP(0) the CPU raised, reflected, with nothing done.
    body = INIT + GP_GATE + """
	movl	%s, %%esi
	movl	$buf, %%edi
	movl	$4, %%ecx
	movw	$0x3f8, %%dx
	.globl	the_io
the_io:
	%s
	CRASH_MSG "I/O completed"
""" % (source, code)
    data = GP_DATA + "buf: .long 0x11111111, 0x22222222\n"
    m, events = boot(tmp_path, body, text=GP_TEXT, data=data)
    assert m.run().kind == "poweroff"
    err, eip, ecx, edi, esi = words(m, "gp_err", "gp_eip", "gp_ecx", "gp_edi", "gp_esi")
    assert (err, eip, ecx) == (0, addr(m, "the_io"), 4)
    assert edi == addr(m, "buf") and esi == (addr(m, "buf") if source == "$buf" else 0x100)
    assert words(m, "buf")[0] & 0xFFFFFF00 == 0x11111100      # no byte past the first
    assert struct.unpack("<I", m.read_memory(addr(m, "buf") + 4, 4))[0] == 0x22222222
    assert not [t for t in kinds(events, "trap") if t.get("emulated")]


def test_user_mode_in_above_page_offset_is_emulated(tmp_path):
    # emulate_insn looks only at EIP >= PAGE_OFFSET, not at the ring.
    text = GP_TEXT + """
user_code:
	movl	$0x12345678, %eax
	inb	$0x60, %al
	movl	%eax, %ebx
	cli				/* a #GP that is not emulated: ends the test */
"""
    body = INIT + GP_GATE + to_user_mode()
    m, events = boot(tmp_path, body, text=text, data=GP_DATA + USER_GDT)
    assert m.run().kind == "poweroff"
    assert m.cpu.reg("ebx") == 0x1234FFFF          # even opcode: EAX |= 0xFFFF
    traps = kinds(events, "trap")
    assert traps[0]["emulated"] and traps[1]["vector"] == 13 and traps[1]["delivered"]


# --- item 3: every return to the Guest reloads its segments ------------------------------

TLS_DATA = """
	.data
	.balign 8
tls:	.long 0x0000ffff, 0x00cf9200	/* entry 6: base 0 */
	.long 0, 0
	.long 0, 0
tls2:	.long 0x0000ffff, 0x00cf9200	/* entry 6: base lguest_data's page */
	.long 0, 0
	.long 0, 0
seen1:	.long 0
seen2:	.long 0
"""


def test_load_tls_reaches_a_loaded_selector_at_once(tmp_path):
    # switch_to_guest pops %gs from the saved registers: the new descriptor
    # counts from the next return, without the Guest reloading %gs.
    body = INIT + """
	hcall	LHCALL_LOAD_TLS, $__PA(tls), $0
	movl	$0x31, %eax		/* GDT 6, RPL 1 */
	movl	%eax, %gs
	movl	%gs:marker, %eax
	movl	%eax, seen1
	/* entry 6 again, now with base 4: %gs:marker reads marker + 4 */
	movl	$0x0004ffff, tls2
	hcall	LHCALL_LOAD_TLS, $__PA(tls2), $0
	movl	%gs:marker, %eax
	movl	%eax, seen2
	POWER_OFF
"""
    data = TLS_DATA + "marker: .long 0xaaaa0001, 0xbbbb0002\n"
    m, _ = boot(tmp_path, body, data=data)
    assert m.run().kind == "poweroff"
    assert words(m, "seen1", "seen2") == [0xaaaa0001, 0xbbbb0002]


def test_selector_made_invalid_is_unhandled_trap_256(tmp_path):
    # H:610 (segments.c): the Switcher faults restoring the segment register,
    # trapnum stays 256, deliver_trap refuses it, and run_guest kills.
    body = INIT + """
	hcall	LHCALL_LOAD_TLS, $__PA(tls), $0
	movl	$0x31, %eax
	movl	%eax, %fs
	hcall	LHCALL_LOAD_TLS, $__PA(tls + 8), $0	/* entry 6 empty now */
	.globl	back
back:
	POWER_OFF
"""
    m, events = boot(tmp_path, body, data=TLS_DATA)
    stop = m.run()
    assert (stop.kind, stop.reason) == ("killed", "unhandled trap 256 at %#x (0x0)" % addr(m, "back"))
    assert kinds(events, "trap")[-1]["vector"] == 256


def test_delivery_runs_the_handler_on_cs_0x61(tmp_path):
    # set_guest_interrupt sets CS to __KERNEL_CS|GUEST_PL whatever code
    # segment the interrupted ring-1 code ran on.
    data = GP_DATA + """
	.balign 8
gdt:	.fill 12, 8, 0
	.long 0x0000ffff, 0x00cf9a00	/* 12 kernel code */
	.long 0x0000ffff, 0x00cf9200	/* 13 kernel data */
	.fill 6, 8, 0
	.long 0x0000ffff, 0x00cfba00	/* 20 another ring-1 code segment */
"""
    body = INIT + GP_GATE + """
	hcall	LHCALL_LOAD_GDT, $__PA(gdt), $21
	ljmp	$0xa1, $on_other_cs
on_other_cs:
	.globl	the_cli
the_cli:
	cli
"""
    m, _ = boot(tmp_path, body, text=GP_TEXT, data=data)
    assert m.run().kind == "poweroff"
    assert words(m, "gp_cs", "gp_mycs", "gp_eip") == [0xa1, 0x61, addr(m, "the_cli")]


# --- item 4: lguest_address_ok ----------------------------------------------------------

@pytest.mark.parametrize("body, reason", [
    # CRASH copies 128 bytes: ending exactly at the top is refused.
    (INIT + "\thcall LHCALL_CRASH, $%d\n" % (MEM_TOP - 128),
     "bad read address %#x len 128" % (MEM_TOP - 128)),
    ("\thcall LHCALL_LGUEST_INIT, $%d\n" % (MEM_TOP - 1128), "bad guest page 02000b98"),
    # A trap frame whose first push ends at the top: lgwrite_u32's reason.
    (INIT + GP_GATE + "\tmovl $%d, %%esp\n\tcli\n" % (0xC0000000 + MEM_TOP),
     "bad write address %#x" % (MEM_TOP - 4)),
])
def test_access_ending_at_the_top_is_refused(tmp_path, body, reason):
    m, _ = boot(tmp_path, body.replace("%%", "%"), text=GP_TEXT, data=GP_DATA)
    stop = m.run()
    assert (stop.kind, stop.reason) == ("killed", reason)


def test_access_ending_below_the_top_is_fine(tmp_path):
    m, _ = boot(tmp_path, INIT + "\thcall LHCALL_CRASH, $%d\n" % (MEM_TOP - 129))
    assert m.run().reason == "CRASH: "


# --- item 8 and 9: the Launcher's command line, SET_STACK's u8 ----------------------------

@pytest.mark.parametrize("cmdline, expected", [
    ("console=hvc0 quiet", b"console=hvc0 quiet \0"),
    ("", b"\0"),
    (["init=/bin/sh -x", "ro"], b"init=/bin/sh -x ro \0"),
])
def test_command_line_as_concat_builds_it(tmp_path, cmdline, expected):
    m, _ = boot(tmp_path, INIT + "\tPOWER_OFF\n", cmdline=cmdline)
    assert m.read_memory(0xC0000000 + 0x1000, len(expected)) == expected


def test_command_line_into_the_kernel_is_refused(tmp_path):
    # concat copies however much it is given; we refuse to overwrite the kernel.
    from lgdbg.errors import UsageError
    with pytest.raises(UsageError, match="would overwrite the kernel at physical 0x100000"):
        boot(tmp_path, INIT, cmdline="x" * 0x100000)


def test_set_stack_keeps_the_segment_in_a_u8(tmp_path):
    # lg->ss1 is a u8: SET_STACK(0x169) passes the RPL check and is kept as
    # 0x69, which is what a trap from ring 3 then runs on.
    text = """
sys_handler:
	movl	%ss, %eax
	movl	%eax, sys_ss
	movl	16(%esp), %eax
	movl	%eax, user_ss
	POWER_OFF
user_code:
	int	$0x80
"""
    body = INIT + "\tSET_GATE 0x80, sys_handler, 0xef00\n" + to_user_mode("$0x169")
    data = "\t.data\nsys_ss: .long 0\nuser_ss: .long 0\n" + USER_GDT
    m, _ = boot(tmp_path, body, text=text, data=data)
    assert m.run().kind == "poweroff"
    assert m.host.ss1 == 0x69
    assert words(m, "sys_ss", "user_ss") == [0x69, 0x7b]


# --- found reading segments.c: fixup_gdt_table runs over all 32 entries ------------------

def test_load_gdt_fixes_up_entries_it_did_not_read(tmp_path):
    body = INIT + "\thcall LHCALL_LOAD_GDT, $__PA(gdt), $14\n\tPOWER_OFF\n"
    m, _ = boot(tmp_path, body, data=KERNEL_GDT)
    assert m.run().kind == "poweroff"
    hi = [struct.unpack("<II", m.cpu.gdt[i])[1] for i in range(32)]
    assert hi[20] == 0x2100 and hi[1] == 0x2100           # DPL 1 and accessed
    assert hi[10] == 0x00cf9b00 and hi[11] == 0x00cf9300   # the Host's, untouched


# --- found reading segments.c: GDT entry 31 is empty in the Guest's GDT -------------------

def test_entry_31_is_no_door_to_ring_0(tmp_path):
    # setup_default_gdt_entries fills 10, 11 and 16 only: a far call through
    # selector 0xfb (entry 31) is a #GP on the selector.
    body = INIT + GP_GATE + "\t.globl the_call\nthe_call:\n\tlcall $0xfb, $0\n"
    m, _ = boot(tmp_path, body, text=GP_TEXT, data=GP_DATA)
    assert m.run().kind == "poweroff"
    assert words(m, "gp_err", "gp_eip", "gp_cs") == [0xf8, addr(m, "the_call"), 0x61]


def test_a_fault_after_int_bytes_is_still_a_fault(tmp_path):
    # `mov $0x0dcd, %ax` ends in CD 0D, the bytes of `int $0xd`: the cli
    # after it is a #GP(0) all the same, not a software int 13 (#GP(0x6a)).
    body = INIT + GP_GATE + "\tmovw $0x0dcd, %ax\n\t.globl the_cli\nthe_cli:\n\tcli\n"
    m, events = boot(tmp_path, body, text=GP_TEXT, data=GP_DATA)
    assert m.run().kind == "poweroff"
    assert words(m, "gp_err", "gp_eip") == [0, addr(m, "the_cli")]


def test_guest_writing_the_host_tss_cannot_break_the_ring_change(tmp_path):
    # The TSS page (lgdbg's, at 0xffc10000) is writable by the Guest; a ring-0
    # stack pointer it scribbled there made the next ring change a traceback.
    text = "sys_handler:\n\tPOWER_OFF\nuser_code:\n\tint $0x80\n"
    body = INIT + "\tSET_GATE 0x80, sys_handler, 0xef00\n\tmovl $0x1234, 0xffc10004\n" \
        + to_user_mode()
    m, _ = boot(tmp_path, body, text=text, data=USER_GDT)
    assert m.run().kind == "poweroff"


def test_idt_listing_says_who_enters_each_gate(tmp_path):
    from lgdbg.views import inspect
    body = INIT + GP_GATE + "\tSET_GATE 6, never, TRAP_GATE\n\tSET_GATE 0x80, never, 0xee00\n" \
        "\tPOWER_OFF\nnever:\n\tPOWER_OFF\n"
    m, _ = boot(tmp_path, body, text=GP_TEXT, data=GP_DATA)
    m.run()
    rows = {r["vector"]: r["direct"] for r in inspect.idt(m)}
    assert rows == {6: True, 13: False, 0x80: False}     # 13 never; 0x80 is an interrupt gate


def test_user_code_segment_with_a_base_still_traps_into_the_kernel(tmp_path):
    # A ring-3 code segment based at 0x1000: the Host's way back to ring 1
    # ran its lcall stub on the Guest's CS and died with a UcError.
    text = """
sys_handler:
	popl	sys_eip
	popl	sys_cs
	POWER_OFF
user_code:
	int	$0x80
"""
    body = INIT + "\tSET_GATE 0x80, sys_handler, 0xef00\n" + \
        to_user_mode().replace("pushl\t$user_code", "pushl\t$user_code - 0x1000")
    data = USER_GDT.replace("0x0000ffff, 0x00cffa00", "0x1000ffff, 0x00cffa00") + \
        "\t.data\nsys_cs: .long 0\nsys_eip: .long 0\n"
    m, _ = boot(tmp_path, body, text=text, data=data)
    assert m.run().kind == "poweroff"
    assert words(m, "sys_cs", "sys_eip") == [0x73, addr(m, "user_code") - 0x1000 + 2]


# --- no GDT a Guest can load ends lgdbg with a traceback -------------------------------------

FUZZ_BODY = INIT + """
	SET_GATE 13, fz_stop, TRAP_GATE
	SET_GATE 14, fz_stop, TRAP_GATE
	SET_GATE 0x21, fz_irq, INTERRUPT_GATE
	SET_GATE 0x80, fz_sys, 0xef00
	movl	$0x200, lguest_data
	movl	fz_ss1, %edx
	hcall	LHCALL_SET_STACK, %edx, $kstack_top, $1
""" + to_user_mode().replace("hcall\tLHCALL_SET_STACK, $KERNEL_DS, $kstack_top, $1", "") + """
fz_stop:
	POWER_OFF
fz_irq:
	jmp	lguest_iret
fz_sys:
	hcall	LHCALL_LOAD_GDT, $__PA(gdt2), $32
	jmp	lguest_iret
user_code:
	int	$0x80
1:	jmp	1b
"""
FUZZ_DATA = """
	.data
	.balign 8
gdt:	.fill 32, 8, 0
gdt2:	.fill 32, 8, 0
fz_ss1:	.long 0x69
""" + TWO_STACKS


@pytest.mark.parametrize("seed", [3, 8])      # both crashed lgdbg before the flat CS
def test_random_gdts_and_stack_segments_never_crash_lgdbg(tmp_path, seed):
    # Two GDTs per run (one loaded in ring 1, one from a system call made in
    # ring 3), mostly-sane kernel and user segments with random ones around
    # them, a random SET_STACK segment and an irq: every run must end as the
    # Host would end it (a kill, power-off, the instruction limit), never in
    # a Python exception from a segment reload or a ring change.
    import random
    from lgdbg.machine import Machine
    rng = random.Random(seed)
    elf = build_guest(tmp_path, FUZZ_BODY, data=FUZZ_DATA, name="fuzz")
    sym = Symbols(elf)
    sane = {12: (0xFFFF, 0x00CF9A00), 13: (0xFFFF, 0x00CF9200),
            14: (0xFFFF, 0x00CFFA00), 15: (0xFFFF, 0x00CFF200)}
    ends = set()
    for _ in range(150):
        m = Machine(elf, max_insns=200_000, irqs=[(1, rng.randrange(50, 400))])
        for table, p_sane in (("gdt", 0.9), ("gdt2", 0.8)):
            base = sym.lookup(table) - 0xC0000000
            for i in range(32):
                d = sane[i] if i in sane and rng.random() < p_sane else \
                    (rng.getrandbits(32), rng.getrandbits(32)) if rng.random() < 0.3 else (0, 0)
                m.cpu.ram[base + 8 * i:base + 8 * i + 8] = struct.pack("<II", *d)
        ss1 = sym.lookup("fz_ss1") - 0xC0000000
        m.cpu.ram[ss1:ss1 + 4] = struct.pack(
            "<I", rng.choice([0x69, 0x69, 0x61, 0x01, 0x79, 0x169, rng.getrandbits(16) | 1]))
        stop = m.run()
        assert stop.kind in ("killed", "poweroff", "max-insns"), stop
        ends.add(stop.kind if stop.kind != "killed" else stop.reason.split(" at ")[0])
    assert {"poweroff", "unhandled trap 256"} <= ends
