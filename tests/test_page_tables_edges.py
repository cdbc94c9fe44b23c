"""The shadow page tables at the edges of 2.6.23 page_tables.c's rules.

Written against the mutants tools/mutation_score.py named (README "Mutation
testing"): each test holds one rule of the real file (or of lgdbg's write
tracking and snapshots, which live beside it) at its edge, in both
directions, on the real machine.  "What the CPU walks" is read from CR3 and
the pool through unicorn, not through PageTables.
"""

import struct

import pytest

from unicorn import x86_const

from lgdbg import abi
from lgdbg.core.snapshot import Snapshots
from lgdbg.machine import Machine
from lgdbg.machine.page_tables import POOL_PHYS, PageTables
from lgdbg.views.symbols import Symbols
from guestbuild import build_guest
from test_page_tables import (A, D, DATA, P, RW, START, TEXT, US, V, gpte, map_v,
                              stop_at, word)

V2 = V + 0x400000                   # PDE 257, pointed at pt_user as well
V3 = V + 0x800000                   # PDE 258, likewise
MEM_TOP = (32 << 20) + 4096          # pfn_limit * 4096 with the default 32 MiB

MORE_DATA = """
	.balign	4096
pgdirs:	.fill	20 * 1024, 4, 0
"""


def boot(tmp_path, body):
    elf = build_guest(tmp_path, START + body + "\tPOWER_OFF\n", text=TEXT,
                      data=DATA + MORE_DATA)
    m = Machine(elf, max_insns=2_000_000)
    events = []
    m.subscribe(events.append)
    return m, events, Symbols(elf)


def phys_u32(m, addr):
    return struct.unpack("<I", bytes(m.cpu.uc.mem_read(addr, 4)))[0]


def cpu_pde(m, vaddr):
    """The shadow directory entry the CPU uses for vaddr (CR3 -> pool)."""
    cr3 = m.cpu.uc.reg_read(x86_const.UC_X86_REG_CR3)
    return phys_u32(m, (cr3 & ~0xFFF) + (vaddr >> 22) * 4)


def cpu_pte(m, vaddr):
    """The shadow PTE the CPU walks for vaddr, 0 where the walk stops."""
    pde = cpu_pde(m, vaddr)
    if not pde & P:
        return 0
    return phys_u32(m, (pde & ~0xFFF) + ((vaddr >> 12) & 0x3FF) * 4)


def pool_page_of(m, vaddr):
    return (cpu_pde(m, vaddr) & ~0xFFF) >> 12


def demands(events, addr):
    return [e for e in events if e.get("demand") and e["cr2"] == addr]


# --- guest_set_pmd: the Switcher's entry is never released, nor an unknown cr3's -------

def test_set_pmd_spares_1023_and_unknown_toplevels_and_releases_1022(tmp_path):
    body = map_v(P | RW | A) + """
	movl	$__PA(pt_user) + 0x67, pgdir + 1022 * 4
	movl	0xff800000, %eax
	movl	0x40000000, %eax
	hcall	LHCALL_SET_PMD, $__PA(pgdir), $1023
after_1023:
	hcall	LHCALL_SET_PMD, $__PA(pgdir2), $1022	/* no shadow of pgdir2 */
after_unknown:
	hcall	LHCALL_SET_PMD, $__PA(pgdir), $1022
after_1022:
"""
    m, events, syms = boot(tmp_path, body)
    switcher = [abi.SWITCHER_ADDR + (i << 12) for i in range(1024)]
    stop_at(m, syms, "after_1023")
    assert cpu_pde(m, abi.SWITCHER_ADDR) & P
    assert any(cpu_pte(m, a) & P for a in switcher)
    assert [cpu_pte(m, a) for a in switcher] == [m.pt.shadow_entry(a) for a in switcher]
    assert cpu_pde(m, 0xFF800000) & P
    stop_at(m, syms, "after_unknown")
    assert cpu_pde(m, 0xFF800000) & P and cpu_pde(m, V) & P
    stop_at(m, syms, "after_1022")
    assert cpu_pde(m, 0xFF800000) == 0 and cpu_pde(m, V) & P
    assert m.run().kind == "poweroff"


# --- pin_page: refill only a stack page the shadow does not let the Guest write ---------

