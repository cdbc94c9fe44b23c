"""lguest-patches: the paravirt patch templates and the sites patched with them."""

import os
import re

import gdb

from lgdbg.views import patches, render
from lgdbg.elf32 import Elf32, ElfError

from .common import (LguestCommand, disassemble, need_symbols, read_memory, sym,
                     symbol_address, write)

_MSYM = re.compile(r"^\[\s*\d+\]\s+\S\s+(0x[0-9a-f]+)\s+(lg(?:start|end)_\S+)")
_elf = {"key": None, "elf": None}


def templates():
    """[(op, start, end)] for each lgstart_X/lgend_X pair, by address."""
    found = {}
    text = gdb.execute("maintenance print msymbols", to_string=True)
    for line in text.splitlines():
        m = _MSYM.match(line.strip())
        if m:
            found.setdefault(m.group(2), int(m.group(1), 16))
    return patches.templates_from_names(found)


def image_elf():
    """The loaded image as an Elf32, read once per file version; None when it
    is not one (a 64-bit object): then it is no paravirt kernel either."""
    path = gdb.current_progspace().filename
    try:
        key = (path, os.path.getmtime(path))
    except OSError:
        return None
    if _elf["key"] != key:
        try:
            elf = Elf32(path)
        except ElfError:
            elf = None
        _elf.update(key=key, elf=elf)
    return _elf["elf"]


def op_names_from_debug_info():
    """[op name by patch type] from the image's struct paravirt_ops (2.6.23)
    or struct paravirt_patch_template (2.6.24 on, 3.2), or None."""
    from lgdbg.paravirt import op_names_from_fields
    try:
        t = gdb.lookup_type("struct paravirt_ops")
    except gdb.error:
        pass
    else:
        return op_names_from_fields([(f.name, f.bitpos // 8) for f in t.fields()
                                     if f.name and f.bitpos is not None])
    try:
        t = gdb.lookup_type("struct paravirt_patch_template")
    except gdb.error:
        return None
    return op_names_from_fields(_template_words(t))


def _template_words(t, prefix="", base=0, depth=0):
    """[(name, byte offset)] of every word of the template, named as
    PARAVIRT_PATCH's argument: 'pv_irq_ops.irq_disable' (a callee-save
    operation is a one-pointer struct: named by its field), the lazy-mode
    pair 'pv_mmu_ops.lazy_mode.enter'.  An empty struct (pv_apic_ops without
    X86_LOCAL_APIC) has no word."""
    out = []
    for f in t.fields():
        if not f.name or f.bitpos is None:
            continue
        ft = f.type.strip_typedefs()
        name, offset = prefix + f.name, base + f.bitpos // 8
        if ft.code == gdb.TYPE_CODE_STRUCT:
            inner = [g for g in ft.fields() if g.name]
            if not inner:
                continue
            if depth == 0 or len(inner) > 1:
                out += _template_words(ft, name + ".", offset, depth + 1)
                continue
        out.append((name, offset))
    return out


class LguestPatches(LguestCommand):
    """Show the paravirt patch templates and the call sites patched with them.

Usage: lguest-patches [--type NAME] [--state STATE] [--summary]

On a paravirt Linux kernel (a .parainstructions section and paravirt_ops):
every patch site listed in the ELF file's .parainstructions section (the
kernel frees that table with .init, so it is read from the file), with its
address and symbol, its type by name (the struct paravirt_ops field it
patches), its length, and what its bytes in memory are now: `template`
(lguest_patch copied lgstart_X..lgend_X), `original` (the indirect call, not
patched), `call`/`jmp` (paravirt_patch_default's direct branch, with its
target), `nops`, `freed` (.init, poisoned), `other` or `unreadable`; then a
summary line counting them by state and type.  --type and --state list only
those sites; --summary prints only the summary.

On the bundled examples: for each lgstart_X/lgend_X pair, its address range,
its bytes, gdb's disassembly of it, and the call sites from the example's
.parainstructions table that take it, each marked patched or not yet patched.
Needs only memory, symbols and the image file."""

    NAME = "lguest-patches"

    def run(self, argv, from_tty):
        need_symbols(self.NAME)
        elf = image_elf()
        if elf is not None and patches.kernel_image(elf):
            type_name, state, summary = patches.parse_options(argv)
            report = patches.kernel_sites(elf, templates(), symbol_address, read_memory,
                                          op_names_from_debug_info())
            shown = patches.select_sites(report["sites"], type_name, state)
            write(render.render_patch_sites(report, sym, shown, summary))
            return
        if argv:
            self.usage("lguest-patches takes options only on a paravirt kernel image")
        rows = patches.patch_rows(templates(), symbol_address, read_memory,
                                  lambda start, raw: disassemble(start, start + len(raw) - 1))
        write(render.render_patches(rows, sym))


def register():
    LguestPatches()
