"""Find the few unicorn internals the machine relies on, by experiment.

unicorn 2.1.4 exposes neither the instruction counter of `count=` mode, nor a
fault's error code, nor whether an interrupt came from an `int` instruction,
nor the CPU's "previous exception" field (which must be reset after every
caught fault, or the second fault is reported as a double fault: unicorn
issue #1883).  All four live at offsets that depend on the
unicorn build, so instead of trusting numbers we provoke known values in a
scratch CPU once per process and search for them (platform-notes.md).
"""

import ctypes
import struct
from collections import namedtuple

from unicorn import Uc, UC_ARCH_X86, UC_MODE_32, UC_HOOK_INTR
from unicorn import x86_const as X

from ..errors import LgdbgError

Offsets = namedtuple("Offsets", "counter budget errcode old_exception is_int eflags cc_src cc_op")

_SCRATCH = 0x100000
_cached = None


def engine_address(uc):
    """Address of unicorn's engine struct behind a Uc object."""
    return ctypes.cast(uc._uch, ctypes.c_void_p).value


def _flat(access):
    # A flat 4 GiB descriptor with the given access byte (G=1, D=1).
    return struct.pack("<II", 0x0000FFFF, 0x00CF0000 | (access << 8))


def _scratch_cpu(code):
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x200000)
    gdt = bytearray(8 * 8)
    gdt[8:16] = _flat(0x9A)
    gdt[16:24] = _flat(0x92)
    uc.mem_write(0x1000, bytes(gdt))
    uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x1000, len(gdt) - 1, 0))
    uc.reg_write(X.UC_X86_REG_CS, 0x08)
    uc.reg_write(X.UC_X86_REG_SS, 0x10)
    uc.reg_write(X.UC_X86_REG_ESP, 0x8000)
    uc.mem_write(_SCRATCH, code)
    return uc


def _find_counter():
    # `mov ecx, 500; l: dec ecx; jnz l; jmp $`: run exactly 777 instructions.
    uc = _scratch_cpu(b"\xb9\xf4\x01\x00\x00\x49\x75\xfd\xeb\xfe")
    uc.emu_start(_SCRATCH, 0, count=777)
    raw = ctypes.string_at(engine_address(uc), 8192)
    # After a run that ended on its count, the counter is count + 1 and the
    # requested count sits in the next 8 bytes.
    want = struct.pack("<QQ", 778, 777)
    at = raw.find(want)
    if at < 0 or at % 8:
        raise LgdbgError("cannot find unicorn's instruction counter: is unicorn 2.1.4 installed?")
    return at, at + 8


def _find_context_fields():
    # Load a selector that points at a null descriptor: #GP with error code 0x30.
    uc = _scratch_cpu(b"\x66\xb8\x33\x00\x8e\xd8\xeb\xfe")
    uc.hook_add(UC_HOOK_INTR, lambda u, intno, _: u.emu_stop())
    before = bytes(uc.context_save())
    uc.emu_start(_SCRATCH, 0, count=10)
    after = bytes(uc.context_save())
    errcode = old_exc = None
    for off in range(0, min(len(before), len(after)) - 3, 4):
        a, = struct.unpack_from("<i", before, off)
        b, = struct.unpack_from("<i", after, off)
        if a == -1 and b == 13 and old_exc is None:
            old_exc = off
        elif a == 0 and b == 0x30 and errcode is None:
            errcode = off
    if errcode is None or old_exc is None:
        raise LgdbgError("cannot find unicorn's exception state in its context: "
                         "is unicorn 2.1.4 installed?")
    # QEMU keeps exception_is_int right after error_code: 0 after that #GP,
    # 1 after an `int $0x21`.
    is_int = errcode + 4
    uc = _scratch_cpu(b"\xcd\x21\xeb\xfe")
    uc.hook_add(UC_HOOK_INTR, lambda u, intno, _: u.emu_stop())
    uc.emu_start(_SCRATCH, 0, count=10)
    soft = struct.unpack_from("<i", bytes(uc.context_save()), is_int)[0]
    if struct.unpack_from("<i", after, is_int)[0] != 0 or soft != 1:
        raise LgdbgError("cannot find unicorn's software-interrupt flag in its context: "
                         "is unicorn 2.1.4 installed?")
    return errcode, old_exc, is_int


def _find_flag_fields():
    """Where QEMU's CPUX86State keeps eflags, cc_src and cc_op in the context.

    They follow eip in the struct (eip, eflags, cc_dst, cc_src, cc_src2,
    cc_op, one target_ulong each but cc_op), so: find eip by a value only it
    holds, then check the layout with `cmp eax, 0xfff` after `mov eax, 0x20`,
    whose result (cc_dst) is 0xfffff021 and whose flags are CF|PF|AF|SF.
    """
    uc = _scratch_cpu(b"\xb8\x20\x00\x00\x00\x3d\xff\x0f\x00\x00\x90\xeb\xfe")
    uc.emu_start(_SCRATCH, 0, count=3)
    ctx = bytes(uc.context_save())
    eip = struct.pack("<Q", uc.reg_read(X.UC_X86_REG_EIP))
    at = ctx.find(eip)
    while at >= 0 and at % 8:
        at = ctx.find(eip, at + 1)
    if at >= 0:
        cc_dst, cc_src = struct.unpack_from("<QQ", ctx, at + 16)
        cc_op, = struct.unpack_from("<I", ctx, at + 40)
        if cc_dst & 0xFFFFFFFF == 0xFFFFF021 and (cc_op, cc_src) in ((16, 0xFFF), (1, 0x95)):
            return at + 8, at + 24, at + 40
    raise LgdbgError("cannot find unicorn's flag state in its context: is unicorn 2.1.4 installed?")


def offsets():
    global _cached
    if _cached is None:
        counter, budget = _find_counter()
        errcode, old_exc, is_int = _find_context_fields()
        _cached = Offsets(counter, budget, errcode, old_exc, is_int, *_find_flag_fields())
    return _cached
