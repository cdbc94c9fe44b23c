"""From packet to debugger call: a table of handlers and one stop-reply builder.

A Session is one client's view of the machine.  Handlers return a reply
payload (bytes), a list of payloads (O packets, then the answer), or a Resume
that the server runs (in a worker thread, so Ctrl-C can arrive) before asking
stop_packets() for the reply.  Handlers only translate: run control belongs
to lgdbg.core.debugger.Debugger, Host data to lgdbg.views.inspect (through monitor.py).
"""

import binascii
import json

from unicorn import UcError

from ..errors import LgdbgError
from . import packets, regs, target
from .monitor import Monitor

PACKET_SIZE = 0x20000
# Linux signal numbers, as gdb's remote protocol uses them.
SIGINT, SIGTRAP, SIGABRT, SIGKILL, SIGSEGV = 2, 5, 6, 9, 11
WATCH_KINDS = {2: "watch", 3: "rwatch", 4: "awatch"}
E_INVAL, E_FAULT = b"E16", b"E0e"        # EINVAL 22, EFAULT 14 (hex)


class Resume:
    __slots__ = ("step", "reverse")

    def __init__(self, step, reverse=False):
        self.step = step
        self.reverse = reverse


class Session:
    def __init__(self, machine, debugger):
        self.machine = machine
        self.debugger = debugger
        self.monitor = Monitor(machine, debugger)
        self.no_ack = False
        self.client_features = set()
        self.death_reported = False       # the killed stop (T) was sent
        self.exited = False               # W or X was sent: the program is over
        self.asked_for_process = False    # qProcessInfo: lldb's way of attaching
        self.end = None                   # 'detach' or 'kill' once the client asked
        self.breakpoints = {}             # addr -> set of Z types (0, 1)
        self.watches = set()              # (addr, length, kind)

    # --- dispatch -----------------------------------------------------------------
    def handle(self, payload):
        """dispatch(), but malformed input gets an E reply, never an exception."""
        try:
            return self.dispatch(payload)
        except (ValueError, IndexError, OverflowError, UcError, LgdbgError):
            return E_INVAL

    def dispatch(self, payload):
        """One packet -> reply.  Unknown packets get the empty reply."""
        if not payload:
            return b""
        for prefix, handler in _PREFIXED:
            if payload.startswith(prefix):
                return handler(self, payload[len(prefix):])
        handler = _SINGLE.get(payload[:1])
        if handler is None:
            return b""
        return handler(self, payload[1:])

    # --- stop replies: the one place that builds them -------------------------------
    def stop_packets(self, stop):
        """A Stop -> the payloads to send: O packets first, then T/W/X."""
        kind = stop.kind
        notes = []
        extra = ""
        signal = SIGTRAP
        if kind == "interrupted":
            signal = SIGINT
        elif kind == "breakpoint":
            types = self.breakpoints.get(stop.addr, {0})
            feature = "hwbreak" if 0 not in types else "swbreak"
            if feature in self.client_features:
                extra = "%s:;" % feature
        elif kind == "watch":
            wkind, addr = stop.watch
            extra = "%s:%x;" % (wkind, addr)       # inside the watched range (Cpu._on_watch)
        elif kind == "catch":
            notes.append("lgdbg: %s: %s\n" % (stop.reason, _describe_event(stop.watch)))
        elif kind == "history-begin":
            # gdb's word for "no more reverse-execution history".
            extra = "replaylog:begin;"
        elif kind == "halted-forever":
            notes.append("lgdbg: the guest is halted and nothing can ever wake it; "
                         "`monitor irq raise N` makes an irq pending\n")
        elif kind == "max-insns":
            notes.append("lgdbg: instruction limit reached\n")
        elif kind == "stuck":
            # The real Host would spin for ever; the Guest is still alive, so
            # a stop with SIGSEGV, and the line that says why.
            notes.append("lgdbg: guest %s\n" % stop.reason)
            signal = SIGSEGV
        elif kind == "poweroff":
            return self._out(["lgdbg: guest powered off\n"]) + [self._exit_packet(True)]
        elif kind == "restart":
            return self._out(["lgdbg: guest asked for a restart (the Launcher would boot it "
                              "again)\n"]) + [self._exit_packet()]
        elif kind == "killed":
            if self.death_reported:
                return [self._exit_packet(False)]
            self.death_reported = True
            notes.append("lgdbg: guest killed: %s\n" % stop.reason)
            signal = SIGSEGV if self.machine.host.killed_by_trap else SIGABRT
        return self._out(notes) + [self._t_packet(signal, extra)]

    def _t_packet(self, signal, extra=""):
        cpu = self.machine.cpu
        expedited = "".join("%02x:%s;" % (n, regs.read_reg(cpu, n).hex())
                            for n in regs.EXPEDITED)
        return ("T%02xthread:01;%s%s" % (signal, expedited, extra)).encode()

    def status_reply(self):
        """`?`: why the machine is stopped now (it is always stopped here).

        A Guest that powered off or was killed is a program that exited, for
        a client attaching afterwards too: W00 or X09, never a live-looking
        T stop (gdb's `target remote` then says the target is not running).
        """
        if self.machine.dead:
            self.death_reported = True
            exited = self._exit_packet()
            if self.asked_for_process:
                # lldb (14) asked qProcessInfo first; given W or X here it
                # waits for ever for the exited process to stop.  An error
                # makes it give up the connection with a message instead.
                return b"E01"
            return exited
        return self._t_packet(SIGTRAP)

    def _exit_packet(self, powered_off=None):
        """W00 after a power-off, X with SIGKILL after kill_guest; W05 after a
        3.2 Guest's restart request (`lgdbg run`'s status 5: gdb says "exited
        with code 05")."""
        self.exited = True
        if self.machine.restarting:
            return b"W05"
        if powered_off is None:
            powered_off = self.machine.powered_off
        return b"W00" if powered_off else b"X%02x" % SIGKILL

    @staticmethod
    def _out(lines):
        out = []
        for line in lines:
            out += packets.console_packets(line)
        return out

    # --- running --------------------------------------------------------------------
    def resume_reply(self, resume):
        """What a resume ends with before running at all (None: run it)."""
        m = self.machine
        if m.dead and self.exited:
            how = "powered off" if m.powered_off else "was killed (%s)" % m.dead
            return self._out(["lgdbg: the guest %s: it cannot run again; start a new "
                              "`lgdbg serve` for a new one\n" % how]) + [self._exit_packet()]
        if m.dead and self.death_reported:
            return self.stop_packets(m.run())
        return None

    def execute(self, resume):
        if resume.reverse:
            return self.debugger.reverse_stepi() if resume.step else self.debugger.reverse_cont()
        if resume.step:
            return self.debugger.stepi(1)
        return self.debugger.cont()

    def forget_client(self):
        """The client went away: drop what it inserted, keep the machine."""
        for addr in list(self.breakpoints):
            self.machine.cpu.remove_breakpoint(addr)
        self.breakpoints.clear()
        for w in list(self.watches):
            self.machine.remove_watch(*w)
        self.watches.clear()


