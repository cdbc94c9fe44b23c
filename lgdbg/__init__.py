"""lgdbg: a gdb-integrated debugger for lguest guests.

The dependency rule (docs/architecture.md draws the layers):
  - machine/ knows no debugger and no front end: it runs the Guest, emits events.
  - core/ (debugger, reverse, snapshot) drives the machine; front ends
    (run_command, gdb_command, gdbstub/, repl/, explore, timeline/, and
    views/journey's `lgdbg journey`) translate into calls on it and never
    import each other.
  - What front ends share lives in views/ (inspect, render, pgtable_view,
    patches, journey, symbols, disasm) and the leaves (abi, paravirt, image,
    elf32, errors, options: the command-line options that build a Machine).
  - gdb_scripts/ runs inside gdb and imports only the stdlib-only modules abi,
    errors, views.render, views.patches and views.journey.
"""

__version__ = "0.1.0"
