"""How fast `lgdbg explore` injects, and what a snapshot restore costs.

    .venv/bin/python bench/explore_speed.py [--repeat N]

For two windows of the iret example that end at lguest_noirq_end (both
>= 50 instructions), it prints:

  - injection points per second: points actually injected (reached) divided
    by the time of the injection phase (restore, raise + delivery attempt,
    run to the settling point, compare), and all points (reached or not)
    per second; the one-time set-up (boot to --at, the reference run with its
    waypoints) is printed separately, as is the whole command's time;
  - the restore cost: the mean time of a dirty-page restore of a waypoint
    (registers, Host/clock/run-loop state, changed byte ranges of changed
    pages) against copying all of Guest RAM back (the same machine, the same
    run), and the ratio.

The goal (issue 6): >= 1,000 injection points per second.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lgdbg import images                      # noqa: E402
from lgdbg.explore import Explorer, parse_window  # noqa: E402
from lgdbg.machine import Machine             # noqa: E402
from lgdbg.views.symbols import Symbols             # noqa: E402

WINDOWS = ("main_loop-lguest_noirq_end", "timer_interrupt-lguest_noirq_end")
GOAL = 1000


def one(path, syms, window, no_noirq):
    t0 = time.perf_counter()
    m = Machine(path)
    start, end = parse_window(syms, path, window)
    ex = Explorer(m, syms, syms.lookup("main_loop"), start, end, 0, no_noirq=no_noirq)
    report = ex.explore()
    total = time.perf_counter() - t0
    s = report["summary"]
    # Restore cost, measured on this machine and these snapshots.
    snaps = list(ex.waypoints.values())
    t = time.perf_counter()
    for snap, _, _ in snaps:
        ex.snaps.restore(snap)
    restore = (time.perf_counter() - t) / len(snaps)
    full = ex.snaps.base.full
    ram = m.cpu.ram
    t = time.perf_counter()
    n = 5
    for _ in range(n):
        ram[:] = full
        m.cpu.uc.ctl_flush_tb()      # what a full copy must do: every page may hold code
    full_copy = (time.perf_counter() - t) / n
    ex.close()
    return {"points": s["points"], "reached": s["reached"], "delivered": s["delivered"],
            "differs": s["differs"], "inject_s": s["seconds"],
            "setup_s": ex.timings["prepare_s"] + ex.timings["reference_s"], "total_s": total,
            "restore_s": restore, "full_copy_s": full_copy,
            "ram_mib": len(full) / (1 << 20)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = images.path_of("iret")
    syms = Symbols(path)
    ok = True
    print("lgdbg explore speed (iret example, --at main_loop --irq 0; median of %d)" % args.repeat)
    for window in WINDOWS:
        for no_noirq in (False, True):
            runs = [one(path, syms, window, no_noirq) for _ in range(args.repeat)]
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            r = runs[0]
            rate = r["reached"] / med("inject_s")
            ok = ok and rate >= GOAL
            print("\n--window %s%s: %d instructions, %d reached, %d delivered, %d corrupted"
                  % (window, " --no-noirq" if no_noirq else "", r["points"], r["reached"],
                     r["delivered"], r["differs"]))
            print("  injection points/s:       %8.0f   (goal %d: %s)"
                  % (rate, GOAL, "met" if rate >= GOAL else "NOT met"))
            print("  all window points/s:      %8.0f   (not-reached points cost nothing)"
                  % (r["points"] / med("inject_s")))
            print("  per injected point:       %8.1f us" % (med("inject_s") / r["reached"] * 1e6))
            print("  one-time set-up:          %8.1f ms (boot to --at, reference run, waypoints,"
                  " baseline RAM digest)" % (med("setup_s") * 1e3))
            print("  whole exploration:        %8.1f ms (incl. Machine creation)"
                  % (med("total_s") * 1e3))
            print("  restore (dirty pages):    %8.1f us" % (med("restore_s") * 1e6))
            print("  full-RAM copy (%d MiB):   %8.1f us  -> restore costs %.2f%% of a full copy"
                  % (r["ram_mib"], med("full_copy_s") * 1e6,
                     100 * med("restore_s") / med("full_copy_s")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
