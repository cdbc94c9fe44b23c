"""The i386 CPU the Guest runs on: unicorn, set up the way lguest's Switcher would.

unicorn runs with paging on, like the real CPU under lguest: CR3 points at the
Host's shadow page directory (page_tables.py), never at the Guest's own.  Its
physical address space:

    [0, ram)                      Guest RAM, one host buffer mapped ONCE (a
                                  second alias would leave stale code after
                                  self-patching: platform-notes.md)
    POOL_PHYS                     the shadow page tables, Host pages no
                                  shadow maps, so the Guest never sees them
    [SWITCHER_ADDR, +64 KiB)      the Host's page: GDT, stubs, Host stack,
    SWITCHER_ADDR + 64 KiB        and its writable page (TSS, ring-0 stack),
                                  mapped by every shadow at the same virtual
                                  address, read-only and supervisor-only
                                  except that one page, as the real Switcher

Every Guest exit reaches Python through a hook that records an `Exit` and stops
the CPU; no hook runs per instruction or per block.  Instruction counts come
from unicorn's own `count=` counter (offset found by calibrate.py).
"""

import ctypes
import mmap
import struct

from unicorn import (Uc, UcError, UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, UC_PROT_READ,
                     UC_ERR_INSN_INVALID,
                     UC_PROT_EXEC, UC_HOOK_INTR, UC_HOOK_MEM_UNMAPPED, UC_HOOK_MEM_PROT,
                     UC_HOOK_INSN, UC_HOOK_CODE, UC_HOOK_MEM_WRITE, UC_HOOK_MEM_READ,
                     UC_MEM_WRITE_UNMAPPED, UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_PROT,
                     UC_MEM_FETCH_PROT, UC_MEM_WRITE, UC_MEM_READ, UC_ERR_READ_UNMAPPED,
                     UC_ERR_WRITE_UNMAPPED)
from unicorn import x86_const as X
from unicorn.unicorn_const import UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE

from .. import abi
from . import calibrate

WIDEST_ACCESS = 16                           # bytes: an SSE load or store
SWITCHER_SIZE = 0x10000
GDT_ADDR = abi.SWITCHER_ADDR                 # 32 descriptors
IRET_STUB = abi.SWITCHER_ADDR + 0x1000       # a lone `iret`
LCALL_STUB = abi.SWITCHER_ADDR + 0x1010      # `lcall` through the call gate to ring 0
RING0_STUB = abi.SWITCHER_ADDR + 0x1020      # the gate's target: switch stacks, `iret`
HOST_STACK_TOP = abi.SWITCHER_ADDR + 0x4000
# One writable Host page after the Switcher's: the TSS (ring 0's stack for a
# call gate) and the ring-0 stack itself, which the CPU pushes onto.
HOST_RW = abi.SWITCHER_ADDR + 0x10000
TSS_ADDR = HOST_RW
RING0_FRAME = HOST_RW + 0x800                # the iret frame RING0_STUB returns through
RING0_STACK_TOP = HOST_RW + 0x1000
CALL_GATE = abi.GDT_ENTRY_DOUBLEFAULT_TSS    # a Host-owned slot
HOST_TOP = HOST_RW + abi.PAGE_SIZE
# emu_start's `until`: unicorn stops silently, without fetching, when a block
# starts there, so it must be an address no Guest code can be at: inside the
# Switcher (PGD slot 1023, never the Guest's) where no stub lives.
UNTIL_ADDR = abi.SWITCHER_ADDR + 0x3000

# CR0 as the Host runs the Guest: protected mode, paging, and write protection
# (without WP a read-only shadow entry would not stop ring 1, and neither the
# Host's dirty tracking nor the Guest's own WP test would work).
CR0_PE, CR0_ET, CR0_TS, CR0_WP, CR0_PG = 0x1, 0x10, 0x8, 0x10000, 0x80000000
# CR4.TSD: rdtsc outside ring 0 raises #GP(0), which the Machine answers with
# the virtual clock (see Machine._virtual_tsc): unicorn's rdtsc reads the
# host's TSC, and UC_HOOK_INSN refuses RDTSC, so this is the only way to a
# deterministic TSC without a Python call per instruction.
CR4_TSD = 0x4
# QEMU's lazy flags: cc_op CC_OP_EFLAGS means "cc_src holds the flags", and
# the flags it can hold: CF, PF, AF, ZF, SF, OF.
CC_OP_EFLAGS = 1
_ARITH_FLAGS = 0x8D5
GUEST_CR0 = CR0_PE | CR0_ET | CR0_WP | CR0_PG
# The page holding the lcall stub: user-executable only while the Host uses it.
LCALL_PAGE_INDEX = (LCALL_STUB - abi.SWITCHER_ADDR) >> 12
FLAT_USER_CS = abi.GDT_ENTRY_TSS * 8 | 3     # only while Cpu._call_gate is on

# Ring-0 segments in the Host-owned GDT slots, as the Switcher's LGUEST_CS/DS.
HOST_CS = abi.GDT_ENTRY_LGUEST_CS * 8
HOST_DS = abi.GDT_ENTRY_LGUEST_DS * 8

REGS32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
          "cs", "ss", "ds", "es", "fs", "gs")