def _describe_event(event):
    if not isinstance(event, dict):
        return ""
    fields = ", ".join("%s=%s" % (k, hex(v) if isinstance(v, int) and k not in
                                  ("icount", "time_ns", "irq", "vector", "nr") else v)
                       for k, v in event.items() if k not in ("kind",))
    return "%s (%s)" % (event.get("kind"), fields)


# --- argument parsing helpers -----------------------------------------------------------
def _hexint(text):
    return int(text, 16)


def _addr_len(text):
    addr, length = text.split(b",", 1)
    return _hexint(addr), _hexint(length)


# --- handlers: each takes (session, rest of packet) -------------------------------------
def h_query_status(s, rest):
    return s.status_reply()


def h_read_regs(s, rest):
    return regs.read_all(s.machine.cpu).hex().encode()


def h_write_regs(s, rest):
    try:
        block = packets.unhex(rest)
    except ValueError:
        return E_INVAL
    regs.write_all(s.machine.cpu, block)
    return b"OK"


def h_read_reg(s, rest):
    n = _hexint(rest)
    if not 0 <= n < regs.NUM_REGS:
        return E_INVAL
    return regs.read_reg(s.machine.cpu, n).hex().encode()


def h_write_reg(s, rest):
    n, value = rest.split(b"=", 1)
    n = _hexint(n)
    if not 0 <= n < regs.NUM_REGS:
        return E_INVAL
    regs.write_reg(s.machine.cpu, n, packets.unhex(value))
    return b"OK"


