"""The device side of a legacy vring, as the 3.2 Launcher drives it
(Documentation/virtual/lguest/lguest.c: _check_pointer, next_desc,
wait_for_vq_desc, add_used, trigger_irq).

The real Launcher services each queue in a thread of its own that sleeps on
an eventfd the Host signals at the Guest's NOTIFY.  Here the Guest is stopped
while the Launcher works, so a kick is serviced at once, to the end: what the
thread does between waking and going back to sleep.  That makes a queue's
progress a function of the Guest's instructions alone (deterministic), and
means the Launcher is never "busy" when the Guest looks: it never sets
VRING_USED_F_NO_NOTIFY, so the Guest kicks after every add.

Everything the real Launcher refuses with errx() (a Guest that lies in its
rings) raises LauncherDied with the same words; the caller turns that into
the Guest's death.
"""

import struct

from ...views.virtio_view import (VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT,
                                  VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_SIZE,
                                  read_desc, vring_layout, vring_size)


class LauncherDied(Exception):
    """errx(1, ...) in the Launcher: the Launcher exits, the Guest is gone."""


def errx(fmt, *args):
    raise LauncherDied(fmt % args)


class GuestBus:
    """The Launcher's window on Guest memory: guest_limit and the pointer
    check, physical reads and writes, and the way back to the Host."""

    def __init__(self, mem, limit, emit, trigger_irq):
        self.mem = mem
        self.limit = limit              # guest_limit: RAM and every device page
        self.emit = emit
        self.raise_irq = trigger_irq    # LHREQ_IRQ

    def check_pointer(self, addr, size):
        """_check_pointer: the END of the buffer may reach guest_limit but not
        pass it, nor wrap.  The 32-bit Launcher passes the descriptor's u64
        address as an unsigned long, so the high half is dropped first."""
        addr &= 0xFFFFFFFF
        end = addr + size
        if end > self.limit or end > 0xFFFFFFFF:
            errx("Invalid address %#x", addr)
        return addr

    def read(self, addr, length):
        """Bytes the Launcher reads through its mapping of Guest memory; past
        guest_limit it would hit its guard page, here it reads zeros (only
        the display and an indirect table's first entry can ask for that)."""
        end = min(addr + length, self.limit)
        raw = bytes(self.mem.buf[addr:end]) if addr < end else b""
        return raw + bytes(length - len(raw))

    def write(self, addr, data):
        # Through GuestMemory: the debugger's watchpoints and dirty tracking
        # see the Launcher's writes, and stale translated code is dropped.
        self.mem.write(addr, bytes(data))

    def scatter(self, iov, data):
        """data over the buffers (addr, len, ...) in order, as readv fills them."""
        done = 0
        for buf in iov:
            addr, length = buf[0], buf[1]
            piece = data[done:done + length]
            if not piece:
                break
            self.write(addr, piece)
            done += len(piece)
        return done

    def u16(self, addr):
        return struct.unpack("<H", self.read(addr, 2))[0]

    def put_u16(self, addr, value):
        self.write(addr, struct.pack("<H", value & 0xFFFF))


