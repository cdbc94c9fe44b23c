"""`monitor ...` commands (qRcmd): Host-side state gdb cannot see by itself.

Every command has a text form for people and a `json ...` form for the gdb
commands in gdb_scripts/, which must print the same data the REPL does: the
JSON is exactly what lgdbg.views.inspect (or Debugger.step_irq) returns.  Command
text is parsed as words, never evaluated.
"""

import json

from .. import abi
from ..views import inspect, pgtable_view, render, virtio_view
from ..errors import UsageError

HELP = """\
lgdbg monitor commands (add `json` in front of a query for machine-readable output):
  monitor lguest status        INIT, lguest_data, noirq window, pending/blocked irqs, halted,
                               virtual time, armed timer, kill reason
  monitor irq                  pending irqs and what maybe_do_interrupt would decide now
  monitor irq raise N          mark irq N pending (as the Launcher's LHREQ_IRQ); delivery is
                               attempted at the next Host entry
  monitor irq clear N          forget a pending irq N
  monitor irq stepping on|off  stepi first runs the Host's delivery attempt (default off)
  monitor hcalls [N]           the last N hypercalls (default 10)
  monitor lguest idt|host|data the Guest's IDT, the Host's state, lguest_data decoded
  monitor step-irq [--until]   deliver one virtual interrupt now (or step until one is)
  monitor catch hcall [NAME|N] | irq [N] | trap [N] | kill    stop when that happens
  monitor catch list | catch delete N
  monitor snapshot save|restore|drop NAME | snapshot list    manual checkpoints (icount clock)
  monitor history on|off|status  checkpoints for reverse-stepi / reverse-continue
  monitor console send TEXT    type TEXT and Enter into the Guest's console; it gets the
                               line the next time it waits for input
  monitor info mem | info tlb  the Guest's current page tables in QEMU's i386 formats
  monitor pgtable [ADDR] [--cr3 N]   ADDR through the Guest's tables next to the Host's
                               shadow entry; without ADDR the four shadow directories
  monitor virtio [DEVICE]      the 3.2 Guest's virtio devices: the device page, each device's
                               status, features and config, each queue's avail/used indices
                               and descriptor chains in flight; DEVICE: index, name or type
  monitor json lguest status|irq|hcalls N|idt|host|data|catch list|step-irq [--until]
  monitor json pgtable [ADDR] [--cr3 N] | virtio [DEVICE]
A failing `json` command answers {"error": MESSAGE}; a failing text command is an error.
After step-irq the registers changed behind gdb's back: run `flushregs`.
"""


