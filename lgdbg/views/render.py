"""The words lgdbg prints about lguest state, shared by every front end.

The gdb commands (gdb_scripts/) and the REPL call these renderers with the
same plain data (lgdbg.abi.decode_lguest_data, the lgdbg.views.inspect dicts, the
Debugger.step_irq report), so both say exactly the same thing.

Standard library only: gdb's embedded Python imports this module.

Every renderer takes `sym`, a callable mapping an address to "name+off" (or
None when no symbol covers it); rows of disassembly are (address, text)
tuples supplied by the caller (gdb's disassembler in gdb, capstone in the
REPL).  Renderers return a string without a trailing newline.
"""

import re

from .. import abi

__all__ = [
    "addr", "render_lguest_data", "render_noirq", "render_irq_decision",
    "render_step_irq", "render_hcalls", "render_idt", "render_host",
    "render_status", "render_catchpoints", "render_patches", "render_patch_sites",
    "render_journey_position", "render_journey_definition",
]


# --------------------------------------------------------------- small words

def addr(value, sym=None):
    """'0xc0100321 <lguest_noirq_start>' (or just the hex when no symbol)."""
    if value is None:
        return "(none)"
    name = _sym(sym, value) if value else None    # 0 is "not set", never a symbol
    return "%#010x <%s>" % (value, name) if name else "%#x" % value


_fmt_addr = addr      # for functions whose parameter is named addr

# The labels of lguest_iret's window.  Another symbol can share an address
# with one (in 2.6.23 the function after lguest_asm.S, lguest_dev_match,
# starts at lguest_noirq_end): where they do, the window's own name says more.
WINDOW_LABELS = ("lguest_iret", "lguest_noirq_start", "lguest_noirq_end")


def prefer_labels(sym, lookup, names=WINDOW_LABELS):
    """A `sym` that names an address exactly at one of `names` by that name.

    lookup maps a name to its address or None (each front end has its own)."""
    labels = {}
    for name in names:
        try:
            a = lookup(name)
        except Exception:     # a lookup failure only means "no such label"
            a = None
        if a is not None:
            labels.setdefault(a, name)

    def named(value):
        return labels.get(value) or _sym(sym, value)
    return named


def _sym(sym, value):
    if sym is None or value is None:
        return None
    try:
        return sym(value)
    except Exception:        # a symbol lookup must never break a report
        return None


_HEX = re.compile(r"0x[0-9a-fA-F]{5,8}\b")


def _symbolize_text(text, sym):
    """Append <symbol> to each address-looking hex number in a sentence."""
    if not text or sym is None:
        return text

    def one(m):
        value = int(m.group(0), 16)
        name = _sym(sym, value)
        return "%s <%s>" % (m.group(0), name) if name else m.group(0)
    return _HEX.sub(one, text)


def _irqs(irqs):
    return ", ".join(str(i) for i in irqs) if irqs else "none"


def _ns(ns):
    if ns is None:
        return "(none)"
    return "%d ns (%d.%09d s)" % (ns, ns // 1_000_000_000, ns % 1_000_000_000)


def _yes(flag):
    return "yes" if flag else "no"


def _table(rows, indent="  "):
    """Left-aligned columns; the last column is not padded."""
    if not rows:
        return []
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    out = []
    for r in rows:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)] + [str(r[-1])]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _disasm_lines(rows, sym, current=None, indent="  "):
    out = []
    for a, text in rows:
        mark = "=> " if a == current else "   "
        name = _sym(sym, a)
        where = "%#010x <%s>" % (a, name) if name else "%#010x" % a
        out.append("%s%s%s:\t%s" % (indent, mark, where, text))
    return out


# --------------------------------------------------------------- lguest_data

