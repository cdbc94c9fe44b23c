"""lguest-journey: the numbered narrative of the guest's sources, at the pc."""

import os
import re

import gdb

from lgdbg import journey, render

from .common import LguestCommand, need_symbols, sym, write

_state = {"key": None, "tour": None, "current": None}


def _image_tour():
    """The tour for the loaded image: a bundled example's, or its own sources'."""
    image = gdb.current_progspace().filename
    key = image
    if _state["key"] == key and _state["tour"] is not None:
        return _state["tour"]
    name = os.path.basename(image)
    if name.endswith(".elf"):
        name = name[:-4]
    if name in journey.example_sources():
        frags = journey.example_tour(name)
    else:
        frags = journey.tour(journey.extract_files(_source_files()))
    if not frags:
        raise gdb.GdbError("lguest-journey: the sources of %s carry no numbered narrative "
                           "(no /*G:NNN comments)" % os.path.basename(image))
    _state.update(key=key, tour=frags, current=None)
    return frags


def _source_files():
    text = gdb.execute("info sources", to_string=True)
    paths = []
    for p in re.findall(r"(/[^\s,]+)", text):
        if os.path.isfile(p) and not p.endswith((".elf", ".o")) and p not in paths:
            paths.append(p)
    return paths


def code_address(frag):
    """First line-table address of the fragment's code, or None."""
    if frag.code_line is None:
        return None
    try:
        _, sals = gdb.decode_line("%s:%d" % (os.path.basename(frag.path), frag.code_line))
    except gdb.error:
        return None
    for sal in sals or ():
        if sal.pc:
            return sal.pc
    return None


def _show(frag, tour):
    _state["current"] = frag
    write(journey.render_fragment(frag, tour, code_address(frag)))


class LguestJourney(LguestCommand):
    """Read the lguest journey's narrative fragment for the current source line.

Usage: lguest-journey [next | prev | PART:NUMBER]

lguest's sources carry numbered narrative comments (/*G:045 ... :*/) that
read in order as a guided tour.  Without an argument, finds the source line
of the pc from the image's line tables and prints the fragment that covers
it or precedes it most closely in that file, with its number and its
neighbours' numbers.  `next` and `prev` walk the tour in number order; where
a fragment's code has an address they say so (`break *ADDR` to go there).
PART:NUMBER (for example G:080) jumps to that fragment."""

    NAME = "lguest-journey"
    CLASS = gdb.COMMAND_SUPPORT

    def run(self, argv, from_tty):
        need_symbols(self.NAME)
        if len(argv) > 1:
            self.usage("too many arguments")
        tour = _image_tour()
        if not argv:
            return self.here(tour)
        what = argv[0]
        if what in ("next", "prev"):
            cur = _state["current"]
            if cur is None:
                cur = self._at_pc(tour, quiet=True)
            if cur is None:
                target = tour[0] if what == "next" else None
            else:
                prev, nxt = journey.neighbours(tour, cur)
                target = nxt if what == "next" else prev
            if target is None:
                raise gdb.GdbError("lguest-journey: that was the %s of the tour"
                                   % ("end" if what == "next" else "start"))
            return _show(target, tour)
        m = re.match(r"^([A-Za-z]):?(\d{1,3})$", what)
        if m:
            part, number = m.group(1).upper(), int(m.group(2))
            for f in tour:
                if f.part == part and f.number == number:
                    return _show(f, tour)
            raise gdb.GdbError("lguest-journey: no fragment %s:%03d in this tour (it has %s)"
                               % (part, number, " ".join(f.label for f in tour)))
        self.usage("unknown argument %r" % what)

    def _at_pc(self, tour, quiet=False):
        try:
            pc = int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFF
        except gdb.error:
            if quiet:
                return None
            raise gdb.GdbError("lguest-journey: no registers, so no pc to look up: connect "
                               "to a target, or walk the tour with `lguest-journey next`")
        sal = gdb.find_pc_line(pc)
        if sal.symtab is None or not sal.line:
            if quiet:
                return None
            raise gdb.GdbError("lguest-journey: no source line for pc %s (no line table "
                               "there); walk the tour with `lguest-journey next`"
                               % render.addr(pc, sym))
        path = sal.symtab.filename
        frag = journey.fragment_at(tour, path, sal.line)
        if frag is None and not quiet:
            raise gdb.GdbError("lguest-journey: no narrative fragment at or before %s:%d"
                               % (path, sal.line))
        return (frag, pc, path, sal.line) if not quiet else frag

    def here(self, tour):
        frag, pc, path, line = self._at_pc(tour)
        write(render.render_journey_position(pc, path, line, sym))
        _show(frag, tour)


def register():
    LguestJourney()
