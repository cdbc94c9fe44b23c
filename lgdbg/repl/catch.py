"""Catchpoints on hypercalls, irqs, traps and kills: catch (gdb: lguest-catch)."""

from ..views import render
from ..core.debugger import CATCH_KINDS
from .session import CommandError


class CatchCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_catch(self, args):
        """catch hcall [NAME|N] | irq [N] | trap [N] | kill | list | delete N: lguest catchpoints."""
        words = args.split()
        if not words or words[0] == "list":
            if len(words) > 1:
                raise CommandError("catch list takes no arguments")
            rows = [{"number": c.number, "kind": c.kind, "arg": c.arg}
                    for c in self.dbg.catchpoints]
            self.say(render.render_catchpoints(rows, self.m.profile))
            return
        kind = words[0]
        if kind == "delete":
            if len(words) < 2:
                raise CommandError("catch delete wants catchpoint numbers")
            numbers = [self.number(w, "catchpoint number") for w in words[1:]]
            known = {c.number for c in self.dbg.catchpoints}
            for n in numbers:
                if n not in known:
                    raise CommandError("no catchpoint number %d" % n)
            for n in numbers:
                self.dbg.delete_catch(n)
            return
        if kind not in CATCH_KINDS:
            raise CommandError("catch what? (%s, list, delete N)" % ", ".join(CATCH_KINDS))
        if len(words) > 2 or (kind == "kill" and len(words) > 1):
            raise CommandError("catch %s takes %s" % (kind, "no argument" if kind == "kill"
                                                       else "at most one argument"))
        arg = None
        if len(words) == 2:
            if kind == "hcall":
                arg = words[1]
            else:
                arg = self.number(words[1], "%s number" % kind, minimum=0)
        cp = self.dbg.add_catch(kind, arg)
        self.say("Catchpoint %d (%s)" % (cp.number, cp.describe()))
