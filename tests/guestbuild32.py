"""Build small purpose-made guests of the 3.2 ABI for tests.

A 3.2 guest is a vmlinux-like ELF: its PT_LOAD has a physical p_paddr
(0x100000) and p_vaddr = 0xC0000000 + p_paddr, e_entry is the *physical*
address of `guest_entry`, and there is no "GenuineLguest" magic.  It starts
the way lguest_entry (arch/x86/lguest/i386_head.S) does: at physical
addresses (the Host's linear mode, virtual == physical), with ESI pointing at
the zero page; it makes LGUEST_INIT with the physical address of its
lguest_data (the 3.2 layout: abi.LAYOUTS["3.2"]), then NEW_PGTABLE with a
page directory of its own, and jumps to its virtual addresses.

A test supplies up to four pieces of assembly:

    pre     linear mode, before LGUEST_INIT (init=False leaves INIT out)
    linear  linear mode, after LGUEST_INIT; addresses must go through PA()
    body    virtual mode, after NEW_PGTABLE; `guest_end` powers off after it
    text / data   more code / data (virtual addresses)

Hypercalls: EAX = number, EBX, ECX, EDX, ESI = arguments (hcall()).
"""

import os
import subprocess

from lgdbg.views.symbols import Symbols

PAGE_OFFSET = 0xC0000000

LINKER_SCRIPT = """\
OUTPUT_FORMAT("elf32-i386")
OUTPUT_ARCH(i386)
ENTRY(phys_entry)
PAGE_OFFSET = 0xC0000000;
PHDRS { load PT_LOAD FLAGS(7); }
SECTIONS
{
	. = PAGE_OFFSET + 0x100000;
	.text : AT(ADDR(.text) - PAGE_OFFSET) { *(.init.text) *(.text .text.*) } :load
	.rodata : AT(ADDR(.rodata) - PAGE_OFFSET) { *(.rodata .rodata.*) } :load
	.data : AT(ADDR(.data) - PAGE_OFFSET) { *(.data .data.*) } :load
	.bss : AT(ADDR(.bss) - PAGE_OFFSET) { *(.bss .bss.*) *(COMMON) } :load
	_end = .;
	phys_entry = guest_entry - PAGE_OFFSET;
	/DISCARD/ : { *(.note.GNU-stack) *(.note.gnu.property) *(.comment) *(.eh_frame) }
}
"""

HEADER = """\
#define PA(x)			((x) - 0xC0000000)
#define LHCALL_FLUSH_ASYNC	0
#define LHCALL_LGUEST_INIT	1
#define LHCALL_SHUTDOWN		2
#define LHCALL_NEW_PGTABLE	4
#define LHCALL_FLUSH_TLB	5
#define LHCALL_LOAD_IDT_ENTRY	6
#define LHCALL_SET_STACK	7
#define LHCALL_TS		8
#define LHCALL_SET_CLOCKEVENT	9
#define LHCALL_HALT		10
#define LHCALL_SET_PMD		13
#define LHCALL_SET_PTE		14
#define LHCALL_SET_PGD		15
#define LHCALL_LOAD_TLS		16
#define LHCALL_NOTIFY		17
#define LHCALL_LOAD_GDT_ENTRY	18
#define LHCALL_SEND_INTERRUPTS	19
/* struct lguest_data of include/linux/lguest.h in 3.2 (sizeof 1392) */
#define LD_irq_enabled		0
#define LD_blocked_interrupts	4
#define LD_cr2			8
#define LD_time			12
#define LD_irq_pending		20
#define LD_hcall_status		24
#define LD_hcalls		88
#define LD_reserve_mem		1368
#define LD_tsc_khz		1372
#define LD_noirq_start		1376
#define LD_noirq_end		1380
#define LD_kernel_address	1384
#define LD_syscall_vec		1388
#define LD_SIZE			1392
#define INTERRUPT_GATE		0x8e00
#define TRAP_GATE		0x8f00

/* hcall NR, EBX, ECX, EDX, ESI (i386 hcall() of 3.2) */
.macro hcall nr:req, a1, a2, a3, a4
	.ifnb \\a4
	movl	\\a4, %esi
	.endif
	.ifnb \\a3
	movl	\\a3, %edx
	.endif
	.ifnb \\a2
	movl	\\a2, %ecx
	.endif
	.ifnb \\a1
	movl	\\a1, %ebx
	.endif
	movl	$\\nr, %eax
	int	$0x1f
.endm

/* SET_GATE vector, handler, type [, dpl]: LOAD_IDT_ENTRY(vector, lo, hi) */
.macro SET_GATE vector:req, handler:req, type:req, dpl=0, sel=0x60
	movl	$\\handler, %ecx
	andl	$0x0000ffff, %ecx
	orl	$(\\sel << 16), %ecx
	movl	$\\handler, %edx
	andl	$0xffff0000, %edx
	orl	$(\\type | (\\dpl << 13)), %edx
	movl	$\\vector, %ebx
	movl	$LHCALL_LOAD_IDT_ENTRY, %eax
	int	$0x1f
.endm

/* QUEUE slot, nr, a1..a4: fill hcalls[slot] (five words), then status 0 */
.macro QUEUE slot:req, nr:req, a1=0, a2=0, a3=0, a4=0, pa=0
	movl	$\\nr, lguest_data - \\pa + LD_hcalls + (\\slot) * 20 + 0
	movl	$\\a1, lguest_data - \\pa + LD_hcalls + (\\slot) * 20 + 4
	movl	$\\a2, lguest_data - \\pa + LD_hcalls + (\\slot) * 20 + 8
	movl	$\\a3, lguest_data - \\pa + LD_hcalls + (\\slot) * 20 + 12
	movl	$\\a4, lguest_data - \\pa + LD_hcalls + (\\slot) * 20 + 16
	movb	$0, lguest_data - \\pa + LD_hcall_status + (\\slot)
.endm

/* SHUTDOWN "text", reason: lguest_power_off / lguest_restart */
.macro SHUTDOWN text:req, reason:req
	.pushsection .rodata, "a"
.Lmsg\\@:	.asciz	"\\text"
	.popsection
	hcall	LHCALL_SHUTDOWN, $PA(.Lmsg\\@), $\\reason
.endm

.macro POWER_OFF
	SHUTDOWN "Power down", 1
.endm
"""

