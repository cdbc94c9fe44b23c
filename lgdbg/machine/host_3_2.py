"""The lguest Host of Linux 3.2 (drivers/lguest/ of 3.2.65), where it differs.

Host (host.py) is the 2.6.23 Host; Host32 keeps everything the two share and
rewrites, under the 3.2 names, only the routines whose source changed:

    do_hypercalls / do_async_hcalls   hypercalls.c: the ring is drained only
                                  when the exit was a hypercall, five-word
                                  slots, and a NOTIFY stops it
    initialize                    hypercalls.c + x86/core.c
                                  lguest_arch_init_hypercalls +
                                  page_tables.c page_table_guest_data_init
    do_hcall's table              hypercalls.c do_hcall + x86/core.c
                                  lguest_arch_do_hcall
    load_guest_idt_entry          interrupts_and_traps.c: 256 entries
    load_guest_gdt_entry          segments.c: one entry per call
    decide_interrupt              core.c run_guest's interrupt_pending +
                                  interrupts_and_traps.c try_deliver_interrupt
    gate_dpl                      interrupts_and_traps.c copy_traps
    handle_trap / emulate_insn    x86/core.c lguest_arch_handle_trap, emulate_insn
    guest_pa                      page_tables.c guest_pa: a walk, not a subtraction

Read it beside shared/kernel-3.2/src/drivers/lguest/; the rules are the
source's, including where it is harsh or odd (each such place says so).
"""

import struct

from .. import abi
from .host import Host, _signed

_PAGE_TABLE_MASK = 0xFFF


