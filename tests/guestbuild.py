"""Build small purpose-made lguest guests for tests, with the examples' macros.

A test writes only the interesting part (`body`); this wraps it with the
"GenuineLguest" entry, a stack, the console routines and lguest_data, then
assembles and links it exactly like the examples (gcc -m32, ld -m elf_i386).
"""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

TEMPLATE = """\
#include "lguest.h"
	.section .init.text, "ax", @progbits
	.ascii	"GenuineLguest"
	.globl	guest_entry
guest_entry:
	movl	$stack_top, %%esp
	jmp	start

	.text
	.globl	start
start:
%(body)s
	.globl	guest_end
guest_end:
	jmp	guest_end

%(text)s

%(iret)s
	CONSOLE_ROUTINES
	LGUEST_DATA %(noirq)s
	STACK	stack_top, 8192
%(data)s
	.section .note.GNU-stack, "", @progbits
"""


def build_guest(tmpdir, body, text="", data="", iret=True, name="guest"):
    """Assemble and link a guest; return the ELF path.

    With iret=True the guest gets the seed's lguest_iret and reports its
    noirq window to the Host; handlers can `jmp lguest_iret`.
    """
    src = os.path.join(str(tmpdir), name + ".S")
    obj = os.path.join(str(tmpdir), name + ".o")
    elf = os.path.join(str(tmpdir), name + ".elf")
    with open(src, "w") as f:
        f.write(TEMPLATE % {
            "body": body, "text": text, "data": data,
            "iret": "\tLGUEST_IRET" if iret else "",
            "noirq": "lguest_noirq_start, lguest_noirq_end" if iret else "0, 0",
        })
    subprocess.run(["gcc", "-m32", "-g", "-I", EXAMPLES, "-c", src, "-o", obj],
                   check=True, capture_output=True)
    subprocess.run(["ld", "-m", "elf_i386", "--build-id=none", "--no-warn-rwx-segments",
                    "-T", os.path.join(EXAMPLES, "guest.lds"), "-o", elf, obj],
                   check=True, capture_output=True)
    return elf


INIT = "\thcall\tLHCALL_LGUEST_INIT, $__PA(lguest_data)\n"


def own_tables(extra=""):
    """Guest text for `own_tables`: a page directory of the Guest's own
    (`pgdir`) mapping the first 4 MiB of RAM at PAGE_OFFSET through
    `pt_kernel` (P|RW|A|D), then `extra` (more entries), then NEW_PGTABLE.
    The data must define page-aligned `pgdir` and `pt_kernel`."""
    return """
own_tables:
	xorl	%%eax, %%eax
1:	movl	%%eax, %%edx
	shll	$12, %%edx
	orl	$0x63, %%edx
	movl	%%edx, pt_kernel(,%%eax,4)
	incl	%%eax
	cmpl	$1024, %%eax
	jne	1b
	movl	$__PA(pt_kernel) + 0x67, pgdir + 768 * 4
%s
	hcall	LHCALL_NEW_PGTABLE, $__PA(pgdir)
	ret
""" % extra

# A GDT with Linux's kernel segments (the Host fixes their DPL to 1) ...
KERNEL_GDT = """
	.data
	.balign 8
gdt:	.fill 12, 8, 0
	.long 0x0000ffff, 0x00cf9a00	/* 12 kernel code */
	.long 0x0000ffff, 0x00cf9200	/* 13 kernel data */
"""
# A kernel stack for SET_STACK and a user stack, one page each.
TWO_STACKS = """
	.bss
	.balign 16
	.space 4096
kstack_top:
	.space 4096
ustack_top:
"""
# ... and its user segments (entries 14 and 15) ...
USER_SEGMENTS = KERNEL_GDT + """
	.long 0x0000ffff, 0x00cffa00	/* 14 user code, DPL 3 */
	.long 0x0000ffff, 0x00cff200	/* 15 user data, DPL 3 */
"""
# ... with stacks for both rings.
USER_GDT = USER_SEGMENTS + TWO_STACKS


# Into ring 3 at user_code on ustack_top, with the user data segments loaded
# (both ABIs: the GDT and the kernel stack are set up before it).
IRET_TO_USER = """
	movl	$0x7b, %eax
	movl	%eax, %ds
	movl	%eax, %es
	pushl	$0x7b
	pushl	$ustack_top
	pushl	$0x202
	pushl	$0x73
	pushl	$user_code
	iret
"""


def to_user_mode(stack_segment="$KERNEL_DS"):
    """Enter ring 3 at user_code, with a SET_STACK kernel stack."""
    return """
	hcall	LHCALL_LOAD_GDT, $__PA(gdt), $16
	hcall	LHCALL_SET_STACK, %s, $kstack_top, $1
""" % stack_segment + IRET_TO_USER


def boot(tmpdir, body, **kw):
    """Build a guest and a Machine for it; return (machine, list of its events).

    text, data and iret go to build_guest, the rest to Machine.
    """
    from lgdbg.machine import Machine
    extra = {k: kw.pop(k) for k in ("text", "data", "iret") if k in kw}
    elf = build_guest(tmpdir, body, **extra)
    kw.setdefault("max_insns", 5_000_000)     # a broken guest fails, never hangs
    m = Machine(elf, **kw)
    events = []
    m.subscribe(events.append)
    return m, events


def kinds(events, kind):
    # Demand faults are the shadow page tables' own business: the Guest never
    # sees them, and the tests that count traps are about what the Guest sees.
    return [e for e in events if e["kind"] == kind and not e.get("demand")]
