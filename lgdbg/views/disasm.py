"""Disassembly with capstone, for the REPL and the explorer (gdb uses its own)."""

_cs = None


def _engine():
    global _cs
    if _cs is None:
        from capstone import Cs, CS_ARCH_X86, CS_MODE_32    # heavy: import on first use
        _cs = Cs(CS_ARCH_X86, CS_MODE_32)
    return _cs


def disassemble(code, addr, count=None):
    """[(address, size, 'mnemonic operands')] for the bytes at addr."""
    out = []
    for a, size, mnem, ops in _engine().disasm_lite(bytes(code), addr):
        out.append((a, size, ("%s %s" % (mnem, ops)).strip()))
        if count is not None and len(out) >= count:
            break
    return out


def one(read, addr):
    """The instruction at addr, reading memory with read(addr, n)."""
    rows = disassemble(read(addr, 16), addr, 1)
    return rows[0] if rows else (addr, 1, "(bad)")
