"""Names for guest addresses, from the image given with `--image`.

A thin view over lgdbg.views.symbols (the one ELF symbol reader): hex for what it
cannot name, and where lguest_iret's return path lies.  Without an image
every address is printed in hex and the lguest_iret returns are not marked
(the trace alone cannot tell where that code is).
"""

from ..errors import UsageError


class TimelineSymbols:
    def __init__(self, symbols):
        self._symbols = symbols
        self.by_name = symbols.by_name

    def name(self, addr):
        """'sym', 'sym+28' or '0xc0100123'."""
        return self._symbols.symbolize(addr) or "%#x" % addr

    def iret_window(self):
        """[start, end) of the code that returns from an interrupt, or None.

        lguest_iret restores irq_enabled and irets; the Host never delivers
        between lguest_noirq_start and lguest_noirq_end.  An event whose eip
        lies anywhere from lguest_iret to lguest_noirq_end shows a handler
        on its way out.
        """
        end = self.by_name.get("lguest_noirq_end")
        start = self.by_name.get("lguest_iret", self.by_name.get("lguest_noirq_start"))
        if start is None or end is None or end <= start:
            return None
        return (start, end)


def load_symbols(path):
    """Read the image's symbol table; UsageError when it cannot or has none."""
    from ..views.symbols import Symbols
    symbols = Symbols(path)
    if not symbols.by_name:
        raise UsageError("image %s has no symbols (stripped?)" % path)
    return TimelineSymbols(symbols)
