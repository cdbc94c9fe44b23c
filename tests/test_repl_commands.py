"""`lgdbg repl`'s command layer, without a terminal: the Commands class directly,
the prompt loop through prompt_toolkit's pipe input and DummyOutput, and completion."""

import io
import os
import signal
import sys
import threading

import pytest

from lgdbg import images
from lgdbg.views import render
from lgdbg.machine import Machine
from lgdbg.repl.commands import Commands, resolve_command, CommandError


def session(name="iret", **kw):
    out, err = io.StringIO(), io.StringIO()
    m = Machine(images.path_of(name), **kw)
    cmds = Commands(m, out=out, err=err, image_path=images.path_of(name))
    return cmds, out, err


def run(cmds, out, line, ok=True):
    out.seek(0)
    out.truncate()
    assert cmds.execute(line) is ok, line
    return out.getvalue()


@pytest.fixture
def at_iret():
    """The iret guest stopped at its first lguest_iret."""
    cmds, out, err = session()
    run(cmds, out, "break lguest_iret")
    text = run(cmds, out, "continue")
    assert "Breakpoint 1, 0xc010031c <lguest_iret>" in text
    return cmds, out, err


def guest_state(cmds):
    m = cmds.m
    return (m.cpu.regs(), m.icount, m.host.irqs_pending, bytes(m.mem.buf[:0x200000]),
            m.cpu.breakpoints(), m.cpu.watches())


# ------------------------------------------------------------------ running and breakpoints

def test_break_continue_shows_location_and_disassembly(at_iret):
    cmds, out, _ = at_iret
    assert cmds.prompt() == "lguest_iret> "
    text = run(cmds, out, "stepi")
    assert "=> 0xc010031d <lguest_iret+1>:\tmov eax, dword ptr [esp + 0xc]" in text
    assert cmds.prompt() == "lguest_iret+1> "
    text = run(cmds, out, "stepi 2")
    assert "<lguest_iret+11>" in text and cmds.m.cpu.reg("eip") == 0xc0100327


def test_console_printed_as_it_arrives_and_kept(at_iret):
    cmds, out, _ = at_iret
    text = run(cmds, out, "console")
    assert text.startswith("iret: patching paravirt call sites\n")
    assert "tick 1 interrupted" in text


def test_breakpoint_forms_and_info(at_iret):
    cmds, out, _ = at_iret
    assert "Breakpoint 2 at 0xc010031d <lguest_iret+1>" in run(cmds, out, "b lguest_iret+1")
    assert "Breakpoint 3 at 0xc01000fc <main_loop>" in run(cmds, out, "break *0xc01000fc")
    assert "Temporary breakpoint 4 at 0xc0100201 <timer_interrupt>" in run(cmds, out,
                                                                          "tbreak timer_interrupt")
    info = run(cmds, out, "info breakpoints")
    assert "already hit 1 time" in info
    assert "del" in info and "lguest_iret+1" in info
    run(cmds, out, "delete 1 2 3")
    assert cmds.m.cpu.breakpoints() == [0xc0100201]
    text = run(cmds, out, "continue")
    assert "Temporary breakpoint 4, 0xc0100201 <timer_interrupt>" in text
    assert cmds.m.cpu.breakpoints() == []
    assert "No breakpoints" in run(cmds, out, "info b")


def test_two_breakpoints_on_one_address(at_iret):
    cmds, out, _ = at_iret
    run(cmds, out, "break lguest_iret")
    run(cmds, out, "delete 1")
    assert cmds.m.cpu.breakpoints() == [0xc010031c]       # number 2 still wants it
    run(cmds, out, "delete 2")
    assert cmds.m.cpu.breakpoints() == []


def test_watchpoint_reports_old_and_new_value(at_iret):
    cmds, out, _ = at_iret
    run(cmds, out, "delete")
    assert "Watchpoint 2: lguest_data (4 bytes" in run(cmds, out, "watch lguest_data")
    text = run(cmds, out, "continue")
    assert "Watchpoint 2: lguest_data" in text
    assert "Old value = 0x0\nNew value = 0x206" in text