class Monitor:
    def __init__(self, machine, debugger):
        self.machine = machine
        self.debugger = debugger

    def run(self, line):
        """Run one command line; returns its text output.  UsageError on misuse."""
        words = line.split()
        if not words or words[0] == "help":
            return HELP
        as_json = words[0] == "json"
        if as_json:
            words = words[1:]
        if words and words[0] == "lguest" and len(words) > 1:
            words = words[1:]           # `lguest status` and `status` are the same query
        if not words:
            raise UsageError("monitor json what? (see `monitor help`)")
        cmd, args = words[0], words[1:]
        if cmd == "catch":
            return self._catch(args, as_json)
        if cmd == "irq" and args:
            return self._irq_action(args)
        if cmd == "snapshot":
            return self._snapshot(args, as_json)
        if cmd == "history":
            return self._history(args, as_json)
        if cmd == "console":
            return self._console(line)
        if cmd == "info" and not as_json:
            return self._info(args)
        if cmd == "pgtable":
            data = self._pgtable(args)
            if as_json:
                return _dump(data)
            return (render.render_pgtable_walk(data, None) if "vaddr" in data
                    else render.render_pgtable_summary(data)) + "\n"
        if cmd == "step-irq":
            until = _flag(args, "--until")
            report = self.debugger.step_irq(until=until)
            return _dump(report) if as_json else render_step_irq(report)
        query = QUERIES.get(cmd)
        if query is None:
            raise UsageError("unknown monitor command %r (see `monitor help`)" % line.strip())
        data = query(self, args)
        return _dump(data) if as_json else RENDER[cmd](data)

    # --- checkpoints ------------------------------------------------------------
    def _snapshot(self, args, as_json):
        history = self.debugger.history or self.debugger.enable_history()
        snaps = history.snaps
        if args == ["list"]:
            rows = snaps.list()
            if as_json:
                return _dump(rows)
            return "".join("%-16s icount %d  eip %#x\n" % (r["name"], r["icount"], r["eip"])
                           for r in rows) or "no snapshots\n"
        if len(args) != 2 or args[0] not in ("save", "restore", "drop"):
            raise UsageError("usage: monitor snapshot save|restore|drop NAME | snapshot list")
        verb, name = args
        if verb == "save":
            snap = snaps.save(name)
            return "saved %s at icount %d\n" % (name, snap.icount)
        if verb == "drop":
            if not snaps.drop(name):
                raise UsageError("no snapshot named %r" % name)
            return "dropped %s\n" % name
        snap = snaps.get(name)
        if snap is None:
            raise UsageError("no snapshot named %r" % name)
        snaps.restore(snap)
        # A jump in time: the checkpoints after it no longer lead here.
        history.forget()
        return "restored %s: icount %d, eip %#x (run `flushregs`)\n" % (
            name, snap.icount, snap.eip)

    def _history(self, args, as_json):
        if args == ["on"]:
            self.debugger.enable_history()
        elif args == ["off"]:
            if self.debugger.history is not None:
                self.debugger.history.close()
            self.debugger.history = None
        elif args not in ([], ["status"]):
            raise UsageError("usage: monitor history on|off|status")
        h = self.debugger.history
        data = {"on": h is not None, "checkpoints": len(h.points) if h else 0,
                "oldest_icount": h.points[0].icount if h and h.points else None}
        if as_json:
            return _dump(data)
        if not data["on"]:
            return "reverse execution is off\n"
        return "reverse execution is on: %d checkpoints, oldest at icount %s\n" % (
            data["checkpoints"], data["oldest_icount"])

    # --- queries: lgdbg.views.inspect data ---------------------------------------------
    def _console(self, line):
        rest = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
        if rest.split()[:1] != ["send"]:
            raise UsageError("monitor console send TEXT")
        text = rest.strip()[len("send"):].lstrip()
        self.machine.launcher.input.send(text.encode("latin-1", "replace") + b"\n")
        return "queued %d bytes for the Guest's console\n" % (len(text) + 1)

    def _info(self, args):
        # QEMU's monitor words, for front ends that parse its output.
        if args == ["mem"]:
            return pgtable_view.info_mem(self.machine) or "(nothing mapped)\n"
        if args == ["tlb"]:
            return pgtable_view.info_tlb(self.machine) or "(nothing mapped)\n"
        raise UsageError("usage: monitor info mem | monitor info tlb")

    def _pgtable(self, args):
        addr, cr3 = pgtable_view.parse_args(args)
        if addr is None:
            return pgtable_view.summary(self.machine)
        return pgtable_view.walk(self.machine, addr, cr3)

    def _status(self, args):
        _no_args(args)
        return inspect.status(self.machine)

    def _irq(self, args):
        return inspect.irq_decision(self.machine)

    def _hcalls(self, args):
        count = _int(args[0]) if args else 10
        if len(args) > 1 or count < 0:
            raise UsageError("usage: monitor hcalls [N]")
        return inspect.hcalls(self.machine, count)

    def _idt(self, args):
        _no_args(args)
        return inspect.idt(self.machine)

    def _host(self, args):
        _no_args(args)
        return inspect.host_state(self.machine)

    def _virtio(self, args):
        if len(args) > 1:
            raise UsageError("usage: monitor virtio [DEVICE]")
        info = inspect.virtio(self.machine)
        try:
            return virtio_view.select(info, args[0] if args else None)
        except ValueError as e:
            raise UsageError(str(e))

    def _data(self, args):
        version = args[0] if args else abi.profile(self.machine.profile).layout
        if version not in abi.LAYOUTS:
            raise UsageError("unknown lguest_data layout %r (%s)"
                             % (version, ", ".join(sorted(abi.LAYOUTS))))
        return inspect.lguest_data(self.machine, version)

    # --- actions -------------------------------------------------------------------
    def _irq_action(self, args):
        action = args[0]
        if action == "stepping":
            if len(args) != 2 or args[1] not in ("on", "off"):
                raise UsageError("usage: monitor irq stepping on|off")
            self.debugger.irq_stepping = args[1] == "on"
            return "irq stepping %s\n" % args[1]
        if action in ("raise", "clear") and len(args) == 2:
            irq = _int(args[1])
            if action == "raise":
                self.machine.raise_irq(irq, source="monitor")
                return "irq %d pending; delivery is attempted at the next Host entry\n" % irq
            self.machine.clear_irq(irq)
            return "irq %d no longer pending\n" % irq
        raise UsageError("usage: monitor irq [raise N | clear N | stepping on|off]")

    def _catch(self, args, as_json):
        dbg = self.debugger
        if not args or args[0] == "list":
            rows = [{"number": c.number, "kind": c.kind, "arg": c.arg,
                     "what": c.describe()} for c in dbg.catchpoints]
            if as_json:
                return _dump(rows)
            return "".join("Catchpoint %d: %s\n" % (r["number"], r["what"]) for r in rows) \
                or "No catchpoints.\n"
        if args[0] == "delete":
            if len(args) != 2:
                raise UsageError("usage: monitor catch delete N")
            n = _int(args[1])
            if not dbg.delete_catch(n):
                raise UsageError("no catchpoint %d" % n)
            return _dump({"deleted": n}) if as_json else "Deleted catchpoint %d\n" % n
        kind, rest = args[0], args[1:]
        if len(rest) > 1 or (kind == "kill" and rest):
            raise UsageError("usage: monitor catch hcall [NAME|N] | irq [N] | trap [N] | kill")
        arg = None
        if rest:
            arg = rest[0] if kind == "hcall" else _int(rest[0])
        cp = dbg.add_catch(kind, arg)
        if as_json:
            return _dump({"number": cp.number, "kind": cp.kind, "arg": cp.arg,
                          "what": cp.describe()})
        return "Catchpoint %d (%s)\n" % (cp.number, cp.describe())


