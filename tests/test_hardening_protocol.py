"""Hardening: the gdb stub under random and malformed input (issue 7).

In process: hypothesis feeds the packet codec (packets.Reader) random byte
streams in random pieces, and the packet handlers (handlers.Session) random,
mutated and malformed packets.  Over a socket: a real `lgdbg serve` gets
streams mixing bad checksums, truncated and oversized packets, wrong escapes,
binary junk, 0x03 bytes and unknown packets.  The rules checked:

* the stub never raises, crashes or hangs, and never logs an internal error;
* every well-formed packet gets exactly one answer (the codec is the oracle
  for which frames are well-formed: it is itself checked against generated
  well-formed frames first);
* a rejected packet (an E reply, or no support) leaves the machine unchanged:
  registers (a `g` before and after), Guest memory (a hash of `m` reads over
  the socket, all of RAM in process), breakpoints and watchpoints;
* monitor commands never evaluate their text, and no path received over the
  protocol is ever opened.

The number of cases each test ran is printed by bench/hardening_counts.py.
"""

import hashlib
import os
import re
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lgdbg import images
from lgdbg.core.debugger import Debugger
from lgdbg.gdbstub import packets, regs
from lgdbg.gdbstub.handlers import Resume, Session
from lgdbg.machine import Machine

from gdbmi import Serve

COUNT = {}
FUZZ = int(os.environ.get("LGDBG_FUZZ_EXAMPLES", 300))


def counted(name):
    COUNT[name] = COUNT.get(name, 0) + 1


# --- the codec --------------------------------------------------------------------------------

payloads = st.binary(max_size=200).map(lambda b: b.replace(b"$", b"").replace(b"#", b""))
junk = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"$", b""))


@st.composite
def streams(draw):
    """A wire stream of well-formed frames between junk, and what it holds."""
    wire, frames = b"", []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            p = draw(payloads)
            frames.append(p)
            wire += packets.frame(p)
        else:
            wire += draw(junk)
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    return wire, frames, cuts


@settings(max_examples=FUZZ * 2, deadline=None)
@given(streams())
def test_reader_finds_every_well_formed_frame_in_any_pieces(case):
    counted("codec streams")
    wire, frames, cuts = case
    reader = packets.Reader()
    events, last = [], 0
    for cut in cuts + [len(wire)]:
        events += reader.feed(wire[last:cut])
        last = cut
    assert [p for kind, p in events if kind == "packet"] == frames
    assert all(kind in ("packet", "interrupt", "ack", "nack") for kind, _ in events)


@settings(max_examples=FUZZ * 2, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_reader_never_raises_on_junk(chunks):
    counted("codec junk")
    reader = packets.Reader()
    for chunk in chunks:
        for kind, payload in reader.feed(chunk):
            assert kind in ("packet", "bad", "interrupt", "ack", "nack")
    # and it still reads a good frame after whatever came before
    tail = reader.feed(b"#zz" + packets.frame(b"g"))
    assert ("packet", b"g") in tail


def test_reader_drops_an_endless_packet_and_recovers():
    reader = packets.Reader()
    events = []
    for _ in range(40):                                  # 2.5 MiB, no '#'
        events += reader.feed(b"$" + b"A" * 65536)
    assert ("bad", b"") in events
    assert len(reader._buf) <= packets.Reader.MAX + 65537
    events = reader.feed(b"#zz" + packets.frame(b"?"))
    assert ("packet", b"?") in events


@given(st.binary(max_size=200))
def test_unescape_rejects_or_inverts(data):
    counted("escapes")
    try:
        out = packets.unescape(data)
    except ValueError:
        assert data.endswith(b"}")
        return
    assert len(out) <= len(data)


# --- the handlers, in process -------------------------------------------------------------------

@pytest.fixture(scope="module")
def session():
    m = Machine(images.path_of("iret"), mem_mib=4)
    m.run(max_insns=3000)                       # somewhere past LGUEST_INIT
    return Session(m, Debugger(m, history=False))


def state(s):
    """Everything a rejected packet must not change."""
    m = s.machine
    return (regs.read_all(m.cpu), bytes(m.cpu.ram), m.icount, tuple(m.cpu.breakpoints()),
            tuple(sorted(m.cpu.watches())), m.host.irqs_pending, tuple(sorted(m.host.idt)),
            m.dead, len(s.debugger.catchpoints))


RAM = 0xC0000000
hexnum = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(
    [0, 1, RAM, RAM + 0x100000, RAM + (4 << 20), RAM + (4 << 20) + 0xFFF, 0xFFC00000,
     0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF])).map(lambda v: b"%x" % v)