def render_lguest_data(decoded, addr, sym, version="2.6.23", profile=None):
    """struct lguest_data field by field (decoded by lgdbg.abi.decode_lguest_data).

    profile names the ring's calls (its hypercall numbers); by default the
    one that goes with a built-in layout, else 2.6.23's."""
    d = decoded
    if profile is None:
        profile = abi.LAYOUT_PROFILES.get(version)
    out = ["struct lguest_data at %s (layout %s)" % (_fmt_addr(addr, sym), version)]
    rows = []
    for f in abi.layout(version)["fields"]:
        name = f.name
        value = d.get(name)
        if name == "irq_enabled":
            text = "%#x (%s)" % (value, "enabled" if value else "disabled")
        elif name == "blocked_interrupts":
            blocked = abi.irq_list(value)
            text = "%#010x (%s)" % (value, "blocked irqs " + _irqs(blocked) if blocked
                                    else "no irq blocked")
        elif name == "cr2":
            text = "%#x" % value
        elif name == "time":
            sec, nsec = value
            text = "%d.%09d s (tv_sec %d, tv_nsec %d)" % (sec, nsec, sec, nsec)
        elif name == "irq_pending":
            # 3.2: the Host's note that an irq waits for irq_enabled
            text = "%#x (%s)" % (value, "an irq is waiting" if value else "none waiting")
        elif name == "hcall_status":
            pending = [i for i, s in enumerate(value) if s != abi.HCALL_DONE]
            text = ("%d of %d slots pending" % (len(pending), abi.LHCALL_RING_SIZE)
                    if pending else "all %d slots done (0xff)" % abi.LHCALL_RING_SIZE)
        elif name == "hcalls":
            continue                      # shown below with the status bytes
        elif name == "reserve_mem":
            text = "%#x (%d MiB)" % (value, value >> 20) if value and not value & 0xFFFFF \
                else "%#x" % value
        elif name in ("noirq_start", "noirq_end", "kernel_address"):
            text = _fmt_addr(value, sym)
        elif name == "syscall_vec":
            text = "%#x" % value
        else:
            text = "%d" % value if name in ("guestid", "tsc_khz") else "%#x" % value
        rows.append((name, text))
    out += _table(rows)
    status = d.get("hcall_status") or []
    slots = d.get("hcalls") or []
    pending = [i for i, s in enumerate(status) if s != abi.HCALL_DONE]
    if pending:
        out.append("  async ring, pending slots:")
        for i in pending:
            call, args = slots[i][0], slots[i][1:]
            out.append("    [%2d] status %#04x  %s" % (i, status[i],
                                                     _describe_call(call, args, sym, profile)))
    return "\n".join(out)


_ADDRESS_ARGS = frozenset(("lguest_data", "msg", "gdt", "esp", "dmas", "dma", "tls",
                           "addr", "vaddr", "pgdir"))


def _describe_call(nr, args, sym, profile=None, name=None):
    """'SET_STACK ss=0x69 esp=0xc0102a80 <stack_top> pages=0x1'.

    The name is the event's own when it has one (the Host that made it knew
    its ABI), else nr's in profile (None: 2.6.23)."""
    name = name or abi.hcall_name(nr, profile)
    names = abi.HCALL_ARGS.get(name, ())
    parts = [name]
    for n, v in zip(names, args):
        if n in _ADDRESS_ARGS and _sym(sym, v):
            parts.append("%s=%#x <%s>" % (n, v, _sym(sym, v)))
        elif name == "SET_CLOCKEVENT" and n == "delta_ns":
            parts.append("%s=%d" % (n, v))
        elif name == "LOAD_IDT_ENTRY" and n == "hi":
            gate = abi.decode_gate(args[1], args[2])
            parts.append("%s=%#x (%s gate to %s, DPL %d)"
                         % (n, v, abi.gate_kind(gate.type), addr(gate.handler, sym), gate.dpl))
        else:
            parts.append("%s=%#x" % (n, v))
    return " ".join(parts)


# --------------------------------------------------------------- noirq window

def render_noirq(eip, start, end, sym, disasm_rows, window_sym=None):
    """Is EIP inside [noirq_start, noirq_end)?  With the window disassembled.

    window_sym, when given, names the window's two ends (prefer_labels);
    EIP and the instructions keep `sym`'s names."""
    ends = window_sym or sym
    if not start and not end:
        return ("inside the noirq window: no (EIP %s; no noirq window registered: "
                "lguest_data.noirq_start/noirq_end are 0)" % addr(eip, sym))
    inside = start <= eip < end
    out = ["inside the noirq window: %s (EIP %s)" % (_yes(inside), addr(eip, sym)),
           "noirq window: [%s, %s), %d bytes" % (addr(start, ends), addr(end, ends),
                                                  end - start)]
    if inside:
        out.append("the Host will not deliver an interrupt here, whatever irq_enabled says")
    rows = list(disasm_rows or [])
    if rows:
        out.append("")
        out += _disasm_lines(rows, sym, current=eip)
    return "\n".join(out)


