"""The virtio block device backed by a file (3.2 lguest.c setup_block_file,
blk_request; the Guest's drivers/block/virtio_blk.c).

One queue.  Features FLUSH (bit 9) and SEG_MAX (bit 2), and RO (bit 5) for
--disk-readonly (an lgdbg addition: the 3.2 Launcher always opens O_RDWR).
Config: the first 16 bytes of virtio_blk_config, {u64 capacity in 512-byte
sectors, u32 size_max (not offered; the Launcher leaves stack garbage there,
we write 0), u32 seg_max = 256 - 2: the header and the status take two}.

A request: an out header {u32 type, u32 ioprio, u64 sector}, data buffers,
then one writable status byte.  The type is tested bit by bit, in the
Launcher's order: SCSI_CMD (2) is answered UNSUPP, OUT (1) writes, FLUSH (4)
syncs, anything else (IN, GET_ID, ...) reads.  used.len is 1 for the status
byte, plus the bytes read.

Where lgdbg departs from the real Launcher, so that a bad request gets the
device's error status and never ends the run:
  - a read or write that does not lie wholly inside the file answers IOERR
    (the Launcher reads short with status OK, and for a write past the end
    it truncates the file back and exits);
  - a write to a read-only disk answers IOERR.
A malformed chain (no status byte, a header of the wrong size or alignment)
ends the Launcher exactly as the real one does (errx).

Writes go through to the file at once; each keeps the bytes it replaced in a
history, so that restoring an older snapshot puts the disk back too.
"""

import os
import stat
import struct
import weakref

from ...errors import UsageError
from ...views.virtio_view import (SECTOR_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
                                  VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
                                  VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_OUT,
                                  VIRTIO_BLK_T_SCSI_CMD, VIRTIO_ID_BLOCK)
from .transport import VIRTQUEUE_NUM, Device
from .vring import errx

OUTHDR = struct.Struct("<IIQ")        # struct virtio_blk_outhdr
OUTHDR_ALIGN = 4                      # __alignof__ of a struct with a u64, on i386


class _Write:
    """One write in the disk's history: what was there, what came."""
    __slots__ = ("parent", "depth", "offset", "old", "new")

    def __init__(self, parent, offset, old, new):
        self.parent = parent
        self.depth = parent.depth + 1 if parent is not None else 1
        self.offset = offset
        self.old = old
        self.new = new


class DiskFile:
    """The backing file, opened as setup_block_file does (read-write, or
    read-only on request), with the history of the Guest's writes."""

    def __init__(self, path, readonly=False):
        self.path = str(path)
        self.readonly = readonly
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise UsageError("--disk %s: %s" % (self.path, e.strerror)) from None
        if stat.S_ISDIR(st.st_mode):
            raise UsageError("--disk %s: is a directory, not a disk image" % self.path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise UsageError("--disk %s: not a regular file or block device" % self.path)
        try:
            self.fd = os.open(self.path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as e:
            hint = ("; --disk-readonly opens it for reading only"
                    if not readonly and e.errno in (13, 30) else "")      # EACCES, EROFS
            raise UsageError("--disk %s: cannot open: %s%s"
                             % (self.path, e.strerror, hint)) from None
        # Closed with the device, or when it is dropped (a Machine has no close).
        self._closer = weakref.finalize(self, os.close, self.fd)
        # The length in bytes bounds every access; the Guest is told the
        # whole sectors only (a tail shorter than 512 bytes is never addressed).
        self.len = os.lseek(self.fd, 0, os.SEEK_END)
        self.head = None              # the last write, None: as opened

    def inside(self, off, length):
        return 0 <= off and off + length <= self.len

    def pread(self, off, length):
        return os.pread(self.fd, length, off)

    def pwrite(self, off, data):
        old = self._pread_full(off, len(data))
        self._pwrite_full(off, data)
        self.head = _Write(self.head, off, old, bytes(data))

    def _pread_full(self, off, length):
        parts, done = [], 0
        while done < length:
            piece = os.pread(self.fd, length - done, off + done)
            if not piece:
                break
            parts.append(piece)
            done += len(piece)
        return b"".join(parts)

    def _pwrite_full(self, off, data):
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], off + done)

    def fdatasync(self):
        os.fdatasync(self.fd)

    def rewind(self, target):
        """Make the file what it was when the history's head was target:
        undo back to the common ancestor, then redo forward to target."""
        here, undo, redo = self.head, [], []
        depth = lambda node: node.depth if node is not None else 0
        while depth(here) > depth(target):
            undo.append(here)
            here = here.parent
        there = target
        while depth(there) > depth(here):
            redo.append(there)
            there = there.parent
        while here is not there:
            undo.append(here)
            here = here.parent
            redo.append(there)
            there = there.parent
        for node in undo:
            self._pwrite_full(node.offset, node.old)
        for node in reversed(redo):
            self._pwrite_full(node.offset, node.new)
        self.head = target

    def close(self):
        self._closer()


