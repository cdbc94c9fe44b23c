"""The shadow page tables' rules (page_tables.py, after 2.6.23 page_tables.c).

Each guest here builds page tables of its own (a directory, a kernel PTE page
mapping the first 4 MiB of RAM at PAGE_OFFSET, and a "user" PTE page for
0x40000000), switches to them with NEW_PGTABLE and then does one thing the
Host must handle by the real rules.  The checks read the Guest's entries, the
Host's shadow entries and the trace, on the real machine.
"""

import pytest

from lgdbg.machine import Machine
from lgdbg.views.symbols import Symbols
from guestbuild import INIT, build_guest, own_tables

V = 0x40000000                     # the test mapping, in PDE 256
P, RW, US, PWT, A, D, PSE = 0x1, 0x2, 0x4, 0x8, 0x20, 0x40, 0x80

# own_tables: the kernel's first 4 MiB at PAGE_OFFSET (P|RW|A|D), PDE 256 ->
# pt_user, then NEW_PGTABLE.  map_v FLAGS: pt_user[0] = __PA(target) | FLAGS.
TEXT = own_tables("\tmovl\t$__PA(pt_user) + 0x67, pgdir + 256 * 4") + """
pf_handler:
	popl	pf_err
	movl	lguest_data + LGUEST_DATA_cr2, %eax
	movl	%eax, pf_cr2
	POWER_OFF

nm_handler:
	incl	nm_count
	hcall	LHCALL_TS, $0
	jmp	lguest_iret
"""

DATA = """
	.data
	.balign	4
pf_err:	.long 0
pf_cr2:	.long 0
nm_count: .long 0
	.balign	4096
pgdir:	.fill	1024, 4, 0
pt_kernel: .fill 1024, 4, 0
pt_user: .fill	1024, 4, 0
target:	.fill	1024, 4, 0x11111111
other:	.fill	1024, 4, 0x22222222
pgdir2:	.fill	1024, 4, 0
pgdir3:	.fill	1024, 4, 0
pgdir4:	.fill	1024, 4, 0
pgdir5:	.fill	1024, 4, 0
"""


def map_v(flags, page="target", slot=0):
    return "\tmovl\t$__PA(%s) + %#x, pt_user + %d\n" % (page, flags, 4 * slot)


START = INIT + "\tSET_GATE 14, pf_handler, INTERRUPT_GATE\n\tcall\town_tables\n"


def boot(tmp_path, body, **kw):
    elf = build_guest(tmp_path, START + body + "\tPOWER_OFF\n", text=TEXT, data=DATA)
    m = Machine(elf, max_insns=2_000_000, **kw)
    events = []
    m.subscribe(events.append)
    return m, events, Symbols(elf)


def gpte(m, syms, slot=0):
    return m.mem.read_u32(syms.lookup("pt_user") - m.image.page_offset + 4 * slot)


def word(m, syms, name):
    return m.mem.read_u32(syms.lookup(name) - m.image.page_offset)


def demands(events, addr=None):
    return [e for e in events if e.get("demand") and (addr is None or e["cr2"] == addr)]


def stop_at(m, syms, label):
    m.cpu.add_breakpoint(syms.lookup(label))
    stop = m.run()
    assert (stop.kind, stop.addr) == ("breakpoint", syms.lookup(label)), stop
    m.cpu.remove_breakpoint(syms.lookup(label))


