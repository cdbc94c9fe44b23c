"""`lgdbg gdb [IMAGE] [-- GDB-ARGS]`: the stub and gdb in one command.

The stub runs in this process on a free loopback port; gdb runs as a child
with the image's symbols, the lguest-* commands (gdb_scripts/, shipped in
the package) and `target remote` done.  When gdb quits, the stub ends with
it.  The Guest's console reaches gdb as O packets only (printing it here too
would show every line twice in the same terminal).
"""

import os
import shutil
import signal
import subprocess
import threading

from . import images
from .errors import UsageError
from .run_command import add_console_input_option, add_machine_options, build_machine

HERE = os.path.dirname(os.path.abspath(__file__))
# gdb_scripts/ as package data (pip install), or beside the package (checkout).
SCRIPT_DIRS = (os.path.join(HERE, "gdb_scripts"), os.path.join(os.path.dirname(HERE),
                                                               "gdb_scripts"))


def configure(parser):
    add_machine_options(parser)
    add_console_input_option(parser)
    parser.add_argument("--gdb", default=os.environ.get("LGDBG_GDB", "gdb"), metavar="PATH",
                        help="the gdb to run (default: gdb on PATH, or $LGDBG_GDB)")
    parser.add_argument("gdb_args", nargs="*", metavar="-- GDB-ARGS",
                        help="arguments passed on to gdb after a --")


def find_loader():
    for d in SCRIPT_DIRS:
        path = os.path.join(d, "lguest.py")
        if os.path.exists(path):
            return path
    return None


def gdb_command(gdb, image, port, extra):
    """The gdb command line: symbols, lguest-* commands, target remote."""
    image = os.path.abspath(image)
    cmd = [gdb, "-q",
           # The image's own auto-load script (IMAGE-gdb.py) may run.
           "-iex", "add-auto-load-safe-path %s" % os.path.dirname(image),
           # gdb's Python is not our venv: let the stdlib-only lgdbg.abi import.
           "-iex", "python import sys; sys.path.insert(0, %r)" % os.path.dirname(HERE)]
    loader = find_loader()
    # gdb auto-loads OBJFILE-gdb.py (iret.elf-gdb.py), which sources the loader.
    if loader and not os.path.exists(image + "-gdb.py"):
        cmd += ["-ex", "source %s" % loader]
    cmd += ["-ex", "target remote 127.0.0.1:%d" % port]
    return cmd + list(extra) + [image]


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(args):
    extra = list(args.gdb_args)
    if args.image is not None and args.image.startswith("-"):
        extra.insert(0, args.image)       # `lgdbg gdb -- -batch ...`: no image given
        args.image = None
    gdb = shutil.which(args.gdb)
    if gdb is None:
        raise UsageError("cannot find gdb (%s): install it or pass --gdb PATH" % args.gdb)
    image = images.resolve(args.image)

    from .gdbstub.server import Console, Stub
    console = Console(None)
    stub = Stub(build_machine(args, output=console), console)
    ready = threading.Event()
    port = []

    def announce(text):
        port.append(int(text.rsplit(":", 1)[1]))
        ready.set()

    threading.Thread(target=stub.serve_tcp, args=("127.0.0.1", 0, announce),
                     daemon=True).start()
    if not ready.wait(10):
        raise UsageError("the stub did not start listening")
    # Ctrl-C in the terminal is gdb's: it sends the stub a 0x03.  This process
    # (in the same process group) must not die of the same SIGINT.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call(gdb_command(gdb, image, port[0], extra),
                               preexec_fn=_default_sigint)
    finally:
        signal.signal(signal.SIGINT, old)
