"""`lgdbg repl`: the same debugger without gdb.

A prompt_toolkit prompt that shows where the guest is (`lguest_iret+5> `),
completes commands and symbol names, and keeps its history in
$XDG_STATE_HOME/lgdbg/history (default ~/.local/state/lgdbg/history).  Ctrl-C
stops a running guest and returns to the prompt; Ctrl-D quits.  The commands
themselves live in lgdbg.repl.commands, which needs no terminal.

`--batch FILE`, or commands on stdin when stdin is not a terminal, runs a
script of REPL commands and exits 0 only if none of them failed (1
otherwise): for tests and CI.

prompt_toolkit is imported only here, and only for an interactive session.
"""

import os
import signal
import sys
import threading

from .. import images
from ..errors import UsageError
from ..options import add_console_input_option, add_machine_options, build_machine


def configure(parser):
    add_machine_options(parser)
    add_console_input_option(parser)
    parser.add_argument("--no-history", action="store_true",
                        help="keep no checkpoints (reverse-stepi/reverse-continue refused)")
    parser.add_argument("--batch", metavar="FILE",
                        help="run the REPL commands in FILE, then exit: status 0 only if "
                             "none failed (commands are also read from stdin when it is "
                             "not a terminal)")


def run(args):
    script = None
    if args.batch is not None:
        try:
            with open(args.batch, encoding="utf-8", errors="replace") as f:
                script = f.read().splitlines()
        except OSError as e:
            raise UsageError("cannot read batch file %s: %s" % (args.batch, e.strerror or e))
    from .commands import Commands
    image = images.resolve(args.image)
    machine = build_machine(args)
    # A closed stdin (sys.stdin is None) is a script with no commands.
    batch = script is not None or sys.stdin is None or not sys.stdin.isatty()
    from ..core.debugger import Debugger
    debugger = Debugger(machine, history=not args.no_history and machine.clock.deterministic)
    cmds = Commands(machine, out=sys.stdout, err=sys.stderr if batch else sys.stdout,
                    image_path=image, debugger=debugger)
    if script is not None:
        return run_batch(cmds, script)
    if batch:
        return run_batch(cmds, sys.stdin if sys.stdin is not None else [])
    return interact(cmds, make_session(cmds))


# ---------------------------------------------------------------- batch

def run_batch(cmds, lines):
    """Each line a command, echoed after the prompt; status 1 if any failed."""
    failed = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cmds.say(cmds.prompt() + line.strip())
        if not run_line(cmds, line):
            failed += 1
        if cmds.quit_requested:
            break
    return 1 if failed else 0


def run_line(cmds, line):
    """Execute one line; while the guest runs, Ctrl-C stops it instead of us."""
    if threading.current_thread() is not threading.main_thread():
        return cmds.execute(line)

    def stop_guest(signum, frame):
        cmds.interrupt()

    previous = signal.signal(signal.SIGINT, stop_guest)
    try:
        return cmds.execute(line)
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------- interactive

def history_path():
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "lgdbg", "history")


def _history():
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    path = history_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass
    except OSError:
        return InMemoryHistory()         # a read-only home must not stop the REPL
    return FileHistory(path)


def make_completer(cmds):
    from prompt_toolkit.completion import Completer, Completion

    class ReplCompleter(Completer):
        """Commands, their sub-commands, registers and the image's symbols."""

        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            start = -len(cmds.completion_prefix(text))
            for word in cmds.completions(text):
                yield Completion(word, start_position=start)

    return ReplCompleter()


def make_session(cmds, input=None, output=None, history=None):
    """A PromptSession for cmds (tests pass a pipe input, DummyOutput and memory history)."""
    from prompt_toolkit import PromptSession
    return PromptSession(history=history if history is not None else _history(),
                         completer=make_completer(cmds), complete_while_typing=False,
                         input=input, output=output)


def interact(cmds, session):
    """Read and run commands until quit or Ctrl-D; an empty line repeats stepi/x."""
    previous = None
    while not cmds.quit_requested:
        try:
            line = session.prompt(cmds.prompt())
        except KeyboardInterrupt:
            continue                      # Ctrl-C at the prompt: a fresh line
        except EOFError:
            break                         # Ctrl-D
        if not line.strip():
            if previous is None:
                continue
            line = previous
        ok = run_line(cmds, line)
        previous = None
        if ok and cmds.last_command in _repeatable():
            # `x` goes on where it ended, as gdb's repeated x does.
            previous = "x" if cmds.last_command == "x" else line
    return 0


def _repeatable():
    from .session import REPEATABLE
    return REPEATABLE
