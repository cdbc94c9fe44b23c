"""`lgdbg repl --batch FILE` and commands on stdin: scripts whose status says
whether any command failed."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lgdbg_repl(*args, stdin_text=None, tmp_path=None):
    env = dict(os.environ)
    if tmp_path is not None:
        env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return subprocess.run([sys.executable, "-m", "lgdbg", "repl", *args], cwd=ROOT,
                          input=stdin_text if stdin_text is not None else "",
                          capture_output=True, text=True, timeout=120, env=env)


def script(tmp_path, text):
    path = tmp_path / "script.lgdbg"
    path.write_text(text)
    return str(path)


GOOD = """\
# comments and blank lines are skipped

break lguest_iret
continue
regs
x/3i $pc
disas
noirq
data
irq
hcalls 2
idt
host
patches
journey
"""


def test_a_script_that_succeeds_exits_0(tmp_path):
    res = lgdbg_repl("iret", "--batch", script(tmp_path, GOOD), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    out = res.stdout
    assert "guest_entry> break lguest_iret\nBreakpoint 1 at 0xc010031c <lguest_iret>" in out
    assert "iret: patching paravirt call sites\n" in out          # console as it arrives
    assert "lguest_iret> regs\n" in out                           # the prompt says where
    assert "=> 0xc010031c <lguest_iret>:\tpush eax" in out
    assert "Dump of assembler code for function lguest_iret:" in out
    assert "struct lguest_data at 0xc0100610 <lguest_data>" in out
    assert "G:080 " in out
    assert not (tmp_path / "state").exists()                      # no history in batch mode


def test_a_failing_command_makes_the_status_1_and_the_script_goes_on(tmp_path):
    res = lgdbg_repl("iret", "--batch", script(tmp_path, "break nosuch\nbreak lguest_iret\n"
                                                         "frobnicate\ncontinue\nregs\n"))
    assert res.returncode == 1
    assert res.stderr.splitlines() == ["no symbol 'nosuch' in iret.elf",
                                       "unknown command 'frobnicate' (try `help`)"]
    assert "Breakpoint 1, 0xc010031c <lguest_iret>" in res.stdout
    assert "privilege level: 1" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_commands_on_stdin_when_it_is_not_a_terminal():
    res = lgdbg_repl("iret", stdin_text="stepi 3\nregs\n")
    assert res.returncode == 0, res.stderr
    assert "privilege level: 1" in res.stdout
    res = lgdbg_repl("iret", stdin_text="regs\nx/4xw 0x10\n")
    assert res.returncode == 1
    assert res.stderr == "Cannot access memory at address 0x10\n"


def test_quit_ends_the_script(tmp_path):
    res = lgdbg_repl("iret", "--batch", script(tmp_path, "quit\nbogus\n"))
    assert res.returncode == 0 and res.stderr == ""


def test_the_guest_running_to_its_end_is_not_a_failure(tmp_path):
    res = lgdbg_repl("hello", "--batch", script(tmp_path, "continue\nconsole\nregs\n"))
    assert res.returncode == 0, res.stderr
    assert "The guest powered off (CRASH: Power down)" in res.stdout


@pytest.mark.parametrize("args, words", [
    (("iret", "--batch", "/nonexistent/script"), "cannot read batch file /nonexistent/script"),
    (("/nonexistent.elf", "--batch", "/dev/null"), "no such image"),
    (("iret", "--irq", "nonsense"), "--irq wants IRQ@ICOUNT"),
])
def test_bad_usage_is_one_line_and_status_2(args, words):
    res = lgdbg_repl(*args)
    assert res.returncode == 2
    assert len(res.stderr.splitlines()) == 1 and words in res.stderr


def test_closed_stdin_is_an_empty_script():
    r = subprocess.run(" ".join([sys.executable, "-m", "lgdbg", "repl", "iret", "0<&-"]),
                       shell=True, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
