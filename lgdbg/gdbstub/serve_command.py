"""`lgdbg serve [IMAGE] [--listen HOST:PORT] [--stdio]`: the Guest, for gdb or lldb.

The Guest waits at its entry point until a client continues it.  Its console
goes to stdout (stderr with --stdio, where stdout is the protocol) and, while
a client is attached, to the client as O packets.  The stub keeps the machine
between clients: a detach or a dropped connection leaves it stopped where it
was, for the next client; `kill` ends the stub.
"""

import sys

from ..errors import UsageError
from ..run_command import add_console_input_option, add_machine_options, build_machine

DEFAULT_LISTEN = "127.0.0.1:1234"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def configure(parser):
    add_machine_options(parser)
    add_console_input_option(parser)
    parser.add_argument("--listen", default=None, metavar="HOST:PORT",
                        help="TCP address to listen on (default %s; port 0 picks a free "
                             "one)" % DEFAULT_LISTEN)
    parser.add_argument("--no-history", action="store_true",
                        help="keep no checkpoints: reverse-stepi/reverse-continue refused")
    parser.add_argument("--stdio", action="store_true",
                        help="speak the protocol on stdin/stdout "
                             "(target remote | lgdbg serve --stdio IMAGE)")


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise UsageError("--listen wants HOST:PORT (for example 127.0.0.1:1234), not %r" % text)
    try:
        port = int(port)
    except ValueError:
        raise UsageError("--listen %s: the port must be a number" % text)
    if not 0 <= port <= 65535:
        raise UsageError("--listen %s: port out of range" % text)
    return host.strip("[]"), port


def announce(text):
    print(text, file=sys.stderr, flush=True)


def build_stub(args, console_stream):
    from .server import Console, Stub     # unicorn is imported only here
    console = Console(console_stream)
    machine = build_machine(args, output=console)
    return Stub(machine, console, history=not getattr(args, "no_history", False))


def run(args):
    if args.stdio and args.listen:
        raise UsageError("--stdio and --listen exclude each other")
    if args.stdio:
        stub = build_stub(args, sys.stderr.buffer)
        from .server import StdioTransport
        stub.serve_connection(StdioTransport(0, 1))
        return 0
    host, port = parse_listen(args.listen or DEFAULT_LISTEN)

    def listening(text):
        # Warned only once the address is bound: a bad one is one error line.
        announce(text)
        if host not in LOOPBACK:
            announce("lgdbg serve: warning: listening on %s: whoever reaches this port "
                     "controls the machine" % host)
    stub = build_stub(args, sys.stdout.buffer)
    try:
        stub.serve_tcp(host, port, listening)
    except OSError as e:
        raise UsageError("cannot listen on %s:%d: %s" % (host, port, e.strerror or e))
    return 0
