"""The 3.2 Launcher's virtio devices (lgdbg/machine/virtio/) driven as the Guest
drives them: lguest_device.c's status protocol and virtio_ring.c's rings,
written into a real GuestMemory over a real Cpu, with a real file as the disk.

Each rule is checked from both sides where it has two: what the device does
and what it must not do (no irq under NO_INTERRUPT, no input before a HALT's
feed, no write on a read-only disk, no file change on a refused request).
"""

import os
import shutil
import tempfile
import struct
import subprocess
import sys

import pytest

from lgdbg.errors import UsageError
from lgdbg.machine.console_input import ConsoleInput
from lgdbg.machine.cpu import Cpu
from lgdbg.machine.memory import GuestMemory
from lgdbg.machine.virtio import Devices
from lgdbg.views import virtio_view as vv

MEM = 1 << 20
PAGE_OFFSET = 0xC0000000
BUF = 0x10000                      # where the test "Guest" keeps its buffers
NEXT, WRITE, INDIRECT = 1, 2, 4
ACK, DRIVER, DRIVER_OK, FAILED = 1, 2, 4, 0x80


class Ring:
    """The Guest's half of one vring, as virtio_ring.c keeps it: a free list
    threaded through desc[].next, avail->idx bumped at kick, last_used_idx."""

    def __init__(self, mem, num, irq, pfn):
        self.mem, self.num, self.irq, self.pfn = mem, num, irq, pfn
        self.desc, self.avail, self.used = vv.vring_layout(pfn << 12, num)
        for i in range(num - 1):                    # vring_new_virtqueue
            self.set_desc(i, 0, 0, 0, i + 1)
        self.free_head = 0
        self.last_used = 0

    def set_desc(self, i, addr, length, flags, nxt):
        self.mem.write(self.desc + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def get_desc(self, i):
        return struct.unpack("<QIHH", self.mem.read(self.desc + 16 * i, 16))

    def u16(self, addr):
        return struct.unpack("<H", self.mem.read(addr, 2))[0]

    def put_u16(self, addr, value):
        self.mem.write(addr, struct.pack("<H", value & 0xFFFF))

    def add_buf(self, outs=(), ins=()):
        """virtqueue_add_buf then the avail->idx update of virtqueue_kick."""
        bufs = [(a, n, 0) for a, n in outs] + [(a, n, WRITE) for a, n in ins]
        head = i = self.free_head
        for k, (addr, length, flags) in enumerate(bufs):
            nxt = self.get_desc(i)[3]
            last = k == len(bufs) - 1
            self.set_desc(i, addr, length, flags | (0 if last else NEXT), nxt)
            if not last:
                i = nxt
        self.free_head = self.get_desc(i)[3]
        self.post(head)
        return head

    def post(self, head):
        idx = self.u16(self.avail + 2)
        self.put_u16(self.avail + 4 + 2 * (idx % self.num), head)
        self.put_u16(self.avail + 2, idx + 1)

    def get_buf(self):
        """virtqueue_get_buf: (id, len) of the next used element, or None."""
        if self.last_used == self.u16(self.used + 2):
            return None
        slot = self.used + 4 + 8 * (self.last_used % self.num)
        self.last_used += 1
        return struct.unpack("<II", self.mem.read(slot, 8))

    def disable_cb(self):
        self.put_u16(self.avail, self.u16(self.avail) | 1)

    def enable_cb(self):
        self.put_u16(self.avail, self.u16(self.avail) & ~1)


class Rig:
    """A machine's memory, the Launcher's Devices, and what came out of them."""

    def __init__(self, disk=None, readonly=False, stdin=None, mem=MEM):
        self.input = ConsoleInput(stdin)
        self.devs = Devices(mem, self.input, disk=disk, disk_readonly=readonly)
        self.cpu = Cpu(PAGE_OFFSET, self.devs.top)
        self.kills, self.irqs, self.events, self.out = [], [], [], bytearray()
        self.mem = GuestMemory(self.cpu, self.devs.top, self.kills.append)
        self.devs.load(self.cpu.ram)
        self.devs.attach(self.mem, self.emit, self.irqs.append, self.out.extend, self.kills.append)

    def emit(self, kind, **fields):
        self.events.append(dict(fields, kind=kind))

    def ops(self, op):
        return [e for e in self.events if e["kind"] == "virtio" and e.get("op") == op]

    def dev(self, name):
        return next(d for d in vv.decode(self.mem.read, self.devs.descpage)["devices"]
                    if d["type_name"] == name)

    def ring(self, name, index):
        q = self.dev(name)["queues"][index]
        return Ring(self.mem, q["num"], q["irq"], q["pfn"])

    def set_status(self, name, status, notify=False):
        dev = self.dev(name)
        self.mem.write(dev["addr"] + 4, bytes([status]))
        if notify:
            assert self.devs.notify(dev["addr"]) is True

    def probe(self, name, accept=None):
        """virtio.c's register + probe with lguest_device.c's config ops:
        reset (NOTIFY), ACKNOWLEDGE, DRIVER, finalize (NOTIFY), DRIVER_OK."""
        dev = self.dev(name)
        self.set_status(name, 0, notify=True)
        self.set_status(name, ACK)
        self.set_status(name, ACK | DRIVER)
        flen = dev["feature_len"]
        features = dev["features"] if accept is None else accept
        at = dev["addr"] + 5 + 8 * len(dev["queues"]) + flen
        self.mem.write(at, features.to_bytes(4, "little")[:flen])
        assert self.devs.notify(dev["addr"]) is True
        self.set_status(name, ACK | DRIVER | DRIVER_OK)
        return [self.ring(name, i) for i in range(len(dev["queues"]))]

    def kick(self, ring):
        return self.devs.notify(ring.pfn << 12)


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(range(256)) * 16)                # 4096 bytes: 8 sectors
    return path


