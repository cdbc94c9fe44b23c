"""The Host's shadow page tables, after Linux 2.6.23 drivers/lguest/page_tables.c
(and 3.2's, where it differs: see "The 3.2 Host" below).

The Guest keeps page tables of its own, but the CPU never walks them: it walks
the *shadow* tables that the Host builds here from the Guest's, checked and
converted, lazily.  The Guest never sees the shadows: they live in Host pages
(the pool below) that no shadow maps.  The routines come in the order of the
real file, under its names:

    (i)   demand_page            a #PF the Guest's own tables allow: fill the
                                 shadow, set ACCESSED/DIRTY in the Guest's
                                 entry, resume as if nothing happened
    (ii)  page_writable, pin_page the kernel stack must be mapped before a
                                 trap needs it (SET_STACK)
    (iii) do_set_pte, guest_set_pte, guest_set_pmd   the Guest said an entry changed
    (iv)  find_pgdir, new_pgdir, guest_new_pagetable  four shadows, keyed by cr3
    (v)   release_pgd, flush_user_mappings, guest_pagetable_flush_user,
          release_all_pagetables, guest_pagetable_clear_all   throwing away
    (vi)  map_switcher_in_guest  the Host's top 4 MiB in every shadow
    (vii) init_guest_pagetable   the Launcher's tables are the first cr3

How the CPU follows the shadows (the mechanism, chosen by measurement): unicorn
runs with paging on (CR0.PG, and CR0.WP so that a read-only shadow entry stops
ring 1 too) and CR3 pointing at the current shadow directory in the pool.  So
unicorn's MMU walks the shadow in C, caches it in its TLB, and raises a real
#PF with CR2 and the error code when an entry is missing or too weak; no
Python runs per access, only per fault.  The other way, unicorn's virtual-TLB
mode answering every TLB miss from a Python callback, calls Python on every
miss (the TLB is small and every CR3 write empties it), and unicorn restores
CPU state before each call (unicorn issue 2342).  Guest RAM stays mapped
once, at physical 0 in unicorn's address space, so translated code is keyed by
physical page and a Guest store through any mapping invalidates it.
Measured (bench/kernel_boot.py): the real 2.6.23 kernel boots to power-off in
94 M instructions with 1,309 shadow fills, 0.9% of its time, at 0.58x the
rate of a tight loop guest.

The consequence that makes this a debugger for real lguest bugs: a stale
shadow behaves as under lguest.  A Guest that changes a PTE without SET_PTE
keeps seeing the old page until the shadow entry is thrown away.

The 3.2 Host (profile "3.2") differs in a few places, each marked where it
lives: the Guest starts with no page tables at all, so init_guest_pagetable
sets linear_pages and demand_page fakes a virtual == physical mapping until
the first NEW_PGTABLE; the user/kernel split is lguest_data.kernel_address
(read at LGUEST_INIT) instead of the image's page_offset; check_gpte no
longer refuses _PAGE_PWT; SET_PMD is SET_PGD; and the Host translates Guest
virtual addresses itself (guest_pa) instead of subtracting PAGE_OFFSET.

Unicorn caches translations in its TLB: when an entry is removed or weakened
we note it (tlb_stale) and the CPU flushes its TLB before the Guest runs
again.  Adding an entry or making one writable needs no flush: a miss, or a
write to a page the TLB holds read-only, walks the tables again.
"""

import mmap

from .. import abi

PTES_PER_PAGE = 1024
SWITCHER_PGD_INDEX = PTES_PER_PAGE - 1
NUM_PGDIRS = 4                       # lg->pgdirs[4]

_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_PWT = 0x008
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080                    # also _PAGE_PROTNONE in a non-present PTE
_PAGE_GLOBAL = 0x100
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY   # 0x67
_PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY

# The pool of Host pages that hold shadow directories and PTE pages, at a
# physical address far above any Guest RAM (at most 1 GiB).  Room for four
# full directories and the Switcher's PTE page; the mmap is lazy, so only
# pages in use cost memory.
POOL_PHYS = 0xE0000000
POOL_PAGES = NUM_PGDIRS * PTES_PER_PAGE + 1


