"""The numbered narrative at the pc: journey (gdb: lguest-journey)."""

from ..views import render
from .session import CommandError


class JourneyCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_journey(self, args):
        """journey [next|prev|source DIR]: the narrative fragment for EIP's source line, or walk the tour.

        `journey source DIR` reads the journey from a kernel tree (its lguest
        files), as gdb's `set substitute-path` or `directory` lets lguest-journey:
        where EIP has no line information (2.6.23's assembler files), the
        fragment is found from the label at EIP and where DIR defines it."""
        words = args.split()
        if words[:1] == ["source"]:
            return self._journey_source(words[1:])
        if args not in ("", "next", "prev"):
            raise CommandError("journey [next|prev|source DIR]")
        tour = self._load_tour()
        if not tour:
            raise CommandError("no narrative fragments (/*G:NNN ... :*/) in this guest's "
                               "sources that can be found; a kernel's: `journey source DIR`")
        from ..views import journey
        if args == "" or self._journey_at is None:
            here = self._fragment_at_pc(tour)
            if args == "" or here is not None:
                if here is None:
                    raise CommandError(self._no_fragment_reason())
                self._journey_at = here
            else:
                self._journey_at = tour[0] if args == "next" else tour[-1]
                args = ""
        if args:
            prev, nxt = journey.neighbours(tour, self._journey_at)
            target = nxt if args == "next" else prev
            if target is None:
                raise CommandError("%s of the tour" % ("end" if args == "next" else "start"))
            self._journey_at = target
        frag = self._journey_at
        address = None
        if frag.code_line is not None and self.symbols is not None:
            address = self.symbols.address_of_line(frag.path, frag.code_line)
        self.say(journey.render_fragment(frag, tour, address))

    def _journey_source(self, words):
        import os
        from ..views import journey
        if len(words) != 1 or not os.path.isdir(words[0]):
            raise CommandError("journey source DIR: DIR must be a directory (a kernel tree)")
        frags = journey.tree_fragments(words[0])
        if not frags:
            raise CommandError("no journey in %s: no /*X:NNN fragments in its lguest sources"
                               % words[0])
        self._source_root = words[0]
        self._tour, self._journey_at = journey.tour(frags), None
        self.say("journey: %d fragments from %s" % (len(self._tour), words[0]))

    _source_root = None

    def _load_tour(self):
        if self._tour is not None:
            return self._tour
        from ..views import journey
        from .. import images
        import os
        tour = []
        path = os.path.abspath(self.image_path) if self.image_path else None
        for name in images.NAMES:
            if path and os.path.abspath(images.path_of(name)) == path:
                tour = journey.example_tour(name)
                break
        else:
            files = []
            for _, f, _ in (self.symbols.lines if self.symbols else []):
                if f is None:           # the end of a sequence
                    continue
                cand = f if os.path.isabs(f) else os.path.join(os.path.dirname(path or "."), f)
                if cand not in files and os.path.isfile(cand):
                    files.append(cand)
            if files:
                tour = journey.tour(journey.extract_files(files))
        self._tour = tour
        return tour

    def _fragment_at_pc(self, tour):
        from ..views import journey
        label = self._label_definition()
        if label is not None:
            self.say(render.render_journey_definition(self.m.cpu.reg("eip"), *label, self.sym))
            return journey.fragment_at(tour, label[1], label[2])
        line = self.symbols.line_of(self.m.cpu.reg("eip")) if self.symbols else None
        if line is None:
            return None
        return journey.fragment_at(tour, line[0], line[1])

    def _label_definition(self):
        """(label, path below the root, line) when EIP is at an assembler label
        of the tree given to `journey source` (no line information there)."""
        import os
        from ..views import journey
        name = self.sym(self.m.cpu.reg("eip"))
        if self._source_root is None or not name:
            return None
        root = self._source_root
        asm = [p for p in journey.tree_files(root) if p.endswith(".S")]
        found = journey.find_definition(name.split("+")[0], asm)
        if found is None:
            return None
        return name.split("+")[0], os.path.relpath(found[0], root), found[1]

    def _no_fragment_reason(self):
        eip = self.m.cpu.reg("eip")
        line = self.symbols.line_of(eip) if self.symbols else None
        if line is None:
            return "no source line for EIP %s (no line tables)" % render.addr(eip, self.sym)
        return "no narrative fragment covers or precedes %s:%d" % line

    # ------------------------------------------------------------------ help, quit