def blk_req(rig, ring, req_type, sector, data=None, read_len=0, status_at=BUF + 0xF00):
    """A virtio_blk request: header out, data out (write) or in (read), status in."""
    rig.mem.write(BUF, struct.pack("<IIQ", req_type, 0, sector))
    rig.mem.write(status_at, b"\xee")
    outs, ins = [(BUF, 16)], []
    if data is not None:
        rig.mem.write(BUF + 0x100, data)
        outs.append((BUF + 0x100, len(data)))
    if read_len:
        ins.append((BUF + 0x1000, read_len))
    ins.append((status_at, 1))
    head = ring.add_buf(outs, ins)
    assert rig.kick(ring) is True
    return head, rig.mem.read(status_at, 1)[0]


# --- layout -----------------------------------------------------------------------------------
def test_layout_block_first_console_last(disk):
    rig = Rig(disk)
    devs = rig.devs
    assert devs.descpage == MEM
    assert devs.top == MEM + (1 + 3 + 3 + 3) * 4096            # page, block vq, console vq0, vq1
    page = rig.mem.read(MEM, 4096)
    # block: type 2, 1 vq, feature_len 2, config_len 16, status 0
    assert page[:5] == bytes([2, 1, 2, 16, 0])
    assert struct.unpack_from("<HHI", page, 5) == (256, 1, (MEM >> 12) + 1)
    assert page[13:15] == bytes([0x04, 0x02])                  # SEG_MAX (2), FLUSH (9)
    assert page[15:17] == bytes(2)                             # nothing accepted yet
    assert struct.unpack_from("<QII", page, 17) == (8, 0, 254)
    # the console right after: type 3, 2 vqs, irqs 2 and 3, no features, no config
    assert page[33:38] == bytes([3, 2, 0, 0, 0])
    assert struct.unpack_from("<HHIHHI", page, 38) == (256, 2, (MEM >> 12) + 4,
                                                       256, 3, (MEM >> 12) + 7)
    assert page[54] == 0                                       # type 0 ends the list
    blk, con = vv.decode(rig.mem.read, MEM)["devices"]
    assert blk["features_names"] == ["SEG_MAX", "FLUSH"] and con["features"] == 0


def test_layout_console_alone_takes_irqs_from_1():
    rig = Rig()
    assert rig.devs.top == MEM + 7 * 4096
    (con,) = vv.decode(rig.mem.read, MEM)["devices"]
    assert [(q["irq"], q["pfn"]) for q in con["queues"]] == [(1, 0x101), (2, 0x104)]
    # The rings' pages are zero and the page past the last device is not ours.
    assert rig.mem.read(MEM + 4096, 6 * 4096) == bytes(6 * 4096)


