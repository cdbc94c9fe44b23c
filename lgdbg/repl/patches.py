"""Paravirt patch sites: patches (gdb: lguest-patches)."""

from ..views import render
from .session import CommandError


class PatchesCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_patches(self, args):
        """patches [--type NAME] [--state STATE] [--summary]: the paravirt patch sites.

        On a paravirt kernel: each site of the ELF file's .parainstructions, its
        type by name and what its bytes are now (template, original, call, jmp,
        nops, freed, other, unreadable), and a summary line.  On the examples:
        each lgstart_X/lgend_X template, its bytes and disassembly, and its call sites."""
        from ..views import patches
        elf = self._elf()
        if elf is not None and patches.kernel_image(elf):
            type_name, state, summary = patches.parse_options(args.split())
            names = self.symbols.by_name if self.symbols is not None else {}
            report = patches.kernel_sites(
                elf, patches.templates_from_names(names), names.get, self.m.read_memory)
            shown = patches.select_sites(report["sites"], type_name, state)
            self.say(render.render_patch_sites(report, self.sym, shown, summary))
            return
        if args:
            raise CommandError("patches takes options only on a paravirt kernel image")
        self.say(render.render_patches(self.patch_rows(), self.sym))

    def _elf(self):
        """The image as an lgdbg.elf32.Elf32 (read once), or None without one."""
        if self.image_path is None:
            return None
        if getattr(self, "_elf_file", None) is None:
            from ..elf32 import Elf32, ElfError
            try:
                self._elf_file = Elf32(self.image_path)
            except ElfError:            # not ELF32: no paravirt kernel either
                return None
        return self._elf_file

    def patch_rows(self):
        if self.symbols is None:
            return []
        from ..views.disasm import disassemble
        from ..views.patches import patch_rows, templates_from_names
        names = self.symbols.by_name
        return patch_rows(templates_from_names(names), names.get, self.m.read_memory,
                          lambda start, raw: [(a, t) for a, _, t in disassemble(raw, start)])

    # ------------------------------------------------------------------ trace, console
