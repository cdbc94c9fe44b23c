"""The REPL's command layer: one method per command, no terminal needed.

`lgdbg repl` (lgdbg/repl/app.py) reads lines with prompt_toolkit and hands each
one to Commands.execute(); tests and `--batch` do the same without a
terminal.  Front ends translate, they do not decide: every command becomes a
call on the machine or on lgdbg.core.debugger.Debugger, and the lguest commands
print through lgdbg.views.render, the renderers the gdb commands use, so both say
the same words.

The commands live in one module per area, as gdb_scripts/lguest_cmds/ has
them (data, irq, host, catch, pgtable, patches, journey, virtio), plus the REPL's own
(run, breakpoints, memory, trace, help); each is a mixin of Commands.  The
rules every command keeps are in repl/session.py, with Session.execute, the
one place a line is run.

capstone is imported only on first disassembly (lgdbg.views.disasm); this module
itself imports nothing heavy, so importing it is cheap.
"""

from .run import RunCommands
from .breakpoints import BreakpointsCommands
from .memory import MemoryCommands
from .data import DataCommands
from .irq import IrqCommands
from .host import HostCommands
from .pgtable import PgtableCommands
from .catch import CatchCommands
from .patches import PatchesCommands
from .trace import TraceCommands
from .journey import JourneyCommands
from .virtio import VirtioCommands
from .help import HelpCommands
from .session import CommandError, Session, resolve_command, split_command  # noqa: F401


class Commands(Session, RunCommands, BreakpointsCommands, MemoryCommands, DataCommands,
               IrqCommands, HostCommands, PgtableCommands, CatchCommands, PatchesCommands,
               TraceCommands, JourneyCommands, VirtioCommands, HelpCommands):
    """Every REPL command on one Machine (see Session for the shared state)."""
