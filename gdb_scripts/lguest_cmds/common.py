"""What every lguest-* command shares: symbols and memory through gdb, the
Host's state through lgdbg's stub (`monitor json ...`), and error handling.

Preconditions are small functions that raise gdb.GdbError with a sentence
saying what to do; every command's invoke goes through LguestCommand, which
turns the errors of lgdbg's own modules into gdb.GdbError too, so a user
never sees a Python traceback and MI reports ^error, not ^done.
"""

import json
import re

import gdb

from lgdbg import abi
from lgdbg.errors import LgdbgError

COMMANDS = []          # (name, first docstring line), in registration order


class LguestCommand(gdb.Command):
    """Base class: subclasses set NAME (and CLASS) and define run(argv, from_tty)."""

    NAME = None
    CLASS = gdb.COMMAND_DATA
    COMPLETE = gdb.COMPLETE_NONE

    def __init__(self):
        if hasattr(self, "complete"):       # gdb calls complete() only without a class
            super().__init__(self.NAME, self.CLASS)
        else:
            super().__init__(self.NAME, self.CLASS, self.COMPLETE)
        COMMANDS.append((self.NAME, (self.__doc__ or "").strip().splitlines()[0]))

    def invoke(self, arg, from_tty):
        try:
            argv = gdb.string_to_argv(arg)
        except Exception as e:      # unbalanced quotes
            raise gdb.GdbError("%s: %s" % (self.NAME, e))
        try:
            self.run(argv, from_tty)
        except gdb.GdbError:
            raise
        except gdb.MemoryError as e:
            raise gdb.GdbError("%s: cannot read guest memory: %s" % (self.NAME, e))
        except LgdbgError as e:
            raise gdb.GdbError("%s: %s" % (self.NAME, e))
        except gdb.error as e:
            raise gdb.GdbError("%s: %s" % (self.NAME, e))
        except (ValueError, KeyError) as e:
            raise gdb.GdbError("%s: %s" % (self.NAME, e))

    def run(self, argv, from_tty):
        raise NotImplementedError

    def usage(self, problem=None):
        first = (self.__doc__ or "").strip().splitlines()
        text = next((l.strip() for l in first if l.strip().startswith("Usage:")), "")
        raise gdb.GdbError("%s%s" % ((problem + ". ") if problem else "", text or
                                     "see `help %s`" % self.NAME))


def write(text):
    gdb.write(text if text.endswith("\n") else text + "\n")


# --------------------------------------------------------------- symbols

def need_symbols(command):
    if gdb.current_progspace().filename is None:
        raise gdb.GdbError("%s: no guest image loaded: load its symbols with `file IMAGE` "
                           "(for example lgdbg/images/iret.elf)" % command)


def symbol_address(name):
    """Address of a global or minimal symbol, or None."""
    try:
        return int(gdb.parse_and_eval("(unsigned long)&%s" % name)) & 0xFFFFFFFF
    except gdb.error:
        return None


_INFO_SYMBOL = re.compile(r"^(\S+)(?: \+ (\d+))? in section")


def sym(address):
    """'name+off' for an address, as gdb's `info symbol` finds it, or None."""
    if address is None:
        return None
    try:
        text = gdb.execute("info symbol %#x" % address, to_string=True)
    except gdb.error:
        return None
    m = _INFO_SYMBOL.match(text.strip())
    if not m:
        return None
    return m.group(1) if not m.group(2) else "%s+%s" % (m.group(1), m.group(2))


def eval_address(text, command):
    """An address expression: a number, `$pc`, `&var`, or a function/label name."""
    try:
        return value_address(gdb.parse_and_eval(text))
    except gdb.error as e:
        raise gdb.GdbError("%s: cannot evaluate %r as an address: %s" % (command, text, e))


def value_address(value):
    """A gdb.Value as an address: its integer value, or a function's address."""
    try:
        return int(value) & 0xFFFFFFFF
    except gdb.error:
        if value.address is None:       # not an lvalue, not a function
            raise
        return int(value.address) & 0xFFFFFFFF


def current_pc(command):
    try:
        return int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFF
    except gdb.error:
        raise gdb.GdbError("%s: no registers: connect to a running guest (`target remote "
                           "HOST:PORT` to lgdbg's stub) or give an address" % command)


# --------------------------------------------------------------- memory

def read_memory(address, length):
    return bytes(gdb.selected_inferior().read_memory(address, length))


def read_u32(address):
    return int.from_bytes(read_memory(address, 4), "little")