def test_demand_fault_sets_accessed_then_dirty_and_shadow_is_read_only_until_dirty(tmp_path):
    body = map_v(P | RW) + """
	movl	0x40000000, %eax
after_read:
	movl	$7, 0x40000000
after_write:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "after_read")
    assert gpte(m, syms) & (A | D) == A                    # the CPU would have set A
    assert m.pt.shadow_entry(V) & (P | RW) == P            # read-only until dirty
    assert m.cpu.reg("eax") == 0x11111111                  # the Guest never noticed
    stop_at(m, syms, "after_write")
    assert gpte(m, syms) & (A | D) == A | D
    assert m.pt.shadow_entry(V) & (P | RW) == P | RW
    assert [e["errcode"] for e in demands(events, V)] == [0, 3]
    assert word(m, syms, "target") == 7
    assert m.run().kind == "poweroff"
    assert not [e for e in events if e["kind"] == "trap" and e.get("delivered")]


def test_write_to_a_read_only_guest_page_is_reflected_with_cr2_and_errcode(tmp_path):
    body = map_v(P | A) + "\tmovl\t0x40000000, %eax\n\tmovl\t$7, 0x40000000\n"
    m, events, syms = boot(tmp_path, body)
    assert m.run().kind == "poweroff"
    # Present (the read filled the shadow) + write: errcode 3, and the Guest
    # gets cr2 in lguest_data, not from the CPU.
    assert (word(m, syms, "pf_err"), word(m, syms, "pf_cr2")) == (3, V)
    reflected = [e for e in events if e["kind"] == "trap" and e.get("delivered")]
    assert [(e["vector"], e["errcode"], e["cr2"]) for e in reflected] == [(14, 3, V)]


def test_not_present_guest_page_is_reflected_as_not_present(tmp_path):
    m, events, syms = boot(tmp_path, "\tmovl\t$7, 0x40001000\n")
    assert m.run().kind == "poweroff"
    assert (word(m, syms, "pf_err"), word(m, syms, "pf_cr2")) == (2, V + 0x1000)


def test_set_pte_with_accessed_dirty_is_installed_at_once(tmp_path):
    body = "\thcall LHCALL_SET_PTE, $__PA(pgdir), $0x40000000, $__PA(target) + 0x63\n" \
        + map_v(P | RW | A | D) + "\tmovl\t$5, 0x40000000\n"
    m, events, syms = boot(tmp_path, body)
    assert m.run().kind == "poweroff"
    # No shadow PTE page existed yet for PDE 256, so SET_PTE had nothing to
    # update; the write demand-faulted once and got a writable entry at once.
    assert [e["errcode"] for e in demands(events, V)] == [2]
    assert m.pt.shadow_entry(V) & (P | RW) == P | RW


def test_set_pte_forms_on_a_shadowed_page(tmp_path):
    body = map_v(P | RW) + map_v(P | RW, "other", 1) + """
	movl	0x40001000, %eax			/* a shadow PTE page for PDE 256 */
	movl	$__PA(target) + 0x63, pt_user
	hcall	LHCALL_SET_PTE, $__PA(pgdir), $0x40000000, $__PA(target) + 0x63
after_ad:
	movl	$__PA(target) + 0x3, pt_user
	hcall	LHCALL_SET_PTE, $__PA(pgdir), $0x40000000, $__PA(target) + 0x3
after_plain:
	hcall	LHCALL_SET_PTE, $__PA(pgdir), $0x40001000, $0
after_flush_single:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "after_ad")
    assert m.pt.shadow_entry(V) & (P | RW) == P | RW       # A|D: writable now
    stop_at(m, syms, "after_plain")
    assert m.pt.shadow_entry(V) == 0                       # neither: demand it later
    assert m.pt.shadow_entry(V + 0x1000) & P
    stop_at(m, syms, "after_flush_single")
    assert m.pt.shadow_entry(V + 0x1000) == 0              # SET_PTE(cr3, addr, 0)
    assert m.run().kind == "poweroff"


def test_stale_shadow_is_what_the_guest_sees_until_it_tells_the_host(tmp_path):
    body = map_v(P | RW | A) + """
	movl	0x40000000, %edi
	movl	$__PA(other) + 0x23, pt_user		/* no SET_PTE: the shadow is stale */
	movl	0x40000000, %esi
	hcall	LHCALL_SET_PTE, $__PA(pgdir), $0x40000000, $__PA(other) + 0x23
	movl	0x40000000, %ebp
done:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "done")
    r = m.cpu.regs()
    assert (r["edi"], r["esi"], r["ebp"]) == (0x11111111, 0x11111111, 0x22222222)


def test_kernel_set_pte_updates_every_shadow(tmp_path):
    # Two toplevels sharing the kernel's PTE page; a kernel SET_PTE drops the
    # entry in both shadows, a user one only in its own.
    body = """
	movl	$__PA(pt_kernel) + 0x67, pgdir2 + 768 * 4
	movl	$__PA(pt_user) + 0x67, pgdir2 + 256 * 4
""" + map_v(P | RW | A) + """
	movl	0x40000000, %eax
	movl	target, %eax
	hcall	LHCALL_NEW_PGTABLE, $__PA(pgdir2)
	movl	0x40000000, %eax
	movl	target, %eax
