"""lguest-pgtable: an address through the Guest's page tables, next to the
Host's shadow entry for it (lgdbg's stub keeps both)."""

import gdb

from lgdbg import render

from .common import LguestCommand, eval_address, host_state, sym, write


class LguestPgtable(LguestCommand):
    """Show how an address is mapped: the Guest's walk and the Host's shadow.

Usage: lguest-pgtable [ADDR] [--cr3 N]

With ADDR (any address expression): the Guest's page directory entry and page
table entry for it, their flags, the physical page, which part of the address
space it is in, and the Host's shadow entry beside them: not faulted in yet,
read-only until dirty, writable, or stale (the shadow disagrees with the
Guest's entry, as after a PTE change the Host was not told about).  --cr3
walks another toplevel (a physical address) instead of the current one.
Without ADDR: the Host's four shadow page directories, which Guest cr3 each
stands for, how many entries are filled, which is current.
Needs lgdbg's stub."""

    NAME = "lguest-pgtable"
    CLASS = gdb.COMMAND_DATA

    def run(self, argv, from_tty):
        cr3 = None
        if "--cr3" in argv:
            i = argv.index("--cr3")
            if i + 1 >= len(argv):
                self.usage("--cr3 wants the physical address of a page directory")
            cr3 = eval_address(argv[i + 1], self.NAME)
            argv = argv[:i] + argv[i + 2:]
        if len(argv) > 1:
            self.usage("one address at most (quote an expression with spaces)")
        if not argv:
            write(render.render_pgtable_summary(host_state("pgtable", self.NAME)))
            return
        what = "pgtable %#x" % eval_address(argv[0], self.NAME)
        if cr3 is not None:
            what += " --cr3 %#x" % cr3
        write(render.render_pgtable_walk(host_state(what, self.NAME), sym))


def register():
    LguestPgtable()
