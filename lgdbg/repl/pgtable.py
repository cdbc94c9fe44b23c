"""Page tables: pgtable, the Guest's walk beside the Host's shadow (gdb: lguest-pgtable)."""

from ..views import pgtable_view, render
from ..errors import UsageError
from .session import CommandError


class PgtableCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_pgtable(self, args):
        """pgtable [ADDR] [--cr3 N]: ADDR through the Guest's page tables beside the
        Host's shadow entry; without ADDR the Host's four shadow page directories."""
        words = args.split()
        cr3 = None
        if "--cr3" in words:
            i = words.index("--cr3")
            if i + 1 >= len(words):
                raise CommandError("--cr3 wants the physical address of a page directory")
            cr3 = self.address(words[i + 1])
            del words[i:i + 2]
        if len(words) > 1:
            raise CommandError("usage: pgtable [ADDR] [--cr3 N]")
        try:
            addr, cr3 = pgtable_view.parse_args(
                ["%#x" % self.address(w) for w in words]
                + ([] if cr3 is None else ["--cr3", "%#x" % cr3]))
        except UsageError as e:
            raise CommandError(str(e))
        if addr is None:
            self.say(render.render_pgtable_summary(pgtable_view.summary(self.m)))
        else:
            self.say(render.render_pgtable_walk(pgtable_view.walk(self.m, addr, cr3), self.sym))
