"""Host-side state as plain data, for every front end.

The stub's `monitor json ...` commands send exactly these dicts to gdb, and
the REPL renders them directly, so both print the same words (lgdbg.views.render).
Everything here is JSON-serialisable: ints, strings, lists, dicts, None.
"""

from .. import abi
from ..errors import UsageError
from . import virtio_view


def status(machine):
    host, clock = machine.host, machine.clock
    return {
        "init": host.lguest_data is not None,
        "lguest_data": None if host.lguest_data is None else host.lguest_data + host.page_offset,
        "lguest_data_phys": host.lguest_data,
        "noirq_start": host.noirq_start,
        "noirq_end": host.noirq_end,
        "pending": abi.irq_list(host.irqs_pending),
        "blocked": abi.irq_list(_blocked(machine)),
        "halted": host.halted,
        "icount": clock.icount,
        "time_ns": clock.time_ns,
        "clock_deadline_ns": clock.deadline_ns,
        "dead": host.dead,
        "eip": machine.cpu.reg("eip"),
        "in_noirq": host.noirq_start <= machine.cpu.reg("eip") < host.noirq_end,
        "page_offset": host.page_offset,
        # The Guest's ABI, for clients without its debug info (gdb's lguest-*
        # commands pick lguest_data's layout and the hypercall names by it).
        "abi": machine.profile,
        "layout": abi.profile(machine.profile).layout,
    }


def _blocked(machine):
    host = machine.host
    if host.lguest_data is None:
        return 0
    return int.from_bytes(machine.mem.buf[host.lguest_data + abi.LD_BLOCKED:
                                          host.lguest_data + abi.LD_BLOCKED + 4], "little")


def irq_decision(machine):
    """maybe_do_interrupt's reasoning right now, step by step (§7.2).

    The Host's own decide_interrupt, the function maybe_do_interrupt carries
    out, made plain data: no second copy of the rules here.
    """
    return decision_data(machine.host.decide_interrupt())


def decision_data(d):
    """An InterruptDecision as the dict lgdbg.render and `monitor json irq` use."""
    return {"verdict": d.verdict, "irq": d.irq, "detail": d.detail, "steps": list(d.steps),
            "pending": abi.irq_list(d.pending), "blocked": abi.irq_list(d.blocked)}


def hcalls(machine, count=10):
    return [dict(e) for e in machine.events.recent_hcalls[-count:]] if count else []


def idt(machine):
    rows = []
    for vector in sorted(machine.host.idt):
        gate = abi.decode_gate(*machine.host.idt[vector])
        rows.append({"vector": vector, "handler": gate.handler, "type": abi.gate_kind(gate.type),
                     "dpl": gate.dpl, "irq": vector - abi.FIRST_EXTERNAL_VECTOR
                     if abi.FIRST_EXTERNAL_VECTOR <= vector < abi.FIRST_EXTERNAL_VECTOR + abi.LGUEST_IRQS
                     else None,
                     # direct_trap: the CPU enters this gate itself, no Host entry
                     "direct": machine.host.direct_trap(vector)})
    return rows


def host_state(machine):
    host, clock, cpu = machine.host, machine.clock, machine.cpu
    gdt = []
    for i, raw in enumerate(cpu.gdt):
        lo, hi = int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")
        if lo or hi:
            d = abi.decode_descriptor(lo, hi)
            gdt.append({"index": i, "selector": i * 8, "base": d.base, "limit": d.limit,
                        "dpl": d.dpl, "type": d.type, "present": d.present,
                        "code": bool(d.s and d.type & 8), "host": i in abi.HOST_GDT_ENTRIES})
    tick = machine.host_tick
    return {
        "gdt": gdt,
        "ss1": host.ss1, "esp1": host.esp1, "stack_pages": host.stack_pages,
        "ts": host.ts,
        "pending": abi.irq_list(host.irqs_pending),
        "blocked": abi.irq_list(_blocked(machine)),
        "halted": host.halted,
        "clock_deadline_ns": clock.deadline_ns,
        "time_ns": clock.time_ns,
        "next_host_tick_ns": (clock.time_ns // tick + 1) * tick if clock.deterministic else None,
        "cr3": host.cr3,
        "page_table_calls": host.page_table_calls,
        "async_cursor": host.next_hcall,
        "dead": host.dead,
    }


def lguest_data(machine, version=None):
    """lguest_data decoded in layout version (default: the Guest's ABI's)."""
    host = machine.host
    if host.lguest_data is None:
        return None
    version = version or abi.profile(machine.profile).layout
    size = abi.layout(version)["size"]
    return abi.decode_lguest_data(machine.mem.buf[host.lguest_data:host.lguest_data + size], version)


def virtio(machine):
    """The 3.2 Launcher's virtio devices (machine/virtio Devices.describe):
    the device page, each device's status, features and config, each queue's
    rings.  A 2.6.23 Guest has none: UsageError, one line."""
    devices = getattr(machine.launcher, "devices", None)
    if devices is None:
        if machine.profile != "3.2":
            raise UsageError(virtio_view.NO_VIRTIO_2623)
        raise UsageError("no virtio devices: this Guest's Launcher has no device page")
    return devices.describe()
