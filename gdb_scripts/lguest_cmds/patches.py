"""lguest-patches: the paravirt patch templates and the sites patched with them."""

import re

import gdb

from lgdbg import patches, render

from .common import (LguestCommand, disassemble, need_symbols, read_memory, sym,
                     symbol_address, write)

_MSYM = re.compile(r"^\[\s*\d+\]\s+\S\s+(0x[0-9a-f]+)\s+(lg(?:start|end)_\S+)")


def templates():
    """[(op, start, end)] for each lgstart_X/lgend_X pair, by address."""
    found = {}
    text = gdb.execute("maintenance print msymbols", to_string=True)
    for line in text.splitlines():
        m = _MSYM.match(line.strip())
        if m:
            found.setdefault(m.group(2), int(m.group(1), 16))
    return patches.templates_from_names(found)


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
        rows = patches.patch_rows(templates(), symbol_address, read_memory,
                                  lambda start, raw: disassemble(start, start + len(raw) - 1))
        write(render.render_patches(rows, sym))


def register():
    LguestPatches()
