"""Registers and memory: regs, x/FMT, disas (capstone, loaded on first use)."""

import re
import struct

from .. import abi
from ..views import render
from .session import CommandError


EFLAGS_BITS = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
               (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"),
               (19, "VIF"), (20, "VIP"), (21, "ID"))
RINGS = {0: "ring 0 (the Host's level)", 1: "ring 1 (the Guest kernel, as lguest runs it)",
         2: "ring 2 (unused by lguest)", 3: "ring 3 (Guest user mode)"}

X_SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}
X_FORMATS = "xduotacfsi"
X_PER_LINE = {1: 8, 2: 8, 4: 4, 8: 2}
X_MAX_UNITS = 4096


class MemoryCommands:
    """Mixed into repl.commands.Commands."""

    def _insn_line(self, row, current, mode="sym", func_start=None):
        a, _size, text = row
        mark = "=> " if a == current else "   "
        if mode == "offset" and func_start is not None:
            where = "%#010x <+%d>" % (a, a - func_start)
        else:
            name = self.sym(a)
            where = "%#010x <%s>" % (a, name) if name else "%#010x" % a
        return "%s%s:\t%s" % (mark, where, text)

    def disassemble(self, addr, count):
        from ..views.disasm import disassemble
        code = self.read_partial(addr, 16 * count)
        rows = disassemble(code, addr, count)
        if not rows:
            raise CommandError("cannot disassemble at %#x" % addr)
        return rows

    # ------------------------------------------------------------------ breakpoints
    def cmd_regs(self, args):
        """regs: the registers, EFLAGS decoded, selectors decoded, the privilege level."""
        if args:
            raise CommandError("regs takes no arguments")
        self.say(self.render_regs())

    def render_regs(self):
        r = self.m.cpu.regs()
        out = []
        for row in (("eax", "ebx", "ecx", "edx"), ("esi", "edi", "ebp", "esp")):
            out.append("  ".join("%-3s %#010x" % (n, r[n]) for n in row))
        out.append("eip %s" % render.addr(r["eip"], self.sym))
        fl = r["eflags"]
        names = [n for bit, n in EFLAGS_BITS if fl & (1 << bit)]
        out.append("eflags %#010x [ %s ] IOPL %d" % (fl, " ".join(names), (fl >> 12) & 3))
        for seg in ("cs", "ss", "ds", "es", "fs", "gs"):
            sel = r[seg]
            out.append("%s %#06x  index %d, %s, RPL %d" % (seg, sel, sel >> 3,
                                                          "LDT" if sel & 4 else "GDT", sel & 3))
        cpl = r["cs"] & 3
        out.append("privilege level: %d, %s" % (cpl, RINGS[cpl]))
        ld = self.m.host.lguest_data
        if ld is not None:
            enabled = self.m.mem.read_u32(ld + abi.LD_IRQ_ENABLED)
            out.append("virtual IF (lguest_data.irq_enabled): %#x (%s)"
                       % (enabled, "enabled" if enabled else "disabled"))
        return "\n".join(out)

    def cmd_x(self, args):
        """x/FMT ADDR: examine memory like gdb: x/4xw $esp, x/8xb ADDR, x/s ADDR, x/3i $pc.

        FMT is a count, a format (x d u o t a c f s i) and a size (b h w g); the
        format and size stick, and `x` alone goes on where the last one ended."""
        fmt = ""
        if args.startswith("/"):
            m = re.match(r"/(\S*)\s*(.*)$", args, re.S)
            fmt, args = m.group(1), m.group(2).strip()
        mm = re.fullmatch(r"(\d*)([a-z]*)", fmt)
        if not mm:
            raise CommandError("bad x format %r: COUNT then letters, as in x/4xw" % fmt)
        count = int(mm.group(1)) if mm.group(1) else 1
        letters = mm.group(2)
        form, size = self._x_fmt, None
        for ch in letters:
            if ch in X_SIZES:
                size = X_SIZES[ch]
            elif ch in X_FORMATS:
                form = ch
            else:
                raise CommandError("bad x format letter %r (formats %s, sizes bhwg)"
                                   % (ch, X_FORMATS))
        if size is None:
            size = {"a": 4, "c": 1}.get(form, self._x_size if form not in "ac" else 4)
            if form not in "acsi" and self._x_fmt in "ac" and self._x_size != 4:
                size = self._x_size
        if form == "f" and size not in (4, 8):
            size = 8 if "g" in letters else 4
        if count < 1 or count * size > X_MAX_UNITS * 8:
            raise CommandError("x: count must be between 1 and %d" % X_MAX_UNITS)
        if args:
            addr = self.address(args)
        elif self._x_next is not None:
            addr = self._x_next
        else:
            raise CommandError("x wants an address (for example x/4xw $esp)")
        if form == "i":
            lines, nxt = self._x_insns(addr, count)
        elif form == "s":
            lines, nxt = self._x_strings(addr, count)
        else:
            lines, nxt = self._x_units(addr, count, form, size)
        self._x_fmt = form
        if form not in "si":
            self._x_size = size
        self._x_next = nxt
        self.say("\n".join(lines))

    def _label(self, addr):
        name = self.sym(addr)
        return "%#010x <%s>:" % (addr, name) if name else "%#010x:" % addr

    def _x_units(self, addr, count, form, size):
        raw = self.read(addr, count * size)
        per = 8 if form == "c" else X_PER_LINE[size]
        lines = []
        for i in range(0, count, per):
            cells = []
            for j in range(i, min(i + per, count)):
                chunk = raw[j * size:(j + 1) * size]
                cells.append(self._format_unit(chunk, form, size))
            lines.append(self._label(addr + i * size) + "\t" + "\t".join(cells))
        return lines, addr + count * size

    def _format_unit(self, chunk, form, size):
        u = int.from_bytes(chunk, "little")
        if form == "x":
            return "0x%0*x" % (2 * size, u)
        if form == "d":
            return "%d" % int.from_bytes(chunk, "little", signed=True)
        if form == "u":
            return "%d" % u
        if form == "o":
            return "0%o" % u if u else "0"
        if form == "t":
            return format(u, "0%db" % (8 * size))
        if form == "a":
            return render.addr(u, self.sym)
        if form == "c":
            v = int.from_bytes(chunk[:1], "little", signed=True)
            c = chunk[0]
            shown = chr(c) if 32 <= c < 127 else "\\%03o" % c
            return "%d '%s'" % (v, shown.replace("'", "\\'"))
        if form == "f":
            return repr(struct.unpack("<f" if size == 4 else "<d", chunk)[0])
        raise CommandError("bad format %r" % form)

    def _x_strings(self, addr, count):
        lines = []
        for _ in range(count):
            raw = bytearray()
            a = addr
            while len(raw) < 200:
                b = self.read(a, 1)[0] if not raw else self._read_byte(a)
                if b is None or b == 0:
                    break
                raw.append(b)
                a += 1
            text = "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else
                           {10: "\\n", 9: "\\t", 34: '\\"', 92: "\\\\"}.get(c, "\\%03o" % c)
                           for c in raw)
            lines.append('%s\t"%s"%s' % (self._label(addr), text, "..." if len(raw) >= 200 else ""))
            addr = a + 1
        return lines, addr

    def _read_byte(self, a):
        try:
            return self.m.read_memory(a, 1)[0]
        except Exception:
            return None

    def _x_insns(self, addr, count):
        rows = self.disassemble(addr, count)
        eip = self.m.cpu.reg("eip")
        lines = [self._insn_line(r, eip) for r in rows]
        last = rows[-1]
        return lines, last[0] + last[1]

    def cmd_disas(self, args):
        """disas [ADDR] [N]: disassemble (capstone, Intel syntax) with symbols.

        Without N: the whole function around ADDR (default EIP); with N: N
        instructions from ADDR.  The current instruction is marked =>."""
        words = args.split()
        count = None
        if len(words) >= 2:
            try:
                count = int(words[-1], 0)
                words = words[:-1]
            except ValueError:
                pass
        if count is not None and not 1 <= count <= 10000:
            raise CommandError("disas: N must be between 1 and 10000")
        if len(words) == 1 and count is None and re.fullmatch(r"\d+", words[0]) \
                and int(words[0]) < 0x1000:
            count, words = int(words[0]), []        # `disas 5`: 5 from EIP
        addr = self.address(" ".join(words)) if words else self.m.cpu.reg("eip")
        eip = self.m.cpu.reg("eip")
        if count is None:
            func = self.function_at(addr)
            if func is not None:
                name, start, end = func
                rows = self._disas_range(start, end)
                out = ["Dump of assembler code for function %s:" % name]
                out += [self._insn_line(r, eip, mode="offset", func_start=start) for r in rows]
                out.append("End of assembler dump.")
                self.say("\n".join(out))
                return
            count = 10
        rows = self.disassemble(addr, count)
        self.say("\n".join(self._insn_line(r, eip) for r in rows))

    def _disas_range(self, start, end):
        from ..views.disasm import disassemble
        code = self.read(start, max(1, end - start))
        rows = disassemble(code, start, 2000)
        return rows or [(start, 1, "(bad)")]

    def function_at(self, addr):
        """(name, start, end) of the function containing addr, from ELF sizes."""
        if self._funcs is None:
            self._funcs = self._load_functions()
        best = None
        for name, start, size in self._funcs:
            if start <= addr < start + size and (best is None or start > best[1]):
                best = (name, start, start + size)
        if best is None and self.symbols is not None:
            name = self.symbols.symbolize(addr)
            if name:
                base = name.split("+")[0]
                start = self.symbols.by_name[base]
                later = sorted(a for a in set(self.symbols.by_name.values()) if a > start)
                end = later[0] if later else start + 64
                if end - start <= 4096:
                    best = (base, start, end)
        return best

    def _load_functions(self):
        funcs = []
        if not self.image_path:
            return funcs
        try:
            from elftools.elf.elffile import ELFFile
            with open(self.image_path, "rb") as f:
                symtab = ELFFile(f).get_section_by_name(".symtab")
                for s in (symtab.iter_symbols() if symtab else ()):
                    if s["st_info"]["type"] == "STT_FUNC" and s["st_size"] and s.name:
                        funcs.append((s.name, s["st_value"], s["st_size"]))
        except Exception:
            return []
        return funcs

    # ------------------------------------------------------------------ lguest state
