"""The lguest Host, re-created from Linux 2.6.23 drivers/lguest.

Read this file in order: it follows the Host's own routines, each in the
decision order of shared/docs/lguest-abi.md (section numbers in the comments).

    kill_guest              §8.3   only the first reason is kept
    do_hypercalls           §3.4   the async ring, then the synchronous call
    do_hcall                §3.2   one function per hypercall below it
    decide_interrupt, maybe_do_interrupt   §7.2   the decision sequence, then its deeds
    set_guest_interrupt     §7.3   building the frame
    direct_trap / gate_dpl / deliver_direct     the IDT the Host gives the CPU
                                   (copy_traps): what never reaches the Host
    handle_trap / deliver_trap / emulate_insn   §7.4

The shadow page tables are page_tables.py's (the real Host keeps them in a
file of their own too); the page-table hypercalls and the page fault hand
over to it, and SET_STACK's pin_stack_pages uses it.

Where shared/docs/lguest-abi.md and the real 2.6.23 source (in
shared/kernel/src/drivers/lguest/) differ, the source wins; the routine a
rule comes from is named where it lives.

The Host never runs Guest code; the Machine's run loop (machine.py) calls
these routines at every Host entry, the way run_guest() does.
"""

import struct

from .. import abi
from . import switcher


class Host:
    PROFILE = "2.6.23"

    def __init__(self, cpu, mem, clock, emit, launcher, page_tables):
        self.profile = abi.profile(self.PROFILE)
        self.ld_offsets = {f.name: f.offset for f in abi.layout(self.profile.layout)["fields"]}
        self.cpu = cpu
        self.mem = mem
        self.clock = clock
        self.emit = emit                  # emit(kind, **fields)
        self.launcher = launcher
        self.pt = page_tables
        self.page_offset = cpu.page_offset

        self.lguest_data = None           # guest-physical, set by LGUEST_INIT
        self.noirq_start = self.noirq_end = 0
        self.irqs_pending = 0
        self.idt = {}                     # vector -> (lo, hi) as the Host stores them
        self.ss1 = self.esp1 = 0
        self.stack_pages = 0
        self.ts = 0
        self.halted = False
        self.dead = None                  # the kill reason
        self.killed_by_trap = False
        self.errcode = 0                  # the saved error code of the last exit
        self.gdt_changed = False          # lg->changed & CHANGED_GDT: reload segments
        self.next_hcall = 0               # the Host's cursor into the async ring
        self.page_table_calls = 0
        # io.c's lg->dma[LGUEST_MAX_DMA]: None or (key, dmas, num_dmas, irq,
        # bind order) per slot.  The order stands in for the hash list, where
        # the newest binding comes first.
        self.dma_slots = [None] * abi.LGUEST_MAX_DMA
        self.dma_binds = 0
        self.dma_is_pending = None        # (dma, key) for the Launcher
        self.hcall_in_progress = None     # (eip,) while a sync hypercall waits
        self._deferred = {}               # irq -> last deferral reason traced

    @property
    def cr3(self):
        """The Guest toplevel the current shadow stands for."""
        return self.pt.cr3[self.pt.pgdidx]

    # --- §8.3 kill_guest --------------------------------------------------------
    def kill_guest(self, reason):
        # The first reason is the one the Launcher reads; later ones are noise
        # from routines carrying on after a failed access.
        if self.dead is None:
            self.dead = reason
            self.emit("kill", reason=reason)

    # --- guest-physical helpers ---------------------------------------------------
    def guest_pa(self, vaddr):
        """2.6.23: a kernel virtual address minus PAGE_OFFSET."""
        return (vaddr - self.page_offset) & 0xFFFFFFFF

    def _ld(self, field):
        """The guest-physical address of a lguest_data field, in this profile's layout."""
        return self.lguest_data + self.ld_offsets[field]

    # --- §3.4 + §3.2: hypercalls --------------------------------------------------
    def do_hypercalls(self, sync):
        """Drain the async ring, then run the synchronous call `sync` if any.

        sync is (eax, edx, ebx, ecx, eip) from a Guest exit through int $0x1f.
        Returns True when the synchronous call was consumed (the 2.6.23 Host
        leaves it for the next iteration when an async SEND_DMA left Launcher
        work pending, §3.4 step 3).
        """
        if self.lguest_data is not None:
            self.do_async_hcalls(sync[4] if sync else self.cpu.reg("eip"))
        if sync is None:
            return True
        if self.dma_is_pending is not None:
            return False
        nr, a1, a2, a3, eip = sync
        ret = self.do_hcall(nr, a1, a2, a3, eip, False)
        if ret is not None:
            self.cpu.set_reg("eax", ret)
        return True

    def do_async_hcalls(self, eip):
        # §3.4: one snapshot of all 64 status bytes, then at most 64 calls
        # starting at our own cursor, stopping at the first one not queued.
        status = bytearray(self.mem.read(self._ld("hcall_status"), abi.LHCALL_RING_SIZE))
        for _ in range(abi.LHCALL_RING_SIZE):
            n = self.next_hcall
            if status[n] == abi.HCALL_DONE:
                break
            self.next_hcall = (n + 1) % abi.LHCALL_RING_SIZE
            raw = self.mem.read(self._ld("hcalls") + n * abi.HCALL_SLOT, abi.HCALL_SLOT)
            nr, a1, a2, a3 = struct.unpack("<4I", raw)        # eax, edx, ebx, ecx
            self.do_hcall(nr, a1, a2, a3, eip, True)
            if not self.mem.write(self._ld("hcall_status") + n, b"\xff"):
                break
            if self.dma_is_pending is not None or self.dead:
                break

    def do_hcall(self, nr, a1, a2, a3, eip, is_async):
        """Run one hypercall; return the value for EAX or None to leave it."""
        self.emit("hcall", nr=nr, name=abi.hcall_name(nr), args=[a1, a2, a3], eip=eip,
                  **{"async": is_async})
        # The only call allowed before we know where lguest_data is.
        if self.lguest_data is None:
            if nr != abi.LHCALL_LGUEST_INIT:
                # initialize (hypercalls.c) prints the call number with %li.
                self.kill_guest("hypercall %d before LGUEST_INIT" % _signed(nr))
                return None
            return self.initialize(a1)
        handler = self._HCALLS.get(nr)
        if handler is None:
            # do_hcall's default case (hypercalls.c): "%li", and its newline.
            self.kill_guest("Bad hypercall %d\n" % _signed(nr))
            return None
        return handler(self, a1, a2, a3)

    def initialize(self, addr):
        """LGUEST_INIT: learn where lguest_data lives and fill in the Host's fields."""
        if not self.mem.ok(addr, abi.LD_SIZE):
            # The kernel's %p: eight lower-case hex digits, no 0x.
            self.kill_guest("bad guest page %08x" % addr)
            return None
        self.lguest_data = addr
        # noirq_start/end are static initialisers: read once, now, never again.
        self.noirq_start = self.mem.read_u32(self._ld("noirq_start"))
        self.noirq_end = self.mem.read_u32(self._ld("noirq_end"))
        self.mem.write_u32(self._ld("reserve_mem"), abi.RESERVE_MEM)
        # tsc_khz stays 0: rdtsc runs natively on unicorn and cannot be made
        # deterministic, so the Guest must use lguest_data.time instead.
        self.mem.write_u32(self._ld("tsc_khz"), 0)
        self.mem.write(self._ld("guestid"), struct.pack("<H", self.launcher.guestid))
        self.write_timestamp()
        return None

    def hc_flush_async(self, a1, a2, a3):
        # Nothing itself: exiting to the Host already drained the ring.
        return None

    def hc_lguest_init(self, a1, a2, a3):
        self.kill_guest("already have lguest_data")

    def hc_crash(self, a1, a2, a3):
        # The Host copies 128 bytes and forces the last to NUL: a message in
        # the last 127 bytes of RAM, or outside it, is lgread's "bad read".
        msg = self.mem.read(a1, 128)[:127].split(b"\0", 1)[0].decode("latin-1")
        self.kill_guest("CRASH: %s" % msg)

    def hc_load_gdt(self, table, num, a3):
        # load_guest_gdt (segments.c): the count is printed with %i.
        if num > abi.GDT_ENTRIES:
            self.kill_guest("too many gdt entries %d" % _signed(num))
            return None
        raw = self.mem.read(table, num * 8)
        for i in range(num):
            if i not in abi.HOST_GDT_ENTRIES:       # ignored_gdt: the Host's own
                self.cpu.gdt[i] = raw[i * 8:i * 8 + 8]
        # fixup_gdt_table runs over the WHOLE table, not just the entries read:
        # an entry past `num` that was still empty gets DPL 1 and the accessed
        # bit too.
        self._fixup_gdt(0, abi.GDT_ENTRIES)
        return None

    def hc_load_tls(self, table, cpu, a3):
        # guest_load_tls (segments.c): three entries, the same fix-ups.
        raw = self.mem.read(table, 3 * 8)
        for i in range(3):
            self.cpu.gdt[abi.GDT_ENTRY_TLS_MIN + i] = raw[i * 8:i * 8 + 8]
        self._fixup_gdt(abi.GDT_ENTRY_TLS_MIN, abi.GDT_ENTRY_TLS_MIN + 3)
        return None

    def _fixup_gdt(self, start, end):
        # fixup_gdt_table (segments.c); ignored_gdt's entries are the Host's.
        for i in range(start, end):
            if i not in abi.HOST_GDT_ENTRIES:
                self.cpu.gdt[i] = self._fixup_descriptor(self.cpu.gdt[i])
        self.cpu.flush_gdt()
        self.gdt_changed = True

    @staticmethod
    def _fixup_descriptor(raw):
        # The Guest's kernel segments say DPL 0; it really runs at 1.  The
        # accessed bit is set so the CPU never writes to the GDT.
        lo, hi = struct.unpack("<II", raw)
        if hi & 0x6000 == 0:
            hi |= abi.GUEST_PL << 13
        hi |= 0x100
        return struct.pack("<II", lo, hi)

    # The page-table hypercalls: page_tables.py does the work (§3.2, §8.2).
    def hc_new_pgtable(self, pgdir, a2, a3):
        self.page_table_calls += 1
        if self.pt.guest_new_pagetable(pgdir):
            # A blank shadow has no kernel mappings: map the stack now.
            self.pin_stack_pages()
        return None

    def hc_flush_tlb(self, all_, a2, a3):
        self.page_table_calls += 1
        if all_:
            self.pt.guest_pagetable_clear_all()
            self.pin_stack_pages()
        else:
            self.pt.guest_pagetable_flush_user()
        return None

    def hc_set_pte(self, pgdir, vaddr, pte):
        self.page_table_calls += 1
        self.pt.guest_set_pte(pgdir, vaddr, pte)
        return None

    def hc_set_pmd(self, pgdir, index, a3):
        self.page_table_calls += 1
        self.pt.guest_set_pmd(pgdir, index)
        return None

    def hc_load_idt_entry(self, vector, lo, hi):
        # §8.1: vectors the Guest may never own are silently ignored; 2.6.23
        # keeps 32 traps, 32 irqs and the system call vector.
        if vector in abi.IDT_IGNORED_VECTORS:
            return None
        if vector >= abi.FIRST_EXTERNAL_VECTOR + abi.LGUEST_IRQS and vector != abi.SYSCALL_VECTOR:
            return None
        if not hi & 0x8000:
            self.idt.pop(vector, None)
            return None
        gate_type = (hi >> 8) & 0xF
        if gate_type not in (abi.GATE_INTERRUPT, abi.GATE_TRAP):
            self.kill_guest("bad IDT type %d" % gate_type)
            return None
        self.idt[vector] = ((abi.KERNEL_CS << 16) | (lo & 0xFFFF), hi & 0xFFFFEF00)
        return None

    def hc_set_stack(self, ss, esp, pages):
        # guest_set_stack (interrupts_and_traps.c): the segment is printed
        # with %i, and kept in a u8 (lg->ss1), so 0x169 is stored as 0x69.
        if ss & 3 != abi.GUEST_PL:
            self.kill_guest("bad stack segment %d" % _signed(ss))
            return None
        if pages > 2:
            self.kill_guest("bad stack pages %u" % pages)
            return None
        self.ss1, self.esp1, self.stack_pages = ss & 0xFF, esp, pages   # lg->ss1 is a u8
        # The stack must be mapped before a trap from user mode needs it.
        self.pin_stack_pages()
        return None

    def pin_stack_pages(self):
        """interrupts_and_traps.c pin_stack_pages: one or two pages below esp1.

        esp1 is the address just past the stack, so the first page is the
        one holding esp1 - 1.
        """
        for i in range(self.stack_pages):
            self.pt.pin_page((self.esp1 - 1 - i * abi.PAGE_SIZE) & 0xFFFFFFFF)

    def hc_ts(self, ts, a2, a3):
        self.ts = ts
        return None

    def hc_set_clockevent(self, delta, a2, a3):
        # One-shot, in nanoseconds; 0 stops it (§7.6).
        if delta == 0:
            self.clock.deadline_ns = None
            self.emit("clock", armed=0)
        else:
            self.clock.deadline_ns = self.clock.time_ns + delta
            self.emit("clock", armed=self.clock.deadline_ns)
        return None

    def hc_halt(self, a1, a2, a3):
        self.halted = True
        self.emit("halt")
        return None

    # --- io.c: DMA between the Guest and its Launcher ------------------------------
    def dma_key_ok(self, key):
        """get_futex_key() on the Launcher's address `key`: guest memory is the
        Launcher's own mapping from 0, and a futex key must be 4-byte aligned."""
        return key % 4 == 0 and self.mem.ok(key, 4)

    def hc_bind_dma(self, key, dmas, count_irq):
        """bind_dma: returns 1 or 0 in EAX (the only 2.6.23 call with a result)."""
        numdmas, irq = (count_irq >> 8) & 0xFFFF, count_irq & 0xFF
        if irq >= abi.LGUEST_IRQS:
            return 0
        if not self.dma_key_ok(key):
            self.kill_guest("bad dma key %#x" % key)
            return 0
        if irq == 0:
            # unbind_dma: the first slot with this key and this array.
            for i, slot in enumerate(self.dma_slots):
                if slot is not None and slot[0] == key and slot[1] == dmas:
                    self.dma_slots[i] = None
                    return 1
            return 0
        # Every bind takes a free slot, even for a key that is bound already.
        for i, slot in enumerate(self.dma_slots):
            if slot is None:
                self.dma_binds += 1
                self.dma_slots[i] = (key, dmas, numdmas, irq, self.dma_binds)
                return 1
        return 0

    def get_dma_buffer(self, key):
        """The Launcher's LHREQ_GETDMA: (address, irq) of a bound buffer, or None.

        Like io.c, it takes the newest binding of the key and the first of its
        buffers with used_len 0, or its last buffer when every one is in use.
        """
        bound = [s for s in self.dma_slots if s is not None and s[0] == key]
        if not bound:
            return None
        _, dmas, num, irq, _ = max(bound, key=lambda s: s[4])
        ret = None
        for j in range(num):
            ret = dmas + j * abi.DMA_SIZE
            if self.mem.read_u32(ret + abi.DMA_USED_LEN) == 0:
                break
        return None if ret is None else (ret, irq)

    def trigger_irq(self, irq):
        """The Launcher's LHREQ_IRQ (user_send_irq): make irq pending."""
        if irq < abi.LGUEST_IRQS:
            self.irqs_pending |= 1 << irq
            self.emit("raise", irq=irq, source="launcher")

    def hc_send_dma(self, key, dma, a3):
        # The Launcher maps Guest memory privately, so every key is the
        # Launcher's: the run loop returns to it with (dma, key).
        if not self.dma_key_ok(key):
            self.kill_guest("bad sending DMA key")
            return None
        self.dma_is_pending = (dma, key)
        return None

    def hc_notify(self, addr, a2, a3):
        self.launcher.notify(addr)
        return None

    _HCALLS = {
        abi.LHCALL_FLUSH_ASYNC: hc_flush_async,
        abi.LHCALL_LGUEST_INIT: hc_lguest_init,
        abi.LHCALL_CRASH: hc_crash,
        abi.LHCALL_LOAD_GDT: hc_load_gdt,
        abi.LHCALL_NEW_PGTABLE: hc_new_pgtable,
        abi.LHCALL_FLUSH_TLB: hc_flush_tlb,
        abi.LHCALL_LOAD_IDT_ENTRY: hc_load_idt_entry,
        abi.LHCALL_SET_STACK: hc_set_stack,
        abi.LHCALL_TS: hc_ts,
        abi.LHCALL_SET_CLOCKEVENT: hc_set_clockevent,
        abi.LHCALL_HALT: hc_halt,
        abi.LHCALL_BIND_DMA: hc_bind_dma,
        abi.LHCALL_SEND_DMA: hc_send_dma,
        abi.LHCALL_SET_PTE: hc_set_pte,
        abi.LHCALL_SET_PMD: hc_set_pmd,
        abi.LHCALL_LOAD_TLS: hc_load_tls,
        abi.LHCALL_NOTIFY: hc_notify,
    }

    def write_timestamp(self):
        sec, nsec = self.clock.timespec()
        if not self.mem.write(self._ld("time"), struct.pack("<II", sec, nsec)):
            self.kill_guest("Writing timestamp")

    # --- §7.2 maybe_do_interrupt ------------------------------------------------
    def decide_interrupt(self):
        """§7.2 without its side effects: what maybe_do_interrupt would do now.

        The one place the Host's interrupt rules are written.  maybe_do_interrupt
        carries out the record this returns, and the debugger prints the same
        record (lguest-irq, lguest-step-irq, the explorer's reasons), so the
        words and the deeds cannot disagree about an order or a boundary.
        """
        d = InterruptDecision(self.irqs_pending)
        # 1. Nothing before LGUEST_INIT.
        if self.lguest_data is None:
            return d.end(1, "none", "lguest_data is not registered yet (no LGUEST_INIT)")
        # 2-4. The lowest pending irq that the Guest has not blocked.
        d.blocked = self.mem.read_u32(self._ld("blocked_interrupts"))
        candidates = self.irqs_pending & ~d.blocked & 0xFFFFFFFF
        d.note(2, "blocked_interrupts = %#010x (%s)", d.blocked, _IrqWords(d.blocked))
        d.note(3, "pending = %#010x (%s); pending and not blocked = %s", self.irqs_pending,
               _IrqWords(self.irqs_pending), _IrqWords(candidates))
        if not candidates:
            # (and no timestamp update)
            if self.irqs_pending:
                d.irq = _lowest(self.irqs_pending)
                return d.end(4, "blocked", "irq %d is pending but blocked", d.irq)
            return d.end(4, "none", "no irq is pending")
        d.irq = _lowest(candidates)
        d.note(4, "lowest candidate: irq %d", d.irq)
        # 5. Never inside lguest_iret's window, whatever irq_enabled says.
        eip = self.cpu.reg("eip")
        window = (eip, self.noirq_start, self.noirq_end)
        if self.noirq_start <= eip < self.noirq_end:
            return d.end(5, "noirq", "EIP %#x is inside the noirq window [%#x, %#x)", *window)
        d.note(5, "EIP %#x is outside the noirq window [%#x, %#x)", *window)
        # 6. A halted Guest expects "sti; hlt": it is woken with interrupts on,
        #    whatever irq_enabled said.  Otherwise any non-zero value is "on".
        if self.halted:
            d.wake = True
            d.note(6, "the Guest is halted: the Host wakes it and sets irq_enabled = 0x200")
        else:
            enabled = self.mem.read_u32(self._ld("irq_enabled"))
            if enabled == 0:
                return self.interrupts_disabled(d)
            d.note(6, "irq_enabled = %#x (enabled: not 0)", enabled)
        # 8. From here on the timestamp is written, delivered or not.
        d.timestamp = True
        # 7. Deliver through the Guest's gate, if it gave us one.
        d.vector = abi.FIRST_EXTERNAL_VECTOR + d.irq
        if d.vector not in self.idt:
            return d.end(7, "no-handler", "no IDT entry for vector %#x (irq %d stays pending)",
                         d.vector, d.irq)
        gate = abi.decode_gate(*self.idt[d.vector])
        kind = abi.gate_kind(gate.type)
        return d.end(7, "deliver", "would deliver irq %d to %#x through %s %s gate",
                     d.irq, gate.handler, "an" if kind == "interrupt" else "a", kind)

    def interrupts_disabled(self, d):
        """Step 6 with irq_enabled 0: the 2.6.23 Host just waits."""
        return d.end(6, "disabled", "lguest_data.irq_enabled is 0")

    def maybe_do_interrupt(self):
        """§7.2: carry out decide_interrupt's record.

        Returns the record, with .delivered set to the irq delivered or None.
        """
        d = self.decide_interrupt()
        if d.irq_pending is not None:
            # 3.2 only: tell a Guest with interrupts off that one is waiting.
            self.mem.write_u32(self._ld("irq_pending"), d.irq_pending)
        if not d.timestamp:
            # Stopped before step 7: nothing is written, a deferral is traced.
            if d.irq is not None:
                self._defer(d.irq, d.verdict)
            return d
        if d.wake:
            if not self.mem.write_u32(self._ld("irq_enabled"), abi.X86_EFLAGS_IF):
                self.kill_guest("Re-enabling interrupts")
            self.halted = False
            self.emit("wake")
        if d.verdict == "deliver":
            eip = self.cpu.reg("eip")
            self.irqs_pending &= ~(1 << d.irq)
            lo, hi = self.idt[d.vector]
            frame = self.set_guest_interrupt(lo, hi, False)
            if frame is not None:
                self._deferred.pop(d.irq, None)
                gate = abi.decode_gate(lo, hi)
                self.emit("irq", irq=d.irq, vector=d.vector, from_eip=eip, handler=gate.handler,
                          gate=abi.gate_kind(gate.type), esp=self.cpu.reg("esp"))
                d.delivered = d.irq
        elif d.verdict == "no-handler":
            self._defer(d.irq, "no-handler")
        if d.timestamp:
            self.write_timestamp()
        return d

    def _defer(self, irq, reason):
        # Traced once per irq per change of reason, not at every Host entry.
        if self._deferred.get(irq) != reason:
            self._deferred[irq] = reason
            self.emit("irq-deferred", irq=irq, reason=reason, eip=self.cpu.reg("eip"))

    # --- §7.3 set_guest_interrupt -----------------------------------------------
    def set_guest_interrupt(self, lo, hi, has_err, errcode=0):
        """Push an interrupt frame as the CPU would and jump to the handler.

        Returns the frame written (dict) or None if the Guest died doing it.
        """
        regs = self.cpu.regs()
        # 2. The eflags we push carry IF from lguest_data.irq_enabled (a bit
        #    test here, unlike maybe_do_interrupt's "non-zero").
        eflags = regs["eflags"]
        if not self.mem.read_u32(self._ld("irq_enabled")) & abi.X86_EFLAGS_IF:
            eflags &= ~abi.X86_EFLAGS_IF
        # 1 and 3: the frame, on the SET_STACK stack when the Guest was in
        # user mode (set_guest_interrupt looks at the saved SS's RPL).
        frame = self._push_frame(regs, eflags, errcode if has_err else None,
                                 regs["ss"] & 3 != abi.GUEST_PL)
        if frame is None:
            return None
        # 4. Into the handler; the handler's own eflags are the saved ones,
        #    untouched (2.6.23 clears neither TF nor NT).
        handler = (lo & 0xFFFF) | (hi & 0xFFFF0000)
        if not self._enter_kernel(handler, frame, regs, regs["eflags"]):
            return None
        # 5. An interrupt gate turns (virtual) interrupts off; a trap gate does not.
        if (hi >> 8) & 0xF == abi.GATE_INTERRUPT:
            if not self.mem.write_u32(self._ld("irq_enabled"), 0):
                self.kill_guest("Disabling interrupts")
        frame["handler"] = handler
        return frame

    def _push_frame(self, regs, eflags, errcode, to_kernel_stack):
        """push_guest_stack, word by word: [SS ESP] EFLAGS CS EIP [errcode].

        Returns the frame (with the new "esp" and "ss") or None if a push fell
        outside Guest memory (lgwrite_u32 has killed the Guest then).
        """
        frame = {"eflags": eflags, "cs": regs["cs"], "eip": regs["eip"]}
        if to_kernel_stack:
            esp, ss = self.esp1, self.ss1
            words = [regs["ss"], regs["esp"]]
            frame.update(old_ss=regs["ss"], old_esp=regs["esp"])
        else:
            esp, ss = regs["esp"], regs["ss"]
            words = []
        words += [eflags, regs["cs"], regs["eip"]]
        if errcode is not None:
            words.append(errcode)
            frame["errcode"] = errcode
        # Both Hosts translate the stack pointer once and push downwards in
        # guest-physical memory from there (push_guest_stack), so a frame
        # that crosses a page boundary lands in the physically preceding page.
        gstack = origstack = self.guest_pa(esp)
        if self.dead:
            return None
        for w in words:
            gstack -= 4
            if not self.mem.write_u32(gstack, w):
                return None
        frame.update(esp=(esp + gstack - origstack) & 0xFFFFFFFF, ss=ss)
        return frame

    def _enter_kernel(self, handler, frame, regs, eflags):
        """The handler runs on frame's SS:ESP with CS __KERNEL_CS|GUEST_PL.

        set_guest_interrupt sets CS to 0x61 unconditionally, also when the
        interrupted ring-1 code ran on another code segment; the Switcher's
        iret then loads CS and SS from the GDT.  If the Guest's GDT makes that
        iret fault, the Guest dies as run_guest kills it for a fault inside
        the Switcher (trap 256; see switcher.py for this decision).
        """
        ss = frame["ss"]
        if not switcher.kernel_entry_ok(self.cpu.gdt, ss):
            self.switcher_fault(handler)
            return False
        if regs["cs"] & 3 != abi.GUEST_PL:
            self.cpu.enter_guest(handler, frame["esp"], eflags, abi.KERNEL_CS, ss)
        else:
            self.cpu.set_reg("esp", frame["esp"])
            self.cpu.set_reg("eip", handler)
            if regs["cs"] != abi.KERNEL_CS:
                self.cpu.set_reg("cs", abi.KERNEL_CS)
        return True

    def switcher_fault(self, eip):
        """A segment fault inside the Switcher on the way into the Guest.

        run_guest_once sets trapnum to 256 first; deliver_trap refuses any
        trap number beyond the IDT, so the Guest is killed with
        "unhandled trap 256 at EIP (errcode of the last exit)".
        """
        self.deliver_trap(256, self.errcode, eip)

    # --- the IDT the CPU really uses (copy_traps) ------------------------------------
    def direct_trap(self, vector):
        """direct_trap (interrupts_and_traps.c): does the CPU deliver `vector`
        straight into the Guest, through the Guest's own gate?

        Only below 32 or the system call vector, never 7, 13, 14 or the
        hypercall vector (the Host must see those), and only through a
        trap gate: an interrupt gate would need IF cleared, which the Guest
        is never allowed to do for real.
        """
        if vector >= abi.FIRST_EXTERNAL_VECTOR and vector != abi.SYSCALL_VECTOR:
            return False
        if vector in abi.NEVER_DIRECT_TRAPS:
            return False
        gate = self.idt.get(vector)
        return gate is not None and (gate[1] >> 8) & 0xF == abi.GATE_TRAP

    def gate_dpl(self, vector):
        """The DPL of the gate the CPU finds for `vector` in the Host's IDT.

        copy_traps copies a direct trap's gate as the Guest gave it; every
        other vector keeps default_idt_entry's gate: an interrupt gate with
        DPL 0, except the hypercall gate (DPL 1).  So a software `int n`
        (or int3, into) from ring 1 or 3 on any other vector raises #GP.
        """
        if self.direct_trap(vector):
            return (self.idt[vector][1] >> 13) & 3
        return abi.GUEST_PL if vector == abi.LGUEST_TRAP_ENTRY else 0

    def deliver_direct(self, vector, errcode, eip):
        """What the CPU does for a direct trap: no Host entry at all.

        The frame is the CPU's: the pushed eflags carry the real IF (always
        set under lguest), not irq_enabled, so the Guest's lguest_iret turns
        irq_enabled on afterwards; a trap gate leaves irq_enabled alone; the
        stack for a trap from ring 3 is the TSS's ss1/esp1, which the Host
        sets from SET_STACK.  The CPU clears TF, NT and RF for the handler.
        """
        regs = self.cpu.regs()
        self.emit("trap", vector=vector, errcode=errcode or 0, eip=eip, direct=True,
                  delivered=True)
        frame = self._push_frame(regs, regs["eflags"], errcode, self.cpu.cpl != abi.GUEST_PL)
        if frame is None:
            # The CPU would fault on the push, and the Host, reflecting that
            # #PF onto the same stack, dies of lgwrite_u32's "bad write address".
            return
        lo, hi = self.idt[vector]
        handler = (lo & 0xFFFF) | (hi & 0xFFFF0000)
        self._enter_kernel(handler, frame, regs, regs["eflags"] & ~_CPU_CLEARS_ON_TRAP)
        if self.cpu.reg("eflags") & _CPU_CLEARS_ON_TRAP:
            self.cpu.set_reg("eflags", regs["eflags"] & ~_CPU_CLEARS_ON_TRAP)

    # --- §7.4 traps ---------------------------------------------------------------
    def handle_trap(self, vector, errcode, eip, cr2=None):
        """A fault the Guest took: emulate it, reflect it, or kill the Guest.

        Returns True when the Host dealt with it silently (the Guest never
        sees it), False when it was reflected or killed the Guest.
        """
        self.errcode = errcode            # lg->regs->errcode, for "trap 256"
        if vector == 13 and errcode == 0 and self.emulate_insn(eip):
            # run_guest's case 13: in/out, emulated, and back into the Guest.
            return True
        if vector == 14:
            # run_guest(): a page fault is first the shadow's business.  If
            # the Guest's own tables allow the access, demand_page fills the
            # shadow and the Guest never knows.
            if self.pt.demand_page(cr2, errcode):
                self.emit("trap", vector=14, errcode=errcode, eip=eip, cr2=cr2,
                          delivered=False, demand=True)
                return True
            # Really not there (or not allowed): tell the Guest where.
            if self.lguest_data is not None and \
                    not self.mem.write_u32(self._ld("cr2"), cr2):
                self.kill_guest("Writing cr2")
                return False
        if vector == 7 and not self.ts:
            # The Host has already restored the FPU: nothing to tell.
            self.emit("trap", vector=7, errcode=0, eip=eip, delivered=False)
            return True
        self.deliver_trap(vector, errcode, eip, cr2)
        return False

    def deliver_trap(self, vector, errcode, eip, cr2=None):
        # deliver_trap (interrupts_and_traps.c): only the Host's 64-entry copy
        # of the Guest's IDT counts, so 256 (a fault in the Switcher) and the
        # system call vector (which reaches the Host only when it is not a
        # direct trap) are never delivered.
        present = vector < self.profile.idt_entries and vector in self.idt
        fields = {"vector": vector, "errcode": errcode, "eip": eip}
        if vector == 14:
            fields["cr2"] = cr2
        if not present or self.lguest_data is None:
            self.emit("trap", **fields, delivered=False)
            self.killed_by_trap = True
            self.kill_guest("unhandled trap %d at %#x (%#x)"
                            % (vector, eip, cr2 if vector == 14 else errcode))
            return
        lo, hi = self.idt[vector]
        self.emit("trap", **fields, delivered=True)
        self.set_guest_interrupt(lo, hi, vector in abi.TRAPS_WITH_ERRCODE, errcode)

    def emulate_insn(self, eip):
        """emulate_insn (core.c): skip an in or out the Guest kernel tripped over.

        The rule is the 2.6.23 Host's, not the CPU's: it looks only at EIP
        (>= PAGE_OFFSET, whatever the privilege level, so ring-3 code up
        there is emulated too), allows at most one 0x66 prefix, and knows
        only the single-port forms E4-E7 and EC-EF.  Anything else (string
        I/O, a second prefix, any other #GP(0)) is not emulated.  An IN
        reads all ones; EIP moves past the instruction.
        """
        if eip < self.page_offset:
            return False
        pa = self.guest_pa(eip)
        insn = self.mem.read(pa, 1)[0]
        shift = length = 0
        if insn == 0x66:
            shift, length = 16, 1
            insn = self.mem.read(pa + 1, 1)[0]
        form = _IO_FORMS.get(insn & 0xFE)
        if form is None or self.dead:
            return False
        extra, is_in = form
        if is_in:
            if insn & 1:
                self.cpu.set_reg("eax", 0xFFFFFFFF)
            else:
                self.cpu.set_reg("eax", self.cpu.reg("eax") | (0xFFFF << shift))
        self.cpu.set_reg("eip", (eip + length + extra) & 0xFFFFFFFF)
        self.emit("trap", vector=13, errcode=0, eip=eip, delivered=False, emulated=True)
        return True


