"""How many cases the hardening tests tried (the README's reliability table).

    .venv/bin/python bench/hardening_counts.py

Runs the four hardening test files with pytest and prints the counters each
keeps while it runs (machine runs, subprocesses, mutants, packets, drops).
These are figures, not checks, so they are printed here rather than by a
test that cannot fail.  Exit status: pytest's.
"""

import os
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TESTS = os.path.join(ROOT, "tests")
COUNTERS = [("test_hardening_guest", "CASES"), ("test_hardening_images", "COUNT"),
            ("test_hardening_protocol", "COUNT"), ("test_hardening_connections", "CASES")]


def main():
    sys.path.insert(0, TESTS)
    files = [os.path.join(TESTS, module + ".py") for module, _ in COUNTERS]
    status = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", ROOT, *files])
    for module, name in COUNTERS:
        # pytest imported each file under its basename (rootdir-relative, tests/ on sys.path).
        counts = getattr(sys.modules.get(module), name, None)
        print("%-28s %s" % (module, counts if counts is not None else "(not run)"))
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