class Block(Device):
    def __init__(self, devices, path, readonly=False):
        super().__init__(devices, "block", VIRTIO_ID_BLOCK)
        self.add_virtqueue(self.blk_request)
        self.disk = DiskFile(path, readonly)
        self.add_feature(VIRTIO_BLK_F_FLUSH)
        self.add_feature(VIRTIO_BLK_F_SEG_MAX)
        if readonly:
            self.add_feature(VIRTIO_BLK_F_RO)
        self.capacity = self.disk.len // SECTOR_SIZE
        self.set_config(struct.pack("<QII", self.capacity, 0, VIRTQUEUE_NUM - 2))

    def blk_request(self, bus, vq):
        vq.drain(bus, lambda head, iov, out_num, in_num:
                 self._request(bus, vq, head, iov, out_num, in_num))

    @staticmethod
    def _convert(iov, size, align, name):
        """convert(): a buffer that must be exactly one object, aligned."""
        addr, length, _ = iov
        if length != size:
            errx("Bad iovec size %u for %s", length, name)
        if addr % align:
            errx("Bad alignment %#x for %s", addr, name)
        return addr

    def _request(self, bus, vq, head, iov, out_num, in_num):
        # At least the header (out) and the status byte (in).
        if out_num == 0 or in_num == 0:
            errx("Bad virtblk cmd %u out=%u in=%u", head, out_num, in_num)
        hdr = self._convert(iov[0], OUTHDR.size, OUTHDR_ALIGN, "struct virtio_blk_outhdr")
        status_at = self._convert(iov[out_num + in_num - 1], 1, 1, "u8")
        req_type, _, sector = OUTHDR.unpack(bus.read(hdr, OUTHDR.size))
        off = sector * SECTOR_SIZE
        disk = self.disk
        wlen = 1
        nbytes = 0
        if req_type & VIRTIO_BLK_T_SCSI_CMD:
            op, status = "scsi", VIRTIO_BLK_S_UNSUPP
        elif req_type & VIRTIO_BLK_T_OUT:
            # writev(iov + 1, out_num - 1): the data after the header.
            op = "write"
            data = b"".join(bus.read(addr, length) for addr, length, _ in iov[1:out_num])
            nbytes = len(data)
            if disk.readonly or not disk.inside(off, nbytes):
                status = VIRTIO_BLK_S_IOERR
            else:
                status = self._io(lambda: disk.pwrite(off, data))
        elif req_type & VIRTIO_BLK_T_FLUSH:
            op = "flush"
            status = self._io(disk.fdatasync)
        else:
            # readv(iov + 1, in_num - 1): counted from just after the header,
            # as the Launcher does (the same as the writable buffers but the
            # status byte, for the one-header requests the Guest sends).
            op = "read"
            targets = iov[1:in_num]
            want = sum(length for _, length, _ in targets)
            status, data = VIRTIO_BLK_S_IOERR, b""
            if disk.inside(off, want):
                try:
                    data = disk.pread(off, want)
                    status = VIRTIO_BLK_S_OK
                except OSError:
                    pass
            bus.scatter(targets, data)
            nbytes = len(data)
            wlen += nbytes
        bus.write(status_at, bytes([status]))
        bus.emit("virtio", dev=self.name, vq=vq.index, op=op, type=req_type, sector=sector,
                 bytes=nbytes, status=status)
        vq.add_used(bus, head, wlen)

    @staticmethod
    def _io(action):
        try:
            action()
        except OSError:
            return VIRTIO_BLK_S_IOERR
        return VIRTIO_BLK_S_OK

    def state(self):
        state = super().state()
        state.update(disk=self.disk.path, readonly=self.disk.readonly, disk_bytes=self.disk.len)
        return state

    def save_state(self):
        state = super().save_state()
        state["disk_head"] = self.disk.head
        return state

    def load_state(self, state):
        super().load_state(state)
        self.disk.rewind(state["disk_head"])

    def close(self):
        self.disk.close()
