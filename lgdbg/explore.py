"""`lgdbg explore`: what if a virtual interrupt arrived at each instruction of a window?

    lgdbg explore IMAGE --at SYMBOL[+OFF] --window START[-END] --irq N
                  [--after ICOUNT] [--no-noirq] [--budget N] [--json]

1. Run the Guest (deterministic icount clock) to its first arrival at --at
   (after --after instructions: a real kernel passes lguest_iret long before
   its clock runs) and snapshot the machine (lgdbg.core.snapshot: later restores rewrite only the
   pages that changed).
2. The reference run: from the snapshot, without any injection, run on.  Its
   first arrival at --at again (or power-off, a kill, the instruction budget)
   is the *baseline*.  Every first arrival at a window address A on the way
   is saved as a waypoint, and the state at every later arrival at --at is
   recorded too: for an A reached after the baseline's settling point (the
   iret example reaches lguest_iret only from its clock handler, a timer tick
   later) the fair comparison is the uninjected run's state at the settling
   point that follows A, not the baseline's.
3. For each instruction boundary A in [START, END) (decoded with capstone
   from the Guest's memory at the snapshot: the code may have patched
   itself): restore the machine to its state at the first arrival at A
   after the snapshot (the waypoint: by determinism exactly what
   "restore the snapshot, run to a breakpoint at A" gives, without re-running
   the instructions in between), raise irq N there (source "schedule") and
   make one delivery attempt right there (Machine.try_deliver: an interrupt
   arriving at that boundary, a Host entry), then run to the settling point.
4. Compare.  A delivered interrupt by itself is not a difference (its
   handler prints and counts); the outcome is *corrupted* when the Guest is
   killed (a CRASH message) where the uninjected run was not, when the run
   stops differently, or when ESP or lguest_data.irq_enabled at the settling
   point differ.  Console output and the pages of RAM that differ are
   reported beside it.

--no-noirq clears the Host's copy of the Guest's noirq window
(noirq_start = noirq_end = 0, after LGUEST_INIT, in the snapshot), showing
what the window prevents.  Exit status 0 when the exploration ran (whatever
it found), 1 when --at is never reached, 2 for usage errors.
"""

import json
import sys
import time

from . import abi, images
from .errors import LgdbgError, UsageError
from .options import add_initrd_option, read_initrd

DEFAULT_BUDGET = 20_000_000       # instructions after the snapshot
SETTLED = "settled"


def configure(parser):
    from .machine.machine import DEFAULT_HOST_TICK, DEFAULT_MEM_MIB
    parser.add_argument("image", nargs="?", default=None,
                        help="guest ELF image (default: the bundled %s example)" % images.DEFAULT)
    parser.add_argument("--at", required=True, metavar="SYMBOL[+OFF]",
                        help="snapshot at the first arrival here; arriving again settles a run")
    parser.add_argument("--window", required=True, metavar="START[-END]",
                        help="inject at every instruction in [START, END) (END defaults to "
                             "START's symbol end, else lguest_noirq_end)")
    parser.add_argument("--irq", type=lambda t: int(t, 0), required=True, metavar="N",
                        help="the virtual irq to raise at each boundary")
    parser.add_argument("--after", type=int, default=0, metavar="ICOUNT",
                        help="look for --at only after this many instructions")
    parser.add_argument("--no-noirq", action="store_true",
                        help="ignore the Guest's noirq window (show what it prevents)")
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET, metavar="N",
                        help="instructions a run may take after the snapshot "
                             "(default %d)" % DEFAULT_BUDGET)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--mem", type=int, default=DEFAULT_MEM_MIB, metavar="MIB",
                        help="guest RAM in MiB (default %d)" % DEFAULT_MEM_MIB)
    parser.add_argument("--cmdline", default="", metavar="TEXT",
                        help="kernel command line (the Launcher puts a space after each word)")
    parser.add_argument("--host-tick", type=int, default=DEFAULT_HOST_TICK, metavar="N",
                        help="a Host entry every N instructions (default %d)" % DEFAULT_HOST_TICK)
    add_initrd_option(parser)
    parser.add_argument("--abi", choices=("2.6.23", "3.2"), default=None,
                        help="the lguest ABI (default: from the image)")