both:
	hcall	LHCALL_SET_PTE, $__PA(pgdir2), $target, $0
	hcall	LHCALL_SET_PTE, $__PA(pgdir2), $0x40000000, $0
done:
"""
    m, events, syms = boot(tmp_path, body)
    target = syms.lookup("target")
    shadows = lambda addr: [m.pt.shadow_entry(addr, i) & P  # noqa: E731
                            for i in range(4) if m.pt.spgd[i] is not None]
    stop_at(m, syms, "both")
    assert sum(shadows(target)) >= 2 and sum(shadows(V)) >= 2
    stop_at(m, syms, "done")
    assert sum(shadows(target)) == 0                       # kernel: every shadow
    # user: pgdir2's shadow only (the seeded slot choice keeps pgdir's)
    first = m.pt.find_pgdir(syms.lookup("pgdir") - m.image.page_offset)
    assert m.pt.shadow_entry(V) == 0 and m.pt.shadow_entry(V, first) & P


def test_set_pmd_and_flush_tlb(tmp_path):
    body = map_v(P | RW | A) + """
	movl	0x40000000, %eax
	hcall	LHCALL_SET_PMD, $__PA(pgdir), $256
after_pmd:
	movl	0x40000000, %eax
	movl	target, %eax
	hcall	LHCALL_FLUSH_TLB, $0
after_flush_user:
	movl	0x40000000, %eax
	hcall	LHCALL_FLUSH_TLB, $1
after_flush_all:
"""
    m, events, syms = boot(tmp_path, body + "\thcall LHCALL_SET_PMD, $__PA(pgdir), $1023\n")
    stop_at(m, syms, "after_pmd")
    assert m.pt.shadow_entry(V) == 0
    stop_at(m, syms, "after_flush_user")
    assert m.pt.shadow_entry(V) == 0 and m.pt.shadow_entry(syms.lookup("target")) & P
    stop_at(m, syms, "after_flush_all")
    assert m.pt.shadow_entry(syms.lookup("target")) == 0
    assert m.run().kind == "poweroff"                      # SET_PMD on 1023: ignored
    assert len(demands(events, V)) == 3


def test_set_stack_pins_the_stack_and_new_blank_shadow_repins_it(tmp_path):
    body = """
	hcall	LHCALL_FLUSH_TLB, $1
	hcall	LHCALL_SET_STACK, $0x69, $stack_top, $2
after_set_stack:
	movl	$__PA(pt_kernel) + 0x67, pgdir2 + 768 * 4
	hcall	LHCALL_NEW_PGTABLE, $__PA(pgdir2)
