"""`load` and `compare-sections` on lgdbg's stub: refused, with the reason.

Both use each section's LOAD address (an lguest image's .text loads at
physical 0x100000 and runs at 0xc0100000).  lgdbg's stub serves the Guest's
VIRTUAL addresses only, like every other memory access: once the Guest has
page tables, an address below page_offset is the running process's, so
"physical 0x100000" has no single meaning.  gdb itself can only say "Load
failed" or "target memory fault" then; these pre-hooks say why, first.
An image linked with page_offset 0 (load address = link address) passes.
"""

import gdb

from .common import LguestCommand, host_state, on_lgdbg_stub

WHY = ("lgdbg: `%s` uses the sections' load (physical) addresses, but lgdbg's stub "
       "serves only the Guest's virtual addresses (this image runs at load address + "
       "%#x): below that, an address belongs to the running process, not to physical "
       "memory.  %s")
INSTEAD = {
    "load": "To run another image, start `lgdbg serve IMAGE` (or `lgdbg gdb IMAGE`) "
            "with it.",
    "compare-sections": "Reads, writes and qCRC work at the sections' link "
                        "(virtual) addresses, which `info files` lists.",
}


class LguestLoadAddresses(LguestCommand):
    """Refuse `load`/`compare-sections` on lgdbg's stub, saying why (their pre-hook).

Usage: lguest-load-addresses load|compare-sections"""

    NAME = "lguest-load-addresses"
    CLASS = gdb.COMMAND_FILES

    def run(self, argv, from_tty):
        if len(argv) != 1 or argv[0] not in INSTEAD:
            self.usage()
        if not on_lgdbg_stub():
            return                   # another target: gdb's own behaviour
        page_offset = host_state("lguest status", self.NAME).get("page_offset") or 0
        if page_offset:
            raise gdb.GdbError(WHY % (argv[0], page_offset, INSTEAD[argv[0]]))


def register():
    LguestLoadAddresses()
    for command in INSTEAD:
        gdb.execute("define hook-%s\nlguest-load-addresses %s\nend" % (command, command),
                    to_string=True)
