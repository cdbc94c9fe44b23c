"""Symbols and line tables of a guest image (pyelftools), for lgdbg's own front ends.

gdb has its own; this serves the REPL, the explorer and the timeline.
"""

import bisect
import os

from .errors import UsageError


def _ends_something(name):
    return name.startswith(("lgend_", "__stop")) or name.endswith(("_end", "_stop", "_top"))


class Symbols:
    def __init__(self, path):
        from elftools.elf.elffile import ELFFile          # imported only when needed
        from elftools.common.exceptions import ELFError
        self.path = path
        self.by_name = {}
        starts = []
        sizes = {}
        try:
            with open(path, "rb") as f:
                elf = ELFFile(f)
                symtab = elf.get_section_by_name(".symtab")
                for sym in (symtab.iter_symbols() if symtab else ()):
                    if not sym.name or sym["st_info"]["type"] in ("STT_FILE", "STT_SECTION"):
                        continue
                    if sym["st_shndx"] == "SHN_UNDEF":
                        continue
                    addr = sym["st_value"]
                    self.by_name.setdefault(sym.name, addr)
                    sizes[sym.name] = sym["st_size"]
                    starts.append((addr, sym["st_size"] == 0,
                                   sym["st_info"]["bind"] != "STB_GLOBAL",
                                   _ends_something(sym.name), sym.name))
        except (OSError, ELFError) as e:
            raise UsageError("cannot read symbols from image %s: %s" % (path, e))
        except Exception as e:        # pyelftools on a malformed file: struct, index, ...
            raise UsageError("cannot read symbols from image %s: malformed ELF (%s: %s)"
                             % (path, type(e).__name__, e))
        # Where several names share an address, prefer a sized one (a
        # function: gdb does too, so both name it alike), then a global one
        # that starts something (lgstart_sti, console_write) to one that ends
        # the thing before it (lgend_cli, lguest_noirq_end).
        starts.sort()
        self._addrs = [a for a, _, _, _, _ in starts]
        self._names = [n for _, _, _, _, n in starts]
        self._sizes = {n: sizes[n] for n in self._names}

    _lines = None

    @property
    def lines(self):
        """The line table, read on first use: a kernel's DWARF takes seconds."""
        if self._lines is None:
            from elftools.elf.elffile import ELFFile
            try:
                with open(self.path, "rb") as f:
                    self._lines = self._line_table(ELFFile(f))
            except Exception:         # no usable DWARF: no lines, symbols still work
                self._lines = []
        return self._lines

    @staticmethod
    def _line_table(elf):
        """[(address, file, line)] sorted by address, from DWARF when present."""
        rows = []
        if not elf.has_dwarf_info():
            return rows
        dwarf = elf.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            lp = dwarf.line_program_for_CU(cu)
            if lp is None:
                continue
            files = lp["file_entry"]
            for entry in lp.get_entries():
                st = entry.state
                if st is None or st.end_sequence:
                    continue
                idx = st.file - 1 if lp.header["version"] < 5 else st.file
                name = files[idx].name.decode() if 0 <= idx < len(files) else "?"
                rows.append((st.address, name, st.line))
        rows.sort()
        return rows

    def lookup(self, name):
        """Address of NAME, NAME+OFF, or a number; UsageError if unknown."""
        text = name.strip()
        base, plus, off = text.partition("+")
        try:
            return int(text, 0)
        except ValueError:
            pass
        if base.strip() not in self.by_name:
            raise UsageError("no symbol %r in %s" % (base.strip(), os.path.basename(self.path)))
        try:
            delta = int(off, 0) if plus else 0
        except ValueError:
            raise UsageError("bad offset in %r" % text)
        return self.by_name[base.strip()] + delta

    def symbolize(self, addr, exact_only=False):
        """'name+5' for addr, chosen as gdb chooses, else None.

        gdb names an address after the nearest symbol with a size (a
        function, an object) that contains it; a bare label counts only
        when no sized symbol does (gdb's lookup_minimal_symbol_by_pc).
        Following the same rule is what makes the REPL, the explorer and
        the timeline say what gdb says.
        """
        i = bisect.bisect_right(self._addrs, addr) - 1
        label = None                     # the nearest bare label passed over
        while i >= 0:
            j = bisect.bisect_left(self._addrs, self._addrs[i])   # preferred at that address
            name, start = self._names[j], self._addrs[j]
            size = self._sizes[name]
            if size == 0:
                label = label or (name, start)
                i = j - 1
                continue
            if addr < start + size:
                label = (name, start)
            break
        if label is None:
            return None
        name, start = label
        off = addr - start
        if (exact_only and off) or off > 0x10000:
            return None
        return name if off == 0 else "%s+%d" % (name, off)

    def line_of(self, addr):
        """(file, line) of the last line-table row at or before addr, or None."""
        i = bisect.bisect_right(self.lines, (addr, "\uffff", 1 << 30)) - 1
        if i < 0:
            return None
        return self.lines[i][1], self.lines[i][2]

    def address_of_line(self, filename, line):
        """First address of the first line >= `line` in that file, or None."""
        base = os.path.basename(filename)
        best = None
        for addr, f, ln in self.lines:
            if os.path.basename(f) == base and ln >= line and (best is None or ln < best[1]
                                                             or (ln == best[1] and addr < best[0])):
                best = (addr, ln)
        return best[0] if best else None

    def names(self):
        return sorted(self.by_name)
