"""The `lgdbg run` contract: statuses, streams, the trace schema, determinism."""

import json
import os
import subprocess
import sys

import pytest

from guestbuild import INIT, build_guest

LGDBG = [sys.executable, "-m", "lgdbg"]

# Fields every event kind carries besides icount, time_ns and kind (issue 2,
# shared/docs/run-contract.md).
SCHEMA = {
    "hcall": {"nr", "name", "args", "eip", "async"},
    "irq": {"irq", "vector", "from_eip", "handler", "gate", "esp"},
    "irq-deferred": {"irq", "reason", "eip"},
    "trap": {"vector", "errcode", "eip", "delivered"},
    "raise": {"irq", "source"},
    "halt": set(),
    "wake": set(),
    "clock": set(),
    "console": {"text"},
    "kill": {"reason"},
    "boot": {"abi", "entry", "mem"},
}


def lgdbg(*args, **kw):
    return subprocess.run(LGDBG + list(args), capture_output=True, text=True, timeout=120, **kw)


def read_trace(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_poweroff_is_status_0_and_console_on_stdout(tmp_path):
    r = lgdbg("run", "hello")
    assert r.returncode == 0
    assert r.stdout.startswith("Hello from an lguest Guest")
    assert "powered off" in r.stderr and "Hello" not in r.stderr


def test_killed_is_status_1_with_reason_and_registers(tmp_path):
    elf = build_guest(tmp_path, INIT + "\thcall 99\n")
    r = lgdbg("run", elf)
    assert r.returncode == 1
    assert "Bad hypercall 99" in r.stderr
    assert "eip" in r.stderr and "eflags" in r.stderr
    assert "Traceback" not in r.stderr


def test_max_insns_is_status_3():
    r = lgdbg("run", "iret", "--max-insns", "5000")
    assert r.returncode == 3
    assert "--max-insns" in r.stderr


def test_halted_forever_is_status_1(tmp_path):
    elf = build_guest(tmp_path, INIT + "\thcall LHCALL_HALT\n")
    r = lgdbg("run", elf)
    assert r.returncode == 1 and "nothing that can ever wake it" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--clock", "realtime", "--irq", "1@5"], "need --clock icount"),
    (["--clock", "realtime", "--max-insns", "5"], "needs --clock icount"),
    (["--clock", "realtime", "--host-tick", "5"], "needs --clock icount"),
    (["--irq", "banana"], "IRQ@ICOUNT"),
    (["--irq", "40@5"], "out of range"),
    (["--mem", "0"], "--mem"),
    (["--host-tick", "0"], "--host-tick"),
])
def test_bad_options_are_one_line_status_2(args, words):
    r = lgdbg("run", "hello", *args)
    assert r.returncode == 2
    assert words in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_trace_schema_on_every_kind(tmp_path):
    trace = tmp_path / "t.jsonl"
    r = lgdbg("run", "timer", "--irq", "1@600", "--irq", "5@700", "--trace", str(trace))
    assert r.returncode == 0
    events = read_trace(trace)
    seen = {e["kind"] for e in events}
    # The first line names the ABI the Host speaks, the only boot event.
    assert events[0]["kind"] == "boot" and events[0]["abi"] == "2.6.23"
    assert [e["kind"] for e in events].count("boot") == 1
    assert {"hcall", "irq", "irq-deferred", "raise", "halt", "wake", "clock", "console",
            "kill"} <= seen
    last = (0, 0)
    for e in events:
        assert set(SCHEMA[e["kind"]]) <= set(e), e
        assert isinstance(e["icount"], int) and isinstance(e["time_ns"], int)
        assert (e["icount"], e["time_ns"]) >= last      # in order
        last = (e["icount"], e["time_ns"])
        for k, v in e.items():
            if k in ("text", "reason", "name", "kind", "gate", "source", "abi"):
                continue
            assert not (isinstance(v, str) and v.startswith("0x")), "numbers are integers"
        if e["kind"] == "clock":
            assert ("armed" in e) != ("fired" in e)
    gates = {e["gate"] for e in events if e["kind"] == "irq"}
    assert gates == {"interrupt", "trap"}        # timer: both kinds of gate
    assert events[-1] == dict(events[-1], kind="kill", reason="CRASH: Power down")


def test_same_run_same_trace_bytes(tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / ("t%d.jsonl" % i)
        assert lgdbg("run", "iret", "--irq", "1@5000", "--trace", str(p)).returncode == 0
        paths.append(p)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_realtime_clock_runs_and_has_no_icount(tmp_path):
    trace = tmp_path / "t.jsonl"
    r = lgdbg("run", "timer", "--clock", "realtime", "--trace", str(trace))
    assert r.returncode == 0 and "tick 5" in r.stdout
    events = read_trace(trace)
    assert events and all("icount" not in e and "time_ns" in e for e in events)


def test_trace_to_unwritable_place_is_status_2(tmp_path):
    r = lgdbg("run", "hello", "--trace", str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert r.returncode == 2 and "cannot write trace" in r.stderr


def test_cmdline_reaches_the_boot_header():
    r = lgdbg("run", "hello", "--cmdline", "console=hvc0 quiet")
    assert "Command line: console=hvc0 quiet" in r.stdout


@pytest.mark.parametrize("redirect", ["0<&-", "</dev/null"], ids=["closed", "devnull"])
def test_run_without_a_usable_stdin(redirect):
    # The console reads standard input: closed or empty, it is simply no input.
    r = subprocess.run(" ".join(LGDBG + ["run", "hello", redirect]), shell=True,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and r.stdout.startswith("Hello from an lguest Guest")
