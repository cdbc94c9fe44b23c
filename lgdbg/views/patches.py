"""The paravirt patch templates and their call sites, as rows for render_patches.

Shared by gdb's lguest-patches and the REPL's `patches` (stdlib only: gdb
imports it).  Each front end supplies what it has:

    templates    [(op, start, end)] from the lgstart_<op>/lgend_<op> symbols
    lookup       name -> address or None (for the tables below)
    read         (addr, n) -> bytes; may raise on unreadable memory
    disassemble  (start, raw) -> [(addr, text)] with its own disassembler

A call site belongs to a template when the Guest's own table (patch_templates
or lguest_insns: {start, end} per paravirt type, as lguest_patch indexes it)
maps the site's type to that template, or, without such a table, when the
site already holds the template's bytes.  It is patched when it holds them.
"""

PARAINSTR_SIZE = 8     # {u8 *instr; u8 type; u8 len; u16 clobbers}
MAX_TABLE = 64 * 1024


def templates_from_names(names):
    """[(op, start, end)] from a {symbol: address} dict, by address."""
    rows = []
    for name, start in names.items():
        if name.startswith("lgstart_"):
            op = name[len("lgstart_"):]
            end = names.get("lgend_" + op)
            if end is not None and end >= start:
                rows.append((op, start, end))
    return sorted(rows, key=lambda r: (r[1], r[0]))


def parainstructions(lookup, read):
    """[(site, type, len)] from __parainstructions..__parainstructions_end, or None."""
    start, end = lookup("__parainstructions"), lookup("__parainstructions_end")
    if start is None or end is None or not 0 <= end - start <= MAX_TABLE:
        return None
    raw = read(start, end - start) if end > start else b""
    return [(int.from_bytes(raw[i:i + 4], "little"), raw[i + 4], raw[i + 5])
            for i in range(0, len(raw) - PARAINSTR_SIZE + 1, PARAINSTR_SIZE)]


def template_table(lookup, read, starts):
    """{type: template start} from the Guest's table, or {} when it has none."""
    for name in ("patch_templates", "lguest_insns"):
        base = lookup(name)
        if base is None:
            continue
        table = {}
        for t in range(64):
            try:
                lo = int.from_bytes(read(base + 8 * t, 4), "little")
            except Exception:             # the table runs into unreadable memory
                break
            if lo in starts:
                table[t] = lo
            elif lo:
                break
        return table
    return {}


def patch_rows(templates, lookup, read, disassemble):
    rows = []
    for op, start, end in templates:
        raw = read(start, end - start) if end > start else b""
        rows.append({"name": op, "start": start, "end": end, "bytes": raw,
                     "disasm": disassemble(start, raw) if raw else [],
                     "sites": None, "patched": None})
    sites = parainstructions(lookup, read)
    if sites is None:
        return rows
    table = template_table(lookup, read, {r["start"] for r in rows})
    for row in rows:
        mine, patched = [], []
        for site, ptype, length in sites:
            try:
                current = read(site, max(length, len(row["bytes"])))
            except Exception:
                continue
            holds = bool(row["bytes"]) and current.startswith(row["bytes"])
            if table.get(ptype) == row["start"] or (ptype not in table and holds):
                mine.append(site)
                if holds:
                    patched.append(site)
        row["sites"], row["patched"] = mine, patched
    return rows


# ---------------------------------------------------------------- a real kernel's sites
#
# Linux 2.6.23 keeps its patch-site table in .init, which it frees (and
# poisons) once it has booted: so the list comes from the ELF file, and only
# the bytes at each site come from the Guest's memory.  The bundled examples
# have no struct paravirt_ops and keep the table above.

def kernel_image(elf):
    """True when the ELF file is a paravirt kernel: a .parainstructions section
    and a paravirt_ops symbol (2.6.23) or pv_cpu_ops (2.6.24 on, 3.2); the
    examples have the first, not the second."""
    return elf.section(".parainstructions") is not None and \
        (elf.symbol("paravirt_ops") is not None or elf.symbol("pv_cpu_ops") is not None)


def default_op_names(elf):
    """([name by type], where they come from) without debug info: the
    built-in tables of lgdbg.paravirt, picked by the kernel's own object
    sizes (sizeof paravirt_ops for 2.6.23, the pv_*_ops for 3.2)."""
    from .. import paravirt
    if elf.symbol("paravirt_ops") is not None:
        size = elf.symbol("paravirt_ops")[1]
        names = paravirt.op_names_for_size(size)
        return names, ("include/asm-i386/paravirt.h (sizeof paravirt_ops = %d)" % size
                       if names else "nowhere: sizeof(paravirt_ops) = %d matches no "
                       "2.6.23 configuration" % size)
    sizes = {s: elf.symbol(s)[1] for s in paravirt.PV_OPS_3_2 if elf.symbol(s) is not None}
    names = paravirt.op_names_3_2_for_sizes(sizes)
    words = ", ".join("%s %d" % kv for kv in sorted(sizes.items()))
    return names, ("arch/x86/include/asm/paravirt_types.h of 3.2 (sizeof %s)" % words
                   if names else "nowhere: the pv_*_ops sizes (%s) match no 3.2 "
                   "configuration" % words)