def test_disk_size_not_a_sector_multiple(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(b"x" * 1300)
    rig = Rig(path)
    assert rig.dev("block")["config"]["capacity"] == 2          # whole sectors only
    (ring,) = rig.probe("block")
    # The tail is inside the file: a read covering 1024..1300 is refused
    # (it runs past 1300), one ending at 1024 is fine.
    assert blk_req(rig, ring, 0, 2, read_len=512)[1] == vv.VIRTIO_BLK_S_IOERR
    assert blk_req(rig, ring, 0, 1, read_len=512)[1] == vv.VIRTIO_BLK_S_OK


@pytest.mark.parametrize("case", ["missing", "directory", "fifo"])
def test_disk_that_cannot_be_opened(tmp_path, case):
    path = tmp_path / "d"
    if case == "directory":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    with pytest.raises(UsageError) as e:
        Devices(MEM, ConsoleInput(), disk=path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError):
        Devices(MEM, ConsoleInput(), disk=path, disk_readonly=True)


ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNWRITABLE_CHECK = """
import sys
from lgdbg.errors import UsageError
from lgdbg.machine.console_input import ConsoleInput
from lgdbg.machine.virtio import Devices
try:
    Devices(%d, ConsoleInput(), disk=sys.argv[1])
except UsageError as e:
    print("refused:", e)
Devices(%d, ConsoleInput(), disk=sys.argv[1], disk_readonly=True).close()
print("read-only: opened")
""" % (MEM, MEM)


def test_unwritable_disk_needs_readonly(disk):
    """A disk file we may not write: refused without --disk-readonly.  Root
    may write any file, so as root the check runs as `nobody` (setpriv)."""
    with tempfile.TemporaryDirectory() as shared:       # one nobody may enter
        os.chmod(shared, 0o755)
        path = os.path.join(shared, "disk.img")
        shutil.copy(disk, path)
        os.chmod(path, 0o444)
        cmd = [sys.executable, "-c", UNWRITABLE_CHECK, path]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.fail("running as root and no setpriv to drop to nobody")
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT_DIR)
    assert "refused:" in r.stdout and "--disk-readonly" in r.stdout, r.stdout + r.stderr
    assert "read-only: opened" in r.stdout, r.stdout + r.stderr


# --- status NOTIFYs ---------------------------------------------------------------------------
def test_status_sequence_starts_device_once():
    rig = Rig()
    con = rig.dev("console")
    rig.set_status("console", 0, notify=True)                   # lg_reset: a reset, not a start
    assert rig.devs.list[0].running is False
    rig.set_status("console", ACK)
    rig.set_status("console", ACK | DRIVER)
    assert rig.ops("start") == []                               # no NOTIFY for those
    assert rig.devs.notify(con["addr"]) is True                 # finalize
    assert rig.devs.list[0].running is True and len(rig.ops("start")) == 1
    assert [e["status"] for e in rig.ops("status")] == [0, ACK | DRIVER]
    assert rig.kills == []
    # A second finalize is the Launcher's err(): the Guest is gone.
    assert rig.devs.notify(con["addr"]) is True
    assert rig.kills == ["Device console features finalized twice"]


def test_failed_resets_a_running_device_and_zeroes_its_rings(disk):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    blk_req(rig, ring, 0, 0, read_len=512)
    blk = rig.devs.list[0]
    assert blk.vqs[0].last_avail == 1 and rig.dev("block")["accepted"] == 0x204
    rig.set_status("block", ACK | DRIVER | FAILED, notify=True)
    assert [e["text"] for e in rig.ops("warning")] == ["Device block configuration FAILED"]
    assert blk.running is False and blk.vqs[0].last_avail == 0
    assert rig.dev("block")["accepted"] == 0
    assert rig.mem.read(ring.desc, blk.vqs[0].size) == bytes(blk.vqs[0].size)
    # FAILED on a stopped device only warns; the Guest lives on.
    rig.set_status("block", FAILED, notify=True)
    assert len(rig.ops("warning")) == 2 and len(rig.ops("reset")) == 2 and rig.kills == []


