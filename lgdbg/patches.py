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