def vaddr_to_pgd_index(vaddr):
    return vaddr >> 22


def _pte_index(vaddr):
    return (vaddr >> 12) % PTES_PER_PAGE


class ShadowPool:
    """Host pages for shadow tables: one lazy mmap, mapped into unicorn.

    `words` views it as 32-bit entries, so a shadow entry is one index
    operation; pages are handed out from a free list, always zeroed.
    """

    def __init__(self):
        self.buf = mmap.mmap(-1, POOL_PAGES * abi.PAGE_SIZE)
        self.words = memoryview(self.buf).cast("I")
        self.free = []                 # page numbers handed back
        self.next_page = 0             # first page never handed out

    def get_zeroed_page(self):
        if self.free:
            return self.free.pop()
        if self.next_page >= POOL_PAGES:
            return None
        self.next_page += 1
        return self.next_page - 1

    def free_page(self, page):
        self.buf[page * abi.PAGE_SIZE:(page + 1) * abi.PAGE_SIZE] = bytes(abi.PAGE_SIZE)
        self.free.append(page)

    @staticmethod
    def phys(page):
        return POOL_PHYS + page * abi.PAGE_SIZE

    @staticmethod
    def page_of(entry):
        return ((entry & ~0xFFF) - POOL_PHYS) >> 12

    def in_use(self):
        """Pages holding tables now (for snapshots and pictures)."""
        free = set(self.free)
        return [p for p in range(self.next_page) if p not in free]


