"""Virtual interrupts: irq [raise|clear|stepping], step-irq (gdb: lguest-irq, lguest-step-irq)."""

from ..views import inspect, render
from .session import CommandError


class IrqCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_step_irq(self, args):
        """step-irq [--until]: deliver one virtual interrupt now, or say why not.

        With --until, step instructions until the Host delivers one, reporting
        each change of its reason (the same words as gdb's lguest-step-irq)."""
        words = args.split()
        if any(w != "--until" for w in words):
            raise CommandError("step-irq takes only --until")
        report = self.dbg.step_irq(until=bool(words))
        self.say(render.render_step_irq(report, self.sym))
        self.show_location()

    def cmd_irq(self, args):
        """irq [raise N | clear N | stepping on|off]: pending irqs and what the Host would decide."""
        words = args.split()
        if words:
            sub = words[0]
            if sub in ("raise", "clear"):
                if len(words) != 2:
                    raise CommandError("irq %s wants one irq number" % sub)
                n = self.number(words[1], "irq")
                if sub == "raise":
                    self.m.raise_irq(n)
                    self.say("irq %d raised (pending; delivery is tried at the next Host entry)" % n)
                else:
                    self.m.clear_irq(n)
                    self.say("irq %d cleared" % n)
            elif sub == "stepping":
                if len(words) != 2 or words[1] not in ("on", "off"):
                    raise CommandError("irq stepping on|off")
                self.dbg.irq_stepping = words[1] == "on"
                self.say("interrupt delivery while single-stepping: %s" % words[1])
                return
            else:
                raise CommandError("irq [raise N | clear N | stepping on|off]")
        self.say(render.render_irq_decision(inspect.irq_decision(self.m), self.sym))
