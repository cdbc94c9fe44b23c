"""lguest-journey: the numbered narrative of the guest's sources, at the pc."""

import os
import re

import gdb

from lgdbg.views import journey, render

from .common import LguestCommand, need_symbols, sym, write

_state = {"key": None, "tour": None, "current": None}


def _image_tour():
    """The tour for the loaded image: a bundled example's, or its own sources'."""
    image = gdb.current_progspace().filename
    roots = source_roots()
    key = (image, tuple(roots))
    if _state["key"] == key and _state["tour"] is not None:
        return _state["tour"]
    name = os.path.basename(image)
    if name.endswith(".elf"):
        name = name[:-4]
    if name in journey.example_sources():
        frags = journey.example_tour(name)
    else:
        frags = journey.tour(_fragments(roots))
    if not frags:
        raise gdb.GdbError("lguest-journey: the sources of %s carry no numbered narrative "
                           "(no /*G:NNN comments)%s" % (os.path.basename(image), _where_hint()))
    _state.update(key=key, tour=frags, current=None)
    return frags


def _where_hint():
    return ("; if gdb cannot find them, point it at them: `set substitute-path BUILD-DIR "
            "DIR` (a kernel: /usr/src/linux-2.6.23.17-stm) or `directory DIR`")


def _fragments(roots):
    """Fragments of the lguest files below each source root (paths shown below
    the root, as the journey prints them) and of the other sources gdb knows."""
    frags, seen = [], set()
    for root in roots:
        for path in journey.tree_files(root):
            if os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                frags += journey.extract_file(path, os.path.relpath(path, root))
    for path in _source_files():
        if os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            frags += journey.extract_file(path)
    return frags


def _show_lines(command):
    try:
        return gdb.execute(command, to_string=True).splitlines()
    except gdb.error:
        return []


def substitutions():
    """[(from, to)] of `set substitute-path`, as gdb shows them."""
    rules = []
    for line in _show_lines("show substitute-path"):
        m = re.match(r"\s*`(.*)' -> `(.*)'\.?$", line)
        if m:
            rules.append((m.group(1), m.group(2)))
    return rules


def source_roots():
    """Directories the user pointed gdb at: substitute-path targets, then `directory`."""
    roots = [to for _, to in substitutions()]
    for line in _show_lines("show directories"):
        if ":" in line:
            roots += [d for d in line.split(":", 1)[1].strip().rstrip(".").split(":")
                      if d and not d.startswith("$")]
    return [r for i, r in enumerate(roots) if os.path.isdir(r) and r not in roots[:i]]


def _source_files():
    """Source files of `info sources` that exist, after substitute-path."""
    text = gdb.execute("info sources", to_string=True)
    rules = substitutions()
    paths = []
    for p in re.findall(r"(/[^\s,]+)", text):
        for old, new in rules:
            if p.startswith(old.rstrip("/") + "/"):
                p = new.rstrip("/") + p[len(old.rstrip("/")):]
                break
        if os.path.isfile(p) and not p.endswith((".elf", ".o")) and p not in paths:
            paths.append(p)
    return paths


def definition(label, tour, roots):
    """(path shown, line) where label is defined: the tour's files first, then
    every assembler file below the roots."""
    shown = {}
    for root in roots:
        for f in tour:
            full = os.path.join(root, f.path)
            if not os.path.isabs(f.path) and os.path.isfile(full):
                shown.setdefault(full, f.path)
    for f in tour:
        if os.path.isabs(f.path):
            shown.setdefault(f.path, f.path)
    files = list(shown)
    for root in roots:
        for d, dirs, names in os.walk(root):
            dirs.sort()
            files += [os.path.join(d, n) for n in sorted(names) if n.endswith((".S", ".s"))]
    found = journey.find_definition(label, files)
    if found is None:
        return None
    path, line = found
    if path not in shown:
        root = next((r for r in roots if path.startswith(r.rstrip("/") + "/")), None)
        shown[path] = os.path.relpath(path, root) if root else path
    return shown[path], line


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
        label = None
        if sal.symtab is not None and sal.line:
            path, line = sal.symtab.filename, sal.line
        else:
            # 2.6.23's assembler files (lguest_asm.S) have no line information:
            # find the label at the pc where the sources define it.
            name = sym(pc)
            label = name.split("+")[0] if name else None
            found = definition(label, tour, source_roots()) if label else None
            if found is None:
                if quiet:
                    return None
                raise gdb.GdbError(
                    "lguest-journey: no source line for pc %s (no line table there)%s; "
                    "walk the tour with `lguest-journey next`"
                    % (render.addr(pc, sym), ", and no source file gdb knows defines %s"
                       % label if label else "") + _where_hint())
            path, line = found
        frag = journey.fragment_at(tour, path, line)
        if frag is None and not quiet:
            raise gdb.GdbError("lguest-journey: no narrative fragment at or before %s:%d"
                               % (path, line))
        return (frag, pc, path, line, label) if not quiet else frag

    def here(self, tour):
        frag, pc, path, line, label = self._at_pc(tour)
        if label:
            write(render.render_journey_definition(pc, label, path, line, sym))
        else:
            write(render.render_journey_position(pc, path, line, sym))
        _show(frag, tour)


def register():
    LguestJourney()
