"""The i386 register block gdb exchanges in g/G/p/P (core + SSE: 308 bytes).

Layout (regnums): eax ecx edx ebx esp ebp esi edi eip eflags cs ss ds es fs gs
(0-15, 4 bytes), st0-st7 (16-23, 10 bytes), fctrl fstat ftag fiseg fioff foseg
fooff fop (24-31, 4 bytes), xmm0-xmm7 (32-39, 16 bytes), mxcsr (40, 4 bytes).

gdb's st(i) is stack-relative; unicorn's FP0-FP7 are the physical registers
(its ST views drop the exponent), so st(i) = FP[(TOP + i) mod 8], TOP being
bits 11-13 of the status word.
"""

import ctypes
import weakref

from unicorn import UcError
from unicorn import x86_const as X

GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
        "cs", "ss", "ds", "es", "fs", "gs")
FPU_CTRL = ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
_FPU_UC = {"fctrl": X.UC_X86_REG_FPCW, "fstat": X.UC_X86_REG_FPSW, "ftag": X.UC_X86_REG_FPTAG,
           "fiseg": X.UC_X86_REG_FCS, "fioff": X.UC_X86_REG_FIP, "foseg": X.UC_X86_REG_FDS,
           "fooff": X.UC_X86_REG_FDP, "fop": X.UC_X86_REG_FOP}
_GPR_UC = {n: getattr(X, "UC_X86_REG_" + n.upper()) for n in GPRS}
_HOST_EFLAGS = 0x3000 | 0x20000          # IOPL, VM

# (name, size) by regnum
LAYOUT = ([(n, 4) for n in GPRS] + [("st%d" % i, 10) for i in range(8)]
          + [(n, 4) for n in FPU_CTRL] + [("xmm%d" % i, 16) for i in range(8)]
          + [("mxcsr", 4)])
OFFSETS = []
_off = 0
for _name, _size in LAYOUT:
    OFFSETS.append(_off)
    _off += _size
SIZE = _off                     # 308
NUM_REGS = len(LAYOUT)          # 41
# Registers a stop reply carries so gdb need not ask: esp, ebp, eip.
EXPEDITED = (4, 5, 8)


def _top(uc):
    return (uc.reg_read(X.UC_X86_REG_FPSW) >> 11) & 7


def _read_safe(uc, reg):
    # Some FPU bookkeeping registers may be unreadable on other unicorn
    # builds; gdb only displays them, so 0 is an honest "unknown".
    try:
        return uc.reg_read(reg)
    except UcError:
        return 0


def read_reg(cpu, regnum):
    """One register as gdb's little-endian bytes."""
    name, size = LAYOUT[regnum]
    uc = cpu.uc
    if regnum < 16:
        value = uc.reg_read(_GPR_UC[name])
    elif regnum < 24:
        mant, exp = uc.reg_read(X.UC_X86_REG_FP0 + (_top(uc) + regnum - 16) % 8)
        return mant.to_bytes(8, "little") + (exp & 0xFFFF).to_bytes(2, "little")
    elif regnum < 32:
        value = _read_safe(uc, _FPU_UC[name])
    elif regnum < 40:
        value = uc.reg_read(X.UC_X86_REG_XMM0 + regnum - 32)
    else:
        value = uc.reg_read(X.UC_X86_REG_MXCSR)
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


# The whole block in one uc_reg_read_batch call into prebuilt buffers: 41
# reg_read calls cost ~200 us and unicorn's own batch wrapper ~150 us (it
# builds ctypes objects each time), a large part of a stepi round trip, and
# gdb reads every register at every stop.  This costs a few microseconds.
_BATCH = ([_GPR_UC[n] for n in GPRS] + [_FPU_UC[n] for n in FPU_CTRL]
          + [X.UC_X86_REG_FP0 + i for i in range(8)] + [X.UC_X86_REG_XMM0 + i for i in range(8)]
          + [X.UC_X86_REG_MXCSR])
_SLOT = 16                               # room for the largest value (xmm)