after_new:
"""
    m, events, syms = boot(tmp_path, body)
    top = syms.lookup("stack_top")
    stop_at(m, syms, "after_set_stack")
    assert all(m.pt.shadow_entry(top - 1 - i * 4096) & (P | RW) == P | RW for i in (0, 1))
    stop_at(m, syms, "after_new")
    assert m.pt.cr3[m.pt.pgdidx] == syms.lookup("pgdir2") - m.image.page_offset
    assert all(m.pt.shadow_entry(top - 1 - i * 4096) & (P | RW) == P | RW for i in (0, 1))


def test_new_pgtable_keeps_four_shadows_and_picks_slots_deterministically(tmp_path):
    names = ["pgdir2", "pgdir3", "pgdir4", "pgdir5"]
    body = "".join("\tmovl\t$__PA(pt_kernel) + 0x67, %s + 768 * 4\n" % n for n in names)
    body += "".join("\thcall\tLHCALL_NEW_PGTABLE, $__PA(%s)\n" % n for n in names)
    body += "\thcall\tLHCALL_NEW_PGTABLE, $__PA(pgdir5)\ndone:\n"
    runs = []
    for n in range(2):
        (tmp_path / str(n)).mkdir()
        m, events, syms = boot(tmp_path / str(n), body)
        stop_at(m, syms, "done")
        runs.append(list(m.pt.cr3))
        phys = {x: syms.lookup(x) - m.image.page_offset for x in ["pgdir"] + names}
        # Six toplevels seen (the Launcher's, pgdir, pgdir2..5), four slots:
        # the newest is current, and someone was thrown out.
        assert None not in m.pt.cr3 and len(set(m.pt.cr3)) == 4
        assert m.pt.cr3[m.pt.pgdidx] == phys["pgdir5"]
        # Switching to a toplevel we shadow already takes no new slot.
        assert m.pt.cr3.count(phys["pgdir5"]) == 1
    assert runs[0] == runs[1]


@pytest.mark.parametrize("body, reason", [
    (map_v(P | RW | PWT) + "\tmovl\t0x40000000, %eax\n", "bad page table entry"),
    (map_v(P | RW | PSE) + "\tmovl\t0x40000000, %eax\n", "bad page table entry"),
    ("\tmovl\t$0x7fff0063, pt_user\n\tmovl\t0x40000000, %eax\n", "bad page table entry"),
    ("\tmovl\t$__PA(pt_user) + 0x167, pgdir + 256 * 4\n\tmovl\t0x40000000, %eax\n",
     "bad page directory entry"),
    ("\tmovl\t$0x7fff0067, pgdir + 256 * 4\n\tmovl\t0x40000000, %eax\n",
     "bad page directory entry"),
    ("\thcall LHCALL_SET_PTE, $__PA(pgdir), $0xffc00000, $0\n",
     "attempt to access switcher pages"),
    ("\thcall LHCALL_SET_STACK, $0x69, $0x40002000, $1\n", "bad stack page 0x40001fff"),
    # 2.6.23's harsh check: mprotect(PROT_NONE) on a page that was touched
    # leaves a non-present entry with _PAGE_PROTNONE (the PSE bit) and A set.
    (map_v(P | RW | A) + "\tmovl\t0x40000000, %eax\n"
     "\thcall LHCALL_SET_PTE, $__PA(pgdir), $0x40000000, $__PA(target) + 0xa0\n",
     "bad page table entry"),
], ids=["pwt", "pse", "pfn", "pde-flags", "pde-pfn", "switcher", "stack", "prot-none"])
def test_page_table_kill_reasons(tmp_path, body, reason):
    m, events, _ = boot(tmp_path, body)
    stop = m.run()
    assert (stop.kind, stop.reason) == ("killed", reason)


def test_ts_makes_the_next_fpu_instruction_trap_7(tmp_path):
    body = """
	SET_GATE 7, nm_handler, INTERRUPT_GATE
	fninit
	hcall	LHCALL_TS, $1
	fldz
	fldz
	hcall	LHCALL_TS, $1
	addps	%xmm0, %xmm1
"""
    m, events, syms = boot(tmp_path, body)
    assert m.run().kind == "poweroff"
    # Once per TS=1: the handler's TS(0) lets the second fldz through.
    assert word(m, syms, "nm_count") == 2
    assert [e["vector"] for e in events if e["kind"] == "trap" and e.get("delivered")] == [7, 7]


# --- a Guest stuck on one page fault ------------------------------------------------

STUCK = """
	SET_GATE 14, retry_handler, INTERRUPT_GATE
	.globl	stuck_here
stuck_here:
	movl	0x40002000, %eax
"""
RETRY = """
retry_handler:				/* "handles" the fault by doing nothing */
	addl	$4, %esp
	jmp	lguest_iret
