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