def test_catchpoints(tmp_path):
    cmds, out, _ = session()
    assert "Catchpoint 1 (hcall SET_CLOCKEVENT)" in run(cmds, out, "catch hcall set_clockevent")
    listed = run(cmds, out, "catch list")
    assert listed == render.render_catchpoints([{"number": 1, "kind": "hcall",
                                                 "arg": "SET_CLOCKEVENT"}]) + "\n"
    text = run(cmds, out, "continue")
    assert "Caught catchpoint 1 (hcall SET_CLOCKEVENT)" in text
    assert "SET_CLOCKEVENT delta_ns=50000" in text
    run(cmds, out, "catch delete 1")
    assert run(cmds, out, "info catchpoints") == "No lguest catchpoints.\n"


def test_run_to_the_end_then_still_inspectable():
    cmds, out, _ = session()
    text = run(cmds, out, "continue")
    assert "The guest powered off (CRASH: Power down)" in text
    assert cmds.prompt().startswith("(dead) ")
    assert "eip 0xc0100194" in run(cmds, out, "regs")
    assert "powered off" in run(cmds, out, "continue")


@pytest.fixture(params=["default", "ignored"])
def sigint_before(request):
    """SIGINT's disposition before the REPL runs a command, set here rather
    than inherited: a suite started as a background job or under nohup
    starts with SIGINT ignored, and the test must not depend on that."""
    wanted = {"default": signal.default_int_handler, "ignored": signal.SIG_IGN}[request.param]
    inherited = signal.signal(signal.SIGINT, wanted)
    yield wanted
    signal.signal(signal.SIGINT, inherited)


def test_ctrl_c_stops_a_running_guest_and_the_session_goes_on(sigint_before):
    """The real signal path: SIGINT while `continue` runs an endless loop.

    The REPL takes SIGINT for the command's duration, whatever it was
    before (an ignored SIGINT included), and gives the old one back."""
    from lgdbg.repl.app import run_line
    # A budget far past the SIGINT (sent at 10M instructions): if the signal
    # is lost, the run ends at the budget and the test fails instead of hanging.
    cmds, out, _ = session(max_insns=400_000_000)
    run(cmds, out, "break main_loop")
    run(cmds, out, "continue")
    run(cmds, out, "delete")
    cmds.m.write_memory(0xc01000fc, b"\xeb\xfe")           # jmp . : never returns
    fired = threading.Event()

    def interrupt_when_running():
        # Poll: send SIGINT once the guest has run (the event counts run loops).
        while not fired.is_set():
            if cmds.m.clock.icount > 10_000_000:
                os.kill(os.getpid(), signal.SIGINT)
                fired.set()
            fired.wait(0.01)

    t = threading.Thread(target=interrupt_when_running, daemon=True)
    t.start()
    out.seek(0)
    out.truncate()
    assert run_line(cmds, "continue")
    fired.set()
    t.join()
    assert "Interrupted at 0xc01000fc <main_loop>." in out.getvalue()
    assert cmds.prompt() == "main_loop> "
    assert signal.getsignal(signal.SIGINT) is sigint_before


# ------------------------------------------------------------------ registers and memory

def test_regs_decodes_flags_selectors_and_privilege(at_iret):
    cmds, out, _ = at_iret
    text = run(cmds, out, "regs")
    assert "eip 0xc010031c <lguest_iret>" in text
    assert "eflags 0x00000297 [ CF PF AF SF IF ] IOPL 0" in text
    assert "cs 0x0061  index 12, GDT, RPL 1" in text
    assert "ss 0x0069  index 13, GDT, RPL 1" in text
    assert "privilege level: 1, ring 1" in text
    assert "virtual IF (lguest_data.irq_enabled): 0x0 (disabled)" in text