_UC_REG = {name: getattr(X, "UC_X86_REG_" + name.upper()) for name in REGS32}
_UC_REG.update({"fpcw": X.UC_X86_REG_FPCW, "fpsw": X.UC_X86_REG_FPSW,
                "fptag": X.UC_X86_REG_FPTAG, "mxcsr": X.UC_X86_REG_MXCSR})
_BATCH_IDS = [_UC_REG[n] for n in REGS32]
# For Cpu.regs(): all 16 are 32-bit values in 32-bit mode (segment selectors
# are written as 16 bits into a zeroed 32-bit slot).
from unicorn.unicorn_py3.unicorn import uclib as _uclib  # noqa: E402
_BATCH_ARRAY = (ctypes.c_int * len(REGS32))(*_BATCH_IDS)


# uc_reg_read/uc_reg_write straight from ctypes: the binding's reg_read and
# reg_write pick a register class in Python (~5 us each, and a Host entry
# reads and writes a dozen).  For registers of 32 bits or fewer (one zeroed
# uint32 holds them): not GDTR, TR or the FPU stack.
def _rd(uc, regid):
    val = ctypes.c_uint32(0)
    status = _uclib.uc_reg_read(uc._uch, regid, ctypes.byref(val))
    if status:
        raise UcError(status)
    return val.value


def _wr(uc, regid, value):
    val = ctypes.c_uint32(value & 0xFFFFFFFF)
    status = _uclib.uc_reg_write(uc._uch, regid, ctypes.byref(val))
    if status:
        raise UcError(status)
_RegVals = ctypes.c_uint32 * len(REGS32)
_RegPtrs = ctypes.c_void_p * len(REGS32)


_PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))
# movs, cmps, stos, lods, scas (ins/outs exit to the Host: not here).
_STRING_OPS = frozenset((0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF))


def rep_string_insn(code):
    """(length, 16-bit address size) of a rep-prefixed string instruction at
    the start of code, or None."""
    rep = addr16 = False
    for i, byte in enumerate(code):
        if byte in (0xF2, 0xF3):
            rep = True
        elif byte == 0x67:
            addr16 = True             # the count is CX, not ECX
        elif byte not in _PREFIXES:
            return (i + 1, addr16) if rep and byte in _STRING_OPS else None
    return None


def flat_descriptor(access):
    """A flat 4 GiB descriptor (G=1, D=1) with the given access byte."""
    return struct.pack("<II", 0x0000FFFF, 0x00CF0000 | (access << 8))


class Exit:
    """Why the CPU came back to the Host."""
    __slots__ = ("kind", "intno", "addr", "write", "fetch", "prot", "port", "size",
                 "is_out", "eip", "watch", "soft", "errcode", "undo", "flags")
    # addr: the faulting address (CR2) of a page fault

    def __init__(self, kind, **kw):
        self.kind = kind          # 'intr', 'mem', 'io', 'breakpoint', 'watch', 'stop', 'budget'
        for k in self.__slots__[1:]:
            setattr(self, k, kw.get(k))

    def __repr__(self):
        return "<Exit %s %s>" % (self.kind, {k: getattr(self, k) for k in self.__slots__[1:]
                                             if getattr(self, k) is not None})


