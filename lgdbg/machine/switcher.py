"""What the Switcher's way back into the Guest asks of the Guest's segments.

Every return to the Guest (switch_to_guest in switcher.S) pops GS, FS, DS and
ES from the saved registers while still in ring 0, then `iret`s, which loads
CS and SS and drops to the Guest's ring.  So every selector is re-read from
the GDT at every return: a LOAD_GDT or LOAD_TLS takes effect on selectors
already loaded, and a selector whose descriptor the Guest made invalid faults
inside the Switcher.

The checks below are the CPU's (Intel SDM vol. 2, POP and IRET), written for
the Guest's GDT as the Host keeps it (Cpu.gdt, 32 entries, no LDT).  Each
returns the selector the CPU ends up with, or None for a fault.

Decision (recorded in the issue-16 note): a fault while popping GS/FS/DS/ES
leaves trapnum 256 in the saved registers and run_guest kills the Guest with
"unhandled trap 256" (the H:610 comment in segments.c says so).  A fault in
the final iret (bad CS or SS) lands differently in the real Switcher: the
fault frame is pushed over the saved trapnum/errcode, so run_guest reads the
Switcher's own CS (0x50) as a trap number, takes it for a Host interrupt and
re-enters with damaged registers.  We end the Guest with "unhandled trap 256"
for those too rather than imitate that loop.
"""

import struct

from .. import abi


def _descriptor(gdt, selector):
    """The high dword of the GDT descriptor `selector` names, or None (fault)."""
    index = selector >> 3
    if selector & 4 or index >= len(gdt):       # no LDT; beyond the GDT's limit
        return None
    return struct.unpack_from("<I", gdt[index], 4)[0]


def _fields(hi):
    # (S: code/data, code?, conforming?, readable/writable?, DPL, present?)
    typ = (hi >> 8) & 0xF
    return bool(hi & 0x1000), bool(typ & 8), bool(typ & 4), bool(typ & 2), \
        (hi >> 13) & 3, bool(hi & 0x8000)


def pop_data_segment(gdt, selector, new_cpl):
    """`pop %ds` (or es, fs, gs) at ring 0, then what iret to new_cpl leaves."""
    selector &= 0xFFFF
    if selector & 0xFFFC == 0:
        return 0                                 # a null selector loads fine
    hi = _descriptor(gdt, selector)
    if hi is None:
        return None
    s, code, conforming, rw, dpl, present = _fields(hi)
    if not s or (code and not rw):
        return None
    checked = not (code and conforming)
    if checked and dpl < selector & 3:          # max(CPL 0, RPL) > DPL
        return None
    if not present:
        return None
    # iret to an outer ring empties a data (or non-conforming code) segment
    # register the new ring may not use.
    if checked and dpl < new_cpl:
        return 0
    return selector


def iret_code_segment(gdt, selector):
    """The CS an iret from ring 0 loads; the new CPL is its RPL."""
    selector &= 0xFFFF
    if selector & 0xFFFC == 0:
        return None
    hi = _descriptor(gdt, selector)
    if hi is None:
        return None
    s, code, conforming, _, dpl, present = _fields(hi)
    rpl = selector & 3
    if not s or not code or not present:
        return None
    if (dpl > rpl) if conforming else (dpl != rpl):
        return None
    return selector


def iret_stack_segment(gdt, selector, new_cpl):
    """The SS an iret to new_cpl loads: writable data, RPL = DPL = new CPL."""
    selector &= 0xFFFF
    if selector & 0xFFFC == 0 or selector & 3 != new_cpl:
        return None
    hi = _descriptor(gdt, selector)
    if hi is None:
        return None
    s, code, _, writable, dpl, present = _fields(hi)
    if not s or code or not writable or dpl != new_cpl or not present:
        return None
    return selector


def switch_to_guest(gdt, regs):
    """The segment registers the Guest runs with after the Switcher's pops
    and iret, as a dict, or None when one of them faults."""
    cs = iret_code_segment(gdt, regs["cs"])
    if cs is None:
        return None
    cpl = cs & 3
    loaded = {"cs": cs}
    for name in ("gs", "fs", "ds", "es"):       # the Switcher's pop order
        value = pop_data_segment(gdt, regs[name], cpl)
        if value is None:
            return None
        loaded[name] = value
    ss = iret_stack_segment(gdt, regs["ss"], cpl)
    if ss is None:
        return None
    loaded["ss"] = ss
    return loaded


def kernel_entry_ok(gdt, ss):
    """Can an iret land in the Guest kernel (CS 0x61) on stack segment ss?"""
    return iret_code_segment(gdt, abi.KERNEL_CS) is not None and \
        iret_stack_segment(gdt, ss, abi.GUEST_PL) is not None