TEMPLATE = """
	.section .init.text, "ax"
	.globl	guest_entry
guest_entry:				/* physical, linear mode */
	movl	%%eax, PA(boot_regs) + 0
	movl	%%ebx, PA(boot_regs) + 4
	movl	%%ecx, PA(boot_regs) + 8
	movl	%%edx, PA(boot_regs) + 12
	movl	%%esi, PA(boot_regs) + 16
	movl	%%edi, PA(boot_regs) + 20
	movl	%%ebp, PA(boot_regs) + 24
	movl	%%esp, PA(boot_regs) + 28
	movw	%%cs, PA(boot_regs) + 32
	movw	%%ds, PA(boot_regs) + 36
	movw	%%es, PA(boot_regs) + 40
	movw	%%ss, PA(boot_regs) + 44
	movl	$PA(stack_top), %%esp
%(pre)s
%(init)s
	.globl	linear_start
linear_start:
%(linear)s
	/* pt0 maps the first 4 MiB (P|RW|US|A|D); pgdir has it at 0 and at PAGE_OFFSET */
	xorl	%%eax, %%eax
1:	movl	%%eax, %%edx
	shll	$12, %%edx
	orl	$0x67, %%edx
	movl	%%edx, PA(pt0)(,%%eax,4)
	incl	%%eax
	cmpl	$1024, %%eax
	jne	1b
	movl	$PA(pt0) + 0x67, PA(pgdir)
	movl	$PA(pt0) + 0x67, PA(pgdir) + 768 * 4
%(tables)s
	hcall	LHCALL_NEW_PGTABLE, $PA(pgdir)
	.globl	after_new_pgtable
after_new_pgtable:
	movl	$stack_top, %%esp
	movl	$start, %%eax
	jmp	*%%eax

	.text
	.globl	start
start:
%(body)s
	.globl	guest_end
guest_end:
	POWER_OFF

%(text)s

	.globl	lguest_iret
	.globl	lguest_noirq_start
	.globl	lguest_noirq_end
lguest_iret:
	pushl	%%eax
	movl	12(%%esp), %%eax
lguest_noirq_start:
	movl	%%eax, %%ss:lguest_data + LD_irq_enabled
	popl	%%eax
	iret
lguest_noirq_end:

	.data
	.balign	4
	.globl	lguest_data
lguest_data:
	.long	0			/* irq_enabled */
	.long	1			/* blocked_interrupts: the timer */
	.long	0			/* cr2 */
	.long	0, 0			/* time */
	.long	0			/* irq_pending */
	.fill	64, 1, 0xff		/* hcall_status */
	.fill	64 * 5, 4, 0		/* hcalls */
	.long	%(reserve_mem)s		/* reserve_mem */
	.long	%(tsc_khz)s		/* tsc_khz */
	.long	%(noirq_start)s
	.long	%(noirq_end)s
	.long	%(kernel_address)s
	.long	%(syscall_vec)s
	.ifne	(. - lguest_data) - LD_SIZE
	.error	"struct lguest_data has the wrong size"
	.endif
	.globl	boot_regs
boot_regs:
	.fill	12, 4, 0x5a5a5a5a
%(data)s
	.balign	4096
	.globl	pgdir
pgdir:	.fill	1024, 4, 0
	.globl	pt0
pt0:	.fill	1024, 4, 0

	.bss
	.balign	16
	.space	8192
	.globl	stack_top
stack_top:
	.section .note.GNU-stack, "", @progbits
"""

