"""Guest-physical memory as the Host sees it: lgread/lgwrite.

The Host touches Guest memory only by physical address, inside
[0, pfn_limit * 4096).  Like the real lgread/lgwrite, an access outside that
kills the Guest and a failed read returns zeros, so Host routines can carry on
and the run loop notices the death afterwards.

Two side duties of every Host write: tell the debugger (a watchpoint on
lguest_data.irq_enabled must fire when the Host clears it on delivery), and
drop unicorn's translated code for the range (writes into the host buffer do
not invalidate it: platform-notes.md).  The second is batched: a Host entry
writes a frame, irq_enabled and the time in a handful of small writes, and
each invalidation costs microseconds, so ranges are merged and dropped once,
just before the Guest runs again (flush_code).
"""

import struct


class GuestMemory:
    def __init__(self, cpu, limit, kill):
        self.cpu = cpu
        self.buf = cpu.ram
        self.limit = limit                  # pfn_limit * 4096
        self.page_offset = cpu.page_offset
        self._kill = kill
        self.write_observers = []           # callables(virt_addr, length)
        self._stale = []                    # written ranges whose code may be stale

    def flush_code(self):
        """Drop translated code for everything the Host wrote since last time."""
        if not self._stale:
            return
        spans = sorted(self._stale)
        self._stale = []
        merged = [list(spans[0])]
        for s, e in spans[1:]:
            if s <= merged[-1][1] + 64:       # close enough: one call
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.cpu.invalidate_phys_ranges(merged)

    def ok(self, phys, length):
        return 0 <= phys and length >= 0 and phys + length <= self.limit

    def read(self, phys, length):
        if not self.ok(phys, length):
            self._kill("bad read address %#x len %u" % (phys & 0xFFFFFFFF, length))
            return bytes(length)
        return self.buf[phys:phys + length]

    def write(self, phys, data):
        if not self.ok(phys, len(data)):
            self._kill("bad write address %#x len %u" % (phys & 0xFFFFFFFF, len(data)))
            return False
        self.buf[phys:phys + len(data)] = data
        self._stale.append((phys, phys + len(data)))
        # Observers (watchpoints, dirty tracking) hear the address in the
        # kernel's linear map, PAGE_OFFSET + physical, where the Guest's
        # kernel sees what the Host writes.
        virt = phys + self.page_offset
        for observe in self.write_observers:
            observe(virt, len(data))
        return True

    def read_u32(self, phys):
        return struct.unpack("<I", self.read(phys, 4))[0]

    def write_u32(self, phys, value):
        return self.write(phys, struct.pack("<I", value & 0xFFFFFFFF))

    def read_cstring(self, phys, maxlen):
        """Up to maxlen bytes, cut at the first NUL (the Host's CRASH copy)."""
        raw = self.read(phys, min(maxlen, max(self.limit - phys, 0)))
        return raw.split(b"\0", 1)[0]