class PageTables:
    """One Guest's shadows: lg->pgdirs[], lg->pgdidx and the helpers around them.

    `mem` is lgread/lgwrite (guest-physical, kills on a bad address); `kill`
    is kill_guest; `cpu` gets told when the current shadow directory changes
    (a CR3 write) and when its TLB must be emptied.
    """

    def __init__(self, cpu, mem, kill, page_offset, pfn_limit, switcher_ptes,
                 profile=abi.DEFAULT_PROFILE):
        self.cpu = cpu
        self.mem = mem
        self.kill = kill
        self.page_offset = page_offset
        self.pfn_limit = pfn_limit
        self.profile = profile
        # Where user mappings end.  2.6.23 uses PAGE_OFFSET; 3.2 reads
        # lguest_data.kernel_address at LGUEST_INIT (0 until then: lg is
        # zeroed, so flush_user_mappings flushes nothing and every SET_PTE
        # counts as a kernel one).
        self.kernel_address = page_offset if profile == "2.6.23" else 0
        # 3.2: virtual == physical until the first NEW_PGTABLE.
        self.linear_pages = False
        # check_gpte's refused flags: 2.6.23 also refused write-through.
        self.bad_gpte_flags = _PAGE_PWT | _PAGE_PSE if profile == "2.6.23" else _PAGE_PSE
        self.pool = ShadowPool()
        # State a snapshot takes (plain values only).
        self.cr3 = [None] * NUM_PGDIRS         # which Guest toplevel each shadows
        self.spgd = [None] * NUM_PGDIRS        # its shadow directory's pool page
        self.pgdidx = 0
        # 2.6.23 throws out a random shadow (random32() % 4).  A seeded
        # xorshift keeps that choice and keeps runs identical.
        self.random_state = 0x9E3779B9
        self.fills = 0                         # shadow entries demand_page filled
        self.tlb_stale = False
        # The Switcher's own PTE page, shared by every shadow (H:520).
        self.switcher_pte_page = self.pool.get_zeroed_page()
        words = self.pool.words
        base = self.switcher_pte_page * PTES_PER_PAGE
        for index, flags in switcher_ptes:
            words[base + index] = flags
        # Write tracking for snapshots (see track_writes).
        self.tracking = None                   # set of dirty pfns, or None
        self._held_back = {}                   # shadow word -> True: RW withheld
        self._granted = []                     # shadow words made RW this period

    # --- small helpers (H:320) ------------------------------------------------
    def spgd_addr(self, i, vaddr):
        """Index into the pool's words of the i'th shadow's entry for vaddr."""
        index = vaddr_to_pgd_index(vaddr)
        if index >= SWITCHER_PGD_INDEX:
            self.kill("attempt to access switcher pages")
            index = 0
        return self.spgd[i] * PTES_PER_PAGE + index

    def spte_addr(self, spgd, vaddr):
        return ShadowPool.page_of(spgd) * PTES_PER_PAGE + _pte_index(vaddr)

    def gpgd_addr(self, vaddr):
        return self.cr3[self.pgdidx] + vaddr_to_pgd_index(vaddr) * 4

    @staticmethod
    def gpte_addr(gpgd, vaddr):
        return (gpgd & ~0xFFF) + _pte_index(vaddr) * 4

    # --- H:340 converting a Guest entry to a shadow one ------------------------------
    def gpte_to_spte(self, gpte, write):
        # The Guest sets _PAGE_GLOBAL because we told it it has PGE, so that
        # it says which flushes are for kernel mappings; the CPU never sees it.
        flags = gpte & 0xFFF & ~_PAGE_GLOBAL
        pfn = gpte >> 12
        # get_pfn(): the page must exist in the Launcher's memory.
        if pfn >= self.pfn_limit:
            self.kill("failed to get page %u" % pfn)
            return 0
        return (pfn << 12) | flags

    def check_gpte(self, gpte):
        if gpte & self.bad_gpte_flags or (gpte >> 12) >= self.pfn_limit:
            self.kill("bad page table entry")

    def check_gpgd(self, gpgd):
        if gpgd & 0xFFF & ~_PAGE_TABLE or (gpgd >> 12) >= self.pfn_limit:
            self.kill("bad page directory entry")

    # --- (i) H:330 demand_page ----------------------------------------------------------
    def demand_page(self, vaddr, errcode):
        """A #PF at vaddr: True if the Guest's tables allow it and we mapped it."""
        if self.linear_pages:
            # 3.2 before the first NEW_PGTABLE: a present, writable
            # directory entry for every address, faked.
            gpgd = _PAGE_TABLE
        else:
            gpgd = self.mem.read_u32(self.gpgd_addr(vaddr))
            if not gpgd & _PAGE_PRESENT:
                return False
        words = self.pool.words
        spgd_at = self.spgd_addr(self.pgdidx, vaddr)
        if not words[spgd_at] & _PAGE_PRESENT:
            ptepage = self.pool.get_zeroed_page()
            if ptepage is None:
                self.kill("out of memory allocating pte page")
                return False
            self.check_gpgd(gpgd)
            # The shadow directory entry takes the Guest's flags.
            words[spgd_at] = ShadowPool.phys(ptepage) | (gpgd & 0xFFF)
        gpte_ptr = self.gpte_addr(gpgd, vaddr)
        if self.linear_pages:
            # ... and a writable page at the same physical address.  (A
            # vaddr beyond the Guest's memory fails check_gpte below.)
            gpte = (vaddr & ~0xFFF) | _PAGE_RW | _PAGE_PRESENT
        else:
            gpte = self.mem.read_u32(gpte_ptr)
        if not gpte & _PAGE_PRESENT:
            return False
        if errcode & 2 and not gpte & _PAGE_RW:          # a write to a read-only page
            return False
        if errcode & 4 and not gpte & _PAGE_USER:        # user code, kernel page
            return False
        self.check_gpte(gpte)
        gpte |= _PAGE_ACCESSED
        if errcode & 2:
            gpte |= _PAGE_DIRTY
        spte_at = self.spte_addr(words[spgd_at], vaddr)
        self._release_pte(spte_at)
        if gpte & _PAGE_DIRTY:
            self._set_spte(spte_at, self.gpte_to_spte(gpte, True))
        else:
            # Read-only until the Guest writes: then we come back here and
            # can set _PAGE_DIRTY in its entry, as the CPU would have.
            self._set_spte(spte_at, self.gpte_to_spte(gpte & ~_PAGE_RW, False))
        if not self.linear_pages:            # a faked entry lives nowhere
            self.mem.write_u32(gpte_ptr, gpte)
        self.fills += 1
        return True

    def _release_pte(self, at):
        # release_pte(): a replaced entry may still sit in the CPU's TLB.
        if self.pool.words[at] & _PAGE_PRESENT:
            self.tlb_stale = True
        self._held_back.pop(at, None)

    def _set_spte(self, at, spte):
        if self.tracking is not None and spte & _PAGE_RW and (spte >> 12) not in self.tracking:
            spte &= ~_PAGE_RW
            self._held_back[at] = True
        elif self.tracking is not None and spte & _PAGE_RW:
            self._granted.append(at)
        self.pool.words[at] = spte

    # --- (ii) H:360 the kernel stack ----------------------------------------------------
    def page_writable(self, vaddr):
        words = self.pool.words
        spgd = words[self.spgd_addr(self.pgdidx, vaddr)]
        if not spgd & _PAGE_PRESENT:
            return False
        at = self.spte_addr(spgd, vaddr)
        if at in self._held_back:          # writable to the Guest; we only watch it
            return True
        return words[at] & (_PAGE_PRESENT | _PAGE_RW) == _PAGE_PRESENT | _PAGE_RW

    def pin_page(self, vaddr):
        if not self.page_writable(vaddr) and not self.demand_page(vaddr, 2):
            self.kill("bad stack page %#x" % vaddr)

    # --- (v) H:450 / H:440 throwing shadows away -------------------------------------------
    def release_pgd(self, i, index):
        words = self.pool.words
        at = self.spgd[i] * PTES_PER_PAGE + index
        spgd = words[at]
        if spgd & _PAGE_PRESENT:
            page = ShadowPool.page_of(spgd)
            base = page * PTES_PER_PAGE
            for a in [a for a in self._held_back if base <= a < base + PTES_PER_PAGE]:
                del self._held_back[a]
            self.pool.free_page(page)
            words[at] = 0
            self.tlb_stale = True

    def flush_user_mappings(self, i):
        for index in range(vaddr_to_pgd_index(self.kernel_address)):
            self.release_pgd(i, index)

    def guest_pagetable_flush_user(self):
        """FLUSH_TLB(0): drop the user part of the current shadow."""
        self.flush_user_mappings(self.pgdidx)

    def release_all_pagetables(self):
        for i in range(NUM_PGDIRS):
            if self.spgd[i] is not None:
                for index in range(SWITCHER_PGD_INDEX):
                    self.release_pgd(i, index)

    def guest_pagetable_clear_all(self):
        """FLUSH_TLB(1): a kernel mapping changed, so throw everything away.

        The caller re-pins the stack (pin_stack_pages lives with SET_STACK).
        """
        self.release_all_pagetables()

    # --- (iv) H:430 switching page tables ------------------------------------------------
    def find_pgdir(self, pgtable):
        for i in range(NUM_PGDIRS):
            if self.cr3[i] == pgtable:
                return i
        return NUM_PGDIRS

    def _random32(self):
        x = self.random_state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.random_state = x
        return x

    def new_pgdir(self, cr3):
        """Take a slot for a toplevel we do not shadow yet: (slot, blank?)."""
        blank = False
        nxt = self._random32() % NUM_PGDIRS
        if self.spgd[nxt] is None:
            page = self.pool.get_zeroed_page()
            if page is None:
                nxt = self.pgdidx            # keep using the one we have
            else:
                self.spgd[nxt] = page
                self.map_switcher_in_guest(nxt)
                blank = True
        self.cr3[nxt] = cr3
        self.flush_user_mappings(nxt)
        return nxt, blank

    def guest_new_pagetable(self, pgtable):
        """NEW_PGTABLE: returns True when the shadow is blank (re-pin the stack)."""
        if self.linear_pages:
            # 3.2: the Guest's first page tables.  Throw the faked linear
            # mappings away and take a new slot, even if `pgtable` were 0.
            self.release_all_pagetables()
            self.linear_pages = False
            newpgdir = NUM_PGDIRS
        else:
            newpgdir = self.find_pgdir(pgtable)
        repin = False
        if newpgdir == NUM_PGDIRS:
            newpgdir, repin = self.new_pgdir(pgtable)
        self.pgdidx = newpgdir
        self.cpu.set_shadow_root(ShadowPool.phys(self.spgd[newpgdir]))
        return repin

    # --- (iii) H:420 / H:410 / H:400 the Guest changed an entry -------------------------------
    def do_set_pte(self, i, vaddr, gpte):
        words = self.pool.words
        spgd = words[self.spgd_addr(i, vaddr)]
        if spgd & _PAGE_PRESENT:
            at = self.spte_addr(spgd, vaddr)
            self._release_pte(at)
            if gpte & (_PAGE_DIRTY | _PAGE_ACCESSED):
                # Linux sets these bits itself, so we may install it now.  The
                # check runs on whatever the entry is, present or not: a
                # PROT_NONE entry (the PSE bit) that was touched is "bad" here.
                self.check_gpte(gpte)
                self._set_spte(at, self.gpte_to_spte(gpte, gpte & _PAGE_DIRTY))
            else:
                words[at] = 0

    def guest_set_pte(self, cr3, vaddr, gpte):
        """SET_PTE: kernel mappings change in every shadow, user ones in cr3's."""
        if vaddr >= self.kernel_address:
            for i in range(NUM_PGDIRS):
                if self.spgd[i] is not None:
                    self.do_set_pte(i, vaddr, gpte)
        else:
            i = self.find_pgdir(cr3)
            if i != NUM_PGDIRS:
                self.do_set_pte(i, vaddr, gpte)

    def guest_set_pmd(self, cr3, idx):
        """SET_PMD (3.2: guest_set_pgd, SET_PGD): forget the shadow of one
        toplevel entry (never the Switcher's)."""
        if idx >= SWITCHER_PGD_INDEX:
            return
        i = self.find_pgdir(cr3)
        if i < NUM_PGDIRS:
            self.release_pgd(i, idx)

    # --- (vii) H:500 and (vi) H:480 ----------------------------------------------------
    def init_guest_pagetable(self, pgtable):
        self.pgdidx = 0
        self.cr3[0] = pgtable
        self.spgd[0] = self.pool.get_zeroed_page()
        self.map_switcher_in_guest(0)
        self.cpu.set_shadow_root(ShadowPool.phys(self.spgd[0]))

    def init_guest_pagetable_linear(self):
        """3.2's init_guest_pagetable: no Launcher tables, a shadow slot taken
        by new_pgdir for toplevel 0, and linear_pages until NEW_PGTABLE."""
        slot, _ = self.new_pgdir(0)
        self.pgdidx = slot
        self.linear_pages = True
        self.cpu.set_shadow_root(ShadowPool.phys(self.spgd[slot]))

    def guest_pa(self, vaddr):
        """3.2's guest_pa: the Host walks the Guest's tables (lgread) to find
        where a Guest virtual address lives; a hole kills the Guest with
        "Bad address".  Like the real one it goes on after a kill at the PTE
        and returns what it computed."""
        if self.linear_pages:
            return vaddr
        gpgd = self.mem.read_u32(self.gpgd_addr(vaddr))
        if not gpgd & _PAGE_PRESENT:
            self.kill("Bad address %#x" % vaddr)
            return 0xFFFFFFFF
        gpte = self.mem.read_u32(self.gpte_addr(gpgd, vaddr))
        if not gpte & _PAGE_PRESENT:
            self.kill("Bad address %#x" % vaddr)
        return (gpte & ~0xFFF) | (vaddr & 0xFFF)

    def map_switcher_in_guest(self, i):
        # Set once per shadow directory: nothing ever releases entry 1023.
        # Unlike the real Host's _PAGE_KERNEL, the entry allows user access:
        # the Switcher PTEs deny it, except while cpu.py runs its lcall stub
        # from user mode (ring changes go through ring 0 there, see cpu.py).
        self.pool.words[self.spgd[i] * PTES_PER_PAGE + SWITCHER_PGD_INDEX] = \
            ShadowPool.phys(self.switcher_pte_page) | _PAGE_KERNEL | _PAGE_USER

    # --- what the debugger asks (not Host routines) ------------------------------------------
    def guest_walk(self, vaddr, cr3=None):
        """The Guest's own translation of vaddr: (pde, pte, phys) or None.

        Reads the Guest's tables directly (no lgread: a debugger look must
        never kill the Guest).  pte is None where the walk stops early.  In
        3.2's linear mode the entries are the ones demand_page fakes.
        """
        if self.linear_pages and cr3 is None:
            if vaddr >= self.mem.limit:
                return _PAGE_TABLE, None, None
            return _PAGE_TABLE, (vaddr & ~0xFFF) | _PAGE_RW | _PAGE_PRESENT, vaddr
        top = self.cr3[self.pgdidx] if cr3 is None else cr3
        buf = self.mem.buf
        limit = self.mem.limit
        at = top + vaddr_to_pgd_index(vaddr) * 4
        if at + 4 > limit:
            return None
        pde = int.from_bytes(buf[at:at + 4], "little")
        if not pde & _PAGE_PRESENT:
            return pde, None, None
        at = (pde & ~0xFFF) + _pte_index(vaddr) * 4
        if at + 4 > limit:
            return pde, None, None
        pte = int.from_bytes(buf[at:at + 4], "little")
        if not pte & _PAGE_PRESENT:
            return pde, pte, None
        return pde, pte, (pte & ~0xFFF) | (vaddr & 0xFFF)

    def shadow_entry(self, vaddr, i=None):
        """The current (or i'th) shadow's PTE for vaddr, 0 if none."""
        i = self.pgdidx if i is None else i
        words = self.pool.words
        if vaddr_to_pgd_index(vaddr) >= SWITCHER_PGD_INDEX:
            return words[self.switcher_pte_page * PTES_PER_PAGE + _pte_index(vaddr)]
        if self.spgd[i] is None:
            return 0
        spgd = words[self.spgd[i] * PTES_PER_PAGE + vaddr_to_pgd_index(vaddr)]
        if not spgd & _PAGE_PRESENT:
            return 0
        spte = words[self.spte_addr(spgd, vaddr)]
        if self.spte_addr(spgd, vaddr) in self._held_back:
            spte |= _PAGE_RW
        return spte

    # --- write tracking for snapshots (not a Host routine) ----------------------------------
    def track_writes(self, dirty):
        """Withhold write access from shadow entries of pages not in `dirty`.

        The snapshot code's dirty-page tracker: the first Guest store to such
        a page faults, tracking_fault() records the page and grants the write,
        and the Guest never knows (it is not a Host entry).  dirty is the
        tracker's own set, updated in place.
        """
        self.tracking = dirty
        self.reset_tracking()

    def reset_tracking(self, everything=False):
        """A new tracking period: every writable entry becomes watched again
        (but pages already dirty, unless `everything`: after a restore the
        tracker empties its dirty set, so nothing may stay writable)."""
        if self.tracking is None:
            return
        tables = [p for p in self.pool.in_use()
                  if p != self.switcher_pte_page and p not in self.spgd]
        self._withhold((at for p in tables
                        for at in range(p * PTES_PER_PAGE, (p + 1) * PTES_PER_PAGE)),
                       everything)

    def rearm_tracking(self):
        """After a dirty set was emptied: take back what this period granted."""
        if self.tracking is not None:
            self._withhold(self._granted)

    def _withhold(self, entries, everything=False):
        words = self.pool.words
        for at in entries:
            e = words[at]
            if e & (_PAGE_PRESENT | _PAGE_RW) == _PAGE_PRESENT | _PAGE_RW \
                    and (everything or (e >> 12) not in self.tracking):
                words[at] = e & ~_PAGE_RW
                self._held_back[at] = True
        self._granted = []
        self.tlb_stale = True

    def stop_tracking(self):
        words = self.pool.words
        for at in self._held_back:
            words[at] |= _PAGE_RW
        self._held_back = {}
        self._granted = []
        self.tracking = None

    def tracking_fault(self, vaddr, errcode):
        """A write fault only the tracker caused: record it, grant it, True."""
        if self.tracking is None or not errcode & 2:
            return False
        i = self.pgdidx
        if vaddr_to_pgd_index(vaddr) >= SWITCHER_PGD_INDEX or self.spgd[i] is None:
            return False
        words = self.pool.words
        spgd = words[self.spgd[i] * PTES_PER_PAGE + vaddr_to_pgd_index(vaddr)]
        if not spgd & _PAGE_PRESENT:
            return False
        at = self.spte_addr(spgd, vaddr)
        if at not in self._held_back:
            return False
        if errcode & 4 and not (spgd & words[at] & _PAGE_USER):
            return False                     # a real protection fault as well
        del self._held_back[at]
        self.tracking.add(words[at] >> 12)
        words[at] |= _PAGE_RW
        self._granted.append(at)
        return True

    # --- snapshots -----------------------------------------------------------------------
    def save_state(self):
        """Everything that decides the Guest's future: slots and pool pages.

        The pages are saved as they are, with the entries the write tracker
        withholds listed beside them ("held"): patching those back into the
        copy on every save cost more than the rest of a checkpoint.
        """
        buf = self.pool.buf
        size = abi.PAGE_SIZE
        return {"cr3": list(self.cr3), "spgd": list(self.spgd), "pgdidx": self.pgdidx,
                "linear_pages": self.linear_pages, "kernel_address": self.kernel_address,
                "random_state": self.random_state, "fills": self.fills,
                "free": list(self.pool.free), "next_page": self.pool.next_page,
                "pages": {p: bytes(buf[p * size:(p + 1) * size]) for p in self.pool.in_use()},
                "held": tuple(self._held_back)}

    @staticmethod
    def logical_pages(state):
        """A saved state's pages as the Host made them (withheld entries
        writable again): what two states must agree on to be the same."""
        pages = {p: bytearray(raw) for p, raw in state["pages"].items()}
        for at in state["held"]:
            page, idx = divmod(at, PTES_PER_PAGE)
            view = memoryview(pages[page]).cast("I")
            view[idx] |= _PAGE_RW
        return {p: bytes(raw) for p, raw in pages.items()}

    def restore_state(self, state):
        pool = self.pool
        for page in pool.in_use():
            if page not in state["pages"]:
                pool.buf[page * abi.PAGE_SIZE:(page + 1) * abi.PAGE_SIZE] = bytes(abi.PAGE_SIZE)
        for page, raw in state["pages"].items():
            off = page * abi.PAGE_SIZE
            if pool.buf[off:off + abi.PAGE_SIZE] != raw:
                pool.buf[off:off + abi.PAGE_SIZE] = raw
        for at in state["held"]:
            pool.words[at] |= _PAGE_RW          # as the Host made it; re-withheld below
        pool.free = list(state["free"])
        pool.next_page = state["next_page"]
        self.cr3 = list(state["cr3"])
        self.spgd = list(state["spgd"])
        self.pgdidx = state["pgdidx"]
        self.linear_pages = state["linear_pages"]
        self.kernel_address = state["kernel_address"]
        self.random_state = state["random_state"]
        self.fills = state["fills"]
        self._held_back = {}
        self._granted = []
        if self.tracking is not None:
            self.reset_tracking(everything=True)
        self.tlb_stale = True