def test_set_stack_fills_only_pages_not_writable_in_the_shadow(tmp_path):
    body = map_v(P | RW) + map_v(P | RW, "other", 1) + """
	movl	0x40000000, %eax
	movl	0x40001000, %eax		/* both shadowed read-only: not dirty */
read_only:
	hcall	LHCALL_SET_STACK, $0x69, $0x40002000, $2
pinned:
	hcall	LHCALL_SET_STACK, $0x69, $0x40002000, $2
again:
	hcall	LHCALL_SET_STACK, $0x69, $0x40002000, $2
tracked:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "read_only")
    fills = m.pt.fills
    assert [gpte(m, syms, s) & (A | D) for s in (0, 1)] == [A, A]
    assert [cpu_pte(m, V + s * 4096) & RW for s in (0, 1)] == [0, 0]
    stop_at(m, syms, "pinned")
    # Not writable: demand_page(vaddr, 2), as for a write (A|D in the Guest's PTE).
    assert m.pt.fills == fills + 2
    assert [gpte(m, syms, s) & (A | D) for s in (0, 1)] == [A | D, A | D]
    assert [cpu_pte(m, V + s * 4096) & RW for s in (0, 1)] == [RW, RW]
    stop_at(m, syms, "again")
    assert m.pt.fills == fills + 2                     # writable already: left alone
    # Write tracking withholds RW from the CPU's entries; to the Host they are
    # still writable, so pinning them again fills nothing either.
    snaps = Snapshots(m)
    snaps.save()
    assert [cpu_pte(m, V + s * 4096) & RW for s in (0, 1)] == [0, 0]
    stop_at(m, syms, "tracked")
    assert m.pt.fills == fills + 2 and not snaps.tracker.dirty
    assert [m.pt.shadow_entry(V + s * 4096) & RW for s in (0, 1)] == [RW, RW]
    snaps.close()
    assert m.run().kind == "poweroff"


# --- guest_set_pte: PAGE_OFFSET itself is a kernel address ------------------------------

def test_set_pte_at_page_offset_changes_every_shadow_and_one_below_only_its_own(tmp_path):
    body = """
	movl	$__PA(pt_kernel) + 0x67, pgdir2 + 768 * 4
	movl	$__PA(pt_user) + 0x67, pgdir + 767 * 4
	movl	$__PA(pt_user) + 0x67, pgdir2 + 767 * 4
""" + map_v(P | RW | A, "target", 1023) + """
	movl	0xc0000000, %eax
	movl	0xbffff000, %eax
	hcall	LHCALL_NEW_PGTABLE, $__PA(pgdir2)
	movl	0xc0000000, %eax
	movl	0xbffff000, %eax
both:
	hcall	LHCALL_SET_PTE, $__PA(pgdir2), $0xc0000000, $0
	hcall	LHCALL_SET_PTE, $__PA(pgdir2), $0xbffff000, $0
done:
"""
    m, events, syms = boot(tmp_path, body)
    first = lambda: m.pt.find_pgdir(syms.lookup("pgdir") - m.image.page_offset)  # noqa: E731
    stop_at(m, syms, "both")
    assert first() != m.pt.pgdidx
    assert m.pt.shadow_entry(0xC0000000, first()) & P
    assert m.pt.shadow_entry(0xBFFFF000, first()) & P
    stop_at(m, syms, "done")
    assert m.pt.shadow_entry(0xC0000000, first()) == 0          # kernel: every shadow
    assert m.pt.shadow_entry(0xBFFFF000, first()) & P           # user: pgdir2's only
    assert m.pt.shadow_entry(0xBFFFF000) == 0
    assert m.run().kind == "poweroff"


# --- new_pgdir: random32() % 4 throws out any of the four shadows; only a blank one is re-pinned

def test_new_toplevels_take_random_slots_and_only_blank_ones_repin_the_stack(tmp_path):
    # The SET_STACK stack is in user space here (V), so flush_user_mappings
    # drops it from a slot that is taken over: the Host re-pins only a shadow
    # that is blank (new_pgdir's *blank_pgdir), which fills the two pages again.
    body = map_v(P | RW | A | D) + map_v(P | RW | A | D, "other", 1) + """
	hcall	LHCALL_SET_STACK, $0x69, $0x40002000, $2
	xorl	%esi, %esi
