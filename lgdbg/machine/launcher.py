"""The Launcher's part (2.6.23 Documentation/lguest/lguest.c), §4.1 and §9.

It lays out Guest memory before the first instruction (the kernel's segments,
the boot header, the initial page tables, the device descriptor page) and
serves the Guest's console: SEND_DMA to key 0 and, for 2.6.24-style guests,
NOTIFY.
"""

import struct

from .. import abi
from ..errors import UsageError

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
    def __init__(self, mem_size, cmdline="", guestid=0):
        self.mem_size = mem_size
        self.cmdline = concat(cmdline)
        self.guestid = guestid
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
        for seg in image.segments:
            buf[seg.paddr:seg.paddr + len(seg.data)] = seg.data
            # The rest of p_memsz (the bss) is already zero: fresh anonymous memory.
        self._boot_header(buf, image)
        self.pgdir = self._page_tables(buf, image.page_offset)
        # The console is device 0: type 1, no pages of its own.
        struct.pack_into("<HHHHI", buf, self.device_page, DEVICE_CONSOLE, 0, 0, 0, 0)

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

        The page directory is the page just below the top of RAM and the PTE
        pages sit below it (§4.1 step 5).  Returns the directory's address.
        """
        mapped = min(self.mem_size, (1 << 32) - page_offset)
        pages = mapped >> 12
        n_ptes = -(-pages // 1024)
        pgdir = self.mem_size - abi.PAGE_SIZE
        first_pte_page = pgdir - n_ptes * abi.PAGE_SIZE
        for i in range(pages):
            struct.pack_into("<I", buf, first_pte_page + 4 * i, (i << 12) | 7)
        for j in range(n_ptes):
            struct.pack_into("<I", buf, pgdir + 4 * ((page_offset >> 22) + j),
                             (first_pte_page + j * abi.PAGE_SIZE) | 7)
        return pgdir

    # --- §9 console -----------------------------------------------------------------
    def handle_output(self, dma, key):
        """The Launcher's answer to SEND_DMA: write the buffers, store used_len."""
        if key != abi.LGUEST_CONSOLE_DMA_KEY:
            return            # no device of ours watches that key
        raw = self.mem.read(dma, abi.DMA_SIZE)
        addrs = struct.unpack_from("<16I", raw, abi.DMA_ADDR)
        lens = struct.unpack_from("<16H", raw, abi.DMA_LEN)
        text = bytearray()
        for addr, length in zip(addrs, lens):
            if length == 0:
                break
            if addr + length > self.top:
                self.host.kill_guest("bad DMA entry %#x len %u" % (addr, length))
                return
            text += self.mem.read(addr, length)
        self.mem.write_u32(dma + abi.DMA_USED_LEN, len(text))
        self.console(bytes(text))

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
