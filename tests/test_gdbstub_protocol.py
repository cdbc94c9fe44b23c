"""The stub's pieces without gdb: codec, register block, handlers, stop replies."""

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from lgdbg import images
from lgdbg.debugger import Debugger
from lgdbg.gdbstub import packets, regs, target
from lgdbg.gdbstub.handlers import Resume, Session
from lgdbg.machine import Machine, Stop


@pytest.fixture
def session():
    m = Machine(images.path_of("iret"))
    return Session(m, Debugger(m))


# --- packets ---------------------------------------------------------------------
def test_frame_and_reader_round_trip_in_pieces():
    wire = b"+" + packets.frame(b"qSupported:swbreak+") + b"\x03" + packets.frame(b"g") + b"-"
    reader = packets.Reader()
    events = []
    for i in range(len(wire)):                 # one byte at a time
        events += reader.feed(wire[i:i + 1])
    assert events == [("ack", None), ("packet", b"qSupported:swbreak+"),
                      ("interrupt", None), ("packet", b"g"), ("nack", None)]


def test_bad_checksum_is_reported_not_raised():
    assert packets.Reader().feed(b"$g#00$m0,1#zz") == [("bad", b"g"), ("bad", b"m0,1")]


@given(st.binary(max_size=300))
def test_escape_round_trip(data):
    escaped = packets.escape(data)
    assert not any(b in escaped for b in b"#$*")
    assert packets.unescape(escaped) == data


def test_console_packets_split_and_hex():
    pkts = packets.console_packets(b"x" * 100, limit=41)
    assert all(p.startswith(b"O") and len(p) <= 41 for p in pkts)
    assert b"".join(bytes.fromhex(p[1:].decode()) for p in pkts) == b"x" * 100


# --- target description ------------------------------------------------------------
def test_target_xml_describes_the_308_byte_block():
    root = ET.fromstring(target.TARGET_XML)
    assert root.find("architecture").text == "i386"
    assert root.find("osabi").text == "none"
    regs_ = root.findall(".//reg")
    assert [r.get("name") for r in regs_] == [name for name, _ in regs.LAYOUT]
    assert sum(int(r.get("bitsize")) for r in regs_) == regs.SIZE * 8 == 308 * 8


def test_qxfer_in_chunks(session):
    doc, offset = b"", 0
    while True:
        reply = session.dispatch(b"qXfer:features:read:target.xml:%x,100" % offset)
        doc += packets.unescape(reply[1:])
        offset += 0x100
        if reply[:1] == b"l":
            break
    assert doc == target.TARGET_XML
    assert session.dispatch(b"qXfer:features:read:other.xml:0,100").startswith(b"E")


# --- registers ----------------------------------------------------------------------
def test_g_packet_layout(session):
    g = bytes.fromhex(session.dispatch(b"g").decode())
    assert len(g) == 308
    m = session.machine
    assert int.from_bytes(g[32:36], "little") == m.cpu.reg("eip")
    assert int.from_bytes(g[40:44], "little") == 0x61            # cs
    assert int.from_bytes(g[144:148], "little") == 0x37F         # fctrl
    assert int.from_bytes(g[304:308], "little") == 0x1F80        # mxcsr


def test_x87_stack_is_rotated_by_top(session):
    m = session.machine
    eip = m.cpu.reg("eip")
    m.write_memory(eip, bytes.fromhex("dbe3d9e8d9eb"))            # fninit; fld1; fldpi
    for _ in range(3):
        assert m.step().kind == "step"
    st0 = bytes.fromhex(session.dispatch(b"p10").decode())
    st1 = bytes.fromhex(session.dispatch(b"p11").decode())
    assert st0 == (0xC90FDAA22168C235).to_bytes(8, "little") + (0x4000).to_bytes(2, "little")
    assert st1 == (0x8000000000000000).to_bytes(8, "little") + (0x3FFF).to_bytes(2, "little")
    fstat = int(bytes.fromhex(session.dispatch(b"p19").decode())[::-1].hex(), 16)
    assert (fstat >> 11) & 7 == 6
    # Writing st1 changes the physical register TOP+1 = 7.
    two = (0x8000000000000000).to_bytes(8, "little") + (0x4000).to_bytes(2, "little")
    assert session.dispatch(b"P11=" + two.hex().encode()) == b"OK"
    from unicorn import x86_const as X
    assert m.cpu.uc.reg_read(X.UC_X86_REG_FP7) == (0x8000000000000000, 0x4000)