# --------------------------------------------------------------- interrupts

_VERDICTS = {
    "deliver": "deliverable now",
    "none": "nothing to deliver",
    "blocked": "not deliverable: blocked",
    "noirq": "not deliverable: inside the noirq window",
    "disabled": "not deliverable: interrupts disabled",
    "no-handler": "not deliverable: no handler",
}


def render_irq_decision(decision, sym):
    """maybe_do_interrupt's reasoning (lgdbg.views.inspect.irq_decision)."""
    out = ["pending irqs: %s" % _irqs(decision.get("pending")),
           "blocked irqs: %s" % _irqs(decision.get("blocked")),
           "maybe_do_interrupt would decide, step by step:"]
    for step in decision.get("steps", []):
        out.append("  " + _symbolize_text(step, sym))
    verdict = decision.get("verdict")
    detail = _symbolize_text(decision.get("detail") or "", sym)
    line = "verdict: %s" % _VERDICTS.get(verdict, verdict)
    if detail:
        line += " (%s)" % detail
    out.append(line)
    return "\n".join(out)


def _change_words(change, sym):
    verdict = change.get("verdict")
    words = {"noirq": "inside the noirq window", "disabled": "interrupts disabled",
             "blocked": "blocked", "no-handler": "no handler", "none": "nothing pending",
             "deliver": "deliverable"}.get(verdict, verdict)
    return "after %d instructions: %s at %s%s" % (
        change.get("after", 0), words, addr(change.get("eip"), sym),
        " (%s)" % _symbolize_text(change["detail"], sym) if change.get("detail") else "")


def render_step_irq(report, sym):
    """One step of virtual interrupt delivery (Debugger.step_irq's report)."""
    out = []
    changes = report.get("changes") or []
    steps = report.get("steps", 0)
    decision = report.get("decision")
    if decision:
        detail = _symbolize_text(decision.get("detail") or "", sym)
        out.append("decision: %s%s" % (_VERDICTS.get(decision.get("verdict"),
                                                       decision.get("verdict")),
                                        " (%s)" % detail if detail else ""))
    if not report.get("delivered"):
        why = _symbolize_text(report.get("why_not") or "no irq was delivered", sym)
        if steps:
            out.append("not delivered after %d instructions: %s" % (steps, why))
        else:
            out.append("not delivered: %s" % why)
        if steps:
            for ch in changes:
                out.append("  " + _change_words(ch, sym))
        return "\n".join(out)

    irq = report.get("irq")
    vector = report.get("vector", abi.FIRST_EXTERNAL_VECTOR + irq if irq is not None else None)
    gate = report.get("gate")
    head = "delivered irq %s" % irq
    if vector is not None:
        head += " (vector %#x)" % vector
    if gate:
        head += " through %s %s gate" % ("an" if gate[:1] in "aeiou" else "a", gate)
    out.append(head)
    out.append("  handler:     %s" % addr(report.get("handler"), sym))
    out.append("  interrupted: %s" % addr(report.get("from_eip"), sym))
    if report.get("at_host_entry"):
        out.append("  (the Host delivered it at a Host entry during the last instruction)")
    if steps or changes:
        out.append("  deferred by %d instruction%s" % (steps, "" if steps == 1 else "s"))
        for ch in changes:
            out.append("    " + _change_words(ch, sym))
    frame = report.get("frame")
    if frame:
        at = report.get("frame_at")
        out.append("  frame pushed%s:" % (" at %#x" % at if at is not None else ""))
        out.append("    eip     %s" % addr(frame["eip"], sym))
        out.append("    cs      %#x" % frame["cs"])
        out.append("    eflags  %#x (IF %s)" % (frame["eflags"],
                                               "set" if frame.get("if") else "clear"))
        if "esp" in frame:
            out.append("    esp     %#x  (privilege change)" % frame["esp"])
            out.append("    ss      %#x" % frame["ss"])
    if "irq_enabled_before" in report:
        out.append("  irq_enabled: %#x -> %#x" % (report["irq_enabled_before"],
                                                  report["irq_enabled_after"]))
    return "\n".join(out)