smallhex = st.integers(0, 0x30000).map(lambda v: b"%x" % v)
wild = st.binary(max_size=30)


@st.composite
def packets_(draw):
    """A packet payload: a real command with random, often broken, arguments."""
    kind = draw(st.sampled_from("g G p P m M X Z z H T ? q qRcmd qXfer qSupported vCont "
                                "vFile unknown c s C S D raw".split()))
    a, n = draw(hexnum), draw(smallhex)
    if kind == "g":
        return b"g" + draw(st.sampled_from([b"", b"x", b"00"]))
    if kind == "G":
        return b"G" + draw(st.one_of(st.binary(max_size=330).map(bytes.hex).map(str.encode),
                                     wild))
    if kind == "p":
        return b"p" + draw(st.one_of(st.integers(0, 300).map(lambda v: b"%x" % v), wild))
    if kind == "P":
        return b"P%s=%s" % (draw(st.integers(0, 60).map(lambda v: b"%x" % v)),
                            draw(st.one_of(st.binary(max_size=20).map(bytes.hex)
                                           .map(str.encode), wild)))
    if kind == "m":
        return b"m%s,%s" % (a, n) if draw(st.booleans()) else b"m" + draw(wild)
    if kind == "M":
        return b"M%s,%s:%s" % (a, n, draw(st.one_of(st.binary(max_size=20).map(bytes.hex)
                                                    .map(str.encode), wild)))
    if kind == "X":
        return b"X%s,%s:%s" % (a, n, draw(wild))
    if kind in ("Z", "z"):
        return b"%s%d,%s,%s" % (kind.encode(), draw(st.integers(-1, 9)), a,
                                draw(st.one_of(smallhex, wild)))
    if kind == "qRcmd":
        text = draw(st.one_of(st.sampled_from(MONITOR_TEXTS), st.text(max_size=30)))
        return b"qRcmd," + text.encode("utf-8", "replace").hex().encode() \
            if draw(st.booleans()) else b"qRcmd," + draw(wild)
    if kind == "qXfer":
        annex = draw(st.sampled_from([b"target.xml", b"../../etc/passwd", b"/etc/passwd",
                                      b"i386-core.xml", b""]))
        obj = draw(st.sampled_from([b"features", b"exec-file", b"auxv", b"libraries"]))
        return b"qXfer:%s:read:%s:%s,%s" % (obj, annex, n, n)
    if kind == "vFile":
        return b"vFile:" + draw(st.sampled_from([b"open:", b"pread:", b"unlink:",
                                                 b"readlink:", b"setfs:"])) + \
            b"/etc/passwd".hex().encode() + b",0,0"
    if kind == "vCont":
        return b"vCont" + draw(st.sampled_from([b"?", b";t", b";x", b"", b";c:5", b";s:p2.2"]))
    if kind == "unknown":
        return draw(st.sampled_from([b"A", b"B", b"E", b"F", b"I", b"J", b"N", b"O", b"R",
                                     b"U", b"W", b"Y", b"!", b"j", b"y", b"x", b"qFoo",
                                     b"QBar", b"vBaz", b"qL", b"i", b"n", b"r", b"t"])) \
            + draw(wild)
    if kind in ("c", "s", "C", "S"):
        # resumes are not run here (the server runs them); their address
        # argument is parsed, though
        return kind.encode() + draw(st.one_of(wild, hexnum))
    if kind == "D":
        return b"D" + draw(wild)
    if kind in ("q", "H", "T", "?", "qSupported"):
        return kind.encode() + draw(wild)
    return draw(st.binary(max_size=60))


MONITOR_TEXTS = [
    "__import__('os').system('touch /tmp/lgdbg-pwned')",
    "json __import__('os').system('touch /tmp/lgdbg-pwned')",
    "eval open('/tmp/lgdbg-pwned','w')",
    "irq raise __import__('os').getpid()",
    "hcalls 1+1", "hcalls -1", "hcalls 99999999999999999999", "irq raise 99",
    "irq raise -1", "irq raise 0x", "catch hcall ${jndi}", "catch irq 1e9", "catch delete x",
    "lguest data ../../etc/passwd", "lguest data %s%s%n", "step-irq --until --until",
    "snapshot restore nosuch", "history maybe", "json", "json json json", "\x00\x01\x02",
    "catch trap 99999999999999999999999", "irq stepping maybe", "lguest", "help me",
]