def test_x_like_gdb(at_iret):
    cmds, out, _ = at_iret
    esp = cmds.m.cpu.reg("esp")
    text = run(cmds, out, "x/4xw $esp")
    assert text.startswith("%#010x" % esp)
    assert text.rstrip().endswith("0xc0100126\t0x00000061\t0x00000206\t0x00000000")
    assert run(cmds, out, "x/8xb lguest_data") == (
        "0xc0100610 <lguest_data>:\t" + "\t".join(["0x00"] * 8) + "\n")
    assert run(cmds, out, "x/s hex_digits") == '0xc01005a1 <hex_digits>:\t"0123456789abcdef"\n'
    text = run(cmds, out, "x/3i $pc")
    lines = text.splitlines()
    assert lines[0] == "=> 0xc010031c <lguest_iret>:\tpush eax"
    assert lines[2].startswith("   0xc0100321 <lguest_iret+5>:\tmov dword ptr ss:")
    assert run(cmds, out, "x/2dh lguest_data+1120") .startswith("0xc0100a70 <lguest_data+1120>:\t")
    assert run(cmds, out, "x/c hex_digits+10") == "0xc01005ab <hex_digits+10>:\t97 'a'\n"
    assert run(cmds, out, "x") == "0xc01005ac <hex_digits+11>:\t98 'b'\n"   # goes on
    assert run(cmds, out, "x/a $esp").endswith("0xc0100126 <main_loop+42>\n")


def test_x_bad_input_is_one_line(at_iret):
    cmds, out, err = at_iret
    for line in ("x/4qw $esp", "x/4xw nosuchsym", "x/4xw 0x1000", "x/4xw $nosuchreg", "x"):
        err.seek(0)
        err.truncate()
        fresh = Commands(cmds.m, out=io.StringIO(), err=err, symbols=cmds.symbols,
                         image_path=cmds.image_path, debugger=cmds.dbg) if line == "x" else cmds
        assert fresh.execute(line) is False
        assert err.getvalue().count("\n") == 1, (line, err.getvalue())
    assert "Cannot access memory at address 0x1000" in run_err(cmds, err, "x/4xw 0x1000")


def run_err(cmds, err, line):
    err.seek(0)
    err.truncate()
    cmds.execute(line)
    return err.getvalue()


def test_disas_function_and_count(at_iret):
    cmds, out, _ = at_iret
    text = run(cmds, out, "disas")
    assert text.splitlines()[0] == "Dump of assembler code for function lguest_iret:"
    assert "=> 0xc010031c <+0>:\tpush eax" in text
    assert "   0xc0100328 <+12>:\tiretd" in text
    assert text.rstrip().endswith("End of assembler dump.")
    lines = run(cmds, out, "disas main_loop 3").splitlines()
    assert len(lines) == 3 and lines[0].startswith("   0xc01000fc <main_loop>:\t")


# ------------------------------------------------------------------ lguest commands: same words as gdb

def test_lguest_commands_render_through_lgdbg_render(at_iret):
    from lgdbg import abi
    from lgdbg.views import inspect
    cmds, out, _ = at_iret
    m, sym = cmds.m, cmds.sym
    ld = m.host.lguest_data + m.host.page_offset
    raw = m.read_memory(ld, abi.layout()["size"])
    assert run(cmds, out, "data") == render.render_lguest_data(
        abi.decode_lguest_data(raw), ld, cmds.window_sym()) + "\n"
    assert run(cmds, out, "irq") == render.render_irq_decision(inspect.irq_decision(m), sym) + "\n"
    assert run(cmds, out, "hcalls 3") == render.render_hcalls(inspect.hcalls(m, 3), sym) + "\n"
    assert run(cmds, out, "idt") == render.render_idt(inspect.idt(m), sym) + "\n"
    assert run(cmds, out, "host") == render.render_host(inspect.host_state(m), sym) + "\n"
    assert run(cmds, out, "status") == render.render_status(inspect.status(m), sym) + "\n"
    assert "layout 2.6.24" in run(cmds, out, "data --layout 2.6.24")