def test_kick_before_setup_kills():
    rig = Rig()
    ring = rig.ring("console", 1)
    assert rig.kick(ring) is True
    assert rig.kills == ["Notification on console before setup!"]


def test_kick_after_reset_is_lost_not_fatal():
    rig = Rig()
    _, out = rig.probe("console")
    rig.set_status("console", 0, notify=True)
    rig.mem.write(BUF, b"lost")
    out = rig.ring("console", 1)
    out.add_buf([(BUF, 4)])
    assert rig.kick(out) is True
    assert rig.kills == [] and bytes(rig.out) == b"" and len(rig.ops("kick-lost")) == 1


def test_notify_elsewhere_is_not_ours():
    rig = Rig()
    assert rig.devs.notify(0x1234) is False                     # RAM: the early console
    assert rig.devs.notify(rig.devs.top + 4096) is False        # beyond: "Bad NOTIFY"
    assert rig.devs.notify(rig.dev("console")["addr"] + 1) is False
    assert rig.kills == [] and rig.events == []


# --- console ----------------------------------------------------------------------------------
def test_console_output_chain_and_used_ring():
    rig = Rig()
    _, out = rig.probe("console")
    rig.mem.write(BUF, b"Hello, ")
    rig.mem.write(BUF + 0x80, b"hvc0\n")
    head = out.add_buf([(BUF, 7), (BUF + 0x80, 5)])
    assert rig.kick(out) is True
    assert bytes(rig.out) == b"Hello, hvc0\n"
    assert [e["text"] for e in rig.events if e["kind"] == "console"] == ["Hello, hvc0\n"]
    assert out.get_buf() == (head, 0) and out.get_buf() is None
    assert rig.irqs == [3 - 1]                                  # console alone: vq1 is irq 2
    assert rig.devs.list[0].vqs[1].last_avail == 1


def test_console_output_honours_no_interrupt():
    rig = Rig()
    _, out = rig.probe("console")
    out.disable_cb()
    rig.mem.write(BUF, b"quiet")
    out.add_buf([(BUF, 5)])
    rig.kick(out)
    assert bytes(rig.out) == b"quiet" and out.get_buf() is not None
    assert rig.irqs == [] and len(rig.ops("irq-suppressed")) == 1
    out.enable_cb()
    out.add_buf([(BUF, 5)])
    rig.kick(out)
    assert rig.irqs == [2]


def test_console_output_with_a_writable_buffer_kills():
    rig = Rig()
    _, out = rig.probe("console")
    out.add_buf([(BUF, 4)], [(BUF + 0x10, 4)])
    rig.kick(out)
    assert rig.kills == ["Input buffers in console output queue?"] and bytes(rig.out) == b""


def test_console_input_one_line_per_feed(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"ls -l\necho hi\n")
    with open(src, "rb") as stdin:
        rig = Rig(stdin=stdin)
        assert rig.devs.feed_console() is False                 # device not started
        inq, _ = rig.probe("console")
        assert rig.devs.console_waiting() is False              # no buffer posted yet
        h1 = inq.add_buf(ins=[(BUF, 4096)])
        h2 = inq.add_buf(ins=[(BUF + 0x1000, 4096)])
        assert rig.kick(inq) is True
        # Posting buffers hands nothing over: only a HALT's feed does.
        assert inq.get_buf() is None and rig.irqs == []
        assert rig.devs.console_waiting() is True
        assert rig.devs.feed_console() is True
        assert inq.get_buf() == (h1, 6) and rig.mem.read(BUF, 6) == b"ls -l\n"
        assert rig.irqs == [1]
        assert rig.devs.feed_console() is True
        assert inq.get_buf() == (h2, 8) and rig.mem.read(BUF + 0x1000, 8) == b"echo hi\n"
        assert rig.irqs == [1, 1]
        assert [e["text"] for e in rig.events if e["kind"] == "console-in"] == \
            ["ls -l\n", "echo hi\n"]
        assert rig.devs.console_waiting() is False              # no buffer left
        assert rig.devs.feed_console() is False