# --------------------------------------------------------------- hypercalls

def render_hcalls(events, sym):
    """The last hypercalls (hcall events), oldest first, with decoded arguments."""
    if not events:
        return "no hypercalls yet"
    rows = [("icount", "time_ns", "eip", "call")]
    for e in events:
        text = _describe_call(e.get("nr"), list(e.get("args", ())), sym, name=e.get("name")) \
            if e.get("nr") is not None else e.get("name", "?")
        if e.get("async"):
            text += "  (async)"
        rows.append((e.get("icount", ""), e.get("time_ns", ""), addr(e.get("eip"), sym), text))
    return "\n".join(_table(rows, indent=""))


# --------------------------------------------------------------- IDT

def render_idt(rows, sym):
    """The IDT entries the guest loaded with LOAD_IDT_ENTRY."""
    if not rows:
        return "the guest has loaded no IDT entries (no LOAD_IDT_ENTRY yet)"
    table = [("vector", "irq", "handler", "gate", "DPL", "entered by")]
    for r in rows:
        vec = r["vector"]
        note = "" if r.get("irq") is None else str(r["irq"])
        if r.get("irq") is None and vec in abi.TRAP_NAMES:
            note = abi.TRAP_NAMES[vec]
        elif vec == abi.SYSCALL_VECTOR:
            note = "syscall"
        table.append(("%#04x" % vec, note or "-", addr(r["handler"], sym), r["type"], r["dpl"],
                      "the CPU (direct trap)" if r.get("direct") else "the Host"))
    return "\n".join(_table(table, indent=""))


# --------------------------------------------------------------- Host

def render_host(state, sym):
    """The Host-side state (lgdbg.views.inspect.host_state)."""
    s = state
    out = ["Host state" + (" (guest dead)" if s.get("dead") else "")]
    gdt = s.get("gdt") or []
    out.append("GDT entries (%d non-null):" % len(gdt))
    if gdt:
        rows = [("index", "sel", "base", "limit", "kind", "DPL", "P", "owner")]
        for g in gdt:
            rows.append((g["index"], "%#06x" % g["selector"], "%#010x" % g["base"],
                         "%#010x" % g["limit"], "code" if g.get("code") else "data/system",
                         g["dpl"], 1 if g.get("present") else 0,
                         "Host" if g.get("host") else "guest"))
        out += _table(rows, indent="  ")
    out.append("kernel stack (SET_STACK): ss1 %s  esp1 %s  pages %s"
               % (_hex(s.get("ss1")), addr(s.get("esp1"), sym) if s.get("esp1") else "(not set)",
                  s.get("stack_pages")))
    out.append("TS (lazy FPU): %s" % s.get("ts"))
    out.append("pending irqs: %s" % _irqs(s.get("pending")))
    out.append("blocked irqs: %s" % _irqs(s.get("blocked")))
    out.append("halted: %s" % _yes(s.get("halted")))
    out.append("virtual time: %s" % _ns(s.get("time_ns")))
    dl = s.get("clock_deadline_ns")
    out.append("clock event: %s" % ("stopped" if not dl else "fires at %s" % _ns(dl)))
    tick = s.get("next_host_tick_ns")
    out.append("next Host tick: %s" % ("(realtime clock: none)" if tick is None else _ns(tick)))
    if "cr3" in s:
        out.append("page tables: cr3 %s, %s page-table hypercalls"
                   % (_hex(s.get("cr3")), s.get("page_table_calls")))
    if "async_cursor" in s:
        out.append("async ring cursor: %s" % s.get("async_cursor"))
    return "\n".join(out)


def _hex(v):
    return "(none)" if v is None else "%#x" % v


