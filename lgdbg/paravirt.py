"""Paravirt patch sites (Linux 2.6.23's and 3.2's): their types by name and what lies there now.

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


# ---------------------------------------------------------------- Linux 3.2
#
# From 2.6.24 on there is no struct paravirt_ops: the operations live in
# pv_init_ops, pv_time_ops, pv_cpu_ops, ... and a site's type is
# PARAVIRT_PATCH(pv_irq_ops.irq_disable) = offsetof(struct
# paravirt_patch_template, pv_irq_ops.irq_disable) / sizeof(void *), the
# template holding one of each struct in this order
# (arch/x86/include/asm/paravirt_types.h of 3.2).  Names are spelled as
# PARAVIRT_PATCH's argument; a callee-save operation (struct
# paravirt_callee_save, one pointer) is named by its field.  Only i386
# without PAE is an lguest Guest (lguest refuses PAE), but the PAE words are
# here so that a table's size can say which layout a kernel has.

_PV_3_2 = (
    ("pv_init_ops", "patch"),
    ("pv_time_ops", "sched_clock steal_clock get_tsc_khz"),
    ("pv_cpu_ops", "get_debugreg set_debugreg clts read_cr0 write_cr0 read_cr4_safe "
                   "read_cr4 write_cr4 load_tr_desc load_gdt load_idt store_gdt store_idt "
                   "set_ldt store_tr load_tls write_ldt_entry write_gdt_entry "
                   "write_idt_entry alloc_ldt free_ldt load_sp0 set_iopl_mask wbinvd "
                   "io_delay cpuid read_msr rdmsr_regs write_msr wrmsr_regs read_tsc "
                   "read_pmc read_tscp irq_enable_sysexit usergs_sysret64 usergs_sysret32 "
                   "iret swapgs start_context_switch end_context_switch"),
    ("pv_irq_ops", "save_fl restore_fl irq_disable irq_enable safe_halt halt"),
    ("pv_apic_ops", ""),                       # startup_ipi_hook with X86_LOCAL_APIC
    ("pv_mmu_ops", "read_cr2 write_cr2 read_cr3 write_cr3 activate_mm dup_mmap exit_mmap "
                   "flush_tlb_user flush_tlb_kernel flush_tlb_single flush_tlb_others "
                   "pgd_alloc pgd_free alloc_pte alloc_pmd alloc_pud release_pte "
                   "release_pmd release_pud set_pte set_pte_at set_pmd set_pmd_at pte_update "
                   "pte_update_defer pmd_update pmd_update_defer ptep_modify_prot_start "
                   "ptep_modify_prot_commit pte_val make_pte pgd_val make_pgd"),
    ("pv_lock_ops", "spin_is_locked spin_is_contended spin_lock spin_lock_flags "
                    "spin_trylock spin_unlock"),
)
_PV_3_2_LOCAL_APIC = "startup_ipi_hook"
# PAGETABLE_LEVELS >= 3 (PAE) inserts these before lazy_mode.
_PV_3_2_PAE = "set_pte_atomic pte_clear pmd_clear set_pud pmd_val make_pmd"
_PV_3_2_MMU_TAIL = "lazy_mode.enter lazy_mode.leave set_fixmap"
_PV_3_2_LAST = "pv_mmu_lazy_mode_flush"       # a member of the template itself


def op_structs_3_2(local_apic=False, pae=False):
    """[(struct, [field, ...])] of struct paravirt_patch_template, for a config."""
    out = []
    for struct, fields in _PV_3_2:
        names = fields.split()
        if struct == "pv_apic_ops" and local_apic:
            names = _PV_3_2_LOCAL_APIC.split()
        if struct == "pv_mmu_ops":
            names += (_PV_3_2_PAE.split() if pae else []) + _PV_3_2_MMU_TAIL.split()
        out.append((struct, names))
    return out


def op_names_3_2(local_apic=False, pae=False):
    """[name by type], as PARAVIRT_PATCH spells them: 'pv_irq_ops.irq_disable'."""
    return ["%s.%s" % (struct, f) for struct, fields in op_structs_3_2(local_apic, pae)
            for f in fields] + [_PV_3_2_LAST]


def op_names_3_2_for_sizes(sizes):
    """The 3.2 names whose structs match the kernel's own object sizes, or None.

    sizes: {struct name: sizeof} for the pv_*_ops objects the kernel defines
    (its symbol table has them).  Every struct given must agree, so a kernel
    whose structs differ from this table gets no names rather than wrong ones.
    """
    for local_apic in (False, True):
        for pae in (False, True):
            structs = dict(op_structs_3_2(local_apic, pae))
            if sizes and all(name in structs and size == 4 * len(structs[name])
                             for name, size in sizes.items()):
                return op_names_3_2(local_apic, pae)
    return None


PV_OPS_3_2 = tuple(struct for struct, _ in _PV_3_2)
