"""The Launcher's part (2.6.23 Documentation/lguest/lguest.c), §4.1 and §9.

It lays out Guest memory before the first instruction (the kernel's segments,
the initrd at the top of RAM, the boot header, the initial page tables below
the initrd, the device descriptor page) and serves the Guest's console:
SEND_DMA to key 0 for output, the buffer the Guest bound to key 0 for input
(and, for 2.6.24-style guests, NOTIFY).
"""

import struct

from .. import abi
from ..errors import UsageError
from .console_input import ConsoleInput

DEVICE_CONSOLE = 1


def concat(cmdline):
    """The Launcher's concat (lguest.c): every argument followed by a space.

    cmdline is the text after the kernel image on the Launcher's command
    line: a string (split into arguments at white space, as a shell would
    split unquoted words) or a list of arguments.  "console=hvc0 quiet"
    becomes "console=hvc0 quiet " (note the final space); no argument at all
    gives an empty line.
    """
    args = cmdline.split() if isinstance(cmdline, str) else list(cmdline)
    return b"".join(arg.encode() + b" " for arg in args)


class Launcher:
    def __init__(self, mem_size, cmdline="", guestid=0, initrd=None, console_input=None):
        self.mem_size = mem_size
        self.cmdline = concat(cmdline)
        self.guestid = guestid
        self.initrd = initrd or b""          # the file's bytes
        # load_initrd(): the initrd's length rounded up to a page, at the top.
        self.initrd_len = -(-len(self.initrd) // abi.PAGE_SIZE) * abi.PAGE_SIZE
        self.input = console_input if console_input is not None else ConsoleInput()
        # One zeroed page above RAM holds the device descriptors; pfn_limit
        # includes it, so the Guest may map it (§4.1 step 1).
        self.device_page = mem_size
        self.pfn_limit = (mem_size + abi.PAGE_SIZE) >> 12
        self.pgdir = None
        self.output = None           # callable(bytes): where console text goes
        self.mem = None
        self.host = None

    @property
    def top(self):
        return self.pfn_limit << 12

    def load(self, buf, image):
        """Copy the image and write everything the Guest expects at boot."""
        self._load_segments(buf, image)
        self._boot_header(buf, image)
        self._load_initrd(buf)
        self.pgdir = self._page_tables(buf, image.page_offset)
        # The console is device 0: type 1, no pages of its own.
        struct.pack_into("<HHHHI", buf, self.device_page, DEVICE_CONSOLE, 0, 0, 0, 0)

    @staticmethod
    def _load_segments(buf, image):
        for seg in image.segments:
            buf[seg.paddr:seg.paddr + len(seg.data)] = seg.data
            # The rest of p_memsz (the bss) is already zero: fresh anonymous memory.

    def _load_initrd(self, buf):
        """load_initrd(): at the top of RAM, and its place in the boot header."""
        if self.initrd:
            at = self.mem_size - self.initrd_len
            buf[at:at + len(self.initrd)] = self.initrd
            struct.pack_into("<II", buf, abi.BOOT_RAMDISK_IMAGE, at, self.initrd_len)
            buf[abi.BOOT_TYPE_OF_LOADER] = 0xFF

    def _boot_header(self, buf, image):
        # A Linux zero page at physical 0 with one e820 RAM entry and the
        # command line at 0x1000 (§4.1 step 4).
        buf[abi.BOOT_E820_NR] = 1
        struct.pack_into("<QQI", buf, abi.BOOT_E820_MAP, 0, self.mem_size, 1)
        struct.pack_into("<I", buf, abi.BOOT_CMD_LINE_PTR, abi.BOOT_CMDLINE_ADDR)
        struct.pack_into("<I", buf, abi.BOOT_GUEST_TYPE, 1)
        # The Launcher copies the whole line and its NUL, however long (the
        # Guest keeps only COMMAND_LINE_SIZE bytes of it), over whatever is
        # there; we refuse a line that would run into the kernel above it.
        end = abi.BOOT_CMDLINE_ADDR + len(self.cmdline) + 1
        lowest = min((seg.paddr for seg in image.segments
                      if seg.paddr >= abi.BOOT_CMDLINE_ADDR), default=len(buf))
        if self.cmdline and end > lowest:
            raise UsageError("--cmdline is %d bytes: it would overwrite the kernel at "
                             "physical %#x" % (len(self.cmdline), lowest))
        buf[abi.BOOT_CMDLINE_ADDR:end] = self.cmdline + b"\0"

    def _page_tables(self, buf, page_offset):
        """Map physical [0, mem) at page_offset with flags 7, no identity map.

        The page directory is the page just below the initrd (or the top of
        RAM) and the PTE pages sit below it (§4.1 step 5).  Returns the
        directory's address.
        """
        mapped = min(self.mem_size, (1 << 32) - page_offset)
        pages = mapped >> 12
        n_ptes = -(-pages // 1024)
        pgdir = self.mem_size - self.initrd_len - abi.PAGE_SIZE
        first_pte_page = pgdir - n_ptes * abi.PAGE_SIZE
        for i in range(pages):
            struct.pack_into("<I", buf, first_pte_page + 4 * i, (i << 12) | 7)
        for j in range(n_ptes):
            struct.pack_into("<I", buf, pgdir + 4 * ((page_offset >> 22) + j),
                             (first_pte_page + j * abi.PAGE_SIZE) | 7)
        return pgdir

    def attach(self):
        """Once Guest memory and the Host exist (the 3.2 Launcher's devices need them)."""

    def serve(self, host):
        """run_guest returned to us with a DMA to handle: True if there was one."""
        if host.dma_is_pending is None:
            return False
        dma, key = host.dma_is_pending
        host.dma_is_pending = None
        self.handle_output(dma, key)
        return True

    # --- §9 console -----------------------------------------------------------------
    def check_pointer(self, addr, size):
        """_check_pointer: the Launcher refuses what reaches the top of memory."""
        if addr >= self.top or addr + size >= self.top:
            # The real Launcher exits here (errx); the Guest is gone with it.
            self.host.kill_guest("Launcher: invalid address %#x (%u bytes)" % (addr, size))
            return False
        return True

    def dma2iov(self, dma):
        """The (address, length) buffers of a struct lguest_dma, or None."""
        if not self.check_pointer(dma, abi.DMA_SIZE):
            return None
        raw = self.mem.read(dma, abi.DMA_SIZE)
        addrs = struct.unpack_from("<16I", raw, abi.DMA_ADDR)
        lens = struct.unpack_from("<16H", raw, abi.DMA_LEN)
        iov = []
        for addr, length in zip(addrs, lens):
            if length == 0:
                break
            if not self.check_pointer(addr, length):
                return None
            iov.append((addr, length))
        return iov

    def handle_output(self, dma, key):
        """The Launcher's answer to SEND_DMA: write the buffers, store used_len.

        Like lguest.c, it checks the buffers before it looks for a device
        watching the key.
        """
        iov = self.dma2iov(dma)
        if iov is None or key != abi.LGUEST_CONSOLE_DMA_KEY:
            return            # dead, or no device of ours watches that key
        text = b"".join(self.mem.read(addr, length) for addr, length in iov)
        self.mem.write_u32(dma + abi.DMA_USED_LEN, len(text))
        self.console(bytes(text))

    # --- console input (handle_console_input) ---------------------------------
    def console_waiting(self):
        """Has the Guest a free console buffer, and have we input for it?"""
        found = self.host.get_dma_buffer(abi.LGUEST_CONSOLE_DMA_KEY)
        if found is None or not self.input.ready():
            return None
        dma, _ = found
        if self.mem.read_u32(dma + abi.DMA_USED_LEN) != 0:
            return None       # the Guest has not taken the last line yet
        return found

    def feed_console(self):
        """Hand the Guest one piece of input: True if it got some.

        LHREQ_GETDMA, read into the buffers, used_len, LHREQ_IRQ.  One line
        (at most the buffers' size) per call, so that a file gives the same
        pieces at the same moments in every run.
        """
        found = self.console_waiting()
        if found is None:
            return False
        dma, irq = found
        iov = self.dma2iov(dma)
        if not iov:
            return False
        room = sum(length for _, length in iov)
        data = self.input.take(room)
        if not data:
            return False
        done = 0
        for addr, length in iov:
            piece = data[done:done + length]
            if not piece:
                break
            self.mem.write(addr, piece)
            done += len(piece)
        self.mem.write_u32(dma + abi.DMA_USED_LEN, len(data))
        self.host.emit("console-in", text=data.decode("latin-1"))
        self.host.trigger_irq(irq)
        return True

    def notify(self, addr):
        """2.6.24 early console: a NUL-terminated string at a physical address."""
        if addr >= self.mem_size:
            self.host.kill_guest("Bad NOTIFY %#x" % addr)
            return
        self.console(self.mem.read_cstring(addr, self.mem_size - addr))

    def console(self, data):
        if data:
            self.host.emit("console", text=data.decode("latin-1"))
            if self.output is not None:
                self.output(data)
