"""Machine snapshots that restore only what changed.

A snapshot is everything that decides what the Guest does next:

  - the CPU registers, with unicorn's context_save() (5.6 KB, ~5 us);
  - the Python state of the Host, the clock, the Launcher and the run loop
    (irqs_pending, idt, halted, dead, deadline_ns, icount, schedule,
    next_hcall, ...): every *plain* attribute (numbers, strings, None and
    lists/tuples/dicts/sets of them) of those objects, so a field added to the
    Host later is covered without touching this file.  Excluded on purpose:
    debugger configuration (host_tick, max_insns) and
    the CPU's hook bookkeeping (breakpoints, watch hooks): a restore takes the
    Guest back in time, not the debugger's settings;
  - the Guest GDT (Cpu.gdt, written back into the Switcher page);
  - the last hypercalls (EventBus.recent_hcalls), so `monitor json hcalls`
    agrees with the restored past;
  - Guest RAM.

RAM is the expensive part (32 MiB by default: a full copy costs milliseconds),
so only the first snapshot of a Snapshots manager copies all of it (the
"base"); later snapshots keep only the pages that differ from the base, and a
restore rewrites only the pages that can differ from the target.  Which pages
can differ comes from dirty-page tracking:

  - Guest stores: the shadow page tables withhold write access from a page
    until its first store (DirtyTracker: one fault per written page, none
    per store);
  - Host stores (lgwrite: interrupt frames, timestamps, used_len): the
    GuestMemory write observer;
  - debugger stores (Machine.write_memory goes straight to uc.mem_write and
    tells no observer): call mark_dirty(vaddr, length) after them, or use
    track=False.

With track=False nothing is hooked and every save/restore compares all of RAM
against the base (slower, but no cost at all while the Guest runs).

A rewritten page is compared first and only the byte range that really
differs is copied back; unicorn's translated code is dropped for exactly that
range (ctl_remove_cache: host-side writes do not invalidate it), so restoring
a data word that shares a page with code does not force retranslation.
"""

import hashlib


PAGE = 4096
PAGE_SHIFT = 12

# Attributes that are debugger settings, not Guest state.
_MACHINE_EXCLUDE = frozenset({"host_tick", "max_insns"})
_PLAIN_SCALARS = (int, float, str, bytes, bool, type(None))


def _is_plain(v):
    if isinstance(v, _PLAIN_SCALARS):
        return True
    if isinstance(v, (tuple, list, set, frozenset)):
        return all(_is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_is_plain(k) and _is_plain(x) for k, x in v.items())
    return False


def _clone(v):
    """A private copy of plain data (immutable parts are shared)."""
    if isinstance(v, list):
        return [_clone(x) for x in v]
    if isinstance(v, dict):
        return {k: _clone(x) for k, x in v.items()}
    if isinstance(v, set):
        return set(v)
    return v          # scalars, tuples and frozensets of scalars are immutable


_SCALAR_TYPES = frozenset(_PLAIN_SCALARS)
# Per class, the attributes found holding objects (the CPU, the Launcher, a
# lock...): they always will, so they are not examined again.  A snapshot
# before every stepi (reverse execution) made this examination the cost.
_OBJECT_ATTRS = {}


def _plain_vars(obj, exclude=frozenset()):
    skip = _OBJECT_ATTRS.setdefault(type(obj), set())
    out = {}
    for k, v in vars(obj).items():
        if k in exclude or k in skip:
            continue
        if type(v) in _SCALAR_TYPES:
            out[k] = v
        elif _is_plain(v):
            out[k] = _clone(v)
        elif not isinstance(v, (tuple, list, set, frozenset, dict)):
            skip.add(k)
    return out


def _set_vars(obj, saved, exclude=frozenset()):
    cls = type(obj)
    for k in [k for k, v in vars(obj).items()
              if k not in saved and k not in exclude and _is_plain(v) and hasattr(cls, k)]:
        # Set on the instance after the snapshot (the class default before it).
        delattr(obj, k)
    for k, v in saved.items():
        setattr(obj, k, _clone(v))


class Snapshot:
    """One saved machine state.  Treat as opaque; see Snapshots."""

    __slots__ = ("name", "icount", "eip", "context", "state", "gdt", "hcalls",
                 "pages", "full", "owner", "shadows")

    def __repr__(self):
        return "<Snapshot %s icount=%s eip=%#x %s>" % (
            self.name, self.icount, self.eip,
            "full" if self.full is not None else "%d pages" % len(self.pages))

    def describe(self):
        return {"name": self.name, "icount": self.icount, "eip": self.eip,
                "pages": len(self.pages), "full": self.full is not None}