def test_noirq_inside_the_window(at_iret):
    cmds, out, _ = at_iret
    assert run(cmds, out, "noirq").startswith("inside the noirq window: no")
    run(cmds, out, "stepi 2")
    text = run(cmds, out, "noirq")
    assert text.startswith("inside the noirq window: yes (EIP 0xc0100321 <lguest_iret+5>)")
    assert "=> 0xc0100321 <lguest_iret+5>:" in text


def test_irq_raise_clear_and_step_irq(at_iret):
    cmds, out, _ = at_iret
    run(cmds, out, "stepi 2")                                    # inside the window
    text = run(cmds, out, "irq raise 0")
    assert "irq 0 raised" in text and "inside the noirq window" in text
    text = run(cmds, out, "step-irq")
    assert "noirq window" in text and "delivered irq" not in text
    assert cmds.m.cpu.reg("eip") == 0xc0100321 and cmds.m.host.irqs_pending == 1
    text = run(cmds, out, "step-irq --until")
    assert "delivered irq 0 (vector 0x20) through an interrupt gate" in text
    assert "deferred by 3 instructions" in text
    assert cmds.prompt() == "timer_interrupt> "
    run(cmds, out, "irq raise 5")
    run(cmds, out, "irq clear 5")
    assert cmds.m.host.irqs_pending == 0


def test_patches(at_iret):
    cmds, out, _ = at_iret
    text = run(cmds, out, "patches")
    assert text.startswith("cli: [0xc010001e <lgstart_cli>")
    assert "c7 05 10 06 10 c0 00 00 00 00" in text
    assert "0xc010010c <main_loop+16>  patched" in text


def test_trace_prints_events_as_they_happen():
    cmds, out, _ = session()
    run(cmds, out, "trace on")
    run(cmds, out, "catch hcall LOAD_IDT_ENTRY")
    text = run(cmds, out, "continue")
    assert "[trace]          7 hcall LGUEST_INIT lguest_data=0x100610" in text
    # A trace line never lands in the middle of the guest's console line.
    assert "\n[trace]" in text and "iret: patching paravirt call sites\n" in text
    run(cmds, out, "trace off")
    run(cmds, out, "catch delete 1")
    assert "[trace]" not in run(cmds, out, "stepi 5")


def test_journey_uses_the_shared_words(at_iret):
    from lgdbg.views import journey
    cmds, out, _ = at_iret
    tour = journey.example_tour("iret")
    frag = journey.fragment_at(tour, "iret.S", 279)
    text = run(cmds, out, "journey")
    assert text == journey.render_fragment(frag, tour, 0xc010031c) + "\n"
    assert text.startswith("G:080 ")
    assert run(cmds, out, "journey prev").startswith("G:070 ")
    assert run(cmds, out, "journey next").startswith("G:080 ")
    assert not cmds.execute("journey next")                    # the end of the tour


# ------------------------------------------------------------------ failures never change the guest

@pytest.mark.parametrize("line", [
    "bogus", "stepi abc", "stepi 0", "continue now", "break nosuchsym", "break lguest_iret+zz",
    "watch", "watch nosuchsym 4", "irq raise 99", "irq raise", "irq frob 1", "catch nothing",
    "catch hcall NOSUCH", "catch delete 7", "delete 42", "x/4xw", "trace maybe", "hcalls -1",
    "s", "co", "step-irq --now", "data --layout 9.9", "disas nosuchsym", "info frobs",
    "tbreak nosuchsym", "help nosuch",
])
def test_a_mistyped_command_fails_in_one_line_and_changes_nothing(at_iret, line):
    cmds, out, err = at_iret
    before = guest_state(cmds)
    bps = [(b.number, b.addr) for b in cmds.breakpoints]
    err.seek(0)
    err.truncate()
    assert cmds.execute(line) is False
    assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
    assert guest_state(cmds) == before
    assert [(b.number, b.addr) for b in cmds.breakpoints] == bps


