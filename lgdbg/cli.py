"""`lgdbg` command line: one sub-command per module, imported only when used.

Start-up time is part of every command's cost, so the heavy modules (unicorn,
capstone, prompt_toolkit, pygdbmi) are imported by the sub-command that needs
them, never here.  Each sub-command module provides:

    configure(parser)   add its arguments to an argparse parser
    run(args) -> int    do the work and return the exit status

A user error anywhere is raised as lgdbg.errors.UsageError and becomes one
line on stderr and status 2.
"""

import argparse
import importlib
import sys

from .errors import LgdbgError, UsageError

# name -> (module, one-line help)
COMMANDS = {
    "run": ("lgdbg.run_command", "run a guest on the emulated lguest machine"),
    "serve": ("lgdbg.gdbstub.serve_command", "serve a guest to gdb or lldb over the remote protocol"),
    "gdb": ("lgdbg.gdb_command", "start the stub and gdb with the lguest-* commands loaded"),
    "repl": ("lgdbg.repl", "debug a guest interactively without gdb"),
    "explore": ("lgdbg.explore", "inject an interrupt at every instruction of a window"),
    "journey": ("lgdbg.views.journey", "print the numbered narrative tour of guest sources"),
    "timeline": ("lgdbg.timeline", "draw a trace's interrupt timing as HTML or SVG"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and status 2 (argparse's own)."""

    def error(self, message):
        self.exit(2, "lgdbg %s: error: %s\n" % (self.prog.split()[-1], message))


def build_parser(only=None):
    parser = _Parser(prog="lgdbg", description="A debugger for lguest guests.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (modname, helptext) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=helptext, add_help=False)
            continue
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=modname)
        importlib.import_module(modname).configure(p)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    wanted = next((a for a in argv if not a.startswith("-")), None)
    if wanted not in COMMANDS:
        wanted = None
    try:
        parser = build_parser(only=wanted)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        module = importlib.import_module(args._module)
        return module.run(args)
    except UsageError as e:
        print("lgdbg: %s" % e, file=sys.stderr)
        return 2
    except LgdbgError as e:
        print("lgdbg: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lgdbg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