def disassemble(start, end=None, count=None):
    """[(address, text)] from gdb's own disassembler."""
    arch = gdb.selected_inferior().architecture()
    if end is not None:
        rows = arch.disassemble(start, end)
    else:
        rows = arch.disassemble(start, count=count or 1)
    return [(r["addr"], r["asm"]) for r in rows]


# --------------------------------------------------------------- the stub

def _stub_hint():
    return ("start it with `lgdbg gdb IMAGE`, or run `lgdbg serve IMAGE --listen "
            "127.0.0.1:1234` and `target remote 127.0.0.1:1234`")


def host_state(what, command):
    """The JSON answer of `monitor json WHAT` from lgdbg's stub.

    Any other target (none, a plain ELF, QEMU, a core file) gets a
    gdb.GdbError saying the Host state needs lgdbg's stub.
    """
    conn = getattr(gdb.selected_inferior(), "connection", None)
    if conn is None:
        raise gdb.GdbError("%s needs the Host's state, which only lgdbg's stub has, and "
                           "gdb is not connected to it: %s" % (command, _stub_hint()))
    if conn.type not in ("remote", "extended-remote"):
        raise gdb.GdbError("%s needs the Host's state, which only lgdbg's stub has; this "
                           "target is %s: %s" % (command, conn.type, _stub_hint()))
    text = monitor("json " + what, command)
    try:
        return json.loads(text)
    except ValueError:
        raise gdb.GdbError("%s needs the Host's state, which only lgdbg's stub has; this "
                           "remote target is not lgdbg's stub (`monitor json %s` answered "
                           "%r): %s" % (command, what, text.strip()[:80], _stub_hint()))


def monitor(text, command):
    """Send `monitor TEXT` and return what the stub printed."""
    try:
        out = gdb.execute("monitor " + text, to_string=True)
    except gdb.error as e:
        msg = str(e)
        if "not supported" in msg or "not being run" in msg:
            raise gdb.GdbError("%s needs the Host's state, which only lgdbg's stub has: %s"
                               % (command, _stub_hint()))
        raise gdb.GdbError("%s: %s" % (command, msg))
    if out.startswith("error:") or out.startswith("lgdbg: error"):
        raise gdb.GdbError("%s: %s" % (command, out.strip()))
    return out


def on_lgdbg_stub():
    """True when connected to a remote that answers `monitor json lguest status`."""
    try:
        host_state("lguest status", "lguest")
        return True
    except gdb.GdbError:
        return False


def flush_registers():
    """The stub changed registers behind gdb's back: make gdb read them again."""
    try:
        gdb.execute("maintenance flush register-cache", to_string=True)
    except gdb.error:
        gdb.execute("flushregs", to_string=True)


# --------------------------------------------------------------- lguest_data

LD_SYMBOL = "lguest_data"
DEBUG_LAYOUT = "debug info"

# struct hcall_args, as the DWARF names its words, mapped onto the registers
# the Host reads them from: 2.6.23/2.6.24 number the four words by argument
# (arg1 is EDX, whatever its place in memory); 3.2's five words "map directly
# onto eax/ebx/ecx/edx/esi in struct lguest_regs" (asm/lguest_hcall.h).
_HCALL_ARG_REGS = {
    4: {"arg0": "eax", "arg1": "edx", "arg2": "ebx", "arg3": "ecx"},
    5: {"arg0": "eax", "arg1": "ebx", "arg2": "ecx", "arg3": "edx", "arg4": "esi"},
}


def _ring_order(hcalls_type):
    """The registers of one ring slot in memory order, from its DWARF type, or None."""
    elem = hcalls_type.strip_typedefs()
    if elem.code == gdb.TYPE_CODE_ARRAY:
        elem = elem.target().strip_typedefs()
    if elem.code != gdb.TYPE_CODE_STRUCT:
        return None
    names = [g.name for g in elem.fields()]
    alias = _HCALL_ARG_REGS.get(len(names), {})
    names = tuple(alias.get(n, n) for n in names)
    regs = ("eax", "ebx", "ecx", "edx", "esi")[:len(names)]
    return names if sorted(names) == sorted(regs) else None


