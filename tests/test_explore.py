"""lgdbg explore and lgdbg.snapshot, on the bundled iret example."""

import json

import pytest

from lgdbg import images
from lgdbg.cli import main
from lgdbg.explore import Explorer, parse_window
from lgdbg.machine import Machine
from lgdbg.snapshot import Snapshots, ram_digest, register_state
from lgdbg.symbols import Symbols

IRET = images.path_of("iret")


@pytest.fixture(scope="module")
def syms():
    return Symbols(IRET)


def explore(syms, window, no_noirq=False, irq=0, at="main_loop"):
    m = Machine(IRET)
    start, end = parse_window(syms, IRET, window)
    ex = Explorer(m, syms, syms.lookup(at), start, end, irq, no_noirq=no_noirq)
    return ex, ex.explore()


def by_symbol(report):
    return {p["symbol"]: p for p in report["points"]}


# --- the explorer ---------------------------------------------------------------------------
def test_no_noirq_shows_corruption_exactly_between_store_and_iret(syms):
    _, report = explore(syms, "timer_interrupt-lguest_noirq_end", no_noirq=True)
    store = syms.lookup("lguest_noirq_start")       # movl %eax, irq_enabled
    end = syms.lookup("lguest_noirq_end")
    corrupted = [p["address"] for p in report["points"] if p["differs"]]
    after_store = [p["address"] for p in report["points"] if store < p["address"] < end]
    assert after_store and corrupted == after_store      # the pop and the iret
    for p in report["points"]:
        if p["differs"]:
            assert p["delivered"] and p["outcome"].startswith("killed: CRASH: nested interrupt")
    pts = by_symbol(report)
    # Before the store irq_enabled is still 0 (interrupt gate): deferred, harmless.
    assert pts["lguest_iret+5"]["reason"] == "disabled"
    assert pts["lguest_iret"]["reason"] == "disabled"


def test_with_noirq_window_nothing_is_corrupted(syms):
    _, report = explore(syms, "timer_interrupt-lguest_noirq_end")
    assert report["summary"]["differs"] == 0
    pts = by_symbol(report)
    for name in ("lguest_iret+5", "lguest_iret+11", "lguest_iret+12"):
        assert pts[name]["delivered"] is False and pts[name]["reason"] == "noirq"
        assert pts[name]["outcome"] == "settled"
    # Code the run never reaches is reported as such.
    assert pts["timer_reentered"]["outcome"] == "not reached"


def test_delivered_interrupt_alone_is_not_a_difference(syms):
    _, report = explore(syms, "main_loop")
    delivered = [p for p in report["points"] if p["delivered"]]
    assert len(delivered) > 20
    assert report["summary"]["differs"] == 0
    # ...but its handler's output and its counters are visible.
    assert all(p["console_differs"] and "tick" in p["console"] for p in delivered)
    assert all(p["memory_pages_differing"] >= 1 for p in delivered)


def test_waypoint_equals_running_from_the_snapshot(syms):
    """Each point starts from the state "restore the snapshot, run to A" gives."""
    ex, _ = explore(syms, "timer_interrupt-lguest_noirq_end")
    m = ex.m
    for a in (syms.lookup("timer_interrupt") + 37, syms.lookup("lguest_noirq_start")):
        ex.snaps.restore(ex.waypoints[a][0])
        want = (register_state(m), ram_digest(m), m.icount, m.host.irqs_pending)
        ex.snaps.restore(ex.snapshot)
        m.cpu.remove_breakpoint(ex.at)
        m.cpu.add_breakpoint(a)
        stop = m.run(max_insns=ex.budget)
        m.cpu.remove_breakpoint(a)
        m.cpu.add_breakpoint(ex.at)
        assert stop.kind == "breakpoint" and stop.addr == a
        assert (register_state(m), ram_digest(m), m.icount, m.host.irqs_pending) == want


def test_points_are_repeatable(syms):
    ex, report = explore(syms, "lguest_iret", no_noirq=True)
    again = [ex.point(p["address"]) for p in report["points"]]
    assert again == report["points"]


