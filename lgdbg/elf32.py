"""A tiny reader for what the patch-site views need from an ELF32 file.

Standard library only: gdb's embedded Python imports it (no pyelftools
there).  It reads section headers, a section's bytes, the file's bytes at a
virtual address (what the image held before the Guest changed anything) and
one symbol's value and size.  Anything that is not a little-endian ELF32
file, or is cut short, raises ElfError with one sentence.
"""

import struct

from .errors import LgdbgError


class ElfError(LgdbgError):
    pass


SHT_NOBITS = 8
SHT_SYMTAB = 2


class Section:
    def __init__(self, name, stype, addr, offset, size, link):
        self.name, self.type, self.addr = name, stype, addr
        self.offset, self.size, self.link = offset, size, link


class Elf32:
    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f:
                self.data = f.read()
        except OSError as e:
            raise ElfError("cannot read %s: %s" % (path, e.strerror or e))
        d = self.data
        if d[:4] != b"\x7fELF" or len(d) < 52:
            raise ElfError("%s is not an ELF file" % path)
        if d[4] != 1 or d[5] != 1:
            raise ElfError("%s is not a little-endian 32-bit ELF file" % path)
        shoff, = struct.unpack_from("<I", d, 32)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 46)
        if shnum == 0 or shentsize < 40 or shoff + shnum * shentsize > len(d):
            raise ElfError("%s: section headers missing or cut short" % path)
        raw = [struct.unpack_from("<IIIIIIIIII", d, shoff + i * shentsize)
               for i in range(shnum)]
        if shstrndx >= shnum:
            raise ElfError("%s: no section name table" % path)
        names = raw[shstrndx]
        self.sections = []
        for (name, stype, _flags, addr, offset, size, link, _info, _align, _es) in raw:
            self.sections.append(Section(self._cstr(names[4] + name), stype, addr, offset,
                                         size, link))

    def _cstr(self, offset):
        end = self.data.find(b"\0", offset)
        return self.data[offset:end if end >= 0 else len(self.data)].decode("latin-1")

    def section(self, name):
        return next((s for s in self.sections if s.name == name), None)

    def contents(self, section):
        if section.type == SHT_NOBITS:
            return b""
        if section.offset + section.size > len(self.data):
            raise ElfError("%s: section %s runs past the end of the file"
                           % (self.path, section.name))
        return self.data[section.offset:section.offset + section.size]

    def read(self, address, length):
        """The file's bytes at a virtual address, or None where it holds none."""
        for s in self.sections:
            if s.addr and s.type != SHT_NOBITS and s.addr <= address \
                    and address + length <= s.addr + s.size:
                start = s.offset + address - s.addr
                return self.data[start:start + length]
        return None

    def symbol(self, name):
        """(value, size) of the first symbol called NAME, or None."""
        want = name.encode()
        for s in self.sections:
            if s.type != SHT_SYMTAB or s.link >= len(self.sections):
                continue
            strtab = self.sections[s.link]
            table = self.contents(s)
            for i in range(0, len(table) - 15, 16):
                st_name, value, size = struct.unpack_from("<III", table, i)
                start = strtab.offset + st_name
                if self.data[start:start + len(want) + 1] == want + b"\0":
                    return value, size
        return None
