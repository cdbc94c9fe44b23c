"""lgdbg: a gdb-integrated debugger for lguest guests.

The dependency rule (docs/architecture.md draws the layers):
  - machine/ knows no debugger and no front end: it runs the Guest, emits events.
  - The debugger core (debugger, reverse, snapshot) drives the machine; front
    ends (run_command, gdbstub/, repl/, explore, journey, timeline/) translate
    into calls on it and never import each other.
  - What front ends share lives in the shared views (inspect, render,
    pgtable_view, patches, symbols, disasm) and the leaves (abi, image, errors,
    options: the command-line options that build a Machine).
  - gdb_scripts/ runs inside gdb and imports only the stdlib-only modules abi,
    errors, render, patches and journey.
"""

__version__ = "0.1.0"