def test_register_writes(session):
    m = session.machine
    assert session.dispatch(b"P0=78563412") == b"OK"
    assert m.cpu.reg("eax") == 0x12345678
    g = bytearray(bytes.fromhex(session.dispatch(b"g").decode()))
    g[4:8] = (0xCAFE).to_bytes(4, "little")                        # ecx
    g[32 * 0 + 292:292 + 4] = b"\x01\0\0\0"                        # xmm7's first bytes
    assert session.dispatch(b"G" + bytes(g).hex().encode()) == b"OK"
    assert m.cpu.reg("ecx") == 0xCAFE
    assert session.handle(b"p99").startswith(b"E")
    assert session.handle(b"P0=12").startswith(b"E")


# --- memory --------------------------------------------------------------------------
def test_memory_read_write_and_faults(session):
    m = session.machine
    entry = m.cpu.reg("eip")
    assert bytes.fromhex(session.dispatch(b"m%x,d" % (entry - 13)).decode()) == b"GenuineLguest"
    assert session.dispatch(b"m1000,4").startswith(b"E")
    assert session.dispatch(b"M%x,2:9090" % entry) == b"OK"
    assert m.read_memory(entry, 2) == b"\x90\x90"
    raw = packets.escape(b"#$}*")
    assert session.dispatch(b"X%x,4:" % entry + raw) == b"OK"
    assert m.read_memory(entry, 4) == b"#$}*"
    assert session.dispatch(b"X%x,0:" % entry) == b"OK"           # the probe gdb sends
    # A read running off the end of what the Guest maps is short, not an error.
    end = m.cpu.page_offset + m.launcher.mem_size
    assert len(bytes.fromhex(session.dispatch(b"m%x,20" % (end - 8)).decode())) == 8
    # The Switcher page is the Host's: readable, not writable.
    assert session.dispatch(b"Mffc00000,1:00").startswith(b"E")


# --- the rest of the protocol ----------------------------------------------------------
def test_queries(session):
    sup = session.dispatch(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    assert b"PacketSize=" in sup and int(sup.split(b"PacketSize=")[1].split(b";")[0], 16) >= 0x4000
    for feature in (b"qXfer:features:read+", b"QStartNoAckMode+", b"swbreak+", b"hwbreak+",
                    b"vContSupported+"):
        assert feature in sup
    assert session.dispatch(b"vMustReplyEmpty") == b""
    assert session.dispatch(b"qAttached") == b"1"
    assert session.dispatch(b"qC") == b"QC01"
    assert session.dispatch(b"qfThreadInfo") == b"m01"
    assert session.dispatch(b"qsThreadInfo") == b"l"
    assert session.dispatch(b"Hg0") == b"OK" and session.dispatch(b"Hc-1") == b"OK"
    assert session.dispatch(b"vCont?") == b"vCont;c;C;s;S"
    assert session.dispatch(b"QStartNoAckMode") == b"OK" and session.no_ack
    assert session.dispatch(b"?").startswith(b"T05thread:01;")
    assert session.dispatch(b"qTStatus") == b""
    assert session.dispatch(b"Y") == b""


def test_resume_packets(session):
    assert isinstance(session.dispatch(b"c"), Resume)
    assert session.dispatch(b"s").step
    assert session.dispatch(b"vCont;s:1;c").step
    assert not session.dispatch(b"vCont;c").step
    assert not session.dispatch(b"C05").step


def test_breakpoint_and_watch_packets(session):
    m = session.machine
    assert session.dispatch(b"Z0,c01000fc,1") == b"OK"
    assert session.dispatch(b"Z1,c01000fc,1") == b"OK"
    assert m.cpu.breakpoints() == [0xC01000FC]
    assert session.dispatch(b"z0,c01000fc,1") == b"OK"
    assert m.cpu.breakpoints() == [0xC01000FC]                 # Z1 still holds it
    stop = session.execute(session.dispatch(b"c"))
    reply = session.stop_packets(stop)
    assert reply[-1].startswith(b"T05thread:01;") and b"hwbreak:;" not in reply[-1]
    session.client_features.add("hwbreak")
    assert b"hwbreak:;" in session.stop_packets(stop)[-1]
    assert session.dispatch(b"z1,c01000fc,1") == b"OK" and m.cpu.breakpoints() == []
    assert session.dispatch(b"Z2,c0100600,4") == b"OK"
    stop = session.execute(Resume(False))
    assert b"watch:c0100600;" in session.stop_packets(stop)[-1]
    assert session.dispatch(b"z2,c0100600,4") == b"OK" and m.cpu.watches() == []
    assert session.dispatch(b"Z2,c0100600,0").startswith(b"E")
    assert session.dispatch(b"Z9,0,1") == b""


def test_stop_replies(session):
    session.machine.host.killed_by_trap = True
    out = session.stop_packets(Stop("killed", reason="unhandled trap 14"))
    assert bytes.fromhex(out[0][1:].decode()).startswith(b"lgdbg: guest killed")
    assert out[-1].startswith(b"T0b")
    assert session.stop_packets(Stop("killed", reason="x")) == [b"X09"]
    assert session.stop_packets(Stop("poweroff"))[-1] == b"W00"
    assert session.stop_packets(Stop("interrupted"))[-1].startswith(b"T02")
    out = session.stop_packets(Stop("halted-forever", reason="r"))
    assert b"irq raise" in bytes.fromhex(out[0][1:].decode()) and out[-1].startswith(b"T05")


def test_monitor_over_qrcmd(session):
    def rcmd(text):
        out = session.dispatch(b"qRcmd," + text.encode().hex().encode())
        said = b"".join(bytes.fromhex(p[1:].decode()) for p in out[:-1]).decode()
        return said, out[-1]

    said, end = rcmd("help")
    assert end == b"OK" and "monitor irq stepping on|off" in said
    said, end = rcmd("json lguest status")
    assert end == b"OK" and '"init": false' in said
    said, end = rcmd("irq raise 3")
    assert end == b"OK" and session.machine.host.irqs_pending == 1 << 3
    said, end = rcmd("irq clear 3")
    assert session.machine.host.irqs_pending == 0
    said, end = rcmd("nonsense words")
    assert end == b"E01" and "unknown monitor command" in said
    said, end = rcmd("json nonsense")
    assert end == b"OK" and '"error"' in said
    said, end = rcmd("__import__('os').system('false')")
    assert end == b"E01"
    said, end = rcmd("irq stepping on")
    assert session.debugger.irq_stepping
    said, end = rcmd("json step-irq")
    assert end == b"OK" and '"delivered": false' in said


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=64),
    st.builds(lambda c, rest: c + rest,
              st.sampled_from([b"m", b"M", b"X", b"g", b"G", b"p", b"P", b"Z", b"z", b"q",
                               b"qRcmd,", b"qXfer:features:read:", b"vCont", b"H", b"T",
                               b"qSupported", b"C", b"S", b"Q"]),
              st.binary(max_size=40))))
