# Each IMAGE.elf-gdb.py is a link to this file.  gdb auto-loads it beside its guest image (as vmlinux-gdb.py does for Linux)
# when the image's directory is on gdb's auto-load safe path:
#     gdb -iex "add-auto-load-safe-path DIR" DIR/IMAGE.elf
# It loads lgdbg's lguest-* commands (what `source gdb_scripts/lguest.py`
# does) and lets gdb find the guest's sources, which ship beside the image.
# Standard library only: gdb's Python is the system's, not lgdbg's venv.
import os
import sys

import gdb


def _lgdbg_autoload(here):
    # lgdbg/images/ -> the directory holding the lgdbg package: the repo root
    # in a checkout, site-packages when installed.
    root = os.path.normpath(os.path.join(here, os.pardir, os.pardir))
    # gdb_scripts/: top level in a checkout, inside the package when installed.
    for scripts in (os.path.join(root, "gdb_scripts"), os.path.join(root, "lgdbg", "gdb_scripts")):
        if os.path.isfile(os.path.join(scripts, "lguest_cmds", "__init__.py")):
            break
    else:
        gdb.write("lgdbg: gdb_scripts/ not found near %s; the lguest-* commands are "
                  "not loaded\n" % here, gdb.STDERR)
        return
    for path in (scripts, root):
        if path not in sys.path:
            sys.path.insert(0, path)
    import lguest_cmds
    lguest_cmds.register_all()
    # The line tables name ./IMAGE.S (built with -fdebug-prefix-map).
    gdb.execute("directory %s" % here, to_string=True)


_lgdbg_autoload(os.path.dirname(os.path.abspath(__file__)))
