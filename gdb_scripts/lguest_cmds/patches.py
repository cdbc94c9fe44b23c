"""lguest-patches: the paravirt patch templates and the sites patched with them."""

import re

import gdb

from lgdbg import render

from .common import (LguestCommand, disassemble, need_symbols, read_memory, read_u32,
                     sym, symbol_address, write)

_MSYM = re.compile(r"^\[\s*\d+\]\s+\S\s+(0x[0-9a-f]+)\s+(lg(?:start|end)_\S+)")
PARAINSTR_SIZE = 8     # struct paravirt_patch_site {u8 *instr; u8 type; u8 len; u16 clobbers;}


def templates():
    """[(name, start, end)] for each lgstart_X/lgend_X pair, by address."""
    found = {}
    text = gdb.execute("maintenance print msymbols", to_string=True)
    for line in text.splitlines():
        m = _MSYM.match(line.strip())
        if m:
            found.setdefault(m.group(2), int(m.group(1), 16))
    rows = []
    for name, start in found.items():
        if name.startswith("lgstart_"):
            end = found.get("lgend_" + name[len("lgstart_"):])
            if end is not None and end >= start:
                rows.append((name[len("lgstart_"):], start, end))
    return sorted(rows, key=lambda r: r[1])


def parainstructions():
    """[(site, type, len)] from the .parainstructions table, or None."""
    start, end = symbol_address("__parainstructions"), symbol_address("__parainstructions_end")
    if start is None or end is None or end < start:
        return None
    raw = read_memory(start, end - start) if end > start else b""
    out = []
    for i in range(0, len(raw) - PARAINSTR_SIZE + 1, PARAINSTR_SIZE):
        out.append((int.from_bytes(raw[i:i + 4], "little"), raw[i + 4], raw[i + 5]))
    return out


def template_by_type():
    """{type: template start} from the Guest's own table (lguest_insns /
    patch_templates: {start, end} per paravirt type), when it has one."""
    for name in ("patch_templates", "lguest_insns"):
        base = symbol_address(name)
        if base is None:
            continue
        table = {}
        for t in range(16):
            try:
                s = read_u32(base + 8 * t)
            except gdb.MemoryError:
                break
            if s:
                table[t] = s
        return table
    return {}


class LguestPatches(LguestCommand):
    """Show the paravirt patch templates and the call sites patched with them.

Usage: lguest-patches

For each lgstart_X/lgend_X pair: its address range, its bytes, gdb's
disassembly of it, and the call sites from the .parainstructions table that
take it (found through the Guest's patch_templates table by site type, or by
matching bytes), each marked patched or not yet patched.  Needs only memory
and symbols."""

    NAME = "lguest-patches"

    def run(self, argv, from_tty):
        if argv:
            self.usage("lguest-patches takes no arguments")
        need_symbols(self.NAME)
        tmpl = templates()
        sites = parainstructions()
        by_type = template_by_type()
        rows = []
        for name, start, end in tmpl:
            raw = read_memory(start, end - start) if end > start else b""
            row = {"name": name, "start": start, "end": end, "bytes": raw,
                   "disasm": disassemble(start, end - 1) if end > start else [],
                   "sites": None}
            if sites is not None:
                mine, patched = [], []
                for site, typ, length in sites:
                    try:
                        here = read_memory(site, len(raw)) if raw else b""
                    except gdb.MemoryError:
                        continue
                    if by_type.get(typ) == start or (typ not in by_type and raw
                                                     and here == raw):
                        mine.append(site)
                        if raw and here == raw:
                            patched.append(site)
                row["sites"], row["patched"] = mine, patched
            rows.append(row)
        write(render.render_patches(rows, sym))


def register():
    LguestPatches()
