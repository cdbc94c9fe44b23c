"""The Host rules' edges as the front ends state them: gdb and the REPL.

$lguest_in_noirq() and lguest-noirq decide the window on the gdb side (they
work without lgdbg's stub), so their boundaries are tested here, in the real
gdb; irq numbers past 31 must be refused by every way of raising one.
"""

import io
import json
import os

import pytest

from lgdbg import images
from lgdbg.machine import Machine
from lgdbg.repl.commands import Commands
from test_gdb_commands import GDB, connected, error_of, gdb_on, needs_stub

pytestmark = pytest.mark.skipif(not os.path.exists(GDB), reason="needs gdb (%s)" % GDB)


@pytest.fixture(scope="module")
def plain():
    g = gdb_on("iret")
    yield g
    g.close()


def value(g, expr):
    return int(g.cli("output %s" % expr).console.strip())


# (address expression, inside the half-open window?)
EDGES = [("lguest_noirq_start - 1", 0), ("lguest_noirq_start", 1), ("lguest_noirq_start + 1", 1),
         ("lguest_noirq_end - 1", 1), ("lguest_noirq_end", 0), ("lguest_noirq_end + 1", 0)]


@pytest.mark.parametrize("where, inside", EDGES, ids=[e[0] for e in EDGES])
def test_in_noirq_function_edges(plain, where, inside):
    symbol, _, rest = where.partition(" ")
    addr = value(plain, "(unsigned)&%s" % symbol) + (int(rest.replace(" ", "")) if rest else 0)
    assert value(plain, "$lguest_in_noirq(%d)" % addr) == inside
    text = plain.cli("lguest-noirq %d" % addr).console
    assert text.startswith("inside the noirq window: %s" % ("yes" if inside else "no"))


@needs_stub
def test_gdb_refuses_irq_32_and_takes_31():
    stub, g = connected("iret")
    try:
        assert "out of range" in error_of(g, "lguest-irq raise 32")
        res = g.cli("monitor irq raise 32", check=False)     # text, then an E reply
        assert res.message == "error" and "irq 32 out of range" in res.output
        assert json.loads(g.cli("monitor json lguest status").output)["pending"] == []
        assert "pending irqs: 31" in g.cli("lguest-irq raise 31").console
    finally:
        g.close()
        stub.close()


def test_repl_refuses_irq_32_and_takes_31():
    out, err = io.StringIO(), io.StringIO()
    m = Machine(images.path_of("iret"))
    cmds = Commands(m, out=out, err=err, image_path=images.path_of("iret"))
    assert cmds.execute("irq raise 32") is False
    assert "out of range" in err.getvalue() and len(err.getvalue().splitlines()) == 1
    assert m.host.irqs_pending == 0
    assert cmds.execute("irq raise 31") is True
    assert m.host.irqs_pending == 1 << 31


def test_gdb_checks_the_irq_number_before_asking_for_a_stub(plain):
    # Without lgdbg's stub: 32 is refused for what it is; 31 gets as far as
    # needing the stub.
    assert "irq 32 is out of range" in error_of(plain, "lguest-irq raise 32")
    assert "needs the Host's state" in error_of(plain, "lguest-irq raise 31")
