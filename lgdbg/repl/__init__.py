"""`lgdbg repl`: the same debugger without gdb.

    app.py       the prompt_toolkit loop, history, Ctrl-C, --batch
    commands.py  Commands: every command, one mixin per area below
    session.py   the state commands share, and Session.execute (the one place
                 a line is run: parse everything first, then act)
    run, breakpoints, memory, trace, help          the REPL's own commands
    data, irq, host, catch, pgtable, patches, journey, virtio   the lguest views, one
                 module per area as in gdb_scripts/lguest_cmds/, printed through
                 the same renderers (lgdbg.views.render)
"""

from .app import configure, run  # noqa: F401  (the `lgdbg repl` command)