class DirtyTracker:
    """Which Guest RAM pages were written since the last reset().

    Guest stores are seen through the shadow page tables (page_tables.py):
    while tracking, the Host withholds write access from every shadow entry
    of a page not yet written in this period, so the first store to such a
    page faults; Machine hands that fault to PageTables.tracking_fault, which
    records the page and grants the write without a Host entry, a trace event
    or anything else the Guest could notice.  One fault per written page per
    tracking period, none per store, and no translated code is thrown away
    (reset() takes back only what this period granted).

    Measured alternatives (bench/explore_speed.py's notes): a Python
    UC_HOOK_MEM_WRITE callback per store costs ~1 us each (a spin loop
    storing to memory dominates everything); unicorn's UC_TLB_VIRTUAL mode
    with a TLB-fill callback did this before the CPU ran on real page
    tables, and cannot follow them.
    """

    def __init__(self, machine):
        self.m = machine
        self.vbase = machine.cpu.page_offset
        self.npages = machine.cpu.ram_size >> PAGE_SHIFT
        self.dirty = set()           # page numbers (guest-physical >> 12)
        self.active = False

    def start(self):
        if self.active:
            return
        self.active = True
        self.m.pt.track_writes(self.dirty)
        self.m.mem.write_observers.append(self._host_wrote)

    def stop(self):
        if not self.active:
            return
        self.active = False
        self.m.pt.stop_tracking()
        if self._host_wrote in self.m.mem.write_observers:
            self.m.mem.write_observers.remove(self._host_wrote)

    def reset(self):
        """Forget the dirty set; start a new tracking period."""
        self.dirty.clear()            # the same set: PageTables holds it
        if self.active:
            self.m.pt.rearm_tracking()

    def mark(self, vaddr, length):
        """Record a write the shadows cannot see (by the Host or a debugger).

        vaddr is in the kernel's linear map (PAGE_OFFSET + physical), as
        GuestMemory's observers and Machine.write_memory report writes.
        """
        if length <= 0:
            return
        first = (vaddr - self.vbase) >> PAGE_SHIFT
        last = (vaddr + length - 1 - self.vbase) >> PAGE_SHIFT
        for p in range(max(first, 0), min(last, self.npages - 1) + 1):
            self.dirty.add(p)

    def _host_wrote(self, vaddr, length):
        self.mark(vaddr, length)