class Cpu:
    def __init__(self, page_offset, ram_size):
        self.page_offset = page_offset
        self.ram_size = ram_size
        self.off = calibrate.offsets()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self._engine = calibrate.engine_address(self.uc)
        # Guest RAM: one anonymous mapping the Host reads and writes directly.
        self.ram = mmap.mmap(-1, ram_size)
        self._ram_ptr = ctypes.addressof(ctypes.c_char.from_buffer(self.ram))
        self.uc.mem_map_ptr(0, ram_size, UC_PROT_ALL, self._ram_ptr)
        self.switcher = mmap.mmap(-1, SWITCHER_SIZE)
        self._sw_ptr = ctypes.addressof(ctypes.c_char.from_buffer(self.switcher))
        self.uc.mem_map_ptr(abi.SWITCHER_ADDR, SWITCHER_SIZE, UC_PROT_READ | UC_PROT_EXEC,
                            self._sw_ptr)
        self.shadows = None            # the Host's PageTables, once it has them
        self.paging = False
        self.ts = False                # CR0.TS as the Host set it
        self.switcher[IRET_STUB - abi.SWITCHER_ADDR] = 0xCF
        self._init_ring_changes()
        self.exit = None
        # emu_start's `until`: unicorn stops silently, without fetching, when
        # a block starts there, so it must be an address no Guest code can be
        # at (an unmapped one); arriving there is a fetch fault (see run()).
        self._until = UNTIL_ADDR
        self._skip_bp = None
        self._breakpoints = {}        # addr -> hook handle
        self._watch_hooks = []
        self.watch_hit = None
        self._install_hooks()
        self._init_gdt()
        # The FPU as FNINIT leaves it (unicorn starts elsewhere): control word
        # 0x37F, every register empty (tag word 0xFFFF), and SSE's MXCSR.
        self.uc.reg_write(X.UC_X86_REG_FPCW, 0x37F)
        self.uc.reg_write(X.UC_X86_REG_FPTAG, 0xFFFF)
        self.uc.reg_write(X.UC_X86_REG_MXCSR, 0x1F80)
        self.uc.reg_write(X.UC_X86_REG_CR4, _rd(self.uc, X.UC_X86_REG_CR4) | CR4_TSD)

    # --- set-up ------------------------------------------------------------
    def _init_gdt(self):
        # The Host's slots: ring-0 code/data for the Switcher's own stubs.  The
        # Guest's 12/13 start as flat DPL 1 (high dwords 0x00CFBB00/0x00CFB300,
        # accessed bit set), as the 2.6.23 Host pre-sets them.
        self.gdt = [b"\0" * 8] * abi.GDT_ENTRIES
        self.gdt[abi.GDT_ENTRY_LGUEST_CS] = flat_descriptor(0x9B)
        self.gdt[abi.GDT_ENTRY_LGUEST_DS] = flat_descriptor(0x93)
        self.gdt[12] = flat_descriptor(0xBB)
        self.gdt[13] = flat_descriptor(0xB3)
        self._host_descriptors()
        self.flush_gdt()
        self.uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_ADDR, abi.GDT_ENTRIES * 8 - 1, 0))
        self.uc.reg_write(X.UC_X86_REG_TR, (abi.GDT_ENTRY_TSS * 8, TSS_ADDR, 0x67, 0x8900))
        _wr(self.uc, X.UC_X86_REG_CS, HOST_CS)
        _wr(self.uc, X.UC_X86_REG_SS, HOST_DS)
        _wr(self.uc, X.UC_X86_REG_DS, HOST_DS)

    def _init_ring_changes(self):
        """What it takes to leave ring 3 for ring 1 from the Host's side.

        unicorn hands every interrupt to a hook instead of the IDT, so the CPU
        never changes privilege by itself when the Guest is interrupted in user
        mode.  Like the Switcher, we go through ring 0: a ring-3 `lcall`
        through a DPL-3 call gate lands in a ring-0 stub (the CPU takes ring
        0's stack from the TSS), which switches to a prepared frame and
        `iret`s into ring 1.
        """
        self.uc.mem_map(HOST_RW, 0x1000, UC_PROT_ALL)
        tss = bytearray(104)
        struct.pack_into("<II", tss, 4, RING0_STACK_TOP, HOST_DS)      # esp0, ss0
        self.uc.mem_write(TSS_ADDR, bytes(tss))
        sw = abi.SWITCHER_ADDR
        self.switcher[LCALL_STUB - sw:LCALL_STUB - sw + 7] = \
            b"\x9a" + struct.pack("<IH", 0, CALL_GATE * 8 | 3)
        self.switcher[RING0_STUB - sw:RING0_STUB - sw + 6] = \
            b"\xbc" + struct.pack("<I", RING0_FRAME) + b"\xcf"

    def _host_descriptors(self):
        # The TSS (type 9, available 32-bit).  Entry 31 stays empty, as in the
        # real Guest GDT (setup_default_gdt_entries, segments.c): our call
        # gate is there only while enter_guest uses it (_call_gate).
        self.gdt[abi.GDT_ENTRY_TSS] = struct.pack(
            "<II", (TSS_ADDR & 0xFFFF) << 16 | 0x67,
            (TSS_ADDR & 0xFF000000) | ((TSS_ADDR >> 16) & 0xFF) | 0x8900)

    def _call_gate(self, present):
        """Put the DPL-3 call gate (type 0xC) to RING0_STUB in entry 31 and a
        flat DPL-3 code segment in entry 16 for the lcall, or take both away:
        left there, any Guest `lcall $0xfb` would reach ring 0.  (Entry 16's
        TSS is not read again once TR is loaded.)"""
        if present:
            gate = struct.pack("<II", HOST_CS << 16 | (RING0_STUB & 0xFFFF),
                               (RING0_STUB & 0xFFFF0000) | 0xEC00)
            code = flat_descriptor(0xFB)
        else:
            gate, code = self.gdt[CALL_GATE], self.gdt[abi.GDT_ENTRY_TSS]
        self.switcher[CALL_GATE * 8:CALL_GATE * 8 + 8] = gate
        self.switcher[abi.GDT_ENTRY_TSS * 8:abi.GDT_ENTRY_TSS * 8 + 8] = code

    def flush_gdt(self):
        blob = b"".join(self.gdt)
        self.switcher[0:len(blob)] = blob

    def _install_hooks(self):
        uc = self.uc
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED | UC_HOOK_MEM_PROT, self._on_bad_mem)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)

    def enter_guest(self, eip, esp, eflags, cs=abi.KERNEL_CS, ss=abi.KERNEL_DS):
        """Drop from the Host's ring 0 into the Guest's ring with an iret frame.

        unicorn will not change the privilege level on a CS write, so, like
        the Switcher, we build an iret frame on the Host stack and execute it.
        """
        frame = struct.pack("<5I", eip, cs, eflags, esp, ss)
        if self.cpl == 0:
            # Boot: the CPU starts in ring 0 on the Host's segments.
            top = HOST_STACK_TOP - abi.SWITCHER_ADDR
            self.switcher[top - len(frame):top] = frame
            _wr(self.uc, X.UC_X86_REG_ESP, HOST_STACK_TOP - len(frame))
            self.uc.emu_start(IRET_STUB, IRET_STUB + 1, count=1)
            # Whatever unicorn noted on the way must not turn the Guest's
            # first fault into a double fault (issue #1883, see run()).
            self.clear_exception_state()
            return
        # From user mode: lcall (to ring 0), mov esp, iret (to the Guest's ring).
        # The stub's page is the Host's: user code may run it only now.
        # The TSS's ring-0 stack is written again each time: the page is the
        # Guest's to write (the real one is read-only to it), and a stack it
        # moved would make the lcall fault outside any Guest exit.
        self.uc.mem_write(TSS_ADDR + 4, struct.pack("<II", RING0_STACK_TOP, HOST_DS))
        self.uc.mem_write(RING0_FRAME, frame)
        saved_exit = self.exit
        self._call_gate(True)
        self._lcall_page_user(True)
        try:
            # The lcall runs in the Guest's ring but must not run on the
            # Guest's code segment, whose base and limit are the Guest's to
            # choose: a flat ring-3 one of ours, for these three instructions.
            _wr(self.uc, X.UC_X86_REG_CS, FLAT_USER_CS)
            self.uc.emu_start(LCALL_STUB, 0, count=3)
        finally:
            self._lcall_page_user(False)
            self._call_gate(False)
        self.clear_exception_state()
        self.exit = saved_exit
        if self.reg("eip") != eip or self.cpl != cs & 3:
            raise RuntimeError("ring change to %#x:%#x failed (at %#x, CPL %d)"
                               % (cs, eip, self.reg("eip"), self.cpl))

    # --- paging ------------------------------------------------------------------
    @staticmethod
    def switcher_ptes():
        """(index, entry) of the Switcher PTE page (H:520): what every shadow maps
        in its top 4 MiB.  Read-only and supervisor-only, but for the page the
        CPU itself writes (TSS and ring-0 stack)."""
        ptes = []
        for i in range(SWITCHER_SIZE >> 12):
            ptes.append((i, (abi.SWITCHER_ADDR + (i << 12)) | 0x21))         # P|A
        ptes.append(((HOST_RW - abi.SWITCHER_ADDR) >> 12, HOST_RW | 0x63))   # P|RW|A|D
        return ptes

    def attach_shadows(self, shadows):
        """Map the Host's shadow-table pool where CR3 and the PDEs point."""
        from .page_tables import POOL_PHYS
        self.shadows = shadows
        buf = shadows.pool.buf
        self._pool_ptr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        self.uc.mem_map_ptr(POOL_PHYS, len(buf), UC_PROT_ALL, self._pool_ptr)

    def set_shadow_root(self, phys):
        """Load CR3 with a shadow directory; the first one turns paging on."""
        _wr(self.uc, X.UC_X86_REG_CR3, phys)
        if not self.paging:
            self.paging = True
            self._write_cr0()

    def _write_cr0(self):
        _wr(self.uc, X.UC_X86_REG_CR0, GUEST_CR0 | (CR0_TS if self.ts else 0))

    def set_ts(self, ts):
        """CR0.TS: the next FPU or SSE instruction traps 7 (#NM)."""
        if bool(ts) != self.ts:
            self.ts = bool(ts)
            self._write_cr0()

    def flush_tlb(self):
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        if self.shadows is not None:
            self.shadows.tlb_stale = False

    # --- hooks (each records why the Guest exited and stops) -----------------
    def _lcall_page_user(self, user):
        words = self.shadows.pool.words
        at = self.shadows.switcher_pte_page * 1024 + LCALL_PAGE_INDEX
        words[at] = (words[at] | 4) if user else (words[at] & ~4)
        self.flush_tlb()

    def _on_intr(self, uc, intno, _):
        self.exit = Exit("intr", intno=intno, eip=_rd(uc, X.UC_X86_REG_EIP))
        # Read the error code, "raised by int n" and CR2 now: when emu_start
        # winds down it may walk the page tables again (for its `until`
        # address, at the Guest's privilege) and a failed walk overwrites
        # all three.
        ctx = bytes(uc.context_save())
        errcode, is_int = struct.unpack_from("<Ii", ctx, self.off.errcode)
        self.exit.soft = is_int == 1
        self.exit.flags = self._synced_flags(ctx)
        if intno in abi.TRAPS_WITH_ERRCODE:
            self.exit.errcode = errcode
        if intno == 14:
            self.exit.addr = _rd(uc, X.UC_X86_REG_CR2)
        uc.emu_stop()

    def _on_bad_mem(self, uc, access, addr, size, value, _):
        write = access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT)
        fetch = access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT)
        prot = access in (UC_MEM_WRITE_PROT, UC_MEM_FETCH_PROT) or access == 23  # READ_PROT
        self.exit = Exit("mem", addr=addr & 0xFFFFFFFF, write=write, fetch=fetch, prot=prot,
                         size=size, eip=_rd(uc, X.UC_X86_REG_EIP))
        return False

    def _synced_flags(self, ctx):
        """The flags to restore at an exit in the middle of an instruction, or None.

        With counting, unicorn computes the flags into cc_src and eflags at
        each instruction's hook and switches cc_op to CC_OP_EFLAGS at run
        time; an exit inside the instruction then puts the translator's
        stale cc_op back (see clear_exception_state).  Read here, inside
        the exit's hook, before unicorn's way out recomputes eflags from
        the mismatched pair: when cc_op is not CC_OP_EFLAGS but cc_src
        holds exactly the flags the hook stored in eflags, the pair is that
        mismatch, and cc_src is right.
        """
        cc_op, = struct.unpack_from("<I", ctx, self.off.cc_op)
        if cc_op == CC_OP_EFLAGS:
            return None
        eflags, = struct.unpack_from("<Q", ctx, self.off.eflags)
        cc_src, = struct.unpack_from("<Q", ctx, self.off.cc_src)
        if eflags & _ARITH_FLAGS != cc_src & _ARITH_FLAGS:
            return None
        return cc_src & _ARITH_FLAGS

    def _on_in(self, uc, port, size, _):
        eip = _rd(uc, X.UC_X86_REG_EIP)
        self.exit = Exit("io", port=port, size=size, is_out=False, eip=eip,
                         undo=self._string_registers(uc))
        self.exit.flags = self._synced_flags(bytes(uc.context_save()))
        self._stop_after_this_instruction()
        # Give back what the register already holds, so EAX is unchanged:
        # Machine._io rolls the instruction back into the #GP(0) the CPU
        # would have raised, and Host.emulate_insn applies the 2.6.23 rule.
        return _rd(uc, X.UC_X86_REG_EAX) & ((1 << (8 * size)) - 1)

    def _on_out(self, uc, port, size, value, _):
        self.exit = Exit("io", port=port, size=size, is_out=True,
                         eip=_rd(uc, X.UC_X86_REG_EIP), undo=self._string_registers(uc))
        self.exit.flags = self._synced_flags(bytes(uc.context_save()))
        self._stop_after_this_instruction()

    @staticmethod
    def _string_registers(uc):
        # What an ins/outs changes besides EIP, read before it does: the CPU
        # would have refused the instruction (#GP) before any of it
        # (Machine._io puts these back).
        return {"esi": _rd(uc, X.UC_X86_REG_ESI), "edi": _rd(uc, X.UC_X86_REG_EDI),
                "ecx": _rd(uc, X.UC_X86_REG_ECX)}

    stops_ignored = False      # a silent replay runs through breakpoints and watchpoints

    def _on_breakpoint(self, uc, addr, size, _):
        if self.stops_ignored:
            return
        if self._skip_bp == addr:          # resuming from this breakpoint
            self._skip_bp = None
            return
        self.exit = Exit("breakpoint", eip=addr)
        uc.emu_stop()

    def _on_watch(self, uc, access, addr, size, value, data):
        if self.stops_ignored:
            return
        kind, vbase, pbase, wstart = data
        addr = (vbase + addr - pbase) & 0xFFFFFFFF     # unicorn reports physical
        if kind == "watch" and access != UC_MEM_WRITE:
            return
        if kind == "rwatch" and access != UC_MEM_READ:
            return
        if addr + size <= wstart:
            return                          # ends before the watched bytes (add_watch)
        if self.watch_hit is None:
            # The first watched byte touched: gdb matches the stop reply's
            # address against its own watchpoints, so it must lie inside one.
            self.watch_hit = (kind, max(addr, wstart))
        self._watch_eip = _rd(uc, X.UC_X86_REG_EIP)     # see _end_rep_string()
        self._stop_after_this_instruction()

    def _stop_after_this_instruction(self):
        # Lower count=' budget to the instruction in flight: unicorn stops at
        # the next boundary with this instruction complete.  (emu_stop from a
        # memory hook would leave EIP on an instruction whose store is done.)
        ctypes.c_uint64.from_address(self._engine + self.off.budget).value = self.counter()

    # --- running ------------------------------------------------------------
    def counter(self):
        return ctypes.c_uint64.from_address(self._engine + self.off.counter).value

    def run(self, budget=None, skip_bp=None, count_for_watch=False):
        """Run the Guest until it exits; return (Exit, instructions retired).

        budget=None runs without counting (the realtime clock); the retired
        count is then 0.  skip_bp is a breakpoint address being resumed from.
        count_for_watch turns counting on anyway: watchpoints need it.
        """
        self.exit = None
        self.watch_hit = None
        self._hlt_seen = False
        if self.shadows is not None and self.shadows.tlb_stale:
            self.flush_tlb()
        eip = _rd(self.uc, X.UC_X86_REG_EIP)
        self._skip_bp = skip_bp
        counting = budget is not None
        count = budget if counting else (1 << 62 if count_for_watch else 0)
        if counting and budget == 0:
            return Exit("budget"), 0
        try:
            self.uc.emu_start(eip, self._until, count=count)
        except UcError as e:
            if e.errno == UC_ERR_INSN_INVALID and self.exit is None:
                # ud2 or an undefined opcode: unicorn stops on it with EIP at
                # the instruction, where the CPU would raise #UD (vector 6).
                self.exit = Exit("intr", intno=6, eip=self.reg("eip"), soft=False)
            elif self.exit is None or self.exit.kind != "mem":
                raise
        ex = self.exit
        if ex is None:
            if self.watch_hit is not None:
                ex = Exit("watch", watch=self.watch_hit)
            elif counting and self.counter() > budget:
                ex = Exit("budget")
            elif self.reg("eip") == self._until:
                # A jump to `until` (a NULL function pointer when it is 0):
                # the fetch fault unicorn did not get to raise.
                ex = Exit("mem", addr=self._until, write=False, fetch=True, prot=False,
                          size=1, eip=self._until)
            elif self._halted_by_hlt():
                # unicorn just stops at a ring-1 hlt; the CPU would #GP.
                ex = Exit("intr", intno=13, eip=self.reg("eip") - 1, soft=False)
                self.set_reg("eip", ex.eip)
            else:
                ex = Exit("stop")
        elif self.watch_hit is not None and ex.kind == "io":
            ex.watch = self.watch_hit
        raised_by_int = False
        clear = ex.kind in ("intr", "mem") or self.cpl == 3
        # Only where unicorn instrumented the instruction: every one when
        # counting, else only a breakpoint's (a code hook).
        flags = ex.flags if counting or count_for_watch or ex.eip in self._breakpoints \
            else None
        if clear or flags is not None:
            # After a fault; and after any run that ended in user mode, where
            # emu_start's wind-down walks the page tables for its `until`
            # address at CPL 3, fails, and leaves that failure behind.  And
            # after an exit inside a counted instruction (clear_exception_state).
            raised_by_int = self.clear_exception_state(clear, flags)
        if ex.soft is None:
            ex.soft = ex.kind == "intr" and raised_by_int
        if ex.kind == "intr" and ex.intno == 14 and not ex.soft:
            # An instruction that could not be fetched: its first byte (CR2 =
            # EIP) or, for one that crosses a page, the next page's start.
            # unicorn faults while translating it, before counting it.
            ex.fetch = ex.addr == ex.eip or (ex.addr & 0xFFF == 0 and 0 < ex.addr - ex.eip < 16)
        retired = 0
        if counting or count_for_watch:
            # The count hook runs before each instruction: at any exit the
            # instruction in flight is counted but has not retired, except a
            # software interrupt (the hypercall), which has.
            c = self.counter()
            # A fetch fault is not counted: the jump that led there was.
            retired = c if ex.soft or ex.fetch else max(c - 1, 0)
            if ex.kind == "intr" and ex.intno == 13 and not ex.soft and self._hlt_seen:
                retired = max(retired - 1, 0)
        return ex, retired

    # --- rep string instructions end as on hardware -------------------------------
    # unicorn (QEMU 5's translator outside single-step mode) runs `rep movs` and
    # friends as one pass per iteration, each jumping back to the instruction,
    # and then ONE MORE pass that finds ECX = 0 and moves on.  count= counts
    # that pass, and a run can stop just before it: EIP still on the
    # instruction with ECX = 0, a boundary no CPU has (QEMU's own single-step
    # moves on with the last iteration).  run_counted() never stops there: a
    # stop that lands on it finishes the pass (EIP past the instruction; the
    # pass stays counted, so the count of an ECX-ended rep instruction is its
    # iterations + 1, as under QEMU's -icount, and every run agrees with every
    # step).  Knowing that a stop landed there needs the address of the pass
    # just run: a single step knows it (where it started), a watchpoint hit
    # records it; so a long run leaves its last instruction to a single step.

    _watch_eip = None

    def run_counted(self, budget, skip_bp=None):
        """run(budget) on the deterministic clock, never stopping inside a rep
        string instruction's end.  May retire budget + 1 (that pass)."""
        if budget <= 1:
            return self._step_counted(budget, skip_bp)
        self._watch_eip = None
        ex, retired = self.run(budget - 1, skip_bp=skip_bp)
        if ex.kind != "budget":
            return self._end_rep_string(ex, retired, self._watch_eip)
        ex, more = self._step_counted(1, None)
        return ex, retired + more

    def _step_counted(self, budget, skip_bp):
        start = self.reg("eip")
        self._watch_eip = None
        ex, retired = self.run(budget, skip_bp=skip_bp)
        last = start if ex.kind == "budget" and budget == 1 else self._watch_eip
        return self._end_rep_string(ex, retired, last)

    def _end_rep_string(self, ex, retired, last_eip):
        """After a pass at last_eip: finish it if it was a rep instruction's last iteration."""
        if ex.kind not in ("budget", "watch") or last_eip is None:
            return ex, retired
        eip = self.reg("eip")
        if eip != last_eip:
            return ex, retired
        try:
            insn = rep_string_insn(self.read_virt(eip, 15))
        except UcError:
            return ex, retired
        if insn is None:
            return ex, retired
        length, addr16 = insn
        if self.reg("ecx") & (0xFFFF if addr16 else 0xFFFFFFFF):
            return ex, retired
        self.set_reg("eip", eip + length)
        return ex, retired + 1

    _hlt_seen = False

    def _halted_by_hlt(self):
        eip = self.reg("eip")
        try:
            self._hlt_seen = self.read_virt(eip - 1, 1) == b"\xf4"
        except UcError:
            self._hlt_seen = False
        return self._hlt_seen

    def clear_exception_state(self, clear=True, flags=None):
        """Forget the fault just caught (unicorn issue #1883 workaround).

        Returns whether `int n`, int3 or into raised it: the CPU's own flag
        (QEMU's exception_is_int), read from the same saved context.  The
        bytes before EIP would not do: they can be the tail of another
        instruction, and a software interrupt meets the gate's DPL check
        where a fault does not.

        flags: after an exit inside a counted instruction, the flags to put
        right (from _synced_flags).  unicorn instruments every counted instruction: before its
        hook call it computes the flags into cc_src and sets cc_op to
        CC_OP_EFLAGS at run time, but the translator still believes the
        previous instruction's cc_op (a `cmp`'s SUB, say).  When the
        instruction then leaves the block in the middle -- a page fault the
        Host fills silently, an `in`, an `int $0x1f` -- QEMU puts that stale
        cc_op back, pairs it with the flags in cc_src, and the Guest resumes
        with a wrong carry: `cmp; mov [fresh page], x; jbe` took the wrong
        branch (the 2.6.23 kernel's bootmem allocator then corrupted memory
        under the debugger).  At every such exit cc_src holds the flags of
        the instruction boundary, so they are taken as they are
        (CC_OP_EFLAGS), and the eflags unicorn computed on its way out from
        the mismatched pair is corrected.  Only then: at other exits (the
        count running out between two instructions) cc_op and cc_src are a
        genuine pair.
        """
        ctx = self.uc.context_save()
        base = ctypes.cast(ctx.context, ctypes.c_void_p).value
        raised_by_int = ctypes.c_int32.from_address(base + self.off.is_int).value == 1
        changed = False
        if clear:
            ctypes.c_int32.from_address(base + self.off.old_exception).value = -1
            changed = True
        if flags is not None:
            eflags = ctypes.c_uint64.from_address(base + self.off.eflags)
            eflags.value = (eflags.value & ~_ARITH_FLAGS) | flags
            ctypes.c_uint64.from_address(base + self.off.cc_src).value = flags
            ctypes.c_uint32.from_address(base + self.off.cc_op).value = CC_OP_EFLAGS
            changed = True
        if changed:
            self.uc.context_restore(ctx)
        return raised_by_int

    def _context_errcode(self):
        ctx = bytes(self.uc.context_save())
        return struct.unpack_from("<I", ctx, self.off.errcode)[0]

    def set_cr2(self, cr2):
        _wr(self.uc, X.UC_X86_REG_CR2, cr2)

    def last_error_code(self):
        """The error code of the fault that ended the last run."""
        if self.exit is not None and self.exit.errcode is not None:
            return self.exit.errcode
        return self._context_errcode()

    def stop(self):
        """Thread-safe request to stop the running Guest."""
        self.uc.emu_stop()

    # --- hooks added and removed while the Guest lives ----------------------------
    def hook_add(self, types, callback, arg=None, begin=1, end=0):
        """Add a hook after start-up: every breakpoint, watchpoint and tracker
        hook comes through here or hook_del(), and so through _hooks_changed()."""
        handle = self.uc.hook_add(types, callback, arg, begin, end)
        self._hooks_changed()
        return handle

    def hook_del(self, handle):
        self.uc.hook_del(handle)
        self._hooks_changed()

    def _hooks_changed(self):
        """Drop ALL translated code after a hook was added or removed.

        unicorn looks for code and memory hooks when it TRANSLATES a block:
        a block translated before a read watchpoint existed reads the
        variable for ever without calling it (issue 14), and one translated
        while a hook existed keeps calling into it.  Why everything and not
        the hook's range: a memory hook's range says nothing about which code
        touches it, and ctl_remove_cache() takes virtual addresses, which with
        paging unicorn translates through the Guest's page tables and may
        fault on outside emu_start.  ctl_flush_tb() touches no address; its
        cost (~10 us, plus retranslating the hot code once) is paid only
        when a debugger changes its stops.
        """
        self.uc.ctl_flush_tb()

    # --- breakpoints and watchpoints ------------------------------------------
    def add_breakpoint(self, addr):
        if addr not in self._breakpoints:
            self._breakpoints[addr] = self.hook_add(UC_HOOK_CODE, self._on_breakpoint,
                                                    begin=addr, end=addr)

    def remove_breakpoint(self, addr):
        h = self._breakpoints.pop(addr, None)
        if h is not None:
            self.hook_del(h)

    def breakpoints(self):
        return sorted(self._breakpoints)

    def add_watch(self, addr, length, kind):
        """Watch a virtual range, on the physical pages it maps to now.

        With paging on, unicorn checks memory hooks against *physical*
        addresses.  So the hook goes on what the Guest's tables map the range
        to when the watchpoint is set; a kernel address not mapped yet is
        taken in the linear map (PAGE_OFFSET + physical), where it will be.
        """
        types = {"watch": UC_HOOK_MEM_WRITE, "rwatch": UC_HOOK_MEM_READ,
                 "awatch": UC_HOOK_MEM_WRITE | UC_HOOK_MEM_READ}[kind]
        try:
            chunks = self._chunks(addr, length, UC_ERR_READ_UNMAPPED)
        except UcError:
            lin = addr - self.page_offset
            if not (0 <= lin and lin + length <= self.ram_size):
                raise
            chunks = [(lin, length)]
        handles = []
        vaddr = addr
        for phys, n in chunks:
            # unicorn matches a memory hook by the first byte of an access,
            # and a store that starts before the watched bytes still changes
            # them: the first chunk's hook reaches back as far as the widest
            # access, _on_watch drops the accesses that end before the range.
            begin = max(phys - (WIDEST_ACCESS - 1), 0) if vaddr == addr else phys
            handles.append(self.hook_add(types, self._on_watch, (kind, vaddr, phys, addr),
                                         begin=begin, end=phys + n - 1))
            vaddr += n
        self._watch_hooks.append((addr, length, kind, handles, chunks))
        # unicorn also decides whether an access calls memory hooks when it
        # fills a TLB entry: entries from before this hook would never call it.
        self.flush_tlb()

    def remove_watch(self, addr, length, kind):
        for w in list(self._watch_hooks):
            if w[:3] == (addr, length, kind):
                for h in w[3]:
                    self.hook_del(h)
                self._watch_hooks.remove(w)
                return True
        return False

    def watches(self):
        return [w[:3] for w in self._watch_hooks]

    def watch_pieces(self):
        """(kind, virtual start, physical start, length) of every watched piece:
        where each watchpoint's bytes were in RAM when it was set."""
        out = []
        for addr, _, kind, _, chunks in self._watch_hooks:
            vaddr = addr
            for phys, n in chunks:
                out.append((kind, vaddr, phys, n))
                vaddr += n
        return out

    # --- registers ------------------------------------------------------------
    def reg(self, name):
        return _rd(self.uc, _UC_REG[name])

    def set_reg(self, name, value):
        _wr(self.uc, _UC_REG[name], value)

    def regs(self):
        # uc_reg_read_batch straight into a ctypes array: the binding's
        # reg_read_batch picks a register class per id in Python and costs
        # ~55 us, this ~7 us (every hypercall and delivery reads all of them).
        vals = _RegVals()
        base = ctypes.addressof(vals)
        ptrs = _RegPtrs(*[base + 4 * i for i in range(len(REGS32))])
        status = _uclib.uc_reg_read_batch(self.uc._uch, _BATCH_ARRAY, ptrs, len(REGS32))
        if status:
            return dict(zip(REGS32, self.uc.reg_read_batch(_BATCH_IDS)))
        return dict(zip(REGS32, vals))

    @property
    def cpl(self):
        return self.reg("cs") & 3

    # --- memory by Guest virtual address (what debuggers see) ------------------
    def _chunks(self, addr, length, err):
        """(physical, length) pieces of a virtual range, as the Guest maps it.

        The Guest's own page tables decide (the shadow is only a cache of
        them); the Switcher's pages are the Host's, at the same addresses.
        Unmapped anywhere: UcError(err), and nothing is touched.
        """
        out = []
        while length > 0:
            n = min(length, abi.PAGE_SIZE - (addr & 0xFFF))
            if abi.SWITCHER_ADDR <= addr and addr + n <= HOST_TOP:
                out.append((addr, n))
            else:
                walk = self.shadows.guest_walk(addr) if self.shadows is not None else None
                phys = walk[2] if walk is not None else None
                if phys is None or phys + n > self.ram_size:
                    raise UcError(err)
                out.append((phys, n))
            addr = (addr + n) & 0xFFFFFFFF
            length -= n
        return out

    def read_virt(self, addr, length):
        parts = []
        for phys, n in self._chunks(addr, length, UC_ERR_READ_UNMAPPED):
            if phys < self.ram_size:
                parts.append(self.ram[phys:phys + n])
            else:
                parts.append(bytes(self.uc.mem_read(phys, n)))
        return b"".join(parts)

    def write_virt(self, addr, data):
        """A debugger's write; returns the physical pieces written."""
        data = bytes(data)
        chunks = self._chunks(addr, len(data), UC_ERR_WRITE_UNMAPPED)
        if any(phys >= self.ram_size for phys, _ in chunks):
            raise UcError(UC_ERR_WRITE_UNMAPPED)   # the Switcher is not the Guest's
        done = 0
        for phys, n in chunks:
            self.ram[phys:phys + n] = data[done:done + n]
            self.invalidate_phys(phys, n)
            done += n
        return chunks

    def invalidate_phys(self, phys, length):
        self.invalidate_phys_ranges([(phys, phys + length)])

    def invalidate_phys_ranges(self, spans):
        """Drop translated code for physical ranges written from outside the CPU.

        unicorn's ctl_remove_cache takes a *virtual* address and translates
        it through the current page tables: an address not mapped there
        drops nothing.  Translated code is keyed by physical page, so we
        translate nothing: paging off for the calls (virtual = physical),
        then on again (one TLB flush; ~6 us measured).
        """
        spans = [(b, e) for b, e in spans if e > b]
        if not spans:
            return
        if self.paging:
            _wr(self.uc, X.UC_X86_REG_CR0, CR0_PE | CR0_ET)
        try:
            for begin, end in spans:
                self.uc.ctl_remove_cache(begin, end)
        finally:
            if self.paging:
                self._write_cr0()

    def invalidate(self, addr, length):
        """Drop translated code for a virtual range, wherever it is mapped."""
        if length:
            try:
                chunks = self._chunks(addr, length, UC_ERR_READ_UNMAPPED)
            except UcError:
                return
            for phys, n in chunks:
                self.invalidate_phys(phys, n)