def test_console_input_eof_ignores_the_console(tmp_path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    with open(src, "rb") as stdin:
        rig = Rig(stdin=stdin)
        inq, _ = rig.probe("console")
        inq.add_buf(ins=[(BUF, 4096)])
        inq.add_buf(ins=[(BUF + 0x1000, 4096)])
        rig.kick(inq)
        assert rig.devs.feed_console() is False
        assert [e["text"] for e in rig.ops("warning")] == \
            ["Failed to get console input, ignoring console."]
        rig.input.send(b"late\n")                               # too late: the thread naps
        assert rig.devs.console_waiting() is False and rig.devs.feed_console() is False
        assert rig.irqs == [] and rig.kills == []


def test_console_input_honours_no_interrupt():
    rig = Rig()
    inq, _ = rig.probe("console")
    inq.add_buf(ins=[(BUF, 16)])
    rig.kick(inq)
    inq.disable_cb()
    rig.input.send(b"a line longer than sixteen\n")
    assert rig.devs.feed_console() is True
    assert inq.get_buf()[1] == 16 and rig.irqs == []            # at most the buffer's size


# --- block ------------------------------------------------------------------------------------
def test_block_read_into_two_buffers(disk):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    rig.mem.write(BUF, struct.pack("<IIQ", vv.VIRTIO_BLK_T_IN, 0, 2))
    head = ring.add_buf([(BUF, 16)], [(BUF + 0x1000, 512), (BUF + 0x2000, 512), (BUF + 0xF00, 1)])
    rig.kick(ring)
    content = disk.read_bytes()
    assert rig.mem.read(BUF + 0x1000, 512) == content[1024:1536]
    assert rig.mem.read(BUF + 0x2000, 512) == content[1536:2048]
    assert rig.mem.read(BUF + 0xF00, 1) == b"\0"
    assert ring.get_buf() == (head, 1 + 1024)
    assert rig.irqs == [1]


def test_block_write_reaches_the_file(disk):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    before = disk.read_bytes()
    head, status = blk_req(rig, ring, vv.VIRTIO_BLK_T_OUT, 3, data=b"W" * 1024)
    assert status == vv.VIRTIO_BLK_S_OK and ring.get_buf() == (head, 1)
    after = disk.read_bytes()
    assert after[1536:2560] == b"W" * 1024
    assert after[:1536] == before[:1536] and after[2560:] == before[2560:]
    # And back through the device.
    blk_req(rig, ring, vv.VIRTIO_BLK_T_IN, 3, read_len=1024)
    assert rig.mem.read(BUF + 0x1000, 1024) == b"W" * 1024


def test_block_flush(disk):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    head, status = blk_req(rig, ring, vv.VIRTIO_BLK_T_FLUSH, 0)
    assert status == vv.VIRTIO_BLK_S_OK and ring.get_buf() == (head, 1)
    assert rig.ops("flush")[0]["status"] == 0


@pytest.mark.parametrize("req_type, op, status", [
    (vv.VIRTIO_BLK_T_SCSI_CMD, "scsi", vv.VIRTIO_BLK_S_UNSUPP),
    (3, "scsi", vv.VIRTIO_BLK_S_UNSUPP),                        # SCSI_CMD_OUT: the SCSI bit wins
    (vv.VIRTIO_BLK_T_FLUSH | vv.VIRTIO_BLK_T_OUT, "write", vv.VIRTIO_BLK_S_OK),  # FLUSH_OUT
    (vv.VIRTIO_BLK_T_GET_ID, "read", vv.VIRTIO_BLK_S_OK),       # like every other type: a read
    (0x40, "read", vv.VIRTIO_BLK_S_OK),
])
def test_block_request_types_as_the_launcher_tests_them(disk, req_type, op, status):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    before = disk.read_bytes()
    data = b"F" * 512 if req_type & 1 and not req_type & 2 else None
    head, got = blk_req(rig, ring, req_type, 1, data=data, read_len=0 if data else 20)
    assert got == status and rig.ops(op)[0]["type"] == req_type
    length = ring.get_buf()[1]
    if op == "read":
        assert length == 21 and rig.mem.read(BUF + 0x1000, 20) == before[512:532]
    else:
        assert length == 1
    assert (disk.read_bytes() != before) == (op == "write")
    assert rig.kills == []


@pytest.mark.parametrize("req_type, sector, nbytes", [
    (vv.VIRTIO_BLK_T_IN, 8, 512),          # just past the end
    (vv.VIRTIO_BLK_T_IN, 7, 1024),         # straddling it
    (vv.VIRTIO_BLK_T_OUT, 8, 512),
    (vv.VIRTIO_BLK_T_OUT, 7, 1024),
    (vv.VIRTIO_BLK_T_OUT, 1 << 60, 512),   # far away (the byte offset needs 69 bits)
])
def test_block_outside_the_disk_is_ioerr(disk, req_type, sector, nbytes):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    before = disk.read_bytes()
    write = req_type == vv.VIRTIO_BLK_T_OUT
    head, status = blk_req(rig, ring, req_type, sector, data=b"X" * nbytes if write else None,
                           read_len=0 if write else nbytes)
    assert status == vv.VIRTIO_BLK_S_IOERR and ring.get_buf() == (head, 1)
    assert disk.read_bytes() == before and rig.kills == []
    # The device carries on.
    assert blk_req(rig, ring, vv.VIRTIO_BLK_T_IN, 7, read_len=512)[1] == vv.VIRTIO_BLK_S_OK


def test_readonly_disk(disk):
    disk.chmod(0o444)
    rig = Rig(disk, readonly=True)
    dev = rig.dev("block")
    assert dev["features_names"] == ["SEG_MAX", "RO", "FLUSH"]
    (ring,) = rig.probe("block")
    before = disk.read_bytes()
    head, status = blk_req(rig, ring, vv.VIRTIO_BLK_T_OUT, 0, data=b"no" * 256)
    assert status == vv.VIRTIO_BLK_S_IOERR and ring.get_buf() == (head, 1)
    assert disk.read_bytes() == before
    assert blk_req(rig, ring, vv.VIRTIO_BLK_T_IN, 0, read_len=512)[1] == vv.VIRTIO_BLK_S_OK
    assert rig.mem.read(BUF + 0x1000, 512) == before[:512]
    assert blk_req(rig, ring, vv.VIRTIO_BLK_T_FLUSH, 0)[1] == vv.VIRTIO_BLK_S_OK


# --- chains the Launcher refuses (errx: the Guest is gone) ------------------------------------
def _post_raw(rig, ring, descs, head=0):
    for i, d in descs.items():
        ring.set_desc(i, *d)
    ring.post(head)
    rig.kick(ring)


@pytest.mark.parametrize("descs, head, reason", [
    ({0: (BUF, 16, 0, 0)}, 0, "Bad virtblk cmd 0 out=1 in=0"),                 # no status byte
    ({0: (BUF, 16, NEXT, 1), 1: (BUF + 0xF00, 1, WRITE, 0)}, 300,
     "Guest says index 300 is available"),
    ({0: (BUF, 16, NEXT, 400)}, 0, "Desc next is 400"),
    ({0: (BUF, 16, NEXT, 1), 1: (BUF + 0x100, 8, NEXT, 0)}, 0, "Looped descriptor"),
    ({0: (BUF, 16, NEXT, 1), 1: (0xFFFFF000, 0x2000, WRITE, 0)}, 0, "Invalid address 0xfffff000"),
    ({0: (BUF, 16, NEXT, 1), 1: (MEM + 10 * 4096 - 1, 2, WRITE, 0)}, 0,
     "Invalid address %#x" % (MEM + 10 * 4096 - 1)),                         # one byte past the top
    ({0: (BUF, 16, WRITE | NEXT, 1), 1: (BUF + 0x100, 8, 0, 0)}, 0, "Descriptor has out after in"),
    ({0: (BUF, 8, NEXT, 1), 1: (BUF + 0xF00, 1, WRITE, 0)}, 0,
     "Bad iovec size 8 for struct virtio_blk_outhdr"),
    ({0: (BUF + 2, 16, NEXT, 1), 1: (BUF + 0xF00, 1, WRITE, 0)}, 0,
     "Bad alignment %#x for struct virtio_blk_outhdr" % (BUF + 2)),
    ({0: (BUF, 16, NEXT, 1), 1: (BUF + 0xF00, 2, WRITE, 0)}, 0, "Bad iovec size 2 for u8"),
    ({0: (BUF, 24, INDIRECT, 0)}, 0, "Invalid size for indirect buffer table"),
])
def test_malformed_chain_kills_like_the_launcher(disk, descs, head, reason):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    before = disk.read_bytes()
    _post_raw(rig, ring, descs, head)
    assert rig.kills == [reason]
    assert rig.ops("launcher-died")[0]["reason"] == reason
    assert disk.read_bytes() == before and rig.irqs == []


def test_avail_index_jumping_kills(disk):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    ring.put_u16(ring.avail + 2, 300)
    rig.kick(ring)
    assert rig.kills == ["Guest moved used index from 0 to 300"]


def test_buffer_ending_exactly_at_the_top_is_allowed():
    rig = Rig()
    _, out = rig.probe("console")
    top = rig.devs.top
    rig.cpu.ram[top - 3:top] = b"end"
    out.add_buf([(top - 3, 3)])
    rig.kick(out)
    assert rig.kills == [] and bytes(rig.out) == b"end"


def test_indirect_table_is_walked(disk):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    table = BUF + 0x3000
    rig.mem.write(BUF, struct.pack("<IIQ", vv.VIRTIO_BLK_T_IN, 0, 1))
    rig.mem.write(table, struct.pack("<QIHH", BUF, 16, NEXT, 1)
                  + struct.pack("<QIHH", BUF + 0x1000, 512, NEXT | WRITE, 2)
                  + struct.pack("<QIHH", BUF + 0xF00, 1, WRITE, 0))
    _post_raw(rig, ring, {0: (table, 48, INDIRECT, 0)})
    assert rig.kills == [] and ring.get_buf() == (0, 513)
    assert rig.mem.read(BUF + 0x1000, 512) == disk.read_bytes()[512:1024]


# --- snapshots --------------------------------------------------------------------------------
def test_load_state_rolls_the_disk_back_and_forward(disk):
    rig = Rig(disk)
    (ring,) = rig.probe("block")
    original = disk.read_bytes()
    a = rig.devs.save_state()
    blk_req(rig, ring, vv.VIRTIO_BLK_T_OUT, 1, data=b"B" * 512)
    blk_req(rig, ring, vv.VIRTIO_BLK_T_OUT, 2, data=b"C" * 512)
    b_disk = disk.read_bytes()
    b = rig.devs.save_state()
    blk = rig.devs.list[0]
    assert blk.vqs[0].last_avail == 2
    rig.devs.load_state(a)
    assert disk.read_bytes() == original and blk.vqs[0].last_avail == 0
    rig.devs.load_state(b)                                      # forward again: redone
    assert disk.read_bytes() == b_disk and blk.vqs[0].last_avail == 2
    # Another branch from a: its own write, then back to b's.
    rig.devs.load_state(a)
    ring.post(0)                    # the Guest's ring is not restored here: no matter
    blk.vqs[0].last_avail = 0
    rig.mem.write(BUF, struct.pack("<IIQ", vv.VIRTIO_BLK_T_OUT, 0, 1))
    rig.mem.write(BUF + 0x100, b"D" * 512)
    ring.set_desc(0, BUF, 16, NEXT, 1)
    ring.set_desc(1, BUF + 0x100, 512, NEXT, 2)
    ring.set_desc(2, BUF + 0xF00, 1, WRITE, 0)
    ring.put_u16(ring.avail + 2, 1)
    ring.put_u16(ring.avail + 4, 0)
    rig.kick(ring)
    assert disk.read_bytes()[512:1024] == b"D" * 512
    rig.devs.load_state(b)
    assert disk.read_bytes() == b_disk
    rig.devs.load_state(a)
    assert disk.read_bytes() == original


def test_state_keeps_started_flags_and_cursors():
    rig = Rig()
    saved = rig.devs.save_state()
    _, out = rig.probe("console")
    rig.mem.write(BUF, b"x")
    out.add_buf([(BUF, 1)])
    rig.kick(out)
    rig.devs.load_state(saved)
    con = rig.devs.list[0]
    assert con.running is False and con.vqs[1].last_avail == 0 and not con.vqs[1].eventfd
    rig.kick(out)                                               # not started in that past
    assert rig.kills == ["Notification on console before setup!"]


# --- the view ---------------------------------------------------------------------------------
def test_describe_shows_status_features_config_and_chains(disk):
    rig = Rig(disk)
    rig.probe("block")
    inq, _ = rig.probe("console")
    inq.add_buf(ins=[(BUF, 4096)])
    rig.kick(inq)
    info = rig.devs.describe()
    blk, con = info["devices"]
    assert blk["name"] == "block" and blk["running"] is True and blk["disk"] == str(disk)
    assert blk["status_names"] == ["ACKNOWLEDGE", "DRIVER", "DRIVER_OK"]
    assert blk["accepted_names"] == ["SEG_MAX", "FLUSH"]
    assert blk["config"] == {"capacity": 8, "size_max": 0, "seg_max": 254}
    q = con["queues"][0]
    assert (q["irq"], q["num"], q["avail_idx"], q["used_idx"], q["last_avail"]) == (2, 256, 1, 0, 0)
    assert q["desc"] == q["pfn"] << 12 and q["avail"] == q["desc"] + 4096
    assert q["used"] == q["desc"] + 8192
    assert q["in_flight"] == 1
    (c,) = q["chains"]
    assert c["taken"] is False and c["chain"] == [
        {"index": 0, "addr": BUF, "len": 4096, "flags": ["WRITE"]}]
    text = "\n".join(vv.render(info))
    assert "device 0: block (type 2 block)" in text and "status 0x07" in text
    assert "capacity 8 sectors" in text and "accepted 0x00000204 SEG_MAX FLUSH" in text
    assert "avail[0] head 0 waiting: [0] %#x+4096 W" % BUF in text
    # The decoder alone (what gdb can do) says the same, less the Launcher's side.
    plain = vv.decode(rig.mem.read, rig.devs.descpage)
    assert plain["devices"][1]["queues"][0]["chains"][0]["chain"] == c["chain"]
    assert plain["devices"][0]["name"] is None and "taken" not in \
        plain["devices"][1]["queues"][0]["chains"][0]


def test_decode_survives_garbage():
    page = bytearray(4096)
    page[0:5] = bytes([9, 255, 255, 255, 0])                     # 2810 bytes
    page[2810:2815] = bytes([9, 255, 255, 255, 0])               # runs past the page
    info = vv.decode(lambda a, n: bytes(page[a:a + n]).ljust(n, b"\0"), 0)
    assert len(info["devices"]) == 2 and "error" not in info["devices"][0]
    assert info["devices"][1]["error"] == "descriptor runs past the page end (2810 bytes at 2810)"
    assert "runs past the page end" in "\n".join(vv.render(info))

    def failing(addr, length):
        raise OSError("no such memory")
    assert "cannot read" in vv.decode(failing, 0)["error"]
    # A looping chain in a ring is reported, not followed for ever.
    mem = bytearray(4 * 4096)
    mem[0:5] = bytes([2, 1, 0, 0, 7])
    struct.pack_into("<HHI", mem, 5, 4, 1, 1)
    desc, avail, used = vv.vring_layout(4096, 4)
    struct.pack_into("<QIHH", mem, desc, 0x100, 8, NEXT, 1)
    struct.pack_into("<QIHH", mem, desc + 16, 0x200, 8, NEXT, 0)
    struct.pack_into("<HHH", mem, avail, 0, 1, 0)
    info = vv.decode(lambda a, n: bytes(mem[a:a + n]).ljust(n, b"\0"), 0)
    chain = info["devices"][0]["queues"][0]["chains"][0]
    assert chain["error"] == "descriptor loop at index 0" and len(chain["chain"]) == 2
    assert "!! descriptor loop" in "\n".join(vv.render(info))


def test_view_module_is_stdlib_only():
    code = ("import sys, lgdbg.views.virtio_view\n"
            "bad = [m for m in sys.modules\n"
            "       if m.startswith(('unicorn', 'lgdbg.machine', 'capstone'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_chain_of_every_descriptor_is_not_a_loop():
    rig = Rig()
    _, out = rig.probe("console")
    rig.mem.write(BUF, bytes(range(256)))
    head = out.add_buf([(BUF + i, 1) for i in range(256)])   # num descriptors: the most there are
    rig.kick(out)
    assert rig.kills == [] and bytes(rig.out) == bytes(range(256)) and out.get_buf() == (head, 0)