@settings(max_examples=FUZZ * 4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(packets_(), min_size=1, max_size=6))
def test_handlers_never_raise_and_rejections_change_nothing(session, payloads):
    for payload in payloads:
        counted("handler packets")
        before = state(session)
        session.end = None
        reply = session.handle(payload)          # the server's own entry point
        assert reply is None or isinstance(reply, (bytes, list, Resume)), reply
        if isinstance(reply, list):
            assert all(isinstance(r, bytes) for r in reply)
            final = reply[-1]
        else:
            final = reply
        if isinstance(final, bytes) and (final[:1] == b"E" or final == b""):
            counted("handler rejections")
            assert state(session) == before, payload
    # Put back what accepted packets may have set, for the next example.
    session.forget_client()
    for cp in list(session.debugger.catchpoints):
        session.debugger.delete_catch(cp.number)
    assert not os.path.exists("/tmp/lgdbg-pwned")


@pytest.mark.parametrize("payload", [
    b"Pa=00000000", b"Pa=10000000", b"Pa=63000000", b"Pb=00000000", b"Pb=6b000000",
    b"Pc=08000000", b"Pd=ffff0000", b"P8=zz", b"P0=0011", b"P40=ffffffffff",
    b"P9=02020200", b"P9=02320000",             # eflags with VM, with IOPL 3
])
def test_refused_register_writes_change_nothing(session, payload):
    # CS/SS belong to the Host (unicorn would take CS 0 as given and the
    # Guest would leave ring 1); bad selectors and sizes are refused.
    counted("register writes")
    before = state(session)
    assert session.handle(payload) == b"E16"
    assert state(session) == before


def test_a_refused_G_is_all_or_nothing(session):
    counted("register writes")
    block = bytearray(regs.read_all(session.machine.cpu))
    before = state(session)
    block[0:4] = b"\x11\x11\x11\x11"               # eax: fine on its own
    block[44:48] = b"\x00\x00\x00\x00"             # ss 0: refused
    assert session.handle(b"G" + bytes(block).hex().encode()) == b"E16"
    assert state(session) == before


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 307), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, 308))
def test_mutated_G_blocks(session, edits, cut):
    counted("G blocks")
    cpu = session.machine.cpu
    block = bytearray(regs.read_all(cpu))
    for at, value in edits:
        block[at] = value
    before = state(session)
    reply = session.handle(b"G" + bytes(block[:cut]).hex().encode())
    if reply == b"OK":
        # what was accepted is what a g reads back (for the bytes it covered,
        # x87 registers aside: unicorn normalises 80-bit values)
        after = regs.read_all(cpu)
        # whole registers only; eflags and the 16-bit selectors are normalised
        for n in range(min(cut, 64) // 4):
            if n == 9:
                continue
            width = 4 if n < 9 else 2
            assert after[4 * n:4 * n + width] == bytes(block[4 * n:4 * n + width]), n
        regs.write_all(cpu, before[0])
    else:
        assert reply == b"E16"
        assert state(session) == before
    assert cpu.reg("cs") & 3 == 1 and cpu.reg("ss") & 3 == 1


def monitor_text(reply):
    return b"".join(bytes.fromhex(p[1:].decode()) for p in reply[:-1]).decode("utf-8", "replace")


def test_monitor_never_evaluates_text(session):
    for text in MONITOR_TEXTS:
        counted("monitor texts")
        before = state(session)
        reply = session.handle(b"qRcmd," + text.encode().hex().encode())
        assert isinstance(reply, list) and reply[-1] in (b"E01", b"OK"), (text, reply)
        if "__import__" in text or "eval" in text:
            # an error: E01 for text commands, {"error": ...} for json ones
            assert reply[-1] == b"E01" or '"error"' in monitor_text(reply), (text, reply)
        if reply[-1] == b"E01" or '"error"' in monitor_text(reply):
            assert state(session) == before, text       # a refused command did nothing
    assert not os.path.exists("/tmp/lgdbg-pwned")


def test_no_path_from_the_protocol_is_opened(session, monkeypatch):
    opened = []
    import builtins
    real_open, real_os_open = builtins.open, os.open
    monkeypatch.setattr(builtins, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a[0]) or real_os_open(*a, **k))
    replies = {}
    for p in [b"qXfer:features:read:../../../../etc/passwd:0,100",
              b"qXfer:features:read:/etc/passwd:0,100",
              b"qXfer:exec-file:read:1:0,100", b"qXfer:auxv:read::0,100",
              b"qXfer:libraries:read::0,100", b"qXfer:osdata:read::0,100",
              b"vFile:open:" + b"/etc/passwd".hex().encode() + b",0,0",
              b"vFile:setfs:0", b"vFile:pread:0,100,0", b"vFile:unlink:" +
              b"/tmp/x".hex().encode(), b"vRun;" + b"/bin/sh".hex().encode(),
              b"QSetWorkingDir:" + b"/".hex().encode(), b"qRcmd," +
              b"lguest data /etc/passwd".hex().encode(),
              b"qRcmd," + b"snapshot save ../../../tmp/lgdbg-pwned".hex().encode(),
              b"qRcmd," + b"snapshot restore /etc/passwd".hex().encode()]:
        counted("path packets")
        r = session.handle(p)
        final = r[-1] if isinstance(r, list) else r
        replies[p] = final
        if not p.startswith(b"qRcmd"):
            assert final == b"" or final[:1] == b"E", (p, r)
    assert opened == [], opened
    assert not os.path.exists("/tmp/lgdbg-pwned")
    session.handle(b"qRcmd," + b"snapshot drop ../../../tmp/lgdbg-pwned".hex().encode())