INIT = "\thcall\tLHCALL_LGUEST_INIT, $PA(lguest_data)\n"


def build_guest32(tmpdir, body="", pre="", linear="", text="", data="", tables="",
                  init=True, name="guest32", **fields):
    """Assemble and link a 3.2 guest; return the ELF path.

    fields override lguest_data's static values: reserve_mem, tsc_khz,
    noirq_start, noirq_end, kernel_address, syscall_vec (assembler operands).
    """
    values = {"reserve_mem": "0", "tsc_khz": "0",
              "noirq_start": "lguest_noirq_start", "noirq_end": "lguest_noirq_end",
              "kernel_address": "0xC0000000", "syscall_vec": "0x80"}
    values.update({k: str(v) for k, v in fields.items()})
    src = os.path.join(str(tmpdir), name + ".S")
    obj = os.path.join(str(tmpdir), name + ".o")
    lds = os.path.join(str(tmpdir), name + ".lds")
    elf = os.path.join(str(tmpdir), name + ".elf")
    with open(src, "w") as f:
        f.write(HEADER + TEMPLATE % dict(values, pre=pre, init=INIT if init else "", linear=linear,
                                body=body, text=text, data=data, tables=tables))
    with open(lds, "w") as f:
        f.write(LINKER_SCRIPT)
    subprocess.run(["gcc", "-m32", "-g", "-c", src, "-o", obj], check=True,
                   capture_output=True)
    subprocess.run(["ld", "-m", "elf_i386", "--build-id=none", "--no-warn-rwx-segments",
                    "-T", lds, "-o", elf, obj], check=True, capture_output=True)
    return elf


class Guest32:
    """A Machine for a built 3.2 guest, with its events, output and symbols."""

    def __init__(self, elf, **kw):
        from lgdbg.machine import Machine
        kw.setdefault("max_insns", 2_000_000)     # a broken guest fails, never hangs
        self.output = []
        kw.setdefault("output", self.output.append)
        self.m = Machine(elf, **kw)
        self.syms = Symbols(elf)
        self.events = []
        self.m.subscribe(self.events.append)

    def sym(self, name):
        return self.syms.lookup(name)

    def pa(self, name):
        return self.sym(name) - PAGE_OFFSET

    def word(self, name, offset=0):
        """A word of Guest memory by symbol, read physically (no paging)."""
        at = self.pa(name) + offset
        return int.from_bytes(self.m.cpu.ram[at:at + 4], "little")

    def phys(self, addr, length):
        return bytes(self.m.cpu.ram[addr:addr + length])

    def ld(self, offset):
        return self.word("lguest_data", offset)

    def set_ld(self, offset, value):
        at = self.pa("lguest_data") + offset
        self.m.cpu.ram[at:at + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")

    def run_to(self, name, phys=False):
        """Run to a label; phys for one reached in linear mode (EIP physical)."""
        addr = self.pa(name) if phys else self.sym(name)
        self.m.cpu.add_breakpoint(addr)
        stop = self.m.run()
        self.m.cpu.remove_breakpoint(addr)
        assert (stop.kind, stop.addr) == ("breakpoint", addr), stop
        return stop

    def run(self):
        return self.m.run()

    def kinds(self, kind):
        return [e for e in self.events if e["kind"] == kind and not e.get("demand")]

    def hcalls(self):
        return [(e["nr"], e["async"]) for e in self.events if e["kind"] == "hcall"]

    @property
    def text(self):
        return b"".join(self.output)


def boot32(tmpdir, **kw):
    """build_guest32 + Guest32: Machine keywords go in `machine`."""
    machine = kw.pop("machine", {})
    return Guest32(build_guest32(tmpdir, **kw), **machine)