def layout_from_debug_info():
    """Register the image's own struct lguest_data as a layout, if it has one.

    Returns the layout's key in abi.LAYOUTS ('2.6.23', '2.6.24' or '3.2' when
    the debug info matches a built-in table, else 'debug info'), or None.
    """
    try:
        t = gdb.lookup_type("struct lguest_data")
    except gdb.error:
        return None
    fields = []
    ring_order = None
    for f in t.fields():
        if f.bitpos is None or not f.name:
            continue
        fields.append(abi.Field(f.name, f.bitpos // 8, f.type.sizeof))
        if f.name == "hcalls":
            ring_order = _ring_order(f.type)
    key_of = {(f.name, f.offset) for f in fields}
    for version, lay in abi.LAYOUTS.items():
        if version == DEBUG_LAYOUT:
            continue
        if {(f.name, f.offset) for f in lay["fields"]} == key_of and \
                (ring_order is None or ring_order == lay["ring_order"]):
            return version
    if not fields:
        return None
    abi.LAYOUTS[DEBUG_LAYOUT] = {"size": t.sizeof, "fields": tuple(fields),
                                 "ring_order": ring_order or abi.LAYOUTS["2.6.23"]["ring_order"]}
    return DEBUG_LAYOUT


_stub_abi = {}          # connection number -> what `monitor json lguest status` said


def _abi_from_stub():
    """lgdbg's stub's word on the Guest's ABI, asked once per connection; None
    from any other target (QEMU, a core file, no target)."""
    conn = getattr(gdb.selected_inferior(), "connection", None)
    if conn is None or conn.type not in ("remote", "extended-remote"):
        return None
    if conn.num not in _stub_abi:
        try:
            _stub_abi[conn.num] = host_state("lguest status", "lguest").get("abi")
        except gdb.GdbError:
            _stub_abi[conn.num] = None
    return _stub_abi[conn.num]


def guest_abi():
    """(profile, layout): the Guest's ABI (a key of abi.PROFILES: its hypercall
    numbers) and lguest_data's layout (a key of abi.LAYOUTS).

    The image's debug info decides when its struct lguest_data is a built-in
    layout; else lgdbg's stub, which runs the Guest, says (its status has
    "abi"); else the symbols: only a boot-protocol kernel (2.6.24 on, the
    later ABI) has head_32.S's subarch_entries, the 2.6.23 Guest enters by
    its "GenuineLguest" magic.  The layout is the debug info's own when it
    has one, else the profile's.
    """
    layout = layout_from_debug_info()
    profile = abi.LAYOUT_PROFILES.get(layout)
    if profile is None:
        profile = _abi_from_stub()
    if profile not in abi.PROFILES:
        profile = "3.2" if symbol_address("subarch_entries") is not None else abi.DEFAULT_PROFILE
    return profile, layout or abi.profile(profile).layout


def lguest_data_address(command, explicit=None, allow_stub=True):
    """ADDR when given, else the lguest_data symbol, else what the stub says."""
    if explicit is not None:
        return eval_address(explicit, command), "given"
    a = symbol_address(LD_SYMBOL)
    if a is not None:
        return a, "symbol"
    if allow_stub:
        try:
            st = host_state("lguest status", command)
        except gdb.GdbError:
            st = None
        if st and st.get("lguest_data"):
            return st["lguest_data"], "stub"
    raise gdb.GdbError("%s: where is lguest_data? The image has no `lguest_data` symbol and "
                       "the stub does not know it (no LGUEST_INIT yet): give its address, "
                       "e.g. `%s 0xc0100610`, or load the image's symbols with `file IMAGE`"
                       % (command, command))


def noirq_window(command):
    """(start, end) of the noirq window: from lguest_data, else the symbols.

    lguest_data's noirq_start/noirq_end sit at the Guest's own layout's
    offsets (1120/1124 in 2.6.23, 1376/1380 in 3.2): the 2.6.23 offsets on a
    3.2 Guest read words of the hypercall ring."""
    try:
        a, _ = lguest_data_address(command, allow_stub=False)
        _, layout = guest_abi()
        start = read_u32(a + abi.offset_of("noirq_start", layout))
        end = read_u32(a + abi.offset_of("noirq_end", layout))
        if start or end:
            return start, end
    except (gdb.GdbError, gdb.MemoryError, gdb.error, KeyError):
        pass
    start, end = symbol_address("lguest_noirq_start"), symbol_address("lguest_noirq_end")
    if start is not None and end is not None:
        return start, end
    try:
        st = host_state("lguest status", command)
        return st["noirq_start"], st["noirq_end"]
    except gdb.GdbError:
        pass
    raise gdb.GdbError("%s: cannot find the noirq window: no lguest_data, no "
                       "lguest_noirq_start/lguest_noirq_end symbols and no lgdbg stub; "
                       "load the image's symbols with `file IMAGE`" % command)
