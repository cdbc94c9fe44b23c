"""`lgdbg repl` in a real terminal, under tmux: type a breakpoint on a symbol,
continue, and read the prompt and the disassembly off the screen."""

import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, tmp_path):
        self.name = "lgdbg-repl-%s" % uuid.uuid4().hex[:8]
        self.socket = str(tmp_path / "tmux.sock")     # a private server: no user sessions touched

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, check=check, timeout=10)

    def start(self, command, env):
        exports = " ".join("%s=%s" % kv for kv in env.items())
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", self.name,
                  "env %s %s; echo '[exited]'; sleep 30" % (exports, command))

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", self.name).stdout

    def send(self, *keys):
        self.tmux("send-keys", "-t", self.name, *keys)

    def wait_for(self, predicate, what, timeout=30):
        """Poll the screen until predicate(screen) holds (a readiness check, not a sleep)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; screen:\n%s" % (what, screen))

    def kill(self):
        self.tmux("kill-server", check=False)


def last_line(screen):
    lines = [line for line in screen.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_break_on_a_symbol_continue_and_read_the_screen(tmp_path):
    t = Tmux(tmp_path)
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": ROOT,
           "PROMPT_TOOLKIT_NO_CPR": "1"}
    try:
        t.start("%s -m lgdbg repl iret" % sys.executable, env)
        t.wait_for(lambda s: last_line(s).startswith("guest_entry>"), "the first prompt")

        t.send("break lguest_", "Tab")                      # completion on the real terminal
        t.wait_for(lambda s: "break lguest_iret" in s or "lguest_noirq_start" in s,
                   "symbol completion")
        t.send("C-u", "break lguest_iret", "Enter")
        t.wait_for(lambda s: "Breakpoint 1 at 0xc010031c <lguest_iret>" in s, "the breakpoint")

        t.send("continue", "Enter")
        screen = t.wait_for(lambda s: last_line(s).startswith("lguest_iret>"),
                            "the prompt at the breakpoint")
        assert "Breakpoint 1, 0xc010031c <lguest_iret>" in screen
        assert "=> 0xc010031c <lguest_iret>:" in screen and "push eax" in screen
        assert "iret: patching paravirt call sites" in screen        # console as it arrived

        t.send("disas", "Enter")
        screen = t.wait_for(lambda s: "End of assembler dump." in s
                            and last_line(s).startswith("lguest_iret>"), "the disassembly")
        assert "Dump of assembler code for function lguest_iret:" in screen
        assert "=> 0xc010031c <+0>:" in screen and "iretd" in screen
        assert last_line(screen).startswith("lguest_iret>")

        # Ctrl-C stops a running guest and leaves us at the prompt.  Sent again
        # until it lands, in case the first one beat the command's start.
        t.send("stepi 100000000", "Enter")
        t.wait_for(lambda s: "lguest_iret> stepi 100000000" in s, "the long stepi")
        deadline = time.monotonic() + 30
        while "Interrupted at" not in t.screen() and time.monotonic() < deadline:
            t.send("C-c")
            try:
                t.wait_for(lambda s: "Interrupted at" in s, "the interrupt", timeout=1)
            except AssertionError:
                pass
        screen = t.wait_for(lambda s: "Interrupted at" in s and re.fullmatch(
            r"[\w.+]+>", last_line(s).strip()) and not last_line(s).startswith("lguest_iret>"),
            "the prompt after Ctrl-C")
        assert "[exited]" not in screen

        t.send("C-d")                                        # Ctrl-D quits
        t.wait_for(lambda s: "[exited]" in s, "the REPL to exit")
        history = tmp_path / "state" / "lgdbg" / "history"
        assert "break lguest_iret" in history.read_text()
    finally:
        t.kill()