class _CachedReader:
    """Reads by 4 KiB page, once each: 1,942 sites are a few hundred reads
    through gdb's remote protocol instead of two thousand."""

    PAGE = 4096

    def __init__(self, read):
        self._read, self._pages = read, {}

    def _page(self, base):
        if base not in self._pages:
            try:
                self._pages[base] = bytes(self._read(base, self.PAGE))
            except Exception:         # unmapped, or only part of it readable
                self._pages[base] = None
        return self._pages[base]

    def __call__(self, address, length):
        out = b""
        a = address
        while len(out) < length:
            base = a - a % self.PAGE
            page = self._page(base)
            if page is None:
                try:
                    return bytes(self._read(address, length))
                except Exception:
                    return None
            take = min(length - len(out), base + self.PAGE - a)
            out += page[a - base:a - base + take]
            a += take
        return out


def kernel_sites(elf, templates, lookup, read, op_names=None):
    """The real kernel's patch sites, each classified (lgdbg.paravirt.classify).

    elf        an lgdbg.elf32.Elf32 of the kernel
    templates  [(op, start, end)] from templates_from_names
    lookup     name -> address or None;  read  (addr, n) -> bytes, may raise
    op_names   [name by type], e.g. from the DWARF; default: by sizeof(paravirt_ops)
    Returns {"sites": [...], "templates": [...], "names_from": str}.
    """
    from .. import paravirt
    names_from = "debug info (struct %s)" % ("paravirt_ops" if elf.symbol("paravirt_ops")
                                              else "paravirt_patch_template")
    if not op_names:
        op_names, names_from = default_op_names(elf)
    cached = _CachedReader(read)
    tmpl_rows = []
    by_start = {}
    for op, start, end in templates:
        raw = cached(start, end - start) if end > start else b""
        tmpl_rows.append({"name": op, "start": start, "end": end, "bytes": raw})
        by_start[start] = (op, raw)
    # lguest_insns[type] = {start, end}: which template lguest_patch copies for a type.
    table = template_table(lookup, lambda a, n: cached(a, n) or b"\0" * n, set(by_start))
    init_lo, init_hi = lookup("__init_begin"), lookup("__init_end")
    rows = []
    raw = elf.contents(elf.section(".parainstructions"))
    for address, ptype, length, clobbers in paravirt.parse_sites(raw):
        op, tmpl = by_start.get(table.get(ptype), (None, None))
        freed = init_lo is not None and init_hi is not None and init_lo <= address < init_hi
        state, target = paravirt.classify(cached(address, length), elf.read(address, length),
                                          tmpl, address, freed)
        rows.append({"address": address, "type": ptype,
                     "type_name": paravirt.type_name(op_names, ptype), "len": length,
                     "clobbers": clobbers, "state": state, "target": target, "template": op})
    return {"sites": rows, "templates": tmpl_rows, "names_from": names_from,
            "table": ".parainstructions of %s" % elf.path}


def count_sites(sites):
    """({state: n}, {type_name: {state: n}}): types by number, states in STATES order."""
    from ..paravirt import STATES
    order = {state: i for i, state in enumerate(STATES)}
    states, types = {}, {}
    for s in sorted(sites, key=lambda s: (s["type"], order[s["state"]])):
        per = types.setdefault(s["type_name"], {})
        per[s["state"]] = per.get(s["state"], 0) + 1
    for s in sorted(sites, key=lambda s: order[s["state"]]):
        states[s["state"]] = states.get(s["state"], 0) + 1
    return states, types


USAGE = "[--type NAME] [--state STATE] [--summary]"


def parse_options(argv):
    """(type name or None, state or None, summary_only) from the command's words."""
    from ..errors import UsageError
    want = {"--type": None, "--state": None}
    summary = False
    it = iter(argv)
    for word in it:
        key, eq, value = word.partition("=")
        if word == "--summary":
            summary = True
        elif key in want:
            value = value if eq else next(it, None)
            if not value:
                raise UsageError("%s needs a value; usage: %s" % (key, USAGE))
            want[key] = value
        else:
            raise UsageError("unknown argument %r; usage: %s" % (word, USAGE))
    return want["--type"], want["--state"], summary


def select_sites(sites, type_name=None, state=None):
    """The sites of one type and/or state; an unknown name is the user's error."""
    from ..errors import UsageError
    from ..paravirt import STATES
    if state is not None and state not in STATES:
        raise UsageError("unknown state %r (one of %s)" % (state, ", ".join(STATES)))
    if type_name is not None and type_name not in {s["type_name"] for s in sites}:
        raise UsageError("no patch site of type %r (types here: %s)" % (
            type_name, ", ".join(sorted({s["type_name"] for s in sites}))))
    return [s for s in sites if (type_name is None or s["type_name"] == type_name)
            and (state is None or s["state"] == state)]