def render_status(status, sym):
    """A short summary (lgdbg.views.inspect.status)."""
    s = status
    out = []
    if not s.get("init"):
        out.append("lguest_data: not registered yet (no LGUEST_INIT)")
    else:
        out.append("lguest_data: %s (guest-physical %#x)"
                   % (addr(s.get("lguest_data"), sym), s.get("lguest_data_phys")))
    out.append("EIP: %s (%s the noirq window [%s, %s))"
               % (addr(s.get("eip"), sym), "inside" if s.get("in_noirq") else "outside",
                  addr(s.get("noirq_start"), sym), addr(s.get("noirq_end"), sym)))
    out.append("pending irqs: %s   blocked irqs: %s" % (_irqs(s.get("pending")),
                                                       _irqs(s.get("blocked"))))
    out.append("halted: %s   dead: %s" % (_yes(s.get("halted")),
                                          s.get("dead") if s.get("dead") else "no"))
    dl = s.get("clock_deadline_ns")
    out.append("icount: %s   virtual time: %s   clock event: %s"
               % (s.get("icount"), _ns(s.get("time_ns")),
                  "stopped" if not dl else "at %s" % _ns(dl)))
    if s.get("abi"):
        out.append("ABI: lguest %s (lguest_data layout %s)" % (s["abi"], s.get("layout")))
    return "\n".join(out)


# --------------------------------------------------------------- catchpoints

def render_catchpoints(rows, profile=None):
    """The lguest catchpoints, listed like gdb's own `info breakpoints`;
    profile names hypercall numbers (None: 2.6.23)."""
    if not rows:
        return "No lguest catchpoints."
    table = [("Num", "Type", "What")]
    for r in rows:
        arg = r.get("arg")
        what = {"hcall": "any hypercall", "irq": "any irq", "trap": "any trap",
                "kill": "the guest killed"}.get(r["kind"], "") if arg is None else str(arg)
        if r["kind"] == "hcall" and isinstance(arg, int):
            what = "%s (%d)" % (abi.hcall_name(arg, profile), arg)
        if r["kind"] == "trap" and isinstance(arg, int) and arg in abi.TRAP_NAMES:
            what = "%d (%s)" % (arg, abi.TRAP_NAMES[arg])
        table.append((r["number"], "catch %s" % r["kind"], what))
    return "\n".join(_table(table, indent=""))


# --------------------------------------------------------------- patches

def render_patches(rows, sym):
    """Each lgstart_X/lgend_X template: bytes, disassembly, sites patched with it.

    A row may carry "patched": [addr...], the sites whose bytes already equal
    the template; the others are listed as not (yet) patched.
    """
    if not rows:
        return "no patch templates (no lgstart_X/lgend_X symbol pairs) in this image"
    out = []
    for r in rows:
        raw = bytes(r.get("bytes") or b"")
        out.append("%s: [%s, %s), %d bytes: %s"
                   % (r["name"], addr(r["start"], sym), addr(r["end"], sym),
                      r["end"] - r["start"], " ".join("%02x" % b for b in raw)))
        out += _disasm_lines(r.get("disasm") or [], sym, indent="  ")
        sites = r.get("sites")
        patched = r.get("patched")
        if sites is None:
            out.append("  call sites: not known (no .parainstructions table found)")
        elif not sites:
            out.append("  call sites: none found")
        else:
            out.append("  call sites (%d):" % len(sites))
            for s in sites:
                state = ""
                if patched is not None:
                    state = "  patched" if s in patched else "  not patched (yet)"
                out.append("    %s%s" % (addr(s, sym), state))
        out.append("")
    return "\n".join(out).rstrip("\n")


def _site_now(s, sym):
    """What a site holds now, in words."""
    n = s["len"]
    if s["state"] == "template":
        return "template %s (lguest_patch's copy, NOP-padded to %d bytes)" % (s["template"], n)
    if s["state"] in ("call", "jmp"):
        return "%s %s (paravirt_patch_default)" % (s["state"], addr(s["target"], sym))
    return {"original": "original indirect call through the paravirt ops (not patched)",
            "nops": "NOPs (the operation is paravirt_nop)",
            "freed": "freed with .init (0xcc poison)",
            "other": "something else (neither template, original, call/jmp nor NOPs)",
            "unreadable": "unreadable (not mapped now)"}[s["state"]]