def test_command_names_and_prefixes():
    assert resolve_command("c") == "continue"
    assert resolve_command("si") == "stepi"
    assert resolve_command("disassemble") == "disas"
    assert resolve_command("pat") == "patches"
    with pytest.raises(CommandError, match="ambiguous"):
        resolve_command("con")


def test_help_lists_every_command_and_explains_one():
    cmds, out, _ = session()
    text = run(cmds, out, "help")
    for name in ("continue", "stepi", "step-irq", "break", "tbreak", "delete", "info", "watch",
                 "regs", "x/FMT", "disas", "data", "noirq", "irq", "hcalls", "idt", "host",
                 "catch", "patches", "trace", "console", "journey", "help", "quit"):
        assert "\n  " + name in text, name
    assert run(cmds, out, "help si").startswith("stepi [N]: ")


# ------------------------------------------------------------------ completion

def completions(cmds, text):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document
    from lgdbg.repl.app import make_completer
    found = make_completer(cmds).get_completions(Document(text), CompleteEvent(completion_requested=True))
    return [(c.text, c.start_position) for c in found]


def test_completion_of_commands_subcommands_and_symbols():
    cmds, _, _ = session()
    assert completions(cmds, "st") == [("status", -2), ("step-irq", -2), ("stepi", -2)]
    assert ("continue", -2) in completions(cmds, "co") and ("console", -2) in completions(cmds, "co")
    assert completions(cmds, "break lguest_i") == [("lguest_iret", -8)]
    assert completions(cmds, "break *lguest_no") == [("lguest_noirq_end", -9),
                                                     ("lguest_noirq_start", -9)]
    assert completions(cmds, "x/4xw $es") == [("$es", -3), ("$esi", -3), ("$esp", -3)]
    assert completions(cmds, "trace o") == [("on", -1), ("off", -1)]
    assert ("SET_CLOCKEVENT", -3) in completions(cmds, "catch hcall SET")
    assert completions(cmds, "journey n") == [("next", -1)]
    assert completions(cmds, "help pa") == [("patches", -2)]
    assert completions(cmds, "frob x") == []


# ------------------------------------------------------------------ the prompt loop, headless

def test_prompt_loop_through_pipe_input():
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from lgdbg.repl.app import interact, make_session
    cmds, out, err = session()
    with create_pipe_input() as inp:
        inp.send_text("break lguest_iret\rcontinue\rstepi\r\rbogus\rregs\r")
        inp.send_text("\x04")                                           # Ctrl-D quits
        history = InMemoryHistory()
        status = interact(cmds, make_session(cmds, input=inp, output=DummyOutput(),
                                             history=history))
    assert status == 0
    text = out.getvalue()
    assert "Breakpoint 1, 0xc010031c <lguest_iret>" in text
    assert "=> 0xc010031d <lguest_iret+1>" in text
    assert "=> 0xc0100321 <lguest_iret+5>" in text                 # Enter repeats stepi
    assert err.getvalue() == "unknown command 'bogus' (try `help`)\n"
    assert "privilege level: 1" in text
    assert list(history.load_history_strings())[0] == "regs"


def test_quit_ends_the_prompt_loop():
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from lgdbg.repl.app import interact, make_session
    cmds, out, _ = session()
    with create_pipe_input() as inp:
        inp.send_text("quit\rregs\r")
        assert interact(cmds, make_session(cmds, input=inp, output=DummyOutput(),
                                           history=InMemoryHistory())) == 0
    assert "privilege level" not in out.getvalue()


def test_history_file_follows_xdg(monkeypatch, tmp_path):
    from lgdbg.repl import app as repl
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert repl.history_path() == str(tmp_path / "lgdbg" / "history")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert repl.history_path() == str(tmp_path / "home" / ".local" / "state" / "lgdbg" / "history")


def test_importing_the_command_layer_is_light():
    import subprocess
    code = ("import sys, lgdbg.repl, lgdbg.repl.commands; "
            "print([m for m in ('prompt_toolkit', 'capstone') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
