"""Names for guest addresses, read from the image's symbol table.

Only used with `--image`; pyelftools is imported here, when it is needed.
Without an image every address is printed in hex and the lguest_iret
returns are not marked (the trace alone cannot tell where that code is).
"""

import struct
from bisect import bisect_right

from ..errors import UsageError

# A symbol further than this below an address does not name it: print hex.
MAX_OFFSET = 0x10000


class Symbols:
    """Sorted (address, name) pairs with nearest-below look-up."""

    def __init__(self, pairs):
        best = {}
        for addr, name, is_global in pairs:
            # At one address prefer a global name, then the shorter one.
            key = (not is_global, len(name), name)
            if addr not in best or key < best[addr][0]:
                best[addr] = (key, name)
        self.addrs = sorted(best)
        self.names = [best[a][1] for a in self.addrs]
        self.by_name = {}
        for addr, name, _ in pairs:
            self.by_name.setdefault(name, addr)

    def name(self, addr):
        """'sym', 'sym+0x1c' or '0xc0100123'."""
        i = bisect_right(self.addrs, addr) - 1
        if i >= 0 and addr - self.addrs[i] < MAX_OFFSET:
            off = addr - self.addrs[i]
            return self.names[i] if off == 0 else "%s+%#x" % (self.names[i], off)
        return "%#x" % addr

    def iret_window(self):
        """[start, end) of the code that returns from an interrupt, or None.

        lguest_iret restores irq_enabled and irets; the Host never delivers
        between lguest_noirq_start and lguest_noirq_end.  An event whose eip
        lies anywhere from lguest_iret to lguest_noirq_end shows a handler
        on its way out.
        """
        end = self.by_name.get("lguest_noirq_end")
        start = self.by_name.get("lguest_iret", self.by_name.get("lguest_noirq_start"))
        if start is None or end is None or end <= start:
            return None
        return (start, end)


def load_symbols(path):
    """Read the symbol table of an ELF image; UsageError when it cannot."""
    try:
        from elftools.elf.elffile import ELFFile
        from elftools.common.exceptions import ELFError
    except ImportError:  # pragma: no cover - pyelftools is a dependency
        raise UsageError("--image needs pyelftools (pip install pyelftools)")
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            pairs = []
            for section in elf.iter_sections():
                if section["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
                    continue
                for sym in section.iter_symbols():
                    if _is_code_name(sym):
                        pairs.append((sym["st_value"], sym.name,
                                      sym["st_info"]["bind"] == "STB_GLOBAL"))
    except OSError as e:
        raise UsageError("cannot read image %s: %s" % (path, e.strerror or e))
    except (ELFError, ValueError, KeyError, IndexError, struct.error) as e:
        raise UsageError("image %s is not a readable ELF file (%s)" % (path, e))
    if not pairs:
        raise UsageError("image %s has no symbols (stripped?)" % path)
    return Symbols(pairs)


def _is_code_name(sym):
    name = sym.name
    if not name or name.startswith((".L", "$")) or sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS"):
        return False
    return sym["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT")