class _BatchReader:
    def __init__(self, uc):
        from unicorn.unicorn_py3.unicorn import uclib
        n = len(_BATCH)
        self.call = uclib.uc_reg_read_batch
        self.uch = uc._uch
        self.buf = (ctypes.c_char * (n * _SLOT))()
        base = ctypes.addressof(self.buf)
        self.ids = (ctypes.c_int * n)(*_BATCH)
        self.ptrs = (ctypes.c_void_p * n)(*(base + i * _SLOT for i in range(n)))
        self.n = n

    def read(self):
        # Zeroed first: unicorn writes only as many bytes as a register has.
        ctypes.memset(self.buf, 0, len(self.buf))
        if self.call(self.uch, self.ids, self.ptrs, self.n) != 0:
            raise UcError(0)
        raw = self.buf.raw
        out = [raw[i * _SLOT:i * _SLOT + 4] for i in range(24)]
        top = (int.from_bytes(out[17], "little") >> 11) & 7          # fstat
        st = [raw[(24 + (top + i) % 8) * _SLOT:][:10] for i in range(8)]
        xmm = [raw[(32 + i) * _SLOT:(33 + i) * _SLOT] for i in range(8)]
        return b"".join(out[:16] + st + out[16:24] + xmm) + raw[40 * _SLOT:40 * _SLOT + 4]


_readers = weakref.WeakKeyDictionary()        # cpu -> _BatchReader


def read_all(cpu):
    try:
        reader = _readers.get(cpu)
        if reader is None:
            reader = _readers[cpu] = _BatchReader(cpu.uc)
        return reader.read()
    except (ImportError, AttributeError, UcError):
        # Another unicorn build: the slow, always-correct path.
        return b"".join(read_reg(cpu, n) for n in range(NUM_REGS))


def write_reg(cpu, regnum, data):
    """Write one register from gdb's bytes; unchanged values are not written.

    Skipping unchanged values matters: unicorn refuses some segment writes
    (SS at ring 1) even when the value is the one already loaded, and G
    always sends every register.
    """
    name, size = LAYOUT[regnum]
    if len(data) != size:
        raise ValueError("%s is %d bytes, not %d" % (name, size, len(data)))
    if read_reg(cpu, regnum) == bytes(data):
        return
    if name in ("cs", "ss"):
        # unicorn cannot move the Guest between rings on a register write (it
        # would take CS 0 or a ring-0 selector as given): the Host owns these.
        raise ValueError("%s cannot be changed from the debugger" % name)
    if name == "eflags":
        # IOPL and VM decide what the Guest may do at all (VM would take it
        # to virtual-8086 mode, where any selector loads): the Host's, like
        # CS and SS.  The Guest's own popf cannot change them at ring 1 either.
        old = int.from_bytes(read_reg(cpu, regnum), "little")
        if (old ^ int.from_bytes(data, "little")) & _HOST_EFLAGS:
            raise ValueError("eflags IOPL and VM cannot be changed from the debugger")
    uc = cpu.uc
    if regnum < 24 and regnum >= 16:
        mant = int.from_bytes(data[:8], "little")
        exp = int.from_bytes(data[8:], "little")
        uc.reg_write(X.UC_X86_REG_FP0 + (_top(uc) + regnum - 16) % 8, (mant, exp))
        return
    value = int.from_bytes(data, "little")
    if regnum < 16:
        uc.reg_write(_GPR_UC[name], value)
    elif regnum < 32:
        uc.reg_write(_FPU_UC[name], value)
    elif regnum < 40:
        uc.reg_write(X.UC_X86_REG_XMM0 + regnum - 32, value)
    else:
        uc.reg_write(X.UC_X86_REG_MXCSR, value)


def write_all(cpu, block):
    """G: the whole block (a shorter block writes the registers it covers).

    fstat goes first so that st0-st7 land relative to the new TOP.
    """
    order = [25] + [n for n in range(NUM_REGS) if n != 25]
    saved = cpu.uc.context_save()
    try:
        for n in order:
            off, size = OFFSETS[n], LAYOUT[n][1]
            if off + size <= len(block):
                write_reg(cpu, n, block[off:off + size])
    except Exception:
        cpu.uc.context_restore(saved)      # a refused G changes nothing
        raise