1:	movl	%esi, %edi
	shll	$12, %edi
	movl	$__PA(pt_kernel) + 0x67, pgdirs + 768 * 4(%edi)
	movl	$__PA(pt_user) + 0x67, pgdirs + 256 * 4(%edi)
	leal	__PA(pgdirs)(%edi), %edi
switching:
	hcall	LHCALL_NEW_PGTABLE, %edi
switched:
	incl	%esi
	cmpl	$20, %esi
	jne	1b
	hcall	LHCALL_NEW_PGTABLE, %edi	/* the current one again: no new slot */
again:
"""
    m, events, syms = boot(tmp_path, body)
    before, after = syms.lookup("switching"), syms.lookup("switched")
    m.cpu.add_breakpoint(before)
    m.cpu.add_breakpoint(after)
    slots, repins = [], {True: set(), False: set()}    # allocated before? -> stack
    for _ in range(20):
        assert m.run().addr == before
        allocated = [s is not None for s in m.pt.spgd]
        assert m.run().addr == after
        slots.append(m.pt.pgdidx)
        stack = tuple(cpu_pte(m, V + s * 4096) & (P | RW) for s in (0, 1))
        repins[allocated[m.pt.pgdidx]].add(stack)
    m.cpu.remove_breakpoint(before)
    m.cpu.remove_breakpoint(after)
    base = syms.lookup("pgdirs") - m.image.page_offset
    assert m.pt.cr3[m.pt.pgdidx] == base + 19 * 4096
    # Twenty toplevels never seen before: each took the slot random32() chose,
    # and the choice keeps moving over all four (none is stuck).
    assert set(slots[4:]) == {0, 1, 2, 3}
    assert repins == {False: {(P | RW, P | RW)}, True: {(0, 0)}}   # blank: re-pinned
    assert allocated[m.pt.pgdidx]                  # so the stack is not in this shadow
    slot = m.pt.pgdidx
    stop_at(m, syms, "again")
    assert m.pt.pgdidx == slot and cpu_pte(m, V) == cpu_pte(m, V + 4096) == 0
    assert m.cpu.reg("esp") > m.image.page_offset
    assert m.run().kind == "poweroff"


# --- shadow_entry: what the debugger shows is what the CPU walks ------------------------

def test_shadow_entry_is_the_entry_the_cpu_walks(tmp_path):
    body = map_v(P | RW | A | D) + map_v(P | RW, "other", 1) + """
	movl	$1, 0x40000000
	movl	0x40001000, %eax
done:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "done")
    switcher = [abi.SWITCHER_ADDR + (i << 12) for i in range(1024)]
    addrs = [V, V + 0x1000, V + 0x2000, 0x80000000, syms.lookup("target"),
             syms.lookup("done")] + switcher
    assert [m.pt.shadow_entry(a) for a in addrs] == [cpu_pte(m, a) for a in addrs]
    assert m.pt.shadow_entry(V) & (P | RW) == P | RW
    assert m.pt.shadow_entry(V + 0x1000) & (P | RW) == P
    assert m.pt.shadow_entry(0x80000000) == 0 and m.pt.shadow_entry(V + 0x2000) == 0
    unused = [i for i in range(4) if m.pt.spgd[i] is None]
    assert unused and all(m.pt.shadow_entry(V, i) == 0 for i in unused)
    # The pool holds tables only: the Switcher's PTE page, each directory and
    # a PTE page per present directory entry; each came from a counted fill.
    tables = 1
    for i in range(4):
        if m.pt.spgd[i] is not None:
            top = POOL_PHYS + m.pt.spgd[i] * 4096
            tables += 1 + sum(phys_u32(m, top + 4 * k) & P for k in range(1023))
    assert len(m.pt.pool.in_use()) == tables
    assert m.pt.fills == len([e for e in events if e.get("demand")])
    # Tracking withholds RW from the CPU's entry; the Host's entry keeps it.
    snaps = Snapshots(m)
    snaps.save()
    assert cpu_pte(m, V) & RW == 0
    assert m.pt.shadow_entry(V) == cpu_pte(m, V) | RW
    assert m.pt.shadow_entry(V + 0x1000) == cpu_pte(m, V + 0x1000)
    snaps.close()
    assert m.pt.shadow_entry(V) == cpu_pte(m, V)


# --- guest_walk: the debugger's walk of any toplevel, never past the end of RAM --------