def run(args):
    from .machine import Machine
    from .views.symbols import Symbols
    if args.budget <= 0:
        raise UsageError("--budget must be a positive instruction count")
    if not 0 <= args.irq < abi.LGUEST_IRQS:
        raise UsageError("--irq %d out of range (0-%d)" % (args.irq, abi.LGUEST_IRQS - 1))
    path = images.resolve(args.image)
    syms = Symbols(path)
    at = syms.lookup(args.at)
    labels = []
    start, end = parse_window(syms, path, args.window, labels)
    machine = Machine(path, mem_mib=args.mem, cmdline=args.cmdline, host_tick=args.host_tick,
                      initrd=read_initrd(args.initrd), abi_profile=args.abi)
    if args.after < 0:
        raise UsageError("--after must not be negative")
    ex = Explorer(machine, syms, at, start, end, args.irq, no_noirq=args.no_noirq,
                  budget=args.budget, labels=labels, after=args.after)
    report = ex.explore()
    report["image"] = path
    report["at_symbol"] = args.at
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_table(report))
    return 0


# --- window -------------------------------------------------------------------------
def parse_window(syms, path, text, labels=None):
    """(start, end) addresses of --window START[-END].

    labels, a list, receives the names to show for both ends."""
    first, dash, second = text.partition("-")
    if not first.strip():
        raise UsageError("--window wants START[-END], not %r" % text)
    start = syms.lookup(first)
    if dash:
        end = syms.lookup(second)
        end_label = second.strip()
    else:
        end, end_label = default_end(syms, path, first.strip(), start)
    if labels is not None:
        labels[:] = [first.strip(), end_label]
    if end <= start:
        raise UsageError("--window %s: the end %#x is not after the start %#x" % (text, end, start))
    if end - start > 0x10000:
        raise UsageError("--window %s is %d bytes long: give a window under 64 KiB"
                         % (text, end - start))
    return start, end


def default_end(syms, path, start_text, start):
    """START's own symbol end (ELF st_size), else lguest_noirq_end, else a sized symbol
    containing START."""
    sizes = _symbol_sizes(path)
    base = start_text.partition("+")[0].strip()
    if base in sizes and sizes[base][1] and sizes[base][0] + sizes[base][1] > start:
        return sizes[base][0] + sizes[base][1], "%s+%d" % (base, sizes[base][1])
    noirq_end = syms.by_name.get("lguest_noirq_end")
    if noirq_end is not None and noirq_end > start:
        return noirq_end, "lguest_noirq_end"
    for name, (addr, size) in sizes.items():
        if size and addr <= start < addr + size:
            return addr + size, "%s+%d" % (name, size)
    raise UsageError("--window %s: no end known (the symbol has no size): give START-END"
                     % start_text)