"""


def stuck_guest(tmp_path):
    return build_guest(tmp_path, START + STUCK, text=TEXT + RETRY, data=DATA)


def test_the_same_fault_10000_times_is_status_4_naming_the_fault(tmp_path):
    import subprocess
    import sys
    elf = stuck_guest(tmp_path)
    r = subprocess.run([sys.executable, "-m", "lgdbg", "run", elf], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 4, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    eip = Symbols(elf).lookup("stuck_here")
    assert ("the same page fault (eip %#x, cr2 0x40002000, error code 0x0) reflected "
            "10000 times in a row" % eip) in last
    assert "in stuck_here" in last and "Traceback" not in r.stderr


def test_a_stuck_guest_stops_gdbs_continue_with_sigsegv_and_the_line(tmp_path):
    from lgdbg.core.debugger import Debugger
    from lgdbg.gdbstub.handlers import Session
    m = Machine(stuck_guest(tmp_path))
    session = Session(m, Debugger(m))
    stop = session.execute(session.dispatch(b"c"))
    replies = session.stop_packets(stop)
    assert replies[-1].startswith(b"T0b")                         # SIGSEGV
    said = b"".join(bytes.fromhex(r[1:].decode()) for r in replies[:-1] if r[:1] == b"O")
    assert b"reflected 10000 times in a row" in said
    assert not m.dead                                            # stopped, not gone


def test_a_fill_that_does_not_take_is_stuck_not_a_hang(tmp_path):
    # A Host whose demand_page says "mapped" without mapping (a broken shadow,
    # or a mutant of it) would retry the access for ever without retiring an
    # instruction, so --max-insns could never stop it: lgdbg stops it instead.
    m, events, syms = boot(tmp_path, map_v(P | RW) + "load:\tmovl\t0x40000000, %eax\n")
    stop_at(m, syms, "load")
    m.pt.demand_page = lambda vaddr, errcode: True
    stop = m.run()
    assert (stop.kind, stop.addr) == ("stuck", syms.lookup("load"))
    assert "cr2 0x40000000" in stop.reason and "filled by the Host" in stop.reason


def test_write_tracking_for_snapshots_is_invisible_and_exact(tmp_path):
    # The snapshot code's dirty-page tracker withholds write access in the
    # shadow: the first store to each page faults, the page is recorded and
    # the write granted, with no trace event, no Host entry and CR2 as it was.
    from lgdbg.core.snapshot import Snapshots
    body = map_v(P | RW | A | D) + """
	movl	0x40000000, %eax		/* mapped, shadowed, writable */
	movl	target, %eax
	movl	other, %eax
tracked:
	movl	$1, 0x40000000			/* the same page, through two addresses */
	movl	$2, target + 4
	movl	$3, other
written:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "tracked")
    snaps = Snapshots(m)
    start = snaps.save()                 # the base: tracking starts here
    cr2, before = m.cpu.uc.reg_read(__import__("unicorn").x86_const.UC_X86_REG_CR2), len(events)
    stop_at(m, syms, "written")
    pages = {(syms.lookup(n) - m.image.page_offset) >> 12 for n in ("target", "other")}
    assert snaps.tracker.dirty == pages
    assert not [e for e in events[before:] if e["kind"] == "trap"]
    assert m.cpu.uc.reg_read(__import__("unicorn").x86_const.UC_X86_REG_CR2) == cr2
    # The Guest still sees writable pages; the shadow's logical state says so.
    assert m.pt.shadow_entry(V) & RW and m.pt.shadow_entry(syms.lookup("other")) & RW
    # Back to the snapshot: memory and shadows as they were, tracking re-armed.
    snaps.restore(start)
    assert word(m, syms, "target") == 0x11111111 and word(m, syms, "other") == 0x22222222
    assert m.cpu.reg("eip") == syms.lookup("tracked")
    snaps.tracker.reset()
    stop_at(m, syms, "written")
    assert snaps.tracker.dirty == pages
    assert (word(m, syms, "target"), word(m, syms, "other")) == (1, 3)
    snaps.close()
    assert m.pt.tracking is None and not m.pt._held_back
    assert m.run().kind == "poweroff"


def test_watchpoint_on_an_alias_hears_the_host_write(tmp_path):
    """A watchpoint set at a second virtual address of lguest_data's page
    fires when the Host writes that page (write_timestamp at a delivery): the
    Host writes guest-physical memory, and the match is by physical page, as
    the CPU's own hooks are.  (It used to compare PAGE_OFFSET + physical with
    the watched address: an alias never fired.)"""
    body = """
	movl	$__PA(lguest_data) + 0x67, %eax
	andl	$~0xfff, %eax
	orl	$0x67, %eax
	movl	%eax, pt_user			/* lguest_data's page at 0x40000000 too */
ready:
	jmp	ready
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "ready")
    ld = syms.lookup("lguest_data")
    alias = 0x40000000 + (ld & 0xFFF) + 12          # lguest_data.time, seen at the alias
    m.add_watch(alias, 8, "watch")
    base = m.host.lguest_data
    m.cpu.ram[base:base + 8] = (0x200).to_bytes(4, "little") + bytes(4)  # enabled, none blocked
    m.raise_irq(0)                 # no handler: the Host still writes the timestamp
    stop = m.run(max_insns=1_500_000)             # to the next Host tick
    assert stop.kind == "watch" and stop.watch == ("watch", alias), stop
