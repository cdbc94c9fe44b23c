"""1,000 random stepi/continue/breakpoint operations through real gdb.

The stub runs in this process on a thread, so after every operation the
registers gdb shows can be compared with the machine's own.  The guest loops
for ever with a timer interrupt returning through lguest_iret, so continues,
steps into handlers and interrupt stepping all happen.
"""

import os
import random
import shutil
import threading

import pytest

from gdbmi import Gdb
from guestbuild import INIT, build_guest

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/gdb") and shutil.which("gcc") and shutil.which("ld")),
    reason="needs gdb, gcc and ld")

BODY = INIT + """\
	SET_GATE FIRST_EXTERNAL_VECTOR + 0, tick, INTERRUPT_GATE
	UNBLOCK_IRQ 0
	hcall	LHCALL_SET_CLOCKEVENT, $700
	movl	$X86_EFLAGS_IF, lguest_data + LGUEST_DATA_irq_enabled
	.globl	top
top:
	incl	counter
	.globl	work
work:
	movl	$20, %ecx
	.globl	inner
inner:
	addl	%ecx, %eax
	decl	%ecx
	jnz	inner
	.globl	bottom
bottom:
	jmp	top
"""
TEXT = """\
	.globl	tick
tick:
	pushl	%eax
	pushl	%edx
	incl	ticks
	hcall	LHCALL_SET_CLOCKEVENT, $700
	popl	%edx
	popl	%eax
	jmp	lguest_iret
"""
DATA = """\
	.data
counter:	.long	0
ticks:	.long	0
"""
NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
         "cs", "ss", "ds", "es", "fs", "gs")
LOOP_LABELS = ("top", "work", "bottom")


def start_stub(image):
    from lgdbg.gdbstub.server import Console, Stub
    from lgdbg.machine import Machine
    console = Console(None)
    stub = Stub(Machine(image, host_tick=5000, output=console), console)
    ready, port = threading.Event(), []

    def announce(text):
        port.append(int(text.rsplit(":", 1)[1]))
        ready.set()

    threading.Thread(target=stub.serve_tcp, args=("127.0.0.1", 0, announce), daemon=True).start()
    assert ready.wait(10)
    return stub, port[0]


def gdb_registers(gdb):
    r = gdb.mi("-data-list-register-values x %s" % " ".join(str(i) for i in range(16)))
    return {NAMES[int(v["number"])]: int(v["value"], 16) for v in r.payload["register-values"]}


def test_random_operations_keep_gdb_and_machine_in_agreement(tmp_path):
    image = build_guest(tmp_path, BODY, text=TEXT, data=DATA)
    stub, port = start_stub(image)
    rng = random.Random(1234)
    counts = {}
    with Gdb() as gdb:
        gdb.cli("file %s" % image)
        gdb.mi("-target-select remote 127.0.0.1:%d" % port)
        breakpoints = {}                                  # label -> gdb number
        for label in ("top", "tick"):
            breakpoints[label] = gdb.mi("-break-insert %s" % label).payload["bkpt"]["number"]
        for i in range(1000):
            roll = rng.random()
            if roll < 0.45:
                op = "stepi"
                gdb.mi("-exec-step-instruction")
                stop = gdb.wait_stopped()
            elif roll < 0.70:
                op = "continue"
                gdb.mi("-exec-continue")
                stop = gdb.wait_stopped()
                assert stop["reason"] == "breakpoint-hit", stop
            elif roll < 0.85:
                op = "break"
                label = rng.choice(LOOP_LABELS + ("inner", "tick"))
                if label not in breakpoints:
                    breakpoints[label] = gdb.mi("-break-insert %s" % label).payload["bkpt"]["number"]
            elif roll < 0.97:
                op = "delete"
                # Keep one breakpoint in the loop so that every continue stops.
                removable = [lb for lb in breakpoints
                             if lb not in LOOP_LABELS or
                             sum(x in LOOP_LABELS for x in breakpoints) > 1]
                if removable:
                    label = rng.choice(removable)
                    gdb.mi("-break-delete %s" % breakpoints.pop(label))
            else:
                op = "irq-stepping"
                gdb.cli("monitor irq stepping %s" % rng.choice(("on", "off")))
            counts[op] = counts.get(op, 0) + 1
            seen, own = gdb_registers(gdb), stub.machine.cpu.regs()
            assert seen == own, "after operation %d (%s)" % (i, op)
        ticks = int(gdb.cli("p/d {int}&ticks").console.split("=")[1])
        gdb.cli("kill")
    assert ticks > 0                  # the timer interrupted the loop along the way
    assert counts["stepi"] > 300 and counts["continue"] > 150
