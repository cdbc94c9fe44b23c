"""Linux 2.6.23's paravirt patch sites: their types by name and what lies there now.

Standard library only: gdb's embedded Python imports this module.

A patch site's type is the index of its operation in struct paravirt_ops
(PARAVIRT_PATCH(x) = offsetof(struct paravirt_ops, x) / sizeof(void *)), so
the names below are that structure's fields in order, as
include/asm-i386/paravirt.h of 2.6.23 declares them.  Three config options
add fields; the kernel's own sizeof(paravirt_ops) says which were on (a
front end with the kernel's debug info may pass the names straight from the
DWARF instead: op_names_from_fields).

apply_paravirt() hands each site to paravirt_ops.patch (lguest_patch under
lguest) and pads what it used with NOPs.  lguest_patch copies its own
template (lgstart_X..lgend_X) for the four operations it has one for;
everything else goes to paravirt_patch_default, which writes a direct call
(a jmp for iret and irq_enable_sysexit), NOPs for an operation that is
paravirt_nop, or leaves the site alone when the call would not fit.
classify() tells those apart from the bytes.
"""

# ---------------------------------------------------------------- names

_HEAD = ("kernel_rpl shared_kernel_pmd paravirt_enabled name patch arch_setup "
         "memory_setup post_allocator_init init_IRQ time_init pagetable_setup_start "
         "pagetable_setup_done banner get_wallclock set_wallclock cpuid get_debugreg "
         "set_debugreg clts read_cr0 write_cr0 read_cr2 write_cr2 read_cr3 write_cr3 "
         "read_cr4_safe read_cr4 write_cr4 save_fl restore_fl irq_disable irq_enable "
         "safe_halt halt wbinvd read_msr write_msr read_tsc read_pmc sched_clock "
         "get_cpu_khz load_tr_desc load_gdt load_idt store_gdt store_idt set_ldt store_tr "
         "load_tls write_ldt_entry write_gdt_entry write_idt_entry load_esp0 set_iopl_mask "
         "io_delay activate_mm dup_mmap exit_mmap").split()
_LOCAL_APIC = ("apic_write apic_write_atomic apic_read setup_boot_clock "
               "setup_secondary_clock startup_ipi_hook").split()
_TLB_PTE = ("flush_tlb_user flush_tlb_kernel flush_tlb_single flush_tlb_others alloc_pt "
            "alloc_pd alloc_pd_clone release_pt release_pd set_pte set_pte_at set_pmd "
            "pte_update pte_update_defer").split()
_HIGHPTE = ["kmap_atomic_pte"]
_PAE = ("set_pte_atomic set_pte_present set_pud pte_clear pmd_clear pte_val pmd_val "
        "pgd_val make_pte make_pmd make_pgd").split()
_NO_PAE = "pte_val pgd_val make_pte make_pgd".split()
_TAIL = "set_lazy_mode irq_enable_sysexit iret".split()


def op_names_for(local_apic=False, highpte=False, pae=False):
    """The fields of struct paravirt_ops, one 4-byte word each, for a config."""
    return (_HEAD + (_LOCAL_APIC if local_apic else []) + _TLB_PTE
            + (_HIGHPTE if highpte else []) + (_PAE if pae else _NO_PAE) + _TAIL)


def op_names_for_size(size):
    """The field list whose length matches sizeof(struct paravirt_ops), or None.

    An lguest Guest has no PAE (lguest refuses it); the other two options
    could be either way, and no two combinations give the same size.
    """
    for apic in (False, True):
        for highpte in (False, True):
            for pae in (False, True):
                names = op_names_for(apic, highpte, pae)
                if len(names) * 4 == size:
                    return names
    return None


def op_names_from_fields(fields):
    """[name by type] from (name, byte offset) pairs, e.g. the DWARF's."""
    names = {}
    for name, offset in fields:
        if offset % 4 == 0:
            names.setdefault(offset // 4, name)
    if not names:
        return None
    return [names.get(i, "type %d" % i) for i in range(max(names) + 1)]


def type_name(names, ptype):
    return names[ptype] if names and 0 <= ptype < len(names) else "type %d" % ptype


# ---------------------------------------------------------------- sites

PARAINSTR_SIZE = 8      # struct paravirt_patch_site {u8 *instr; u8 type; u8 len; u16 clobbers}


def parse_sites(raw):
    """[(address, type, len, clobbers)] from the bytes of a .parainstructions table."""
    return [(int.from_bytes(raw[i:i + 4], "little"), raw[i + 4], raw[i + 5],
             int.from_bytes(raw[i + 6:i + 8], "little"))
            for i in range(0, len(raw) - PARAINSTR_SIZE + 1, PARAINSTR_SIZE)]


# Single-instruction NOPs of the tables add_nops() picks from by CPU (the
# generic Intel ones, AMD K8's and K7's, and the P6 long NOPs): padding is a
# run of these.
_NOPS = sorted({bytes.fromhex(h) for h in (
    "90 89f6 8d7600 8d742600 8db600000000 8db42600000000 "          # generic
    "6690 666690 66666690 "                                         # K8
    "8bc0 8d0420 8d442000 8d8000000000 8d040500000000 "             # K7
    "0f1f00 0f1f4000 0f1f440000 660f1f440000 0f1f8000000000 0f1f840000000000"  # P6
).split()}, key=len, reverse=True)


def is_nops(raw):
    """True when raw (possibly empty) is nothing but NOP instructions."""
    i = 0
    while i < len(raw):
        for nop in _NOPS:
            if raw.startswith(nop, i):
                i += len(nop)
                break
        else:
            return False
    return True


STATES = ("template", "original", "call", "jmp", "nops", "freed", "other", "unreadable")


def classify(now, original, template, address, freed_init=False):
    """(state, detail) for one site's current bytes.

    now        the bytes in the Guest's memory now, or None if unreadable
    original   the ELF file's bytes there (the compiler's indirect call)
    template   lguest's template for the site's type, or None
    freed_init the site lies in .init, which the kernel frees and poisons
    detail is the call/jmp target for "call" and "jmp", else None.
    """
    if now is None:
        return "unreadable", None
    if template and now.startswith(template) and is_nops(now[len(template):]):
        return "template", None
    if original is not None and now == original:
        return "original", None
    if len(now) >= 5 and now[0] in (0xE8, 0xE9) and is_nops(now[5:]):
        target = (address + 5 + int.from_bytes(now[1:5], "little", signed=True)) & 0xFFFFFFFF
        return ("call" if now[0] == 0xE8 else "jmp"), target
    if is_nops(now):
        return "nops", None
    if freed_init and now and all(b == 0xCC for b in now):
        return "freed", None      # free_initmem poisons .init with int3 (0xcc)
    return "other", None