def read_memory(machine, addr, length):
    """As many bytes as are readable from addr (gdb accepts a short read)."""
    try:
        return machine.read_memory(addr, length)
    except UcError:
        pass
    out = b""
    while len(out) < length:
        chunk = min(length - len(out), 0x1000 - ((addr + len(out)) & 0xFFF))
        try:
            out += machine.read_memory(addr + len(out), chunk)
        except UcError:
            break
    return out


def h_read_mem(s, rest):
    addr, length = _addr_len(rest)
    length = min(length, (PACKET_SIZE - 8) // 2)
    if addr + length > 1 << 32:
        return E_FAULT
    data = read_memory(s.machine, addr, length)
    if length and not data:
        return E_FAULT
    return data.hex().encode()


def _write_mem(s, addr, data):
    # Memory as the Guest maps it now; the Switcher's pages are the Host's
    # and an unmapped byte anywhere refuses the whole write (cpu.write_virt).
    if data:
        try:
            s.machine.write_memory(addr, data)   # also drops translated code
        except UcError:
            return E_FAULT
    return b"OK"


def h_write_mem(s, rest):
    head, hexdata = rest.split(b":", 1)
    addr, length = _addr_len(head)
    data = packets.unhex(hexdata)
    if len(data) != length:
        return E_INVAL
    return _write_mem(s, addr, data)


def h_write_mem_binary(s, rest):
    head, raw = rest.split(b":", 1)
    addr, length = _addr_len(head)
    data = packets.unescape(raw)
    if len(data) != length:
        return E_INVAL
    return _write_mem(s, addr, data)


# gdb's CRC-32 (libiberty's xcrc32: polynomial 0x04C11DB7, most significant
# bit first, no final xor) is zlib's reflected CRC-32 in a mirror: on
# bit-reversed bytes with a bit-reversed register.  binascii does the work.
_REVERSED_BITS = bytes(int("{:08b}".format(b)[::-1], 2) for b in range(256))
CRC_CHUNK = 1 << 20
MAX_CRC_LENGTH = 1 << 30


def _reverse32(value):
    return int("{:032b}".format(value)[::-1], 2)


def gdb_crc32(chunks, crc=0xFFFFFFFF):
    """xcrc32 over an iterable of byte strings."""
    mirrored = _reverse32(crc)
    for chunk in chunks:
        mirrored = ~binascii.crc32(chunk.translate(_REVERSED_BITS), ~mirrored) & 0xFFFFFFFF
    return _reverse32(mirrored)


def h_crc(s, rest):
    """qCRC:ADDR,LENGTH over Guest virtual addresses, as every other memory packet.

    gdb's compare-sections asks it at the sections' load (physical)
    addresses, which lgdbg does not serve (README: "Addresses"): those get
    E0e, and gdb says "target memory fault" instead of a false MIS-MATCHED.
    """
    addr, length = _addr_len(rest)
    if length > MAX_CRC_LENGTH or addr + length > 1 << 32:
        return E_INVAL
    crc = 0xFFFFFFFF
    for start in range(addr, addr + length, CRC_CHUNK):
        want = min(CRC_CHUNK, addr + length - start)
        chunk = read_memory(s.machine, start, want)
        if len(chunk) != want:
            return E_FAULT
        crc = gdb_crc32([chunk], crc)
    return b"C%08x" % crc


def h_continue(s, rest):
    # c [ADDR] / C sig[;ADDR]: a resume address is honoured, a signal is not
    # (there is no way to inject a host signal into an lguest Guest).
    return _resume(s, rest, step=False)


def h_step(s, rest):
    return _resume(s, rest, step=True)


def h_continue_sig(s, rest):
    _sig, _, addr = rest.partition(b";")
    return _resume(s, addr, step=False)


def h_step_sig(s, rest):
    _sig, _, addr = rest.partition(b";")
    return _resume(s, addr, step=True)


def _resume(s, addr, step):
    if addr:
        s.machine.cpu.set_reg("eip", _hexint(addr))
    return Resume(step)


def h_vcont(s, rest):
    if rest == b"?":
        return b"vCont;c;C;s;S"
    # vCont;ACTION[:thread]...: the first action for thread 1 (or for all) wins.
    for action in rest.lstrip(b";").split(b";"):
        verb, _, thread = action.partition(b":")
        if not _our_thread(thread):
            continue
        if verb[:1] in (b"c", b"C"):
            return Resume(False)
        if verb[:1] in (b"s", b"S"):
            return Resume(True)
        if verb[:1] == b"t":
            return b"OK"
        break
    return E_INVAL


def h_insert(s, rest):
    return _z(s, rest, insert=True)


def h_remove(s, rest):
    return _z(s, rest, insert=False)


def _z(s, rest, insert):
    fields = rest.split(b";", 1)[0].split(b",")
    if len(fields) < 3:
        return E_INVAL
    ztype, addr, kind = int(fields[0]), _hexint(fields[1]), _hexint(fields[2])
    m = s.machine
    if ztype in (0, 1):
        types = s.breakpoints.setdefault(addr, set())
        if insert:
            types.add(ztype)
            m.cpu.add_breakpoint(addr)
        else:
            types.discard(ztype)
            if not types:
                del s.breakpoints[addr]
                m.cpu.remove_breakpoint(addr)
        return b"OK"
    if ztype in WATCH_KINDS:
        if not 1 <= kind <= 1 << 20:
            return E_INVAL
        w = (addr, kind, WATCH_KINDS[ztype])
        if insert:
            if w not in s.watches:
                m.add_watch(*w)
                s.watches.add(w)
        elif w in s.watches:
            m.remove_watch(*w)
            s.watches.discard(w)
        return b"OK"
    return b""


def h_set_thread(s, rest):
    return b"OK"


def _our_thread(text):
    """Thread ids as gdb and lldb write them: 1, 01, 0001, p1.1, -1 (all), 0 (any)."""
    if not text:
        return True
    if text.startswith(b"p"):
        text = text.partition(b".")[2] or b"-1"
    return text == b"-1" or int(text, 16) in (0, 1)


def h_thread_alive(s, rest):
    return b"OK" if rest != b"-1" and _our_thread(rest) else b"E01"


def h_detach(s, rest):
    s.end = "detach"
    return b"OK"


def h_kill(s, rest):
    # gdb expects no reply to `k`; lldb waits for one, and an exit status is
    # harmless to gdb, which drops the connection right after.
    s.end = "kill"
    return b"X%02x" % SIGKILL


def h_vkill(s, rest):
    s.end = "kill"
    return b"OK"


def h_supported(s, rest):
    for feature in rest.lstrip(b":").split(b";"):
        if feature.endswith(b"+"):
            s.client_features.add(feature[:-1].decode("latin-1"))
    reverse = ";ReverseStep+;ReverseContinue+" if s.debugger.history is not None else ""
    return ("PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;"
            "vContSupported+%s" % (PACKET_SIZE, reverse)).encode()


def h_reverse(step):
    def handler(s, rest):
        if s.debugger.history is None:
            return b"E01"
        return Resume(step, reverse=True)
    return handler


def h_no_ack(s, rest):
    s.no_ack = True              # the server switches after this reply is sent
    return b"OK"


def h_xfer_features(s, rest):
    annex, _, span = rest.partition(b":")
    offset, length = _addr_len(span)
    reply = target.xfer(annex, offset, length)
    return b"E00" if reply is None else packets.escape(reply)


def h_rcmd(s, rest):
    try:
        line = packets.unhex(rest).decode("utf-8", "replace")
    except ValueError:
        return E_INVAL
    try:
        text = s.monitor.run(line)
    except LgdbgError as e:
        if line.split()[:1] == ["json"]:
            # Scripts read `json` output with gdb.execute(to_string=True), which
            # loses the text of a failing command: the error is data for them.
            return s._out([json.dumps({"error": str(e)}) + "\n"]) + [b"OK"]
        return s._out([_refusal(e)]) + [b"E01"]
    return s._out([text]) + [b"OK"]


def _refusal(error):
    """The one line a failing monitor command prints, completed by gdb.

    The only failure gdb 13 accepts for qRcmd is `E NN`, which it always
    reports as "Protocol error with Rcmd", whatever the stub said before
    (remote.c: no text, no other error form).  It must fail (MI ^error,
    gdb.error for gdb.execute callers), so the message is sent without a
    newline and ends in words that make gdb's line its end: one line,
    "lgdbg: MESSAGE; gdb reports the refusal as: Protocol error with Rcmd",
    not a second line that reads like a broken connection.
    """
    return "lgdbg: %s; gdb reports the refusal as: " % error


def h_host_info(s, rest):
    # lldb asks for this to pick an architecture before reading target.xml.
    return ("triple:%s;ptrsize:4;endian:little;ostype:unknown;vendor:unknown;"
            % b"i386-unknown-unknown".hex()).encode()


def h_process_info(s, rest):
    s.asked_for_process = True
    if s.machine.dead:
        return b"E01"            # no process (and no thread: h_current_thread)
    return ("pid:1;triple:%s;ptrsize:4;endian:little;ostype:unknown;vendor:unknown;"
            % b"i386-unknown-unknown".hex()).encode()


def h_current_thread(s, rest):
    return b"" if rest or s.machine.dead else b"QC01"


def _const(reply):
    return lambda s, rest: reply


_SINGLE = {
    b"?": h_query_status, b"g": h_read_regs, b"G": h_write_regs, b"p": h_read_reg,
    b"P": h_write_reg, b"m": h_read_mem, b"M": h_write_mem, b"X": h_write_mem_binary,
    b"c": h_continue, b"s": h_step, b"C": h_continue_sig, b"S": h_step_sig,
    b"Z": h_insert, b"z": h_remove, b"H": h_set_thread, b"T": h_thread_alive,
    b"D": h_detach, b"k": h_kill,
}
# Longest prefixes first where one is a prefix of another.
_PREFIXED = [
    (b"qSupported", h_supported),
    (b"qXfer:features:read:", h_xfer_features),
    (b"qRcmd,", h_rcmd),
    (b"qCRC:", h_crc),
    (b"qAttached", _const(b"1")),
    (b"qC", h_current_thread),
    (b"qfThreadInfo", _const(b"m01")),
    (b"qsThreadInfo", _const(b"l")),
    (b"qSymbol", _const(b"OK")),
    (b"qHostInfo", h_host_info),
    (b"qProcessInfo", h_process_info),
    (b"QStartNoAckMode", h_no_ack),
    (b"bs", h_reverse(True)),
    (b"bc", h_reverse(False)),
    (b"vCont", h_vcont),
    (b"vKill", h_vkill),
    (b"vMustReplyEmpty", _const(b"")),
    (b"q", _const(b"")),
    (b"Q", _const(b"")),
    (b"v", _const(b"")),
]
