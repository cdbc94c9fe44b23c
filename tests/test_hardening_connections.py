"""Hardening: clients that vanish (issue 7, "Connection faults").

A raw client drops the connection mid-continue, mid-packet, during a long
memory read, with breakpoints and watchpoints inserted, with a reset instead
of a close.  After each, the stub must go back to listening with the Guest
stopped and intact: a new raw client reads the same registers and memory
twice, some time apart (nothing runs behind its back), sees none of the old
client's breakpoints, and a real gdb (pygdbmi) then sees the same state.
"""

import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest

from gdbmi import Gdb, Serve
from guestbuild import INIT, build_guest
from lgdbg.gdbstub import packets

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/gdb") and shutil.which("gcc") and shutil.which("ld")),
    reason="needs gdb, gcc and ld")

BODY = INIT + """
	.globl	loop
loop:
	incl	counter
	.globl	after_incl
after_incl:
	jmp	loop
"""
DATA = "\t.data\n\t.globl counter\ncounter:\t.long 0\n"
RAM = 0xC0000000
CASES = {"drops": 0, "gdb checks": 0}


def symbols(elf):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    return {p[2]: int(p[0], 16) for p in (l.split() for l in out.splitlines()) if len(p) == 3}


class Raw:
    def __init__(self, port, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = packets.Reader()
        self.events = []

    def send(self, data):
        self.sock.sendall(data)

    def reply(self, timeout=20, console=None):
        """The next reply; O packets are skipped, or their text appended to console."""
        deadline = time.monotonic() + timeout
        while True:
            while self.events:
                kind, payload = self.events.pop(0)
                if kind == "packet":
                    self.sock.sendall(b"+")
                    if re.fullmatch(rb"O[0-9a-f]+", payload):
                        if console is not None:
                            console.append(bytes.fromhex(payload[1:].decode()).decode())
                        continue
                    return payload
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("stub hung up")
            self.events += self.reader.feed(data)

    def ask(self, payload):
        self.send(packets.frame(payload))
        return self.reply()

    def wait_ack(self, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(1)
            if data == b"+":
                return
            if not data:
                raise ConnectionError("stub hung up")

    def drop(self, reset=False):
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def detach(self):
        assert self.ask(b"D") == b"OK"
        self.sock.close()


def machine_state(c):
    """Registers, the Guest's own memory and lguest_data, as a client reads them."""
    g = c.ask(b"g")
    h = hashlib.sha256()
    for addr in range(RAM + 0x100000, RAM + 0x104000, 0x1000):
        h.update(c.ask(b"m%x,1000" % addr))
    return g, h.hexdigest()


def eip_of(g):
    return struct.unpack_from("<I", bytes.fromhex(g.decode()), 32)[0]


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    elf = build_guest(tmp_path_factory.mktemp("conn"), BODY, data=DATA)
    return elf, symbols(elf)


@pytest.fixture
def stub(guest):
    with Serve(guest[0], "--mem", "8") as s:
        yield s
        assert s.proc.poll() is None, "the stub died: " + s.stderr
        assert "internal error" not in s.stderr and "Traceback" not in s.stderr, s.stderr


def check_intact(stub, guest, expect=None):
    """A new client gets the same stopped machine twice, then so does real gdb."""
    c = Raw(stub.port)
    c.send(b"+")
    assert c.ask(b"?").startswith(b"T")
    first = machine_state(c)
    if expect is not None:
        assert first == expect
    time.sleep(0.2)
    assert machine_state(c) == first, "the Guest ran while nobody was attached"
    c.detach()
    CASES["gdb checks"] += 1
    with Gdb() as gdb:
        gdb.cli("file %s" % guest[0])
        assert gdb.mi("-target-select remote %s" % stub.address).message == "connected"
        assert gdb.register("eip") == eip_of(first[0])
        regs = bytes.fromhex(first[0].decode())
        assert gdb.register("eax") == struct.unpack_from("<I", regs, 0)[0]
        counter = gdb.cli("x/wx &counter").console
        gdb.cli("detach")
    c = Raw(stub.port)
    c.send(b"+")
    assert machine_state(c) == first
    c.detach()
    return first, counter


def started(stub, guest):
    """A client that ran the Guest for a while and stopped it: the state then."""
    c = Raw(stub.port)
    c.send(b"+")
    c.ask(b"qSupported:swbreak+")
    c.send(packets.frame(b"c"))
    c.wait_ack()
    time.sleep(0.1)
    c.send(b"\x03")
    assert c.reply().startswith(b"T02")
    state = machine_state(c)
    return c, state


def test_vanish_mid_continue(stub, guest):
    for reset in (False, True):
        CASES["drops"] += 1
        c, _ = started(stub, guest)
        c.send(packets.frame(b"c"))
        c.wait_ack()
        time.sleep(0.1)                       # the Guest is running now
        c.drop(reset=reset)
        first, _ = check_intact(stub, guest)
        # it stopped somewhere in the loop, and it can be continued again
        assert eip_of(first[0]) in (guest[1]["loop"], guest[1]["after_incl"])


def test_vanish_mid_packet(stub, guest):
    for partial in (b"$m%x,10" % (RAM + 0x100000), b"$M%x,4:aabb" % (RAM + 0x100000),
                    b"$G0000", b"$c#6", b"$qRcmd,6972712072616973652033", b"$"):
        CASES["drops"] += 1
        c, state = started(stub, guest)
        c.send(partial)
        c.drop()
        check_intact(stub, guest, expect=state)


def test_vanish_during_long_memory_reads(stub, guest):
    for reset in (False, True):
        CASES["drops"] += 1
        c, state = started(stub, guest)
        # 200 reads of 64 KiB, never read back: the stub's sends fail midway
        c.send(b"".join(packets.frame(b"m%x,ffff" % (RAM + (i % 8) * 0x10000))
                        for i in range(200)))
        c.drop(reset=reset)
        check_intact(stub, guest, expect=state)


def test_vanish_with_breakpoints_and_watchpoints(stub, guest):
    CASES["drops"] += 1
    sym = guest[1]
    c, state = started(stub, guest)
    assert c.ask(b"Z0,%x,1" % sym["loop"]) == b"OK"
    assert c.ask(b"Z2,%x,4" % sym["counter"]) == b"OK"
    c.drop()
    check_intact(stub, guest, expect=state)
    # The next client's continue is not stopped by the old client's points.
    c = Raw(stub.port)
    c.send(b"+")
    c.send(packets.frame(b"c"))
    c.wait_ack()
    time.sleep(0.2)
    c.send(b"\x03")
    assert c.reply().startswith(b"T02"), "stopped by a breakpoint nobody owns"
    c.detach()


def test_vanish_mid_step_burst(stub, guest):
    CASES["drops"] += 1
    c, _ = started(stub, guest)
    c.send(packets.frame(b"s") * 500)
    c.drop(reset=True)
    check_intact(stub, guest)


def test_second_client_is_refused_first_unharmed(stub, guest):
    CASES["drops"] += 1
    c, state = started(stub, guest)
    other = Raw(stub.port)
    other.send(b"+" + packets.frame(b"?"))
    reply = other.reply()
    assert reply.startswith(b"E"), reply
    other.drop()
    assert machine_state(c) == state
    c.detach()
    check_intact(stub, guest, expect=state)


def test_many_quick_drops(stub, guest):
    # connect and vanish at once, 30 times, some in the middle of a packet
    for i in range(30):
        CASES["drops"] += 1
        c = Raw(stub.port)
        if i % 3 == 1:
            c.send(b"+$g")
        elif i % 3 == 2:
            c.send(b"+" + packets.frame(b"qSupported"))
        c.drop(reset=i % 2 == 0)
    check_intact(stub, guest)
