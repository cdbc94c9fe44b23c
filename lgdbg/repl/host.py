"""The Host's records: hcalls, idt, host, status (gdb: lguest-hcalls, lguest-idt, lguest-host, lguest-status)."""

from ..views import inspect, render
from .session import CommandError


class HostCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_hcalls(self, args):
        """hcalls [N]: the last N hypercalls (default 10) with decoded arguments."""
        n = self.number(args, "hcalls count", minimum=0) if args else 10
        self.say(render.render_hcalls(inspect.hcalls(self.m, n), self.sym))

    def cmd_idt(self, args):
        """idt: the IDT entries the guest loaded with LOAD_IDT_ENTRY."""
        if args:
            raise CommandError("idt takes no arguments")
        self.say(render.render_idt(inspect.idt(self.m), self.sym))

    def cmd_host(self, args):
        """host: the Host-side state: GDT, kernel stack, TS, irqs, halted, clock, Host tick."""
        if args:
            raise CommandError("host takes no arguments")
        self.say(render.render_host(inspect.host_state(self.m), self.sym))

    def cmd_status(self, args):
        """status: a short summary of the lguest state (as `monitor lguest status`)."""
        if args:
            raise CommandError("status takes no arguments")
        self.say(render.render_status(inspect.status(self.m), self.sym))
