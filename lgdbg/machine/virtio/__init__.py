"""The 3.2 Launcher's devices (Documentation/virtual/lguest/lguest.c `devices`):
the descriptor page above RAM, lguest's virtio transport, a virtio block
device backed by a file and the virtio console.

  transport.py  the descriptor page, status NOTIFYs, reset and start
  vring.py      the device side of a legacy vring: chains, used, interrupts
  console.py    console output and (deterministic) input
  block.py      the disk file, its requests, and its write history

Memory as main() lays it out: RAM [0, mem_size), the descriptor page at
mem_size (get_pages(1)), then each device's queue pages in the order the
devices are made: the block device (-b) first, the console always last.
Queue interrupts count from 1 (0 is the timer).
"""

from ...errors import UsageError
from ...views import virtio_view
from ...views.virtio_view import PAGE_SIZE
from .block import Block
from .console import Console
from .transport import DEVICE_PAGES
from .vring import GuestBus, LauncherDied

__all__ = ["Devices", "LauncherDied"]


class Devices:
    def __init__(self, mem_size, console_input, disk=None, disk_readonly=False):
        self.mem_size = mem_size
        self.guest_limit = mem_size                      # grows with get_pages
        self.guest_max = mem_size + DEVICE_PAGES * PAGE_SIZE
        self.next_irq = 1
        self.page = bytearray(PAGE_SIZE)                 # the descriptor page's bytes
        self.list = []                                   # devices, in page order
        self.descpage = self.get_pages(1)
        self.bus = None
        self._output = None
        self._kill = None
        self.block = None
        try:
            if disk is not None:
                self.block = self._add(Block(self, disk, disk_readonly))
            self.console_dev = self._add(Console(self, console_input))
        except BaseException:
            self.close()
            raise

    # --- set-up (main, get_pages, new_dev_desc, new_device) --------------------------
    def get_pages(self, num):
        addr = self.guest_limit
        self.guest_limit += num * PAGE_SIZE
        if self.guest_limit > self.guest_max:
            raise UsageError("Not enough memory for devices")
        return addr

    def new_dev_desc(self, dev_type):
        """The next descriptor's offset, right after the last device's config."""
        offset = self.list[-1].end if self.list else 0
        if offset + virtio_view.DESC_SIZE > PAGE_SIZE:
            raise UsageError("Too many devices")
        self.page[offset] = dev_type
        return offset

    def _add(self, dev):
        self.list.append(dev)
        return dev

    @property
    def top(self):
        """guest_limit once every device has its pages: pfn_limit = top >> 12."""
        return self.guest_limit

    def load(self, buf):
        """The descriptor page into Guest memory; the rings' pages stay zero."""
        buf[self.descpage:self.descpage + PAGE_SIZE] = self.page

    def attach(self, mem, emit, trigger_irq, output, kill):
        self.bus = GuestBus(mem, self.guest_limit, emit, trigger_irq)
        self._output = output
        self._kill = kill

    def close(self):
        for dev in self.list:
            dev.close()

    # --- the Guest's NOTIFY (handle_output, with the Host's eventfd short cut) --------
    def notify(self, addr):
        """A queue kick or a status change: True.  Neither: False, and the
        caller does the early console or "Bad NOTIFY"."""
        try:
            # The Host first looks for an eventfd registered at that address
            # (lguest_user.c send_notify_to_eventfd): a started queue's kick
            # wakes its thread without the Launcher's main loop seeing it.
            for dev in self.list:
                for vq in dev.vqs:
                    if vq.eventfd and addr == vq.addr:
                        dev.kick(self.bus, vq)
                        return True
            for dev in self.list:
                if addr == dev.addr:
                    dev.update_device_status(self.bus)
                    return True
                # Devices should not be used before features are finalized.
                for vq in dev.vqs:
                    if addr == vq.addr:
                        raise LauncherDied("Notification on %s before setup!" % dev.name)
        except LauncherDied as died:
            self._died(died)
            return True
        return False

    def _died(self, died):
        self.bus.emit("virtio", op="launcher-died", reason=str(died))
        self._kill(str(died))

    # --- the console ----------------------------------------------------------------------
    def console(self, data):
        """Console output, exactly as the 2.6.23 Launcher's console()."""
        if data:
            self.bus.emit("console", text=data.decode("latin-1"))
            if self._output is not None:
                self._output(data)

    def feed_console(self):
        try:
            return self.console_dev.feed(self.bus)
        except LauncherDied as died:
            self._died(died)
            return False

    def console_waiting(self):
        return self.console_dev.waiting(self.bus)

    # --- the debugger's view and snapshots -------------------------------------------
    def read_phys(self, addr, length):
        """A look at Guest memory that can never kill: zeros past the top."""
        if self.bus is not None:
            return self.bus.read(addr, length)
        raw = bytes(self.page[addr - self.descpage:][:length]) if addr >= self.descpage else b""
        return raw + bytes(length - len(raw))

    def describe(self):
        info = virtio_view.decode(self.read_phys, self.descpage,
                                  [dev.state() for dev in self.list])
        info["top"] = self.guest_limit
        return info

    def save_state(self):
        return [dev.save_state() for dev in self.list]

    def load_state(self, state):
        for dev, saved in zip(self.list, state):
            dev.load_state(saved)