def _counts(counts):
    return ", ".join("%s %d" % kv for kv in counts.items())


def render_patch_sites(report, sym, shown=None, summary_only=False):
    """A real kernel's patch sites (lgdbg.views.patches.kernel_sites) and a summary line.

    `shown` is the subset of report["sites"] to list (a filter's result);
    the summary line counts those, by state and by type.
    """
    from .patches import count_sites
    sites = report["sites"]
    shown = sites if shown is None else shown
    out = ["%d paravirt patch sites, from the %s (read from the file: the kernel frees "
           "that table with .init once it has booted)" % (len(sites), report["table"]),
           "types named from %s" % report["names_from"]]
    if report["templates"]:
        out.append("lguest's templates (lguest_patch copies them):")
        for t in report["templates"]:
            raw = bytes(t.get("bytes") or b"")
            out.append("  %-6s [%s, %s), %d bytes: %s"
                       % (t["name"], addr(t["start"], sym), addr(t["end"], sym),
                          t["end"] - t["start"], " ".join("%02x" % b for b in raw)))
    if not summary_only:
        out += _table([("address", "type", "len", "now")] +
                      [(addr(s["address"], sym), s["type_name"], s["len"], _site_now(s, sym))
                       for s in shown])
    states, types = count_sites(shown)
    what = "%d sites" % len(shown) if len(shown) == len(sites) else \
        "%d of %d sites" % (len(shown), len(sites))
    out.append("summary: %s; by state: %s; by type: %s"
               % (what, _counts(states) or "none",
                  ", ".join("%s %d (%s)" % (name, sum(c.values()), _counts(c))
                            for name, c in types.items()) or "none"))
    return "\n".join(out)


# --------------------------------------------------------------- journey

def render_journey_position(pc, path, line, sym):
    """The line before a journey fragment: where the pc is in the sources."""
    return "pc %s is at %s:%d; the journey there:" % (addr(pc, sym), path, line)


def render_pgtable_walk(w, sym):
    """One address through the Guest's tables and the Host's shadow
    (lgdbg.views.pgtable_view.walk)."""
    def entry(value, flags):
        return "%#010x  %s" % (value, " ".join(flags) or "not present")
    out = ["%s in %s" % (addr(w["vaddr"], sym), w["region"]),
           "Guest's walk (cr3 %#x):" % w["cr3"],
           "  page directory entry at %#x: %s" % (w["pde_addr"], entry(w["pde"], w["pde_flags"]))]
    if w["pte_addr"] is not None:
        out.append("  page table entry at %#x:     %s"
                   % (w["pte_addr"], entry(w["pte"], w["pte_flags"])))
    out.append("  physical: %s" % ("%#x" % w["phys"] if w["phys"] is not None
                                   else "none (the Guest would take a page fault)"))
    if w["shadow_slot"] is None:
        out.append("Host's shadow: %s" % w["shadow_state"])
    else:
        out.append("Host's shadow (slot %d): %s: %s" % (
            w["shadow_slot"], entry(w["shadow"], w["shadow_flags"]) if w["shadow"] else "empty",
            w["shadow_state"]))
    return "\n".join(out)


def render_pgtable_summary(s):
    """The four shadow page directories (lgdbg.views.pgtable_view.summary)."""
    out = ["Host's shadow page directories (%d fills so far, %d pool pages in use):"
           % (s["fills"], s["pool_pages"])]
    rows = [("slot", "Guest cr3", "PDEs", "PTEs", "")]
    for r in s["slots"]:
        if r["cr3"] is None:
            rows.append((r["slot"], "(unused)", "", "", ""))
        else:
            rows.append((r["slot"], "%#x" % r["cr3"], r["pdes"], r["ptes"],
                         "<- current" if r["current"] else ""))
    return "\n".join(out + _table(rows))


def render_journey_definition(pc, label, path, line, sym):
    """The same line where the pc has no line information: the journey is
    found from the label at the pc and where the sources define it."""
    return ("pc %s has no line information; %s is defined at %s:%d; the journey there:"
            % (addr(pc, sym), label, path, line))