# --- over a socket, against `lgdbg serve` ---------------------------------------------------------

class Client:
    """A raw RSP client: sends bytes, reads replies with the codec, acks them."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = packets.Reader()
        self.events = []

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the stub hung up")
        self.events += self.reader.feed(data)

    def replies(self, n, timeout=20):
        """The next n reply packets (O packets set apart), acking each."""
        deadline = time.monotonic() + timeout
        got, out = [], []
        while len(got) < n:
            while not self.events:
                if time.monotonic() > deadline:
                    raise TimeoutError("got %d of %d replies: %r" % (len(got), n, got))
                self._fill(deadline)
            kind, payload = self.events.pop(0)
            if kind != "packet":
                continue
            self.sock.sendall(b"+")
            if payload[:1] == b"O" and payload != b"OK" and re.fullmatch(rb"O[0-9a-f]+", payload):
                out.append(payload)
                continue
            got.append(payload)
        return got

    def ask(self, payload, timeout=20):
        self.send(packets.frame(payload))
        return self.replies(1, timeout)[0]

    def close(self):
        self.sock.close()


def remote_state(c):
    """Registers and a hash of the Guest's image and lguest_data, read with g and m."""
    g = c.ask(b"g")
    h = hashlib.sha256()
    for addr in range(RAM + 0x100000, RAM + 0x110000, 0x4000):
        h.update(c.ask(b"m%x,4000" % addr))
    h.update(c.ask(b"m%x,2000" % (RAM + (4 << 20) - 0x2000)))
    bps = c.ask(b"qRcmd," + b"json lguest status".hex().encode())
    return g, h.hexdigest(), bps


@pytest.fixture(scope="module")
def stub():
    with Serve(images.path_of("iret"), "--mem", "4", "--no-history") as s:
        c = Client(s.port)
        c.send(b"+")
        assert c.ask(b"qSupported:swbreak+").startswith(b"PacketSize")
        c.ask(b"s")                              # a step: past the entry, still stopped
        yield s, c
        c.close()
        assert "internal error" not in s.stderr and "Traceback" not in s.stderr, s.stderr


