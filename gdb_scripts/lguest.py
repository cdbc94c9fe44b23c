"""Load lgdbg's lguest-* commands into gdb.

    (gdb) source gdb_scripts/lguest.py

or let gdb auto-load it through IMAGE-gdb.py beside a bundled guest image.
gdb's embedded Python is the system's, not lgdbg's venv, so everything loaded
here is standard library only, and nothing here imports readline (that would
break gdb's own tab completion).
"""

import os
import sys

import gdb


def _find_package_root(start):
    """The directory holding the `lgdbg` package: the repo root in a checkout
    (gdb_scripts/ beside lgdbg/), site-packages when installed (lgdbg/gdb_scripts/)."""
    d = start
    for _ in range(4):
        if os.path.isfile(os.path.join(d, "lgdbg", "abi.py")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return None


def _load():
    here = os.path.dirname(os.path.abspath(__file__))
    root = _find_package_root(here)
    if root is None:
        raise gdb.GdbError("lguest.py: cannot find the lgdbg package near %s" % here)
    for path in (here, root):
        if path not in sys.path:
            sys.path.insert(0, path)
    import lguest_cmds          # noqa: F401  registers every lguest-* command once
    lguest_cmds.register_all()


_load()