class Virtqueue:
    """One queue: its lguest_vqconfig, the ring's addresses and the Launcher's
    own cursor (last_avail_idx) and count of used-but-unsignalled buffers."""

    def __init__(self, dev, index, num, irq, pfn, service):
        self.dev = dev
        self.index = index
        self.num = num
        self.irq = irq
        self.pfn = pfn
        self.desc, self.avail, self.used = vring_layout(pfn << 12, num)
        self.service = service          # what the queue's thread runs, or None
        self.last_avail = 0
        self.pending_used = 0
        # create_thread registered an eventfd for pfn << 12 with the Host
        # (LHREQ_EVENTFD): from then on a kick never reaches handle_output,
        # and the Host has no way to take the registration back.
        self.eventfd = False

    @property
    def addr(self):
        return self.pfn << 12

    @property
    def size(self):
        return vring_size(self.num)

    def available(self, bus):
        return bus.u16(self.avail + 2) != self.last_avail

    def get_vq_desc(self, bus):
        """wait_for_vq_desc without the wait: the next available chain as
        (head, [(addr, len, writable)], out_num, in_num), or None when the
        thread would go to sleep."""
        last_avail = self.last_avail
        avail_idx = bus.u16(self.avail + 2)
        if last_avail == avail_idx:
            return None
        # A Guest cannot have more than num buffers outstanding.
        if (avail_idx - last_avail) & 0xFFFF > self.num:
            errx("Guest moved used index from %u to %u", last_avail, avail_idx)
        head = bus.u16(self.avail + 4 + 2 * (last_avail % self.num))
        self.last_avail = (last_avail + 1) & 0xFFFF
        if head >= self.num:
            errx("Guest says index %u is available", head)

        table, limit, i = self.desc, self.num, head
        addr, length, flags, _ = read_desc(bus.read, table, i)
        if flags & VRING_DESC_F_INDIRECT:
            # The Launcher honours an indirect table although it never offers
            # VIRTIO_RING_F_INDIRECT_DESC: the head's buffer is a descriptor
            # table walked like the ring's own.
            if length % VRING_DESC_SIZE:
                errx("Invalid size for indirect buffer table")
            limit = length // VRING_DESC_SIZE
            table, i = bus.check_pointer(addr, length), 0

        iov, out_num, in_num = [], 0, 0
        while True:
            addr, length, flags, nxt = read_desc(bus.read, table, i)
            addr = bus.check_pointer(addr, length)
            if flags & VRING_DESC_F_WRITE:
                in_num += 1
            else:
                # Device-readable buffers all come before the writable ones.
                if in_num:
                    errx("Descriptor has out after in")
                out_num += 1
            iov.append((addr, length, bool(flags & VRING_DESC_F_WRITE)))
            # More descriptors than the table holds can only be a loop.
            if out_num + in_num > limit:
                errx("Looped descriptor")
            i = self.next_desc(flags, nxt, limit)
            if i == limit:
                return head, iov, out_num, in_num

    @staticmethod
    def next_desc(flags, nxt, limit):
        """next_desc: limit ends the chain; a NEXT leading off the table is fatal."""
        if not flags & VRING_DESC_F_NEXT:
            return limit
        if nxt >= limit:
            errx("Desc next is %u", nxt)
        return nxt

    def add_used(self, bus, head, length):
        """add_used: the used element first, then the index the Guest polls."""
        idx = bus.u16(self.used + 2)
        bus.write(self.used + 4 + 8 * (idx % self.num),
                  struct.pack("<II", head, length & 0xFFFFFFFF))
        bus.put_u16(self.used + 2, idx + 1)
        self.pending_used += 1
        bus.emit("virtio", dev=self.dev.name, vq=self.index, op="used", head=head, len=length)

    def trigger_irq(self, bus):
        """trigger_irq: only when something was used since the last one, and
        not while the Guest has set VRING_AVAIL_F_NO_INTERRUPT (its
        virtqueue_disable_cb); the used buffers still count as signalled."""
        if not self.pending_used:
            return False
        self.pending_used = 0
        if bus.u16(self.avail) & VRING_AVAIL_F_NO_INTERRUPT:
            bus.emit("virtio", dev=self.dev.name, vq=self.index, op="irq-suppressed", irq=self.irq)
            return False
        bus.raise_irq(self.irq)
        return True

    def drain(self, bus, handle):
        """A queue thread's work after a kick: every available chain through
        handle(head, iov, out_num, in_num), then the interrupt that
        wait_for_vq_desc sends before it sleeps again."""
        while True:
            got = self.get_vq_desc(bus)
            if got is None:
                break
            handle(*got)
        self.trigger_irq(bus)

    def reset(self, bus):
        """reset_device's part for a queue: the whole ring zeroed, cursor 0."""
        bus.write(self.desc, bytes(self.size))
        self.last_avail = 0
        self.pending_used = 0