QUERIES = {"status": Monitor._status, "irq": Monitor._irq, "hcalls": Monitor._hcalls,
           "idt": Monitor._idt, "host": Monitor._host, "data": Monitor._data,
           "virtio": Monitor._virtio}


def _dump(data):
    return json.dumps(data, sort_keys=True) + "\n"


def _int(text):
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError("%r is not a number" % text)


def _no_args(args):
    if args:
        raise UsageError("unexpected %r" % " ".join(args))


def _flag(args, name):
    if any(a != name for a in args):
        raise UsageError("usage: monitor step-irq [--until]")
    return bool(args)


def _hex(v):
    return "-" if v is None else "%#x" % v


def _irqs(lst):
    return ", ".join(map(str, lst)) if lst else "none"


# --- text renderings (the gdb-side commands render the JSON their own way) ----------
def render_status(s):
    lines = [
        "LGUEST_INIT:   %s" % ("done" if s["init"] else "not yet"),
        "lguest_data:   %s" % _hex(s["lguest_data"]),
        "noirq window:  [%s, %s)%s" % (_hex(s["noirq_start"]), _hex(s["noirq_end"]),
                                       "  (EIP inside)" if s["in_noirq"] else ""),
        "pending irqs:  %s" % _irqs(s["pending"]),
        "blocked irqs:  %s" % _irqs(s["blocked"]),
        "halted:        %s" % ("yes" if s["halted"] else "no"),
        "virtual time:  %d ns (icount %s)" % (s["time_ns"], s["icount"]),
        "ABI:           %s (lguest_data layout %s)" % (s["abi"], s["layout"]),
        "timer:         %s" % ("armed for %d ns" % s["clock_deadline_ns"]
                               if s["clock_deadline_ns"] is not None else "not armed"),
        "killed:        %s" % (s["dead"] or "no"),
    ]
    return "\n".join(lines) + "\n"


def render_irq(d):
    return "pending: %s  blocked: %s\n%s\n" % (_irqs(d["pending"]), _irqs(d["blocked"]),
                                              "\n".join(d["steps"]))


def render_hcalls(rows):
    if not rows:
        return "No hypercalls yet.\n"
    out = []
    for e in rows:
        args = " ".join("%#x" % a for a in e.get("args", []))
        out.append("%10s  %-15s %s  eip %s%s" % (e.get("icount", "-"), e.get("name"), args,
                                                 _hex(e.get("eip")),
                                                 "  (async)" if e.get("async") else ""))
    return "\n".join(out) + "\n"


def render_idt(rows):
    if not rows:
        return "No IDT entries loaded.\n"
    return "".join("vector %#04x  %-9s dpl %d  handler %#x%s%s\n"
                   % (r["vector"], r["type"], r["dpl"], r["handler"],
                      "  (irq %d)" % r["irq"] if r["irq"] is not None else "",
                      "  (direct trap)" if r.get("direct") else "") for r in rows)


def render_mapping(d):
    if d is None:
        return "lguest_data is not registered yet (no LGUEST_INIT).\n"
    out = []
    for k in sorted(d):
        v = d[k]
        out.append("%-18s %s" % (k, "%#x" % v if isinstance(v, int) and not isinstance(v, bool)
                                 else v))
    return "\n".join(out) + "\n"


def render_step_irq(r):
    if r.get("delivered"):
        lines = ["delivered irq %s: %s -> handler %s%s" % (
            r.get("irq"), _hex(r.get("from_eip")), _hex(r.get("handler")),
            " through an %s gate" % r["gate"] if r.get("gate") else "")]
        if "frame" in r:
            f = r["frame"]
            lines.append("frame at %s: eip %#x cs %#x eflags %#x (IF %s)%s" % (
                _hex(r.get("frame_at")), f["eip"], f["cs"], f["eflags"],
                "on" if f["if"] else "off",
                " esp %#x ss %#x" % (f["esp"], f["ss"]) if "esp" in f else ""))
        if "irq_enabled_before" in r:
            lines.append("irq_enabled %#x -> %#x" % (r["irq_enabled_before"],
                                                     r["irq_enabled_after"]))
    else:
        lines = ["not delivered: %s" % r.get("why_not")]
    if r.get("steps"):
        lines.append("after %d instruction(s)" % r["steps"])
    for c in r.get("changes", []):
        lines.append("  after %d: %s at %#x%s" % (c["after"], c["verdict"], c["eip"],
                                                  ": " + c["detail"] if c.get("detail") else ""))
    return "\n".join(lines) + "\n"


def render_virtio(d):
    return "\n".join(virtio_view.render(d)) + "\n"


RENDER = {"status": render_status, "irq": render_irq, "hcalls": render_hcalls,
          "idt": render_idt, "host": render_mapping, "data": render_mapping,
          "virtio": render_virtio}