def test_guest_walk_reads_the_toplevel_asked_for_and_stops_at_the_end_of_ram(tmp_path):
    body = """
	movl	$__PA(pt_kernel) + 0x67, pgdir2 + 768 * 4
	movl	$__PA(pgdir3) + 0x67, pgdir2 + 256 * 4	/* pgdir3 as pgdir2's PTE page */
	movl	$__PA(other) + 0x63, pgdir3
	movl	$%#x + 0x67, pgdir4			/* the last page of RAM */
	movl	$%#x + 0x67, pgdir4 + 4		/* the first page past it */
""" % (MEM_TOP - 4096, MEM_TOP) + map_v(P | RW | A) + "done:\n"
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "done")
    pa = lambda name: syms.lookup(name) - m.image.page_offset  # noqa: E731
    assert m.pt.guest_walk(V + 0x123)[2] == pa("target") + 0x123
    assert m.pt.guest_walk(V + 0x1000) == (pa("pt_user") + 0x67, 0, None)
    # The PTE read stops at the end of RAM exactly as the toplevel read does.
    assert m.mem.limit == MEM_TOP and m.cpu.ram[MEM_TOP - 4:MEM_TOP] == bytes(4)
    assert m.pt.guest_walk(0x3FF000, cr3=pa("pgdir4")) == (MEM_TOP - 4096 + 0x67, 0, None)
    assert m.pt.guest_walk(0x400000, cr3=pa("pgdir4")) == (MEM_TOP + 0x67, None, None)
    walk = m.pt.guest_walk(V + 0x123, cr3=pa("pgdir2"))
    assert walk == (pa("pgdir3") + 0x67, pa("other") + 0x63, pa("other") + 0x123)
    limit = m.mem.limit
    # A toplevel whose last entry is the last word of RAM is read; one more
    # page up, the entry would lie past the end: no walk at all.
    assert m.pt.guest_walk(0xFFC00000, cr3=limit - 4096) == (0, None, None)
    assert m.pt.guest_walk(0, cr3=limit) is None
    assert m.pt.guest_walk(0xFFC00000, cr3=limit - 4096 + 4) is None


# --- write tracking (snapshots): a released shadow page forgets what it withheld -------

def test_tracking_forgets_withheld_entries_of_a_released_page_and_only_those(tmp_path):
    body = """
	movl	$__PA(pt_user) + 0x67, pgdir + 257 * 4
	movl	$__PA(pt_user) + 0x67, pgdir + 258 * 4
""" + map_v(P | RW | A | D) + map_v(P | RW | A, "other", 1) + """
	movl	$1, 0x40000000			/* PTE page p for PDE 256, writable */
	movl	$1, 0x40400000			/* p + 1 for PDE 257, writable */
	movl	0x40001000, %eax		/* read-only: not dirty */
tracked:
	hcall	LHCALL_SET_PMD, $__PA(pgdir), $256
released:
	movl	0x40801000, %eax		/* PDE 258 takes page p again */
reused:
	movl	$__PA(target) + 0x23, pt_user	/* no D: the next read fills read-only */
	movl	0x40000000, %eax
refilled:
	movl	$2, 0x40000000			/* a real fault: demand_page sets D */
	movl	$3, 0x40400000			/* the tracker's fault only */
	movl	$4, 0x40001000			/* a real fault too */
written:
	movl	$5, 0x40400000
rearmed:
	movl	0x40002000, %eax		/* not mapped: reflected */
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "tracked")
    assert pool_page_of(m, V2) == pool_page_of(m, V) + 1
    logical = [cpu_pte(m, a) for a in (V, V2, V + 0x1000)]
    snaps = Snapshots(m)
    snaps.save()
    start = len(events)
    assert [cpu_pte(m, a) & RW for a in (V, V2, V + 0x1000)] == [0, 0, 0]
    assert [m.pt.shadow_entry(a) for a in (V, V2, V + 0x1000)] == logical
    stop_at(m, syms, "released")
    assert cpu_pde(m, V) == 0 and m.pt.shadow_entry(V2) == logical[1]
    p = pool_page_of(m, V2) - 1
    stop_at(m, syms, "reused")
    assert pool_page_of(m, V3) == p                        # V's old entry is V3's now
    assert m.pt.shadow_entry(V3) == cpu_pte(m, V3) == 0
    stop_at(m, syms, "refilled")
    assert m.pt.shadow_entry(V) & (P | RW) == P == cpu_pte(m, V) & (P | RW)
    fills = m.pt.fills
    stop_at(m, syms, "written")
    # V and V+0x1000 took demand_page (D in the Guest's PTEs); V2 took nothing.
    assert [gpte(m, syms, s) & (A | D) for s in (0, 1)] == [A | D, A | D]
    assert [len(demands(events[start:], a)) for a in (V, V2, V + 0x1000)] == [2, 0, 1]
    assert m.pt.fills == fills + 2
    pa = lambda name: (syms.lookup(name) - m.image.page_offset) >> 12  # noqa: E731
    assert snaps.tracker.dirty == {pa("pt_user"), pa("target"), pa("other")}
    snaps.tracker.reset()                    # a new period: V2's grant is taken back
    assert cpu_pte(m, V2) & RW == 0
    stop_at(m, syms, "rearmed")
    assert snaps.tracker.dirty == {pa("target")} and word(m, syms, "target") == 5
    held = [m.pt.shadow_entry(a) for a in (V, V2, V + 0x1000)]
    snaps.close()                            # every entry as the Host made it
    assert [cpu_pte(m, a) for a in (V, V2, V + 0x1000)] == held
    assert all(e & (P | RW) == P | RW for e in held)
    assert m.run().kind == "poweroff"
    assert not demands(events, V + 0x2000) and word(m, syms, "pf_cr2") == V + 0x2000


def test_tracking_starts_with_the_pages_already_dirty_writable(tmp_path):
    body = map_v(P | RW | A | D) + map_v(P | RW | A | D, "other", 1) + """
	movl	$1, 0x40000000
	movl	$1, 0x40001000
done:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "done")
    target = (syms.lookup("target") - m.image.page_offset) >> 12
    dirty = {target}
    m.pt.track_writes(dirty)
    assert [cpu_pte(m, a) & RW for a in (V, V + 0x1000)] == [RW, 0]
    assert m.pt.tracking_fault(V + 0x1000, 2) and dirty == {target, target + 1}
    assert cpu_pte(m, V + 0x1000) & RW
    m.pt.stop_tracking()
    assert m.run().kind == "poweroff"


# --- snapshots: a restore brings back the shadows exactly, and the TLB with them --------

@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
def test_restore_brings_back_the_shadows_exactly_and_replays_the_same(tmp_path, track):
    body = map_v(P | RW | A | D) + """
	movl	$__PA(pt_user) + 0x67, pgdir + 257 * 4
	movl	$__PA(pt_kernel) + 0x67, pgdir2 + 768 * 4
	movl	$__PA(pt_kernel) + 0x67, pgdir3 + 768 * 4
	movl	$1, 0x40000000
saved:
	movl	0x40000000, %esi
read_back:
	movl	0x40400000, %eax		/* a PTE page taken after the save */
	hcall	LHCALL_NEW_PGTABLE, $__PA(pgdir2)
	hcall	LHCALL_NEW_PGTABLE, $__PA(pgdir3)
	hcall	LHCALL_NEW_PGTABLE, $__PA(pgdir)
	movl	0x40000000, %eax		/* shadowed, in whichever slot pgdir has */
	hcall	LHCALL_SET_PTE, $__PA(pgdir), $0x40000000, $__PA(other) + 0x63
	movl	0x40000000, %ebp		/* the TLB holds V -> other now */
changed:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "saved")
    snaps = Snapshots(m, track=track)
    snaps.save()                         # the base (tracking starts after it)
    snap = snaps.save()                  # with the entries the tracker withholds
    assert bool(m.pt.save_state()["held"]) == track
    saved = PageTables.logical_pages(m.pt.save_state())
    # The saved state's entry for V is the Host's (RW), not the CPU's.
    page = ((cpu_pde(m, V) & ~0xFFF) - POOL_PHYS) >> 12
    entry = struct.unpack_from("<I", saved[page], ((V >> 12) & 0x3FF) * 4)[0]
    assert entry == m.pt.shadow_entry(V) == cpu_pte(m, V) | (RW if track else 0)
    assert entry & (P | RW) == P | RW
    counts = (m.pt.fills, m.pt.pool.next_page)
    stop_at(m, syms, "read_back")
    assert m.cpu.reg("esi") == 1
    stop_at(m, syms, "changed")
    assert m.cpu.reg("ebp") == 0x22222222
    first = (list(m.pt.cr3), list(m.pt.spgd), m.pt.pgdidx, m.pt.fills)
    top = m.pt.pool.next_page
    assert top > counts[1]
    snaps.restore(snap)
    assert PageTables.logical_pages(m.pt.save_state()) == saved
    assert (m.pt.fills, m.pt.pool.next_page) == counts
    # The pages the restore gave back are zeroed, as get_zeroed_page hands out.
    used = set(m.pt.pool.in_use())
    size = abi.PAGE_SIZE
    assert all(m.pt.pool.buf[p * size:(p + 1) * size] == bytes(size)
               for p in range(top) if p not in used)
    stop_at(m, syms, "read_back")
    assert m.cpu.reg("esi") == 1                           # not the TLB's V -> other
    stop_at(m, syms, "changed")
    assert (list(m.pt.cr3), list(m.pt.spgd), m.pt.pgdidx, m.pt.fills) == first
    snaps.close()
    assert m.run().kind == "poweroff"


# --- demand_page: a toplevel entry that is not present maps nothing ---------------------

def test_a_not_present_toplevel_entry_is_reflected_and_takes_no_pte_page(tmp_path):
    # The entry points at pt_user, whose slot 0 maps `target`, but lacks P.
    body = map_v(P | RW | A | D) + """
	movl	$__PA(pt_user) + 0x66, pgdir + 256 * 4
	hcall	LHCALL_SET_PMD, $__PA(pgdir), $256
	movl	0x40000000, %eax