def test_no_packet_makes_a_handler_raise(session, payload):
    reply = session.handle(payload)
    assert reply is None or isinstance(reply, (bytes, list, Resume))


@given(st.binary(min_size=0, max_size=5000))
def test_fast_checksum_is_the_byte_sum(data):
    assert packets.checksum(data) == sum(data) & 0xFF
    assert packets.checksum(b"\xff" * 70000) == (255 * 70000) & 0xFF


# --- the server: client input never kills it ----------------------------------------
def _stub_on_a_thread():
    import threading
    from lgdbg.gdbstub.server import Console, Stub
    console = Console(None)
    stub = Stub(Machine(images.path_of("iret"), output=console), console)
    ready, port = threading.Event(), []

    def announce(text):
        port.append(int(text.rsplit(":", 1)[1]))
        ready.set()

    threading.Thread(target=stub.serve_tcp, args=("127.0.0.1", 0, announce),
                     daemon=True).start()
    assert ready.wait(10)
    return stub, port[0]


def _ask(sock, payload, want=None):
    """Send a packet; return the first reply (console O packets skipped) or,
    with want, the first reply starting with it (earlier replies skipped)."""
    sock.sendall(packets.frame(payload))
    reader = packets.Reader()
    while True:
        data = sock.recv(65536)
        assert data, "the stub hung up"
        for kind, p in reader.feed(data):
            if kind != "packet" or (p[:1] == b"O" and p != b"OK"):
                continue
            if want is None or p.startswith(want):
                return p


def test_garbage_on_the_wire_gets_answers_not_a_dead_stub():
    import random
    import socket
    stub, port = _stub_on_a_thread()
    rng = random.Random(7)
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert _ask(s, b"QStartNoAckMode") == b"OK"
        for _ in range(300):
            s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))))
            payload = rng.choice([b"m", b"M", b"Z", b"z", b"p", b"P", b"X", b"qRcmd,", b"q",
                                  b"v", b"H", b"G"]) + bytes(rng.randrange(33, 127)
                                                             for _ in range(rng.randrange(20)))
            s.sendall(b"#00" + packets.frame(payload))
        assert _ask(s, b"?", want=b"T05")
        assert _ask(s, b"qC", want=b"QC") == b"QC01"
    # The connection is gone; the stub accepts the next one.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"+")
        assert _ask(s, b"qAttached") == b"1"
        assert _ask(s, b"vKill;1") == b"OK"


def test_serve_usage_errors_are_one_line():
    import subprocess
    import sys
    for args in (["--listen", "nonsense"], ["--listen", "127.0.0.1:99999"],
                 ["--stdio", "--listen", "127.0.0.1:1"], ["no-such-image.elf"]):
        proc = subprocess.run([sys.executable, "-m", "lgdbg", "serve", *args],
                              capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
