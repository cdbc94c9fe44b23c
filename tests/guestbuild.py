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