class Host32(Host):
    PROFILE = "3.2"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.pending_notify = 0           # cpu->pending_notify: for the Launcher
        self.restart = False              # SHUTDOWN(..., RESTART): lg->dead = -ERESTART

    def guest_pa(self, vaddr):
        return self.pt.guest_pa(vaddr)

    # --- hypercalls.c ------------------------------------------------------------------
    def do_hypercalls(self, sync):
        """run_guest: "if (cpu->hcall) do_hypercalls(cpu)".

        sync is (eax, ebx, ecx, edx, esi, eip) from an int $0x1f exit, or None
        for any other Host entry, where 3.2 does not look at the ring at all.
        Returns True when the synchronous call was consumed; it stays for the
        next iteration when the ring stopped at a NOTIFY.
        """
        if sync is None:
            return True
        if self.lguest_data is None:
            self.initialize(sync)
            return True
        self.do_async_hcalls(sync[-1])
        if self.pending_notify:
            return False
        self.do_hcall(*sync)
        return True

    def do_async_hcalls(self, eip):
        # One snapshot of the status bytes; at most 64 calls from our cursor;
        # each slot is struct hcall_args, five words (arg0 = the call).
        status = self.mem.read(self._ld("hcall_status"), abi.LHCALL_RING_SIZE)
        slot = self.profile.ring_slot
        for _ in range(abi.LHCALL_RING_SIZE):
            n = self.next_hcall
            if status[n] == abi.HCALL_DONE:
                break
            self.next_hcall = (n + 1) % abi.LHCALL_RING_SIZE
            args = struct.unpack("<5I", self.mem.read(self._ld("hcalls") + n * slot, slot))
            self.do_hcall(*args, eip, is_async=True)
            if not self.mem.write(self._ld("hcall_status") + n, b"\xff"):
                break
            # A NOTIFY goes to the Launcher before the rest of the ring.
            if self.pending_notify or self.dead:
                break

    def do_hcall(self, nr, a1, a2, a3, a4, eip, is_async=False):
        self.emit("hcall", nr=nr, name=abi.hcall_name(nr, "3.2"), args=[a1, a2, a3, a4],
                  eip=eip, **{"async": is_async})
        handler = self._HCALLS_3_2.get(nr)
        if handler is None:
            # lguest_arch_do_hcall's -EIO, then do_hcall's "%li" and newline.
            # 13 (SET_PMD) is PAE-only: this Host is the non-PAE one (the
            # Switcher at 0xFFC00000), so it is a bad hypercall here too.
            self.kill_guest("Bad hypercall %d\n" % _signed(nr))
            return
        handler(self, a1, a2, a3, a4)

    def initialize(self, sync):
        """hypercalls.c initialize: the first hypercall must be LGUEST_INIT."""
        nr, addr = sync[0], sync[1]
        self.emit("hcall", nr=nr, name=abi.hcall_name(nr, "3.2"), args=list(sync[1:5]),
                  eip=sync[-1], **{"async": False})
        if nr != abi.LHCALL_LGUEST_INIT:
            self.kill_guest("hypercall %d before INIT" % _signed(nr))
            return
        # lguest_arch_init_hypercalls: the whole struct must be Guest memory.
        if not self.mem.ok(addr, self.profile.ld_size):
            self.kill_guest("bad guest page %08x" % addr)
            return
        self.lguest_data = addr
        # tsc_khz 0, as a Host without a constant TSC says: the Guest then
        # keeps time with lguest_data.time, which this Host writes from its
        # own clock, so a run under --clock icount stays deterministic.  (A
        # non-zero value would make the Guest read rdtsc, which unicorn
        # answers from the host's TSC.)
        self.mem.write_u32(self._ld("tsc_khz"), 0)
        if self.mem.read_u32(self._ld("syscall_vec")) != abi.SYSCALL_VECTOR:
            self.kill_guest("bad syscall vector")
        self.noirq_start = self.mem.read_u32(self._ld("noirq_start"))
        self.noirq_end = self.mem.read_u32(self._ld("noirq_end"))
        self.write_timestamp()
        # page_table_guest_data_init: where user mappings end, and the room
        # the Guest must leave for the Switcher.
        self.pt.kernel_address = self.mem.read_u32(self._ld("kernel_address"))
        self.mem.write_u32(self._ld("reserve_mem"), abi.RESERVE_MEM)
        if self.pt.kernel_address >> 22 >= 1023:
            self.kill_guest("bad kernel address %#x" % self.pt.kernel_address)
        self.guest_pagetable_clear_all()

    def guest_pagetable_clear_all(self):
        # 3.2's guest_pagetable_clear_all re-pins the stack itself.
        self.pt.guest_pagetable_clear_all()
        self.pin_stack_pages()

    # --- the hypercalls whose 3.2 form differs -------------------------------------------
    def hc32_nothing(self, *args):
        # FLUSH_ASYNC (the ring is drained already) and SEND_INTERRUPTS (the
        # exit itself lets run_guest try to deliver).
        return None

    def hc32_lguest_init(self, *args):
        self.kill_guest("already have lguest_data")

    def hc32_shutdown(self, msg, reason, *args):
        # __lgread of 128 bytes, the last forced to NUL.
        text = self.mem.read(msg, 128)[:127].split(b"\0", 1)[0].decode("latin-1")
        self.kill_guest("CRASH: %s" % text)
        if reason == abi.LGUEST_SHUTDOWN_RESTART:
            # lg->dead = ERR_PTR(-ERESTART) replaces whatever reason was kept
            # (restart passes __pa(NULL) for a plain reboot, so the read above
            # has just failed): the Launcher sees -ERESTART and re-executes
            # itself.
            self.restart = True
            self.dead = "RESTART"
            self.emit("restart")

    def hc32_flush_tlb(self, all_, *args):
        self.page_table_calls += 1
        if all_:
            self.guest_pagetable_clear_all()
        else:
            self.pt.guest_pagetable_flush_user()

    def hc32_new_pgtable(self, pgdir, *args):
        # 3.2.65's new_pgdir never sets *blank_pgdir, so guest_new_pagetable
        # never re-pins the stack: a fresh shadow takes the stack pages by
        # demand faults like any other page.
        self.page_table_calls += 1
        self.pt.guest_new_pagetable(pgdir)

    def hc32_set_stack(self, ss, esp, pages, *args):
        # guest_set_stack goes on after each kill (no return), storing the
        # values anyway; the first reason is the one kept.
        if ss & 3 != abi.GUEST_PL:
            self.kill_guest("bad stack segment %d" % _signed(ss))
        if pages > 2:
            self.kill_guest("bad stack pages %u" % pages)
        self.ss1, self.esp1, self.stack_pages = ss & 0xFFFF, esp, pages
        if not self.dead:
            self.pin_stack_pages()

    def hc32_set_pte(self, pgdir, vaddr, pte, *args):
        self.page_table_calls += 1
        self.pt.guest_set_pte(pgdir, vaddr, pte)

    def hc32_set_pgd(self, pgdir, index, *args):
        self.page_table_calls += 1
        self.pt.guest_set_pmd(pgdir, index)

    def hc32_set_clockevent(self, delta, *args):
        self.hc_set_clockevent(delta, 0, 0)

    def hc32_ts(self, ts, *args):
        self.ts = ts

    def hc32_halt(self, *args):
        self.hc_halt(0, 0, 0)

    def hc32_notify(self, addr, *args):
        # The Launcher hears it when run_guest returns (see machine.py).
        self.pending_notify = addr

    def hc32_load_gdt_entry(self, num, lo, hi, *args):
        """segments.c load_guest_gdt_entry: one descriptor per call."""
        if num >= abi.GDT_ENTRIES:
            self.kill_guest("too many gdt entries %d" % _signed(num))
            return
        # The Host's own entries are stored in cpu->arch.gdt but copy_gdt
        # never puts them in the GDT the CPU uses: here they are dropped.
        if num not in abi.HOST_GDT_ENTRIES:
            self.cpu.gdt[num] = struct.pack("<II", lo, hi)
        self._fixup_gdt(num, num + 1)

    def hc32_load_idt_entry(self, num, lo, hi, *args):
        """interrupts_and_traps.c load_guest_idt_entry and set_trap."""
        if num in abi.IDT_IGNORED_VECTORS:
            return
        if num >= self.profile.idt_entries:
            self.kill_guest("Setting idt entry %u" % num)
            return
        if not hi & 0x8000:
            self.idt.pop(num, None)
            return
        gate_type = (hi >> 8) & 0xF
        if gate_type not in (abi.GATE_INTERRUPT, abi.GATE_TRAP):
            # set_trap kills, then stores the entry anyway.
            self.kill_guest("bad IDT type %d" % gate_type)
        self.idt[num] = ((abi.KERNEL_CS << 16) | (lo & 0xFFFF), hi & 0xFFFFEF00)

    def hc32_load_tls(self, table, *args):
        self.hc_load_tls(table, 0, 0)

    _HCALLS_3_2 = {
        0: hc32_nothing,                  # FLUSH_ASYNC
        1: hc32_lguest_init,
        2: hc32_shutdown,
        4: hc32_new_pgtable,
        5: hc32_flush_tlb,
        6: hc32_load_idt_entry,
        7: hc32_set_stack,
        8: hc32_ts,
        9: hc32_set_clockevent,
        10: hc32_halt,
        14: hc32_set_pte,
        15: hc32_set_pgd,
        16: hc32_load_tls,
        17: hc32_notify,
        18: hc32_load_gdt_entry,
        19: hc32_nothing,                 # SEND_INTERRUPTS
    }

    # --- interrupts: interrupt_pending + try_deliver_interrupt -----------------------------
    # The decision is Host.decide_interrupt's: 3.2's interrupt_pending() and
    # try_deliver_interrupt() take the same steps in the same order (the
    # lowest unblocked irq, the noirq window, halted, irq_enabled, the gate,
    # the timestamp), except for what a Guest with interrupts off is told.
    def interrupts_disabled(self, d):
        """try_deliver_interrupt with irq_enabled 0: set irq_pending = 0x200 so
        that the Guest's next restore_fl asks for the interrupt (SEND_INTERRUPTS).

        It is cleared only when `more` is false -- which never happens in
        3.2.65: interrupt_pending stores find_next_bit()'s result (an index,
        32 when there is none) in the bool, so it is always true, and
        irq_pending stays set once set.
        """
        d.irq_pending = abi.X86_EFLAGS_IF
        return d.end(6, "disabled", "lguest_data.irq_enabled is 0: the Host sets "
                     "irq_pending = 0x200 and waits")

    # --- traps -------------------------------------------------------------------------------
    # direct_trap is 2.6.23's: the CPU delivers below 32 (and the system call
    # vector) except 7, 13, 14 and 0x1f, through a trap gate.  What copy_traps
    # changed is the DPL of the gates it does not copy:

    def gate_dpl(self, vector):
        """copy_traps in 3.2 also gives a direct vector's *interrupt* gate the
        Guest's DPL (default_idt_entry with base): a software int through it
        reaches the Host instead of raising #GP."""
        if vector == abi.LGUEST_TRAP_ENTRY:
            return abi.GUEST_PL
        if (vector < abi.FIRST_EXTERNAL_VECTOR or vector == abi.SYSCALL_VECTOR) \
                and vector not in abi.NEVER_DIRECT_TRAPS and vector in self.idt:
            return (self.idt[vector][1] >> 13) & 3
        return 0

    def handle_trap(self, vector, errcode, eip, cr2=None):
        """lguest_arch_handle_trap: as 2.6.23's, plus "case 32 ... 255": a
        vector that high is taken for a real interrupt and ignored."""
        if vector >= abi.FIRST_EXTERNAL_VECTOR and vector != 256:
            self.emit("trap", vector=vector, errcode=errcode, eip=eip, delivered=False,
                      ignored=True)
            return True
        return super().handle_trap(vector, errcode, eip, cr2)

    def emulate_insn(self, eip):
        """x86/core.c emulate_insn of 3.2: only from the Guest kernel's ring
        (CS RPL 1, not an EIP test), the instruction found through the Guest's
        page tables, `cli` skipped, and an 8-bit `in` fills AL only."""
        if self.cpu.reg("cs") & 3 != abi.GUEST_PL:
            return False
        pa = self.guest_pa(eip)
        insn = self.mem.read(pa, 1)[0]
        if insn == 0xFA:
            self.cpu.set_reg("eip", (eip + 1) & 0xFFFFFFFF)
            self.emit("trap", vector=13, errcode=0, eip=eip, delivered=False, emulated=True)
            return True
        length, small = 0, False
        if insn == 0x66:
            small, length = True, 1
            insn = self.mem.read(pa + 1, 1)[0]
        form = _IO_FORMS_3_2.get(insn & 0xFE)
        if form is None or self.dead:
            return False
        extra, is_in = form
        if is_in:
            eax = self.cpu.reg("eax")
            if insn & 1:
                eax = eax | 0xFFFF if small else 0xFFFFFFFF
            else:
                eax |= 0xFF
            self.cpu.set_reg("eax", eax)
        self.cpu.set_reg("eip", (eip + length + extra) & 0xFFFFFFFF)
        self.emit("trap", vector=13, errcode=0, eip=eip, delivered=False, emulated=True)
        return True


_IO_FORMS_3_2 = {0xE4: (2, True), 0xEC: (1, True), 0xE6: (2, False), 0xEE: (1, False)}