"""
    m, events, syms = boot(tmp_path, body)
    assert m.run().kind == "poweroff"
    assert (word(m, syms, "pf_err"), word(m, syms, "pf_cr2")) == (0, V)
    assert cpu_pde(m, V) == 0 and not demands(events, V)


# --- check_gpgd, check_gpte, gpte_to_spte: pfn_limit is the first page that is not ------


def test_pfn_limit_is_refused_in_both_levels_and_the_page_below_it_is_not(tmp_path):
    def run(body):
        (tmp_path / str(len(runs))).mkdir()
        m, events, syms = boot(tmp_path / str(len(runs)), body)
        assert m.mem.limit == MEM_TOP
        runs.append(m)
        return m.run(), m
    runs = []
    pde = "\tmovl\t$%#x + 0x67, pgdir + 256 * 4\n\tmovl\t0x40000000, %%eax\n"
    pte = "\tmovl\t$%#x + 0x63, pt_user\n\tmovl\t0x40000000, %%eax\n"
    stop, _ = run(pde % MEM_TOP)
    assert (stop.kind, stop.reason) == ("killed", "bad page directory entry")
    stop, m = run(pde % (MEM_TOP - 4096))          # the device page, as a PTE page
    assert stop.kind == "poweroff" and cpu_pde(m, V) & P
    stop, m = run(pte % MEM_TOP)
    assert (stop.kind, stop.reason) == ("killed", "bad page table entry")
    assert m.pt.shadow_entry(V) == 0               # a page it cannot get is never mapped
    stop, m = run(pte % (MEM_TOP - 4096))
    assert stop.kind == "poweroff" and cpu_pte(m, V) >> 12 == (MEM_TOP >> 12) - 1


# --- demand_page: bit 1 of the error code is a write, bit 2 a user access ---------------

def test_the_error_code_bits_demand_page_reads(tmp_path):
    body = map_v(P | RW | A) + map_v(P | US | A, "other", 1) + "done:\n"
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "done")
    # A user access to a page without US is refused, a kernel one is not.
    assert not m.pt.demand_page(V, 4) and not m.pt.demand_page(V, 6)
    assert cpu_pte(m, V) == 0 and gpte(m, syms, 0) & (A | D) == A
    assert m.pt.demand_page(V, 0) and cpu_pte(m, V) & (P | RW | US) == P
    # Error code 5 (present, user, read): what a user read gets through a
    # toplevel entry without US.  Bit 0 is no write: the read-only page fills,
    # and the Guest's entry gets A, not D.
    assert not m.pt.demand_page(V + 0x1000, 7)     # present, user, write: refused
    assert cpu_pte(m, V + 0x1000) == 0
    assert m.pt.demand_page(V + 0x1000, 5)
    assert cpu_pte(m, V + 0x1000) & (P | RW | US) == P | US
    assert gpte(m, syms, 1) & (A | D) == A


# --- spgd_addr: after the kill for a Switcher address, entry 0 stands in ----------------

def test_set_pte_on_the_switcher_kills_and_touches_only_entry_0(tmp_path):
    body = """
	movl	$__PA(pt_user) + 0x67, pgdir
	movl	$__PA(pt_user) + 0x67, pgdir + 4
