"""gdb, the REPL and the timeline name every code address the same (issue 14, item 6).

gdb names an address after the sized symbol (a function) that contains it
and uses a bare label only when no function does; the bundled examples used
to leave main_loop & co. untyped inside iret_init, so gdb said
`<iret_init+234>` where the REPL said `<main_loop+42>`.  For every byte of
every example's .text, gdb's `<name+off>` (print_address_symbolic, what a
stop line shows) must equal lgdbg.symbols' name (the REPL's and the
timeline's).
"""

import os
import re
import subprocess

import pytest

from gdbmi import ROOT
from lgdbg.symbols import Symbols

IMAGES = os.path.join(ROOT, "lgdbg", "images")
EXAMPLES = ("hello", "timer", "iret", "faults")
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/gdb"), reason="needs gdb")

NAMER = """\
import gdb
start = int(gdb.parse_and_eval("(unsigned)&_text"))
end = int(gdb.parse_and_eval("(unsigned)&_etext"))
for a in range(start, end):
    print("NAME %x %s" % (a, gdb.execute("output/a %d" % a, to_string=True)))
"""


def gdb_names(elf, tmp_path):
    script = tmp_path / "namer.py"
    script.write_text(NAMER)
    out = subprocess.run(["gdb", "-batch", "-nx", "-ex", "file %s" % elf,
                          "-ex", "source %s" % script],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    names = {}
    for addr, text in re.findall(r"^NAME ([0-9a-f]+) (.*)$", out, re.M):
        m = re.search(r"<([^>]+)>", text)
        names[int(addr, 16)] = m.group(1) if m else None
    return names


@pytest.mark.parametrize("example", EXAMPLES)
def test_gdb_and_lgdbg_name_code_addresses_alike(example, tmp_path):
    elf = os.path.join(IMAGES, example + ".elf")
    ours = Symbols(elf)
    theirs = gdb_names(elf, tmp_path)
    assert len(theirs) > 200
    differ = ["%#x: gdb %s, lgdbg %s" % (a, n, ours.symbolize(a))
              for a, n in sorted(theirs.items()) if n != ours.symbolize(a)]
    assert not differ, "\n".join(differ[:20])


def test_main_loop_is_its_own_function():
    # The issue's own example: an address in main_loop, named after it.
    elf = os.path.join(IMAGES, "iret.elf")
    main_loop = Symbols(elf).lookup("main_loop")
    out = subprocess.run(["gdb", "-batch", "-nx", "-ex", "file %s" % elf,
                          "-ex", "output/a %d" % (main_loop + 42)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "<main_loop+42>" in out, out
