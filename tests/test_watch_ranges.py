"""Watchpoints touched from before, inside and after their range.

A store that starts before a watched word still changes it, and gdb matches
the stop reply's address against its own watchpoints: the reply must name
an address inside the watched range, never the store's first byte.  Checked
on the stub's replies (Guest and Host writes) and in the real gdb.
"""

import os

import pytest

from lgdbg.core.debugger import Debugger
from lgdbg.gdbstub.handlers import Resume, Session
from lgdbg.machine import Machine
from lgdbg.views.symbols import Symbols
from gdbmi import Gdb, Serve
from guestbuild import INIT, build_guest

# `watched` is a 4-byte word with zeros on both sides; each store is labelled
# by where it starts relative to the word.
BODY = INIT + """
	SET_GATE 0x21, irq_handler, INTERRUPT_GATE
	movl	$0x200, lguest_data
	.globl	ready
ready:
	movl	$0x11111111, watched-4		/* before, not touching */
	.globl	from_before
from_before:
	movl	$0x22222222, watched-2		/* before, overlapping 2 bytes */
	.globl	inside
inside:
	movb	$0x33, watched+1
	.globl	across_end
across_end:
	movl	$0x44444444, watched+3		/* its last byte, then 3 after */
	.globl	after
after:
	movl	$0x55555555, watched+4		/* after, not touching */
	hcall	LHCALL_FLUSH_ASYNC
	POWER_OFF
"""
TEXT = """
irq_handler:
	jmp	lguest_iret
"""
DATA = """
	.data
	.balign 16
	.long	0, 0
	.globl	watched
watched: .long	0
	.long	0, 0
"""
# (label of the store, first byte gdb should be told, value of `watched` after)
HITS = [("from_before", 0, 0x00002222), ("inside", 1, 0x00003322), ("across_end", 3, 0x44003322)]


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    return build_guest(tmp_path_factory.mktemp("watch"), BODY, text=TEXT, data=DATA)


def session(elf):
    m = Machine(elf, max_insns=1_000_000)
    return m, Session(m, Debugger(m)), Symbols(elf)


def test_guest_stores_from_before_inside_and_after(elf):
    m, s, syms = session(elf)
    watched = syms.lookup("watched")
    assert s.dispatch(b"Z2,%x,4" % watched) == b"OK"
    for label, offset, value in HITS:
        stop = s.execute(Resume(False))
        reply = s.stop_packets(stop)[-1]
        assert b"watch:%x;" % (watched + offset) in reply, (label, reply)
        # Stopped after the store: EIP is the next instruction.
        store = syms.lookup(label)
        assert m.cpu.reg("eip") > store
        assert int.from_bytes(m.read_memory(watched, 4), "little") == value
    # The store after the word and the one before it (first) never stopped.
    assert s.execute(Resume(False)).kind == "poweroff"


def test_the_hosts_write_from_before_names_the_watched_bytes(elf):
    # Watch the upper half of irq_enabled: the Host's 4-byte clear at an
    # interrupt-gate delivery starts 2 bytes before it.
    m, s, syms = session(elf)
    m.cpu.add_breakpoint(syms.lookup("ready"))
    assert m.run().kind == "breakpoint"
    m.cpu.remove_breakpoint(syms.lookup("ready"))
    irq_enabled = m.host.lguest_data + m.host.page_offset
    m.write_memory(irq_enabled, (0xFFFFFFFF).to_bytes(4, "little"))
    assert s.dispatch(b"Z2,%x,2" % (irq_enabled + 2)) == b"OK"
    m.raise_irq(1)
    stop = m.run()
    assert stop.kind == "watch" and m.cpu.reg("eip") == syms.lookup("irq_handler")
    assert b"watch:%x;" % (irq_enabled + 2) in s.stop_packets(stop)[-1]


def test_gdb_reports_each_overlapping_store(elf):
    if not os.path.exists("/usr/bin/gdb"):
        pytest.skip("needs gdb")
    syms = Symbols(elf)
    with Serve(elf) as serve, Gdb() as gdb:
        gdb.cli("file %s" % elf)
        assert gdb.mi("-target-select remote %s" % serve.address).message == "connected"
        gdb.cli("watch *(int *)&watched")
        for label, _, value in HITS:
            gdb.mi("-exec-continue")
            stop = gdb.wait_stopped(20)
            assert stop["reason"] == "watchpoint-trigger", (label, stop)
            assert int(stop["value"]["new"]) == value
            assert gdb.register("eip") > syms.lookup(label)
        gdb.mi("-exec-continue")
        assert gdb.wait_stopped(20)["reason"] == "exited-normally"
