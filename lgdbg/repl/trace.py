"""The Host's events and the Guest's console: trace, console."""

from .. import abi
from ..views import render
from .session import CommandError


class TraceCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_trace(self, args):
        """trace on|off: print the Host's events (hypercalls, irqs, traps...) as they happen."""
        if args not in ("on", "off"):
            raise CommandError("trace on|off")
        self.tracing = args == "on"
        self.say("tracing %s" % args)

    def describe_event(self, e):
        kind = e.get("kind")
        head = ("%10s " % e["icount"]) if "icount" in e else ""
        a = lambda v: render.addr(v, self.sym)            # noqa: E731
        if kind == "hcall":
            # The words of `hcalls` and gdb's lguest-hcalls (lgdbg.views.render).
            call = render._describe_call(e["nr"], list(e["args"]), self.sym, name=e.get("name"))
            text = "hcall %s at %s%s" % (call, a(e["eip"]),
                                         " (async)" if e.get("async") else "")
        elif kind == "irq":
            text = "irq %d delivered: vector %#x through an %s gate to %s, interrupted %s" % (
                e["irq"], e["vector"], e["gate"], a(e["handler"]), a(e["from_eip"]))
        elif kind == "irq-deferred":
            text = "irq %d deferred (%s) at %s" % (e["irq"], e["reason"], a(e["eip"]))
        elif kind == "trap":
            name = abi.TRAP_NAMES.get(e["vector"], "")
            text = "trap %d%s errcode %#x at %s%s%s" % (
                e["vector"], " " + name if name else "", e.get("errcode", 0), a(e["eip"]),
                " cr2 %#x" % e["cr2"] if e.get("cr2") is not None else "",
                (" (direct: the CPU, no Host entry)" if e.get("direct") else "")
                if e.get("delivered") else (" (emulated)" if e.get("emulated")
                                            else " (not delivered)"))
        elif kind == "raise":
            text = "irq %d raised (%s)" % (e["irq"], e["source"])
        elif kind == "clock":
            text = "clock fired" if e.get("fired") else (
                "clock armed for %d ns" % e["armed"] if e.get("armed") else "clock stopped")
        elif kind == "kill":
            text = "kill: %s" % e["reason"]
        elif kind == "console":
            text = "console %r" % e.get("text")
        else:
            rest = {k: v for k, v in e.items() if k not in ("kind", "icount", "time_ns")}
            text = kind + ("" if not rest else " " + " ".join("%s=%s" % kv for kv in rest.items()))
        return head + text

    def cmd_console(self, args):
        """console [send TEXT]: the guest's console output so far, or type TEXT
        (and Enter) into its console; it gets the line when it next waits for input."""
        if args.split()[:1] == ["send"]:
            text = args.strip()[len("send"):].lstrip()
            self.m.launcher.input.send(text.encode("latin-1", "replace") + b"\n")
            self.say("queued %d bytes for the guest's console" % (len(text) + 1))
            return
        if args:
            raise CommandError("console takes no arguments but `send TEXT`")
        text = "".join(self.console_text)
        if not text:
            self.say("(the guest has printed nothing yet)")
        else:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    # ------------------------------------------------------------------ journey