""" + map_v(P | RW | A, "target", 5) + """
	movl	0x5000, %eax
	movl	0x405000, %eax
both:
	hcall	LHCALL_SET_PTE, $__PA(pgdir), $0xffc05000, $0
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "both")
    assert m.pt.shadow_entry(0x5000) & m.pt.shadow_entry(0x405000) & P
    stop = m.run()
    assert (stop.kind, stop.reason) == ("killed", "attempt to access switcher pages")
    assert m.pt.shadow_entry(0x5000) == 0 and m.pt.shadow_entry(0x405000) & P


# --- tracking_fault: only a write the tracker alone refused is its business -------------

def test_tracking_fault_takes_only_writes_to_entries_it_withholds(tmp_path):
    body = """
	movl	$__PA(pt_user) + 0x63, pgdir + 257 * 4	/* no US in the toplevel */
""" + map_v(P | RW | A | D) + map_v(P | RW | US | A | D, "other", 1) \
        + map_v(P | RW | A | D, "target", 2) + """
	movl	$1, 0x40000000
	movl	$1, 0x40001000
	movl	$1, 0x40401000
done:
	movl	0x40002000, %eax		/* target again (D): filled while tracking */
alias:
	hcall	LHCALL_SET_PTE, $__PA(pgdir), $0x40000000, $__PA(target) + 0x3
dropped:
	movl	$3, 0x40000000
written:
"""
    m, events, syms = boot(tmp_path, body)
    stop_at(m, syms, "done")
    pfn = lambda name: (syms.lookup(name) - m.image.page_offset) >> 12  # noqa: E731
    assert not m.pt.tracking_fault(V, 2)                   # not tracking
    dirty = set()
    m.pt.track_writes(dirty)
    assert [cpu_pte(m, a) & RW for a in (V, V + 0x1000, V2 + 0x1000)] == [0, 0, 0]
    refused = [(V, 0), (V, 4), (V + 0x1000, 4),            # reads
               (V, 6),                                     # user write, kernel PTE
               (V2 + 0x1000, 6),                           # user write, kernel PDE
               (V + 0x2000, 2),                            # nothing withheld there
               (0x80000000, 2),                            # no shadow PTE page
               (abi.SWITCHER_ADDR, 2), (0xFFFFF000, 2)]    # the Switcher's
    assert [a for a, e in refused if m.pt.tracking_fault(a, e)] == []
    assert not dirty and [cpu_pte(m, a) & RW for a in (V, V + 0x1000)] == [0, 0]
    assert m.pt.tracking_fault(V + 0x1000, 6)              # user write, user page
    assert dirty == {pfn("other")} and cpu_pte(m, V + 0x1000) & RW
    assert m.pt.tracking_fault(V, 2) and dirty == {pfn("other"), pfn("target")}
    assert cpu_pte(m, V) & RW and not m.pt.tracking_fault(V, 2)    # granted once
    stop_at(m, syms, "alias")               # a fill of a page dirty already: writable
    assert cpu_pte(m, V + 0x2000) & RW and dirty == {pfn("other"), pfn("target")}
    dirty.clear()
    m.pt.rearm_tracking()                   # takes back every grant of the period
    assert [cpu_pte(m, a) & RW for a in (V, V + 0x1000, V + 0x2000, V2 + 0x1000)] == [0] * 4
    stop_at(m, syms, "dropped")             # SET_PTE without A|D: the entry goes
    assert m.pt.shadow_entry(V) == cpu_pte(m, V) == 0
    stop_at(m, syms, "written")             # a demand fault, then the tracker's
    assert dirty == {pfn("target")} and gpte(m, syms) & (A | D) == A | D
    m.pt.stop_tracking()
    assert not m.pt.tracking_fault(V, 2)
    assert m.run().kind == "poweroff"

