"""The Launcher of Linux 3.2 (Documentation/virtual/lguest/lguest.c), where it
differs from 2.6.23's (launcher.py).

Its boot is the x86 boot protocol's: a zero page at physical 0 saying
"version 2.07, hardware_subarch 1 (lguest), keep my segments", the command
line right after it, the initrd at the top of RAM, and no page tables at all
(the Host starts the Guest with virtual == physical).  Its devices are virtio
devices on lguest's device page, the page after RAM (virtio.py); the Guest
reaches the Launcher with NOTIFY, which handle_output sorts out.
"""

import struct

from .. import abi
from .launcher import Launcher


class Launcher32(Launcher):
    def __init__(self, mem_size, cmdline="", initrd=None, console_input=None, devices=None):
        super().__init__(mem_size, cmdline, initrd=initrd, console_input=console_input)
        # 3.2's concat puts a space between the arguments, none after the
        # last (2.6.23's followed every argument with one).
        self.cmdline = self.cmdline[:-1]
        # main(): the device page is the first page after RAM, then each
        # device's queue pages; guest_limit (pfn_limit) covers them all.
        self.devices = devices
        top = devices.top if devices is not None else mem_size + abi.PAGE_SIZE
        self.pfn_limit = top >> 12

    def load(self, buf, image):
        self._load_segments(buf, image)
        self._boot_header(buf, image)
        struct.pack_into("<H", buf, abi.BOOT_VERSION, 0x207)
        buf[abi.BOOT_LOADFLAGS] |= abi.KEEP_SEGMENTS
        struct.pack_into("<I", buf, abi.BOOT_KERNEL_ALIGNMENT, 0x1000000)
        # _boot_header wrote hardware_subarch = 1 (2.6.23's "Guest type").
        self._load_initrd(buf)
        self.pgdir = None                  # no Launcher page tables in this ABI
        if self.devices is not None:
            self.devices.load(buf)

    def attach(self):
        """Once Guest memory and the Host exist: hand them to the devices."""
        if self.devices is not None:
            self.devices.attach(self.mem, self.host.emit, self.host.trigger_irq,
                                self._device_output, self.host.kill_guest)

    def _device_output(self, data):
        if self.output is not None:
            self.output(data)

    # --- NOTIFY: handle_output -----------------------------------------------------------
    def serve(self, host):
        """run_guest returned with pending_notify: True if there was one."""
        addr = host.pending_notify
        if not addr:
            return False
        host.pending_notify = 0
        self.handle_output(addr)
        return True

    def handle_output(self, addr):
        """A device's status or kick first, else the early console.

        The real Launcher compares addresses device by device; lgdbg's
        devices do the same comparisons (virtio.py).  The early console
        writes the NUL-terminated string at addr, up to guest_limit.
        """
        if self.devices is not None and self.devices.notify(addr):
            return
        if addr >= self.top:
            # errx(1, "Bad NOTIFY %#lx"): the Launcher, and the Guest with it, ends.
            self.host.kill_guest("Bad NOTIFY %#x" % addr)
            return
        # write(STDOUT, from_guest_phys(addr), strnlen(..., guest_limit - addr)):
        # the Launcher's own mapping of Guest memory, no Host checks.
        buf = self.mem.buf
        end = buf.find(b"\0", addr, self.top)
        self.console(bytes(buf[addr:self.top if end < 0 else end]))

    # --- console input through the virtio console ----------------------------------------
    def console_waiting(self):
        return self.devices is not None and self.devices.console_waiting()

    def feed_console(self):
        return self.devices is not None and self.devices.feed_console()
