"""What the debugger says about page tables: the Guest's, and the Host's shadows.

Plain data for every front end (the stub's `monitor json pgtable`, the REPL),
and QEMU's own text for `monitor info mem` and `monitor info tlb`, because the
front ends people load into gdb (GEF, pwndbg) parse exactly those lines from a
QEMU-style stub: QEMU's i386 formats, 16 hex digits per number.

Everything reads the Guest's tables straight from its memory: a look never
faults anything in, sets no ACCESSED bit, and cannot kill the Guest.
"""

from . import abi
from .errors import UsageError

P, RW, US, PWT, PCD, A, D, PSE, G = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100
_FLAG_NAMES = ((P, "present"), (RW, "rw"), (US, "user"), (PWT, "pwt"), (PCD, "pcd"),
               (A, "accessed"), (D, "dirty"), (PSE, "pse"), (G, "global"))


def flag_names(entry):
    return [name for bit, name in _FLAG_NAMES if entry & bit]


def _u32(machine, phys):
    if phys + 4 > machine.mem.limit:
        return 0
    return int.from_bytes(machine.mem.buf[phys:phys + 4], "little")


def _toplevel(machine, cr3):
    return machine.pt.cr3[machine.pt.pgdidx] if cr3 is None else cr3


def mappings(machine, cr3=None):
    """(vaddr, pde, pte) of every present 4 KiB mapping in the Guest's tables."""
    top = _toplevel(machine, cr3)
    for l1 in range(1024):
        pde = _u32(machine, top + 4 * l1)
        if not pde & P or pde & PSE:
            continue
        table = pde & ~0xFFF
        raw = machine.mem.buf[table:table + 4096] if table + 4096 <= machine.mem.limit else b""
        for l2 in range(len(raw) // 4):
            pte = int.from_bytes(raw[4 * l2:4 * l2 + 4], "little")
            if pte & P:
                yield (l1 << 22) | (l2 << 12), pde, pte


def info_mem(machine, cr3=None):
    """QEMU's `info mem` (mem_info_32): ranges of equal user/write access."""
    out = []
    start, last = None, 0
    expected = 0
    for vaddr, pde, pte in mappings(machine, cr3):
        prot = pte & pde & (US | RW | P)
        if vaddr != expected or prot != last:
            if start is not None:
                out.append(_mem_line(start, expected, last))
            start, last = vaddr, prot
        expected = vaddr + 4096
    if start is not None:
        out.append(_mem_line(start, expected, last))
    return "".join(out)


def _mem_line(start, end, prot):
    return "%016x-%016x %016x %s%s%s\n" % (start, end, end - start, "u" if prot & US else "-",
                                           "r", "w" if prot & RW else "-")


def info_tlb(machine, cr3=None):
    """QEMU's `info tlb` (tlb_info_32): every present page and its flags."""
    return "".join("%016x: %016x %s\n" % (vaddr, pte & ~0xFFF, _tlb_flags(pte))
                   for vaddr, _, pte in mappings(machine, cr3))


def _tlb_flags(pte):
    # X (NX) cannot be set without PAE: always '-'.
    return "-" + "".join(c if pte & bit else "-" for c, bit in
                         (("G", G), ("P", PSE), ("D", D), ("A", A), ("C", PCD), ("T", PWT),
                          ("U", US), ("W", RW)))


def region(machine, vaddr):
    """Which part of the Guest's address space vaddr is in, in words."""
    page_offset = machine.image.page_offset
    if vaddr >= abi.SWITCHER_ADDR:
        return "the Switcher (the Host's 4 MiB)"
    if vaddr < page_offset:
        return "user space"
    if vaddr < page_offset + machine.launcher.mem_size:
        return "kernel: the linear map of RAM"
    return "kernel: above RAM (vmalloc, device pages, fixmaps)"


def walk(machine, vaddr, cr3=None):
    """The Guest's walk for vaddr next to the Host's shadow entry for it."""
    pt = machine.pt
    top = _toplevel(machine, cr3)
    pde_addr = top + 4 * (vaddr >> 22)
    pde = _u32(machine, pde_addr)
    out = {"vaddr": vaddr, "cr3": top, "region": region(machine, vaddr),
           "pde_addr": pde_addr, "pde": pde, "pde_flags": flag_names(pde),
           "pte_addr": None, "pte": None, "pte_flags": [], "phys": None}
    if pde & P:
        out["pte_addr"] = (pde & ~0xFFF) + 4 * ((vaddr >> 12) & 0x3FF)
        pte = _u32(machine, out["pte_addr"])
        out["pte"], out["pte_flags"] = pte, flag_names(pte)
        if pte & P:
            out["phys"] = (pte & ~0xFFF) | (vaddr & 0xFFF)
    slot = pt.find_pgdir(top)
    out["shadow_slot"] = slot if slot < len(pt.cr3) else None
    spte = pt.shadow_entry(vaddr, slot) if out["shadow_slot"] is not None else 0
    out["shadow"] = spte
    out["shadow_flags"] = flag_names(spte)
    out["shadow_state"] = _shadow_state(out, spte)
    return out


def _shadow_state(w, spte):
    if w["shadow_slot"] is None:
        return "no shadow: the Host does not shadow this toplevel now"
    if vaddr_is_switcher(w["vaddr"]):
        return "the Switcher: mapped by the Host in every shadow"
    gpte = w["pte"] if w["phys"] is not None else None
    if not spte & P:
        return "not faulted in yet" if gpte is not None else "not mapped"
    if gpte is None or (spte & ~0xFFF) != (gpte & ~0xFFF) or \
            (spte & RW and not gpte & RW) or (spte & US) != (gpte & US):
        return "stale: the shadow disagrees with the Guest's entry"
    if spte & RW:
        return "writable"
    if gpte & RW:
        return "read-only until dirty"
    return "read-only"


def vaddr_is_switcher(vaddr):
    return vaddr >= abi.SWITCHER_ADDR


def summary(machine):
    """The Host's four shadow directories: what each stands for, how full it is."""
    pt = machine.pt
    words = pt.pool.words
    rows = []
    for i in range(len(pt.cr3)):
        if pt.spgd[i] is None:
            rows.append({"slot": i, "cr3": None, "current": False, "pdes": 0, "ptes": 0})
            continue
        base = pt.spgd[i] * 1024
        pdes = ptes = 0
        for index in range(1023):
            spgd = words[base + index]
            if spgd & P:
                pdes += 1
                page = (spgd & ~0xFFF) - (pt.pool.phys(0))
                start = (page >> 12) * 1024
                ptes += sum(1 for e in words[start:start + 1024] if e & P)
        rows.append({"slot": i, "cr3": pt.cr3[i], "current": i == pt.pgdidx,
                     "pdes": pdes, "ptes": ptes})
    return {"slots": rows, "fills": pt.fills, "pool_pages": len(pt.pool.in_use())}


def parse_args(args):
    """[ADDR] [--cr3 N] -> (addr or None, cr3 or None); numbers only (the
    gdb command and the REPL evaluate expressions before they get here)."""
    args = list(args)
    cr3 = None
    if "--cr3" in args:
        i = args.index("--cr3")
        if i + 1 >= len(args):
            raise UsageError("--cr3 wants the physical address of a page directory")
        cr3 = _number(args[i + 1])
        del args[i:i + 2]
        if cr3 % 4096:
            raise UsageError("--cr3 %#x is not page-aligned" % cr3)
    if len(args) > 1:
        raise UsageError("usage: pgtable [ADDR] [--cr3 N]")
    addr = _number(args[0]) if args else None
    if addr is not None and not 0 <= addr < 1 << 32:
        raise UsageError("address %#x is outside the 32-bit address space" % addr)
    return addr, cr3


def _number(text):
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError("%r is not a number" % text)