bad_frames = st.one_of(
    # bad checksum
    payloads.map(lambda p: b"$%s#%02x" % (p, (packets.checksum(p) + 1) & 0xFF)),
    # checksum not hex
    payloads.map(lambda p: b"$%s#%s" % (p, b"zz")),
    # binary junk (no '$', no '-' that would ask for a resend)
    junk.map(lambda b: b.replace(b"-", b"")),
    # 0x03 on its own and in odd places
    st.just(b"\x03"), st.just(b"\x03\x03\x03"),
    payloads.map(lambda p: b"$%s\x03#00" % p),
    # wrong escapes in X, rejected by length or by a dangling escape
    st.builds(lambda a, d: packets.frame(b"X%x,%x:%s}" % (a, len(d) + 7, d)),
              st.integers(RAM, RAM + 0x10000), st.binary(max_size=20).map(packets.escape)),
    # a truncated frame, cut off by the next frame's '$'... then ended by "#zz"
    payloads.map(lambda p: b"$" + p[:10] + b"#zz"),
)
# well-formed packets that must each get one answer and change nothing
readonly = st.one_of(
    st.sampled_from([b"g", b"?", b"qC", b"qAttached", b"qfThreadInfo", b"qsThreadInfo",
                     b"p8", b"p1000", b"vMustReplyEmpty", b"qXfer:features:read:x.xml:0,10",
                     b"vFile:open:2f6574632f706173737764,0,0", b"Hg0", b"T1", b"T-1",
                     b"qOffsets", b"qTStatus", b"vCont?", b"m0,10", b"mffffffff,10",
                     b"Mc0000000,4:zz", b"Xc0000000,10:}", b"Z9,0,0", b"z0,c0000000,1",
                     b"Pfff=00", b"G00"]),
    st.builds(lambda a, n: b"m%x,%x" % (a, n), st.integers(0, 0xFFFFFFFF),
              st.integers(0, 0x1000)),
    st.sampled_from([b"A", b"Y", b"j", b"!", b"qFoo", b"QBar", b"vBaz"]).flatmap(
        lambda p: payloads.map(lambda r: p + r.replace(b"}", b""))),
)


@st.composite
def wire_streams(draw):
    parts, good = [], 0
    for _ in range(draw(st.integers(1, 10))):
        if draw(st.booleans()):
            p = draw(readonly)
            parts.append(packets.frame(p))
        else:
            parts.append(draw(bad_frames))
    wire = b"".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    return wire, cuts


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=list(HealthCheck))
@given(wire_streams())
def test_socket_stream_answers_every_good_packet_changes_nothing(stub, case):
    counted("socket streams")
    serve, c = stub
    wire, cuts = case
    before = remote_state(c)
    # The codec says which frames the stub will see as packets.
    expected = [p for kind, p in packets.Reader().feed(wire + b"#zz") if kind == "packet"]
    COUNT["socket packets"] = COUNT.get("socket packets", 0) + len(expected)
    last = 0
    for cut in cuts + [len(wire)]:
        c.send(wire[last:cut])
        last = cut
    c.send(b"#zz")                              # ends any frame left open
    got = c.replies(len(expected))
    assert len(got) == len(expected)
    # alive and answering, and nothing changed
    assert c.ask(b"?").startswith(b"T")
    assert remote_state(c) == before
    assert serve.proc.poll() is None


def test_socket_oversized_and_nack(stub):
    serve, c = stub
    before = remote_state(c)
    big = b"A" * 300_000
    assert c.ask(big) == b""                                 # unknown, but answered
    c.send(b"$" + b"B" * (packets.Reader.MAX + 100))       # no '#': dropped
    c.send(b"#zz")
    reply = c.ask(b"m%x,20000" % (RAM + 0x100000))          # more than PacketSize allows
    assert reply and re.fullmatch(rb"[0-9a-f]+", reply) and len(reply) < 0x20000
    # A nack asks for the last reply again, once.
    c.send(packets.frame(b"qC"))
    assert c.replies(1) == [b"QC01"]
    c.send(b"-")
    assert c.replies(1) == [b"QC01"]
    assert remote_state(c) == before
    counted("socket oversized")


def test_monitor_over_the_socket_evaluates_nothing(stub):
    serve, c = stub
    for text in MONITOR_TEXTS[:4]:
        counted("socket monitor texts")
        c.send(packets.frame(b"qRcmd," + text.encode().hex().encode()))
        assert c.replies(1)[-1] in (b"E01", b"OK")
    assert not os.path.exists("/tmp/lgdbg-pwned")


def test_listens_on_loopback_by_default():
    from lgdbg.gdbstub import serve_command
    assert serve_command.DEFAULT_LISTEN.startswith("127.0.0.1:")
    with Serve(images.path_of("hello"), "--mem", "4") as s:
        assert s.host == "127.0.0.1"
        # and the socket really is bound there (not 0.0.0.0)
        ss = os.popen("ss -ltnp 2>/dev/null").read()
        if ss:
            line = [l for l in ss.splitlines() if ":%d " % s.port in l]
            assert line and "127.0.0.1:%d" % s.port in line[0], line
        assert "warning" not in s.stderr