def _symbol_sizes(path):
    from elftools.elf.elffile import ELFFile
    out = {}
    with open(path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        for sym in (symtab.iter_symbols() if symtab else ()):
            if sym.name and sym["st_shndx"] != "SHN_UNDEF":
                out.setdefault(sym.name, (sym["st_value"], sym["st_size"]))
    return out


def window_instructions(machine, start, end):
    """[(address, size, text)] decoded linearly from Guest memory."""
    from unicorn import UcError
    from .views.disasm import disassemble
    try:
        code = machine.read_memory(start, end - start + 15)
    except UcError:
        try:
            code = machine.read_memory(start, end - start)
        except UcError:
            raise UsageError("the window %#x-%#x is not in Guest memory" % (start, end))
    out = []
    addr = start
    while addr < end:
        rows = disassemble(code[addr - start:], addr)
        if not rows:
            out.append((addr, 1, "(bad)"))
            addr += 1
            continue
        for a, size, text in rows:
            if a >= end:
                break
            out.append((a, size, text))
            addr = a + size
        else:
            continue
        break
    return out


class FirstArrivals:
    """Stop at the first arrival at each of many instruction addresses.

    One breakpoint hook per address would do, but unicorn walks the whole
    list of code hooks at every instruction while counting (count= mode):
    100 breakpoints make the Guest run 6x slower.  So each run of contiguous
    addresses not reached yet gets ONE code hook over its range; any
    instruction executed inside it is a first arrival (addresses reached
    already are cut out of the ranges), and stops the CPU the way a
    breakpoint does (Cpu._on_breakpoint: the Machine reports
    Stop("breakpoint", addr)).
    """

    def __init__(self, cpu, insns):
        self.cpu = cpu
        self.uc = cpu.uc
        self.remaining = {a: n for a, n in insns}
        self.hooks = {}               # (first_addr, end) -> handle
        run = []
        for a, n in sorted(insns):
            if run and run[-1][0] + run[-1][1] != a:
                self._add(run)
                run = []
            run.append((a, n))
        if run:
            self._add(run)

    def _add(self, run):
        from unicorn import UC_HOOK_CODE
        if not run:
            return
        lo, end = run[0][0], run[-1][0] + run[-1][1]
        # Cpu.hook_add drops translated code: code translated before the
        # hook existed would never call it.
        self.hooks[(lo, end)] = self.cpu.hook_add(UC_HOOK_CODE, self._on_code, None, lo, end - 1)

    def _on_code(self, uc, addr, size, _):
        if addr in self.remaining:
            self.cpu._on_breakpoint(uc, addr, size, None)

    def arrived(self, addr):
        """addr was reached: cut it out of its range."""
        if self.remaining.pop(addr, None) is None:
            return
        for (lo, end), h in list(self.hooks.items()):
            if lo <= addr < end:
                self.cpu.hook_del(h)
                del self.hooks[(lo, end)]
                inside = sorted((a, n) for a, n in self.remaining.items() if lo <= a < end)
                self._add([x for x in inside if x[0] < addr])
                self._add([x for x in inside if x[0] > addr])
                break

    def close(self):
        for h in self.hooks.values():
            self.cpu.hook_del(h)
        self.hooks.clear()


# --- the explorer ---------------------------------------------------------------------------
class Explorer:
    def __init__(self, machine, symbols, at, start, end, irq, no_noirq=False,
                 budget=DEFAULT_BUDGET, track=True, labels=None, after=0):
        from .core.snapshot import Snapshots
        if not machine.clock.deterministic:
            raise UsageError("the explorer needs the deterministic clock (--clock icount)")
        self.m = machine
        self.syms = symbols
        self.at, self.start, self.end = at, start, end
        self.irq = irq
        self.no_noirq = no_noirq
        self.budget = budget
        self.after = after
        self.labels = list(labels) if labels else [self._name(start), self._name(end)]
        self.snaps = Snapshots(machine, track=track)
        self.console = ""
        self.events = []              # irq / irq-deferred / kill events of the current run
        self.recording = False
        machine.subscribe(self._on_event)
        self.snapshot = None
        self.insns = []
        self.waypoints = {}           # addr -> (snapshot, console_len, settle index)
        self.settles = {}             # settling point number -> outcome (reference run)
        self.baseline = None
        self.timings = {}

    def _on_event(self, event):
        kind = event["kind"]
        if kind == "console":
            self.console += event["text"]
        elif self.recording and kind in ("irq", "irq-deferred", "kill"):
            self.events.append(event)

    # --- phase 1: the snapshot -------------------------------------------------------
    def prepare(self):
        m = self.m
        t0 = time.perf_counter()
        if self.after > m.icount:
            stop = m.run(max_insns=self.after - m.icount)
            if stop.kind != "step":
                raise LgdbgError("the guest never gets to --after %d: %s after %d instructions"
                                 % (self.after, _stop_text(stop), m.icount))
        m.cpu.add_breakpoint(self.at)
        limit = m.icount + self.budget
        while True:
            stop = m.run(max_insns=max(limit - m.icount, 0))
            if stop.kind == "breakpoint" and stop.addr == self.at:
                break
            if stop.kind != "breakpoint":
                raise LgdbgError("the guest never reaches --at %s: %s after %d instructions"
                                 % (self._name(self.at), _stop_text(stop), m.icount))
        if self.no_noirq:
            if m.host.lguest_data is None:
                raise UsageError("--no-noirq: the guest has not made LGUEST_INIT by --at %s"
                                 % self._name(self.at))
            m.host.noirq_start = m.host.noirq_end = 0
        self.console_at_snapshot = self.console
        self.console = ""
        self.insns = window_instructions(m, self.start, self.end)
        self.snapshot = self.snaps.save("explore-at")
        self.limit = m.icount + self.budget
        self.timings["prepare_s"] = time.perf_counter() - t0

    # --- phase 2: the reference run -------------------------------------------------------
    def reference(self):
        m = self.m
        t0 = time.perf_counter()
        remaining = {a for a, _, _ in self.insns}
        arrivals = FirstArrivals(m.cpu, [(a, n) for a, n, _ in self.insns if a != self.at])
        needed = {0}                  # settling points some comparison uses
        count = 0                     # settling points recorded or skipped so far
        at_bp = True
        try:
            while True:
                stop = m.run(max_insns=max(self.limit - m.icount, 0))
                if stop.kind != "breakpoint":
                    self.settles[count] = self._outcome(stop)
                    break
                addr = stop.addr
                if addr in remaining:
                    remaining.discard(addr)
                    arrivals.arrived(addr)
                    snap = self.snaps.save()
                    # Injected here, the run settles at the next arrival at --at.
                    idx = count + (1 if addr == self.at else 0)
                    self.waypoints[addr] = (snap, len(self.console), idx)
                    needed.add(idx)
                    if not at_bp:
                        m.cpu.add_breakpoint(self.at)
                        at_bp = True
                if addr == self.at:
                    if count in needed:
                        self.settles[count] = self._outcome(stop)
                    count += 1
                    if not remaining and count > max(needed):
                        break
                    if at_bp and count > max(needed) and self.at not in remaining:
                        # No waypoint waits for a settling point: stop stopping here.
                        m.cpu.remove_breakpoint(self.at)
                        at_bp = False
        finally:
            arrivals.close()
            m.cpu.add_breakpoint(self.at)     # the injected runs settle there
        # A waypoint whose settling point never came (the run ended) settles at the end.
        last = max(self.settles)
        for addr, (snap, clen, idx) in list(self.waypoints.items()):
            if idx not in self.settles:
                self.waypoints[addr] = (snap, clen, last)
        self.baseline = _public(self.settles[0])
        self.timings["reference_s"] = time.perf_counter() - t0

    def _outcome(self, stop):
        m = self.m
        if stop.kind == "breakpoint":
            kind, reason = SETTLED, None
        elif stop.kind == "step":
            kind, reason = "budget", "%d instructions after the snapshot" % self.budget
        else:
            kind, reason = stop.kind, stop.reason
        host = m.host
        irq_enabled = None
        if host.lguest_data is not None:
            irq_enabled = m.mem.read_u32(host.lguest_data + abi.LD_IRQ_ENABLED)
        pages = self.snaps.changed_pages()
        out = {"stop": kind, "reason": reason, "icount": m.icount,
               "eip": m.cpu.reg("eip"), "esp": m.cpu.reg("esp"),
               "irq_enabled": irq_enabled, "pending": abi.irq_list(host.irqs_pending),
               "console": self.console,
               "_pages": self.snaps.page_hashes(pages)}
        if self.baseline is None and 0 not in self.settles:
            # The baseline: a digest of all of RAM (once; tens of milliseconds).
            out["memory_hash"] = _ram_hash(m)
            out["memory_pages_changed"] = len(pages)
        return out

    # --- phase 3: one injection point -----------------------------------------------------------
    def point(self, addr, size=None, text=None):
        m = self.m
        if text is None:
            text = next((t for a, _, t in self.insns if a == addr), "?")
        rec = {"offset": addr - self.start, "address": addr, "symbol": self._name(addr),
               "insn": text, "delivered": False, "reason": None, "outcome": "not reached",
               "differs": False, "console": "", "console_differs": False,
               "memory_pages_differing": 0}
        wp = self.waypoints.get(addr)
        if wp is None:
            rec["reason"] = "not reached"
            return rec
        snap, console_len, settle_idx = wp
        self.snaps.restore(snap)
        self.console = self._reference_console(console_len)
        rec["icount"] = m.icount
        self.events = []
        self.recording = True
        try:
            m.raise_irq(self.irq, "schedule")
            delivered, decision = m.try_deliver()
            stop = m.run(max_insns=max(self.limit - m.icount, 0))
        finally:
            self.recording = False
        rec["delivered"] = delivered == self.irq
        if delivered is not None and delivered != self.irq:
            rec["reason"] = "irq %d delivered first" % delivered
        elif delivered is None:
            rec["reason"] = decision.verdict if decision.verdict != "deliver" else "not delivered"
        rec["detail"] = decision.detail
        out = self._outcome(stop)
        ref = self.settles[settle_idx]
        rec["outcome"] = out["stop"] if out["reason"] is None or out["stop"] == "budget" \
            else "%s: %s" % (out["stop"], out["reason"])
        rec["esp"], rec["irq_enabled"] = out["esp"], out["irq_enabled"]
        rec["settle_icount"] = out["icount"]
        why = []
        if out["stop"] != ref["stop"] or out["reason"] != ref["reason"]:
            why.append("%s (uninjected: %s)" % (rec["outcome"], _outcome_text(ref)))
        else:
            if out["esp"] != ref["esp"]:
                why.append("esp %#x (uninjected %#x)" % (out["esp"], ref["esp"]))
            if irq_state(out["irq_enabled"]) != irq_state(ref["irq_enabled"]):
                why.append("irq_enabled %s (uninjected %s)"
                           % (_hex(out["irq_enabled"]), _hex(ref["irq_enabled"])))
        rec["differs"] = bool(why)
        rec["why"] = why
        rec["console"] = out["console"][console_len:]
        rec["console_differs"] = rec["console"] != ref["console"][console_len:]
        rec["memory_pages_differing"] = len(self._pages_differing(out["_pages"], ref["_pages"]))
        return rec

    def _reference_console(self, length):
        # The console at a waypoint is a prefix of the reference run's.
        return self.settles[max(self.settles)]["console"][:length]

    def _pages_differing(self, mine, ref):
        out = []
        for p in set(mine) | set(ref):
            a = mine.get(p) or self.snaps.base_page_hash(p)
            b = ref.get(p) or self.snaps.base_page_hash(p)
            if a != b:
                out.append(p)
        return sorted(out)

    # --- all of it --------------------------------------------------------------------------------------
    def explore(self):
        if self.snapshot is None:
            self.prepare()
        if self.baseline is None:
            self.reference()
        t0 = time.perf_counter()
        points = [self.point(a, s, t) for a, s, t in self.insns]
        elapsed = time.perf_counter() - t0
        self.timings["points_s"] = elapsed
        reached = sum(1 for p in points if p["outcome"] != "not reached")
        return {
            "image": None,
            "at": self.at,
            "irq": self.irq,
            "window": [self.start, self.end],
            "window_symbols": self.labels,
            "no_noirq": self.no_noirq,
            "snapshot_icount": self.snapshot.icount,
            "baseline": self.baseline,
            "points": points,
            "summary": {
                "points": len(points), "reached": reached,
                "delivered": sum(1 for p in points if p["delivered"]),
                "differs": sum(1 for p in points if p["differs"]),
                "console_differs": sum(1 for p in points if p["console_differs"]),
                "seconds": round(elapsed, 6),
            },
        }

    def close(self):
        self.snaps.close()

    def _name(self, addr):
        return self.syms.symbolize(addr) or "%#x" % addr


def irq_state(value):
    """What lguest_data.irq_enabled means to the Host, not its raw bits.

    lguest_iret stores the whole EFLAGS word of the frame it returns to, so
    after any interrupt the word carries arithmetic flags (0x293 rather than
    0x200): the same state.  The Host tests it two ways (maybe_do_interrupt:
    non-zero; set_guest_interrupt: the IF bit), so both are compared.
    """
    if value is None:
        return None
    if value & abi.X86_EFLAGS_IF:
        return "enabled"
    return "disabled" if value == 0 else "nonzero-without-IF"


def _public(outcome):
    return {k: v for k, v in outcome.items() if not k.startswith("_")}


def _ram_hash(m):
    from .core.snapshot import ram_digest
    return ram_digest(m)


def _hex(v):
    return "-" if v is None else "%#x" % v


def _stop_text(stop):
    return stop.kind + ("" if stop.reason is None else " (%s)" % stop.reason)


def _outcome_text(o):
    return o["stop"] if o["reason"] is None or o["stop"] == "budget" else "%s: %s" % (
        o["stop"], o["reason"])


# --- the table ----------------------------------------------------------------------------------------
def render_table(report):
    b = report["baseline"]
    s = report["summary"]
    lines = [
        "explore: irq %d at %d instruction boundaries of %s..%s%s; snapshot at %s (icount %d)"
        % (report["irq"], s["points"], report["window_symbols"][0], report["window_symbols"][1],
           " (noirq window ignored)" if report["no_noirq"] else "",
           report.get("at_symbol") or "%#x" % report["at"], report["snapshot_icount"]),
        "baseline: %s at icount %d, esp %#x, irq_enabled %s, pending %s"
        % (_outcome_text(b), b["icount"], b["esp"], _hex(b["irq_enabled"]),
           ",".join(map(str, b["pending"])) or "none"),
        "",
    ]
    rows = [("OFFSET", "INSTRUCTION", "IRQ", "OUTCOME", "DIFFERS")]
    for p in report["points"]:
        if p["outcome"] == "not reached":
            irq = "-"
        elif p["delivered"]:
            irq = "delivered"
        else:
            irq = "deferred (%s)" % p["reason"]
        notes = []
        if p["console_differs"]:
            notes.append("console")
        if p["memory_pages_differing"]:
            notes.append("%d page%s" % (p["memory_pages_differing"],
                                        "" if p["memory_pages_differing"] == 1 else "s"))
        if p["outcome"] == "not reached":
            differs = "-"
        elif p["differs"]:
            differs = "CORRUPTED: " + "; ".join(p["why"])
        else:
            differs = "no"
        if notes and p["outcome"] != "not reached":
            differs += " (" + ", ".join(notes) + " differ)"
        rows.append((p["symbol"], p["insn"], irq, _clip(p["outcome"], 60), differs))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    lines.append("")
    lines.append("%d points, %d reached, %d delivered, %d corrupted, %d with other console output"
                 % (s["points"], s["reached"], s["delivered"], s["differs"], s["console_differs"]))
    return "\n".join(lines) + "\n"


def _clip(text, n):
    return text if len(text) <= n else text[:n - 3] + "..."
