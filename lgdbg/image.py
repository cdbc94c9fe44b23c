"""Loading a guest image the way the Launchers do (§4.1 steps 2-3).

Both Launchers map each PT_LOAD segment at its physical address, and lgdbg
derives page_offset from p_vaddr - p_paddr.  They differ in the entry point,
and that difference is also how lgdbg tells the two ABIs apart:

  2.6.23  scan the loaded bytes for "GenuineLguest": the Guest starts at the
          byte after it (a virtual address);
  3.2     e_entry, a physical address: startup_32 runs with virtual ==
          physical and finds lguest_entry through the boot protocol's
          hardware_subarch.  A vmlinux carries no boot-protocol header, so
          an ELF without the magic whose e_entry lies inside a loaded
          segment's physical range is taken as the later ABI.

Only the program headers matter for booting, so this module reads them with
struct (no pyelftools: `lgdbg run` should start fast).  Symbols come from
lgdbg.views.symbols when a front end needs them.
"""

import os
import stat
import struct
from collections import namedtuple

from . import abi
from .errors import ImageError

Segment = namedtuple("Segment", "paddr vaddr data memsz")


class Image:
    """A loadable guest: its segments, page_offset and virtual entry point."""

    def __init__(self, path, segments, page_offset, entry, profile=abi.DEFAULT_PROFILE):
        self.path = path
        self.segments = segments
        self.page_offset = page_offset
        self.entry = entry
        self.profile = profile          # the ABI: a key of abi.PROFILES

    def __repr__(self):
        return "<Image %s abi=%s entry=%#x page_offset=%#x>" % (
            self.path, self.profile, self.entry, self.page_offset)

    @property
    def top(self):
        """First physical address above every segment."""
        return max(s.paddr + s.memsz for s in self.segments)


def load_image(path, mem_size, profile=None):
    """Read and check an ELF guest image; raise ImageError with one clear line."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; and only a
        # regular file has an end (reading /dev/zero would never finish).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ImageError("cannot read image %s: not a regular file" % path)
            raw = f.read()
    except OSError as e:
        raise ImageError("cannot read image %s: %s" % (path, e.strerror or e))
    return parse_image(raw, mem_size, str(path), profile)


def parse_image(raw, mem_size, name="image", profile=None):
    """profile: None to decide from the image, or "2.6.23" / "3.2" (--abi)."""
    if profile is not None and profile not in abi.PROFILES:
        raise ImageError("--abi must be one of %s, not %r" % (" or ".join(sorted(abi.PROFILES)),
                                                             profile))
    if len(raw) >= 0x208 and raw[0x202:0x206] == b"HdrS" and raw[:4] != b"\x7fELF":
        # The real 3.2 Launcher also loads bzImages (load_bzimage); lgdbg
        # needs the ELF: its symbols and DWARF are what the debugger reads.
        version = struct.unpack_from("<H", raw, 0x206)[0]
        raise ImageError("%s: a bzImage (boot protocol %d.%02d): give lgdbg the kernel's ELF "
                         "vmlinux instead" % (name, version >> 8, version & 0xFF))
    if len(raw) < 52 or raw[:4] != b"\x7fELF":
        raise ImageError("%s: not an ELF file" % name)
    if raw[4] != 1 or raw[5] != 1:
        raise ImageError("%s: not a 32-bit little-endian ELF (lguest guests are i386)" % name)
    (e_type, e_machine, _ver, e_entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum) = struct.unpack_from("<HHIIIIIHHH", raw, 16)
    if e_machine != 3:
        raise ImageError("%s: ELF machine %d is not i386 (3)" % (name, e_machine))
    if e_type != 2:
        raise ImageError("%s: not an executable ELF (type %d)" % (name, e_type))
    if e_phnum == 0 or e_phentsize < 32:
        raise ImageError("%s: no program headers" % name)
    if e_phoff + e_phnum * e_phentsize > len(raw):
        raise ImageError("%s: truncated (program headers run past the end of the file)" % name)

    segments = []
    page_offset = None
    for i in range(e_phnum):
        (p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _fl, _al) = \
            struct.unpack_from("<8I", raw, e_phoff + i * e_phentsize)
        if p_type != 1:                       # PT_LOAD only
            continue
        if p_offset + p_filesz > len(raw):
            raise ImageError("%s: truncated (segment %d runs past the end of the file)" % (name, i))
        if p_filesz > p_memsz:
            raise ImageError("%s: segment %d has filesz > memsz" % (name, i))
        # The Launcher insists every segment has the same virtual-physical gap.
        off = (p_vaddr - p_paddr) & 0xFFFFFFFF
        if page_offset is None:
            page_offset = off
        elif off != page_offset:
            raise ImageError("%s: segments disagree on page_offset (%#x vs %#x)"
                             % (name, page_offset, off))
        if p_paddr + p_memsz > mem_size:
            raise ImageError("%s: segment %d [%#x, %#x) lies outside guest RAM (%d MiB)"
                             % (name, i, p_paddr, p_paddr + p_memsz, mem_size >> 20))
        segments.append(Segment(p_paddr, p_vaddr, raw[p_offset:p_offset + p_filesz], p_memsz))
    if not segments:
        raise ImageError("%s: no loadable (PT_LOAD) segments" % name)
    if page_offset & 0x3FFFFF:
        raise ImageError("%s: page_offset %#x is not 4 MiB aligned" % (name, page_offset))

    entry = None
    for seg in segments:
        at = seg.data.find(abi.MAGIC)
        if at >= 0:
            entry = seg.paddr + at + len(abi.MAGIC) + page_offset
            break
    physical_entry = any(s.paddr <= e_entry < s.paddr + s.memsz for s in segments)
    if profile is None:
        if entry is not None:
            profile = "2.6.23"
        elif physical_entry:
            profile = "3.2"
        else:
            raise ImageError('%s: no "GenuineLguest" magic and no physical entry point '
                             '(e_entry %#x is in no loaded segment): not an lguest guest'
                             % (name, e_entry))
    if profile == "2.6.23":
        if entry is None:
            raise ImageError('%s: no "GenuineLguest" magic: not an lguest guest of the '
                             '2.6.23 ABI' % name)
        return Image(name, segments, page_offset, entry & 0xFFFFFFFF, profile)
    if entry is not None:
        raise ImageError('%s: has the "GenuineLguest" magic of the 2.6.23 ABI: --abi 3.2 '
                         'needs a kernel entered through the boot protocol' % name)
    if not physical_entry:
        raise ImageError("%s: e_entry %#x is in no loaded segment: the 3.2 ABI enters at "
                         "a physical address" % (name, e_entry))
    return Image(name, segments, page_offset, e_entry, profile)
