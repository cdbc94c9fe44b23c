"""Print `make mutation`'s score, routine by routine, and the survivors.

    .venv/bin/python tools/mutation_score.py [--all]
    .venv/bin/python tools/mutation_score.py --timeouts

Reads what `mutmut run` left in mutants/ (one .meta file per mutated
source file).  The score is (killed + timeout) / (killed + timeout +
survived), as mutmut's own: a mutant that makes the tests hang was
detected.  A mutant no selected test runs ("no tests") is counted apart,
because the fast Host-rule tests do not aim at every hypercall.  Survivors
of the decision routines (interrupts, traps, page tables) are named, one a
line, for `mutmut show NAME`; --all names every survivor.  --timeouts only
lists the mutants that timed out: under load a few time out spuriously, and
`make mutation` runs those once more.
"""

import collections
import glob
import json
import os
import sys

from mutmut.stats import status_by_exit_code

# The routines whose every non-equivalent mutant must be killed (README).
DECISION_ROUTINES = ("decide_interrupt", "maybe_do_interrupt", "_defer", "set_guest_interrupt",
                     "handle_trap", "deliver_trap", "emulate_insn", "InterruptDecision",
                     "_lowest", "_IrqWords", "interrupts_disabled", "page_tables",
                     "host_3_2")


def routine(key):
    """lgdbg.machine.host.xǁHostǁdecide_interrupt__mutmut_12 -> host:Host.decide_interrupt;
    lgdbg.machine.host.x__lowest__mutmut_1 -> host:_lowest."""
    name = key.rsplit("__mutmut_", 1)[0]
    module, _, function = name.rpartition(".x")
    if function.startswith("ǁ"):
        function = ".".join(p for p in function.split("ǁ") if p)
    else:
        function = function[1:]                 # mutmut's "x_" + the function's name
    return "%s:%s" % (module.rsplit(".", 1)[1], function)


def load(root="mutants"):
    results = {}
    for meta in glob.glob(os.path.join(root, "**", "*.py.meta"), recursive=True):
        with open(meta) as f:
            results.update(json.load(f)["exit_code_by_key"])
    return results


def is_decision(name):
    return any(r in name for r in DECISION_ROUTINES)


def main(argv):
    results = load()
    if not results:
        print("no mutation results in mutants/: run `make mutation` first")
        return 2
    if "--timeouts" in argv:
        for key, code in sorted(results.items()):
            if status_by_exit_code[code] == "timeout":
                print(key)
        return 0
    by_routine = collections.defaultdict(collections.Counter)
    survivors = []
    for key, code in sorted(results.items()):
        status = status_by_exit_code[code]
        by_routine[routine(key)][status] += 1
        if status in ("survived", "suspicious"):
            survivors.append(key)
    print("%-40s %7s %8s %8s %8s" % ("routine", "killed", "timeout", "survived", "no tests"))
    for name, counts in sorted(by_routine.items()):
        print("%-40s %7d %8d %8d %8d" % (name, counts["killed"], counts["timeout"],
                                         counts["survived"] + counts["suspicious"],
                                         counts["no tests"]))
    for label, pick in (("decision routines", is_decision), ("all", lambda n: True)):
        c = collections.Counter()
        for name, counts in by_routine.items():
            if pick(name):
                c.update(counts)
        detected = c["killed"] + c["timeout"]
        tested = detected + c["survived"] + c["suspicious"]
        print("score, %s: %d/%d detected (%.1f%%; %d of them by timeout), %d without tests"
              % (label, detected, tested, 100.0 * detected / max(tested, 1), c["timeout"],
                 c["no tests"]))
    shown = [k for k in survivors if "--all" in argv or is_decision(routine(k))]
    if shown:
        print("survivors%s (mutmut show NAME):" % ("" if "--all" in argv else " in the decision routines"))
        for key in shown:
            print("  " + key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