# emulate_insn's four opcode pairs (low bit = width): bytes after the opcode, in?
_IO_FORMS = {0xE4: (2, True), 0xEC: (1, True), 0xE6: (2, False), 0xEE: (1, False)}
# What the CPU clears in EFLAGS when it enters a handler through a gate: TF, NT, RF.
_CPU_CLEARS_ON_TRAP = 0x100 | 0x4000 | 0x10000


def _signed(value):
    """A 32-bit register as the kernel's %i / %li print it."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _lowest(bitmap):
    return (bitmap & -bitmap).bit_length() - 1


class _IrqWords:
    """A bitmap that says itself as "irqs 0, 3" or "none", when formatted."""
    __slots__ = ("bitmap",)

    def __init__(self, bitmap):
        self.bitmap = bitmap

    def __str__(self):
        found = abi.irq_list(self.bitmap & 0xFFFFFFFF)
        return "irqs " + ", ".join(map(str, found)) if found else "none"


class InterruptDecision:
    """One run of §7.2's steps: the verdict, and the steps that led to it.

    verdict is "deliver", "none" or a deferral reason (abi.DEFER_REASONS);
    steps are the lines the debugger prints ("5. EIP ... is inside ...").
    wake and timestamp are what maybe_do_interrupt does besides delivering.
    """

    def __init__(self, pending):
        self.pending = pending
        self.blocked = 0
        self.irq = None
        self.vector = None
        self.verdict = None
        self._notes = []              # (step, format, args), see steps
        self.wake = False             # 6: a halted Guest is woken, irq_enabled = 0x200
        self.timestamp = False        # 8: step 7 was reached
        self.delivered = None         # set by maybe_do_interrupt
        self.irq_pending = None       # 3.2: the value to write to lguest_data.irq_pending

    # The words are formatted only when someone reads them: a decision is
    # made at every Host entry, and read only by the debugger.
    def note(self, step, fmt, *args):
        self._notes.append((step, fmt, args))

    def end(self, step, verdict, fmt, *args):
        self.note(step, fmt, *args)
        self.verdict = verdict
        return self

    @property
    def steps(self):
        return ["%d. %s" % (step, fmt % args) for step, fmt, args in self._notes]

    @property
    def detail(self):
        if self.verdict is None:
            return None
        _, fmt, args = self._notes[-1]
        return fmt % args