def test_json_schema(syms, capsys):
    status = main(["explore", "iret", "--at", "main_loop", "--window", "lguest_iret",
                   "--irq", "0", "--no-noirq", "--json"])
    assert status == 0
    r = json.loads(capsys.readouterr().out)
    assert r["at"] == syms.lookup("main_loop") and r["irq"] == 0
    assert r["window"] == [syms.lookup("lguest_iret"), syms.lookup("lguest_noirq_end")]
    for key in ("stop", "esp", "irq_enabled", "console", "memory_hash"):
        assert key in r["baseline"]
    assert r["baseline"]["stop"] == "settled"
    assert len(r["points"]) == 5
    types = {"offset": int, "address": int, "symbol": str, "insn": str, "delivered": bool,
             "outcome": str, "differs": bool, "console": str, "memory_pages_differing": int}
    for p in r["points"]:
        for key, t in types.items():
            assert isinstance(p[key], t), key
        assert p["reason"] is None or isinstance(p["reason"], str)
        assert p["offset"] == p["address"] - r["window"][0]
    assert [p["differs"] for p in r["points"]] == [False, False, False, True, True]


def test_table(capsys):
    assert main(["explore", "iret", "--at", "main_loop", "--window", "lguest_iret",
                 "--irq", "0"]) == 0
    out = capsys.readouterr().out
    assert "deferred (noirq)" in out and "CORRUPTED" not in out
    assert "5 points, 5 reached, 0 delivered, 0 corrupted" in out


def test_bad_at_symbol_is_one_line_status_2(capsys):
    status = main(["explore", "iret", "--at", "no_such_symbol", "--window", "lguest_iret",
                   "--irq", "0"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "no_such_symbol" in err


def test_bad_window_is_status_2(capsys):
    assert main(["explore", "iret", "--at", "main_loop", "--window",
                 "lguest_noirq_end-lguest_iret", "--irq", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- snapshots ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("track", [True, False])
def test_snapshot_restore_is_byte_identical(syms, track):
    m = Machine(IRET)
    m.cpu.add_breakpoint(syms.lookup("main_loop"))
    m.run()
    snaps = Snapshots(m, track=track)
    s0 = snaps.save("s0")
    ram0, regs0 = bytes(m.cpu.ram), register_state(m)
    host0 = dict(vars(m.host))
    m.run(max_insns=150_000)                       # through timer ticks: Host and Guest writes
    s1 = snaps.save("s1")
    ram1, regs1, icount1 = bytes(m.cpu.ram), register_state(m), m.icount
    m.cpu.remove_breakpoint(syms.lookup("main_loop"))
    assert m.run().kind == "poweroff"              # all the way to the end
    snaps.restore(s0)
    assert bytes(m.cpu.ram) == ram0 and register_state(m) == regs0
    assert {k: v for k, v in vars(m.host).items() if v != host0.get(k)} == {}
    snaps.restore(s1)
    assert bytes(m.cpu.ram) == ram1 and register_state(m) == regs1 and m.icount == icount1
    snaps.restore(s0)
    assert bytes(m.cpu.ram) == ram0
    # The restored machine runs on exactly as the original did.
    assert m.run().kind == "poweroff" and m.host.dead == "CRASH: Power down"
    assert [s["name"] for s in snaps.list()] == ["s0", "s1"]
    snaps.close()


def test_snapshot_debugger_write_needs_mark_dirty(syms):
    m = Machine(IRET)
    m.cpu.add_breakpoint(syms.lookup("main_loop"))
    m.run()
    snaps = Snapshots(m)
    s0 = snaps.save()
    ram0 = bytes(m.cpu.ram)
    addr = syms.lookup("loops")
    m.write_memory(addr, b"\x99\x99\x99\x99")
    snaps.mark_dirty(addr, 4)
    snaps.restore(s0)
    assert bytes(m.cpu.ram) == ram0
