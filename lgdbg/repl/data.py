"""lguest_data and the noirq window: data, noirq (gdb: lguest-data, lguest-noirq)."""

from .. import abi
from ..views import render
from .session import CommandError


class DataCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_data(self, args):
        """data [ADDR] [--layout 2.6.23|2.6.24|3.2]: struct lguest_data field by field.

        The layout is the running Guest's ABI's (its profile) unless --layout says."""
        words = args.split()
        profile = self.m.profile
        version = abi.profile(profile).layout
        if "--layout" in words:
            i = words.index("--layout")
            if i + 1 >= len(words):
                raise CommandError("--layout wants one of %s" % ", ".join(sorted(abi.LAYOUTS)))
            version = words[i + 1]
            del words[i:i + 2]
        if version not in abi.LAYOUTS:
            raise CommandError("unknown layout %r (%s)" % (version, ", ".join(sorted(abi.LAYOUTS))))
        if words:
            addr = self.address(" ".join(words))
        elif self.m.host.lguest_data is not None:
            addr = self.m.host.lguest_data + self.m.host.page_offset
        elif self.symbols is not None and "lguest_data" in self.symbols.by_name:
            addr = self.symbols.by_name["lguest_data"]
        else:
            raise CommandError("lguest_data is not registered yet (no LGUEST_INIT) "
                               "and the image has no lguest_data symbol: give an ADDR")
        raw = self.read(addr, abi.layout(version)["size"])
        decoded = abi.decode_lguest_data(raw, version)
        # The ring's call numbers are the running Guest's, whatever layout was asked.
        self.say(render.render_lguest_data(decoded, addr, self.window_sym(), version, profile))

    def cmd_noirq(self, args):
        """noirq: is EIP inside the noirq window?  The window disassembled, EIP marked."""
        if args:
            raise CommandError("noirq takes no arguments")
        host = self.m.host
        eip = self.m.cpu.reg("eip")
        start, end = host.noirq_start, host.noirq_end
        rows = []
        if start or end:
            # From the start of the function holding the window, so the
            # instructions that lead into it show too.
            func = self.function_at(start)
            first = func[1] if func and func[1] <= start else start
            last = max(end, func[2]) if func else end
            # A kernel's lguest_noirq_start is a label of its own inside
            # lguest_iret (a plain label too, without a size): start there.
            iret = self.symbols.by_name.get("lguest_iret") if self.symbols else None
            if iret is not None and 0 <= start - iret <= 64 and iret < first:
                first = iret
            rows = [(a, text) for a, _, text in self._disas_range(first, min(last, first + 256))]
        self.say(render.render_noirq(eip, start, end, self.sym, rows, self.window_sym()))

    def window_sym(self):
        """self.sym, but the window's labels name their own addresses (see
        render.prefer_labels): the same names as gdb's lguest-noirq."""
        names = self.symbols.by_name if self.symbols is not None else {}
        return render.prefer_labels(self.sym, names.get)
