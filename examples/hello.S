/* hello.S - the smallest useful lguest Guest: introduce ourselves to the
 * Host, say hello on the console, switch the machine off.
 *
 * Build: make -C examples    Run: lgdbg run lgdbg/images/hello.elf */
#include "lguest.h"

/*G:010 A 2.6.23 Launcher does not read the ELF entry point: it searches the
 * loaded image for the thirteen bytes "GenuineLguest" and starts the Guest on
 * the byte right after them (as a virtual address).  So the signature must be
 * the very first thing in the image, and the code that follows it must expect
 * nothing at all: no stack (ESP is 0), no IDT, no lguest_data yet.  All we
 * know is that we are in ring 1 with flat segments, that RAM is visible only
 * from PAGE_OFFSET up, and that ESI holds the physical address of the boot
 * header, exactly like a native kernel booting. :*/
	.section .init.text, "ax", @progbits
	.ascii	"GenuineLguest"
	.globl	guest_entry
	.type	guest_entry, @function
guest_entry:
	movl	$stack_top, %esp
	movl	%esi, %eax
	addl	$PAGE_OFFSET, %eax
	jmp	hello_init
	.size	guest_entry, . - guest_entry

	.text
/*G:020 hello_init gets the virtual address of the boot header in EAX, like
 * lguest_init(void *boot) does in the real Guest.
 *
 * The first hypercall has to be LGUEST_INIT: until the Host knows where our
 * lguest_data lives, it refuses everything else (and kills us for trying).
 * The Host works in guest-physical addresses, so we pass __PA(&lguest_data),
 * never the virtual address we use ourselves. */
	.globl	hello_init
	.type	hello_init, @function
hello_init:
	movl	%eax, %esi			/* keep the boot header */
	hcall	LHCALL_LGUEST_INIT, $__PA(lguest_data)
/*:*/

/*G:030 Output.  The 2.6.23 console has no special hypercall: it is a DMA to
 * the key 0, which lives in the Launcher's private memory, so SEND_DMA makes
 * the Host stop and give the buffer list to the Launcher, which prints it.
 * PRINT (in lguest.h) stores the text in .rodata and calls console_write,
 * which builds the struct lguest_dma the way hvc_lguest's put_chars does. :*/
	PRINT	"Hello from an lguest Guest (Linux 2.6.23 ABI), running in ring 1.\n"

/*G:040 The boot header is the Linux "zero page" at physical 0; its
 * cmd_line_ptr field gives the physical address of the command line the
 * Launcher was given.  We must add PAGE_OFFSET before touching it: below
 * PAGE_OFFSET there is nothing mapped at all. */
	movl	BOOT_CMD_LINE_PTR(%esi), %esi
	testl	%esi, %esi
	jz	no_cmdline
	addl	$PAGE_OFFSET, %esi
	movl	%esi, %edi
	xorl	%ecx, %ecx
1:	cmpb	$0, (%edi, %ecx)
	je	2f
	incl	%ecx
	cmpl	$2048, %ecx			/* COMMAND_LINE_SIZE */
	jb	1b
2:	jecxz	no_cmdline
	PRINT	"Command line: "
	call	console_write
	PRINT	"\n"
	.size	hello_init, . - hello_init
	.type	no_cmdline, @function
no_cmdline:
/*:*/

/*G:050 There is no power switch: a Guest turns itself off by "crashing" with
 * the message "Power down", which the Launcher treats as a clean exit.  The
 * Host never returns from CRASH. :*/
	POWER_OFF
	.size	no_cmdline, . - no_cmdline

	CONSOLE_ROUTINES

/* No interrupts in this Guest, so the no-interrupt window is empty. */
	LGUEST_DATA 0, 0
	STACK	stack_top, 4096

	.section .note.GNU-stack, "", @progbits