class Snapshots:
    """Save and restore states of one Machine.

    The first save() is a full copy of RAM (the base).  Later ones store the
    pages that differ from the base.  With track=True (the default) a dirty
    tracker runs from the first save on, so save() and restore() look only at
    pages that may have changed; call mark_dirty() after writing Guest memory
    with Machine.write_memory.  With track=False every save/restore compares
    all pages (no cost while the Guest runs).
    """

    def __init__(self, machine, track=True):
        self.m = machine
        self.ram = machine.cpu.ram
        self.npages = machine.cpu.ram_size >> PAGE_SHIFT
        self.vbase = machine.cpu.page_offset
        self.track = track
        self.tracker = DirtyTracker(machine) if track else None
        self.base = None
        self.current = None      # RAM equals this snapshot's, except dirty pages
        self.named = {}
        self._last_shadow_pages = {}
        self.stats = {"pages_compared": 0, "pages_written": 0, "bytes_written": 0,
                      "restores": 0}

    # --- bookkeeping -------------------------------------------------------------
    def mark_dirty(self, vaddr, length):
        if self.tracker is not None:
            self.tracker.mark(vaddr, length)

    def close(self):
        if self.tracker is not None:
            self.tracker.stop()

    def list(self):
        return [s.describe() for s in self.named.values()]

    def get(self, name):
        return self.named.get(name)

    def drop(self, name):
        return self.named.pop(name, None) is not None

    def _candidates(self, *snaps):
        """Pages where RAM may differ from any of snaps' memory."""
        if self.tracker is None or self.current is None:
            return range(self.npages)
        pages = set(self.tracker.dirty)
        pages.update(self.current.pages)
        for s in snaps:
            pages.update(s.pages)
        return sorted(pages)

    def _base_page(self, p):
        return self.base.full[p << PAGE_SHIFT:(p + 1) << PAGE_SHIFT]

    def _sync_point(self, snap):
        self.current = snap
        if self.tracker is not None:
            self.tracker.reset()

    # --- save ---------------------------------------------------------------------
    def save(self, name=None):
        m = self.m
        s = Snapshot()
        s.name = name
        s.owner = self
        s.icount = m.clock.icount
        s.eip = m.cpu.reg("eip")
        s.context = m.cpu.uc.context_save()
        s.state = {
            "machine": _plain_vars(m, _MACHINE_EXCLUDE),
            "host": _plain_vars(m.host),
            "clock": _plain_vars(m.clock),
            "launcher": _plain_vars(m.launcher),
        }
        devices = getattr(m.launcher, "devices", None)
        if devices is not None:
            # 3.2's virtio devices: their cursors, and an undo point for
            # what they wrote to the disk file.
            s.state["devices"] = devices.save_state()
        s.gdt = list(m.cpu.gdt)
        s.hcalls = list(m.events.recent_hcalls)
        s.shadows = self._save_shadows()
        if self.base is None:
            s.full = bytes(self.ram)
            s.pages = {}
            self.base = s
            if self.tracker is not None:
                self.tracker.start()
        else:
            s.full = None
            s.pages = {}
            ram = self.ram
            tracked = self.tracker is not None and self.current is not None
            for p in self._candidates():
                if tracked and p not in self.tracker.dirty:
                    # Untouched since the last sync point: as it was then.
                    if p in self.current.pages:
                        s.pages[p] = self.current.pages[p]
                    continue
                off = p << PAGE_SHIFT
                cur = ram[off:off + PAGE]
                self.stats["pages_compared"] += 1
                if cur != self._base_page(p):
                    s.pages[p] = cur
        self._sync_point(s)
        if name is not None:
            self.named[name] = s
        return s

    # --- restore ------------------------------------------------------------------
    def restore(self, snap):
        """Put the machine back in snap's state; returns the pages rewritten."""
        if isinstance(snap, str):
            name, snap = snap, self.named.get(snap)
            if snap is None:
                raise KeyError(name)
        if snap.owner is not self:
            raise ValueError("snapshot belongs to another machine")
        m = self.m
        written = self._restore_ram(snap)
        m.cpu.uc.context_restore(snap.context)
        # The shadow tables are Guest state too (a warm shadow means fewer
        # demand faults, so fewer Host entries): back to exactly snap's.
        m.pt.restore_state(snap.shadows)
        _set_vars(m, snap.state["machine"], _MACHINE_EXCLUDE)
        _set_vars(m.host, snap.state["host"])
        _set_vars(m.clock, snap.state["clock"])
        _set_vars(m.launcher, snap.state["launcher"])
        if "devices" in snap.state:
            m.launcher.devices.load_state(snap.state["devices"])
        if m.cpu.gdt != snap.gdt:
            m.cpu.gdt = list(snap.gdt)
            m.cpu.flush_gdt()
        m.events.recent_hcalls[:] = snap.hcalls
        self.stats["restores"] += 1
        self._sync_point(snap)
        return written

    def _save_shadows(self):
        """The shadow tables' state, sharing unchanged pages with the last save
        (reverse execution saves thousands of these)."""
        state = self.m.pt.save_state()
        last = self._last_shadow_pages
        pages = state["pages"]
        for page, raw in pages.items():
            old = last.get(page)
            if old is not None and old == raw:
                pages[page] = old
        self._last_shadow_pages = pages
        return state

    def _restore_ram(self, snap):
        ram = self.ram
        spans = []
        written = 0
        stats = self.stats
        for p in self._candidates(snap):
            off = p << PAGE_SHIFT
            want = snap.pages.get(p)
            if want is None:
                want = self._base_page(p)
            cur = ram[off:off + PAGE]
            stats["pages_compared"] += 1
            if cur == want:
                continue
            lo, hi = _diff_range(cur, want)
            ram[off + lo:off + hi] = want[lo:hi]
            spans.append((off + lo, off + hi))
            written += 1
            stats["bytes_written"] += hi - lo
        self.m.cpu.invalidate_phys_ranges(spans)
        stats["pages_written"] += written
        return written

    # --- comparisons (for explorers and tests) ---------------------------------------
    def page_hashes(self, pages):
        """{page: digest} of the current RAM for the given page numbers."""
        ram = self.ram
        return {p: hashlib.blake2b(ram[p << PAGE_SHIFT:(p + 1) << PAGE_SHIFT],
                                   digest_size=16).digest() for p in pages}

    def base_page_hash(self, p):
        return hashlib.blake2b(self._base_page(p), digest_size=16).digest()

    def changed_pages(self):
        """Pages that may differ from the base right now (tracked mode: cheap)."""
        if self.tracker is None or self.current is None:
            return [p for p in range(self.npages)
                    if self.ram[p << PAGE_SHIFT:(p + 1) << PAGE_SHIFT] != self._base_page(p)]
        return sorted(set(self.tracker.dirty) | set(self.current.pages))


def _diff_range(a, b):
    """[lo, hi) covering every byte where equal-length a and b differ (a != b)."""
    n = len(a)
    lo, hi = 0, n                       # longest common prefix by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    first = lo
    lo, hi = 0, n - first               # longest common suffix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[n - mid:] == b[n - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return first, n - lo


def ram_digest(machine):
    """A digest of all Guest RAM (one pass over it: milliseconds)."""
    return hashlib.blake2b(machine.cpu.ram, digest_size=16).hexdigest()


def register_state(machine):
    """Every register unicorn's context holds, as bytes, for comparisons.

    The context starts with a header (its own size, mode, a pointer unicorn
    updates on its own); only the CPU state after it is compared.
    """
    raw = bytearray(bytes(machine.cpu.uc.context_save()))
    # Not registers: the last exception's bookkeeping (error code, "was it an
    # int", next EIP; the previous exception).  No Guest can read them, and
    # the snapshot code's own write-tracking faults change them.
    off = machine.cpu.off
    raw[off.errcode:off.errcode + 12] = bytes(12)
    raw[off.old_exception:off.old_exception + 4] = bytes(4)
    # Nor are the context's last 8 bytes: a tagged pointer of unicorn's own
    # into its translated code, which moves when that code is flushed.
    raw[-8:] = bytes(8)
    size = int.from_bytes(raw[:8], "little")
    return bytes(raw[len(raw) - size:] if 0 < size <= len(raw) else raw)
