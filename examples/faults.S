/* faults.S - what the Host does when the Guest misbehaves, and the async
 * hypercall ring.
 *
 * In order: two page faults (a read and a write through physical addresses
 * used as pointers) handled by the Guest; a #GP from an unpatched "cli"
 * handled by the Guest; port I/O, which the Host emulates without telling us;
 * a batch of lazy hypercalls queued in lguest_data's ring and flushed with one
 * FLUSH_ASYNC.  Then it powers off. */
#include "lguest.h"

/* EX_TABLE fault, fixup: if "fault" faults, continue at "fixup". */
.macro EX_TABLE fault:req, fixup:req
	.pushsection __ex_table, "a"
	.long	\fault, \fixup
	.popsection
.endm

/*G:010 Entry: stack, then on to faults_init. :*/
	.section .init.text, "ax", @progbits
	.ascii	"GenuineLguest"
	.globl	guest_entry
	.type	guest_entry, @function
guest_entry:
	movl	$stack_top, %esp
	movl	%esi, %eax
	addl	$PAGE_OFFSET, %eax
	jmp	faults_init
	.size	guest_entry, . - guest_entry

	.text
	.globl	faults_init
	.type	faults_init, @function
faults_init:
	hcall	LHCALL_LGUEST_INIT, $__PA(lguest_data)
	PRINT	"faults: page faults, a #GP, port I/O and the async hypercall ring\n"

/*G:020 Faults the Host cannot fix are "reflected": it pushes a frame on our
 * stack as the CPU would and jumps to the handler in our IDT.  With no handler
 * it has nothing to reflect to and kills us ("unhandled trap"), so the
 * handlers go in first.  Linux uses an interrupt gate for page faults: the
 * handler must read the faulting address before an interrupt could cause
 * another fault and overwrite it.  General protection takes a trap gate. */
	SET_GATE 14, page_fault, INTERRUPT_GATE
	SET_GATE 13, general_protection, TRAP_GATE
/*:*/

/*G:030 A classic kernel bug: using a physical address as a pointer.  The
 * Launcher maps RAM only from PAGE_OFFSET up, so guest-physical addresses are
 * not mapped at all and the Host reflects a #PF, after writing the address
 * into lguest_data.cr2 (we cannot read the real %cr2 from ring 1).  The
 * exception table tells the handler where to carry on, just as Linux's
 * __ex_table does for get_user(). */
	movl	$0x5a5a5a5a, %eax
	.size	faults_init, . - faults_init
	.type	read_fault, @function
read_fault:
	movl	__PA(lguest_data), %eax		/* a read at a physical address */
/* read_fixup is write_fault's address: left a plain label, so that every
 * debugger names that address write_fault. */
read_fixup:
	EX_TABLE read_fault, read_fixup

	.size	read_fault, . - read_fault
	.type	write_fault, @function
write_fault:
	movl	$1, 0x00000010			/* a write near address 0 */
	.size	write_fault, . - write_fault
	.type	write_fixup, @function
write_fixup:
	EX_TABLE write_fault, write_fixup
	PRINT	"faults: survived "
	PRINT_DEC page_faults
	PRINT	" page faults\n"
/*:*/

/*G:040 A Guest kernel that forgot to patch a "cli": in ring 1 the CPU
 * refuses, raising #GP with error code 0.  The Host first checks whether the
 * instruction is an in or out it can emulate; a cli is not, so the #GP comes
 * to our handler, which steps over it. */
	.globl	unpatched_cli
	.size	write_fixup, . - write_fixup
	.type	unpatched_cli, @function
unpatched_cli:
	cli
	PRINT	"faults: still running after an unpatched cli\n"
/*:*/

/*G:050 Port I/O also raises #GP in ring 1, but this time the Host deals with
 * it silently: there are no devices behind the ports, so an "in" reads all
 * ones and an "out" goes nowhere.  The Host's idea of "all ones" is rough:
 * for a byte-sized in (even opcode) it ORs 0xffff into EAX, two bytes for a
 * one-byte read; for a word or dword in (odd opcode) it sets all of EAX. */
	xorl	%eax, %eax
	inb	$0x60, %al
	PRINT	"faults: inb $0x60 gave EAX="
	PRINT_HEX %eax
	PRINT	"\n"
	xorl	%eax, %eax
	movw	$0x3f8, %dx
	inl	%dx, %eax
	PRINT	"faults: inl (%dx) gave EAX="
	PRINT_HEX %eax
	PRINT	"\n"
	xorl	%eax, %eax
	inw	%dx, %ax
	PRINT	"faults: inw (%dx) gave EAX="
	PRINT_HEX %eax
	PRINT	"\n"
	movb	$0x55, %al
	outb	%al, $0x80
	movw	$0x70, %dx
	outb	%al, %dx
	PRINT	"faults: outb to ports 0x80 and 0x70 ignored\n"
/*:*/

/*G:060 The async ring.  Context switches issue several "lazy" hypercalls in
 * a row (new stack, TLS, TS flag, TLB flush); trapping to the Host for each
 * would be slow.  So the Guest writes them into lguest_data.hcalls[] and
 * marks each slot pending by setting its hcall_status byte to 0, only after
 * the arguments are in place.  The Host runs the whole ring, in order, the
 * next time the Guest exits for any reason, and writes 0xff back into each
 * status.  FLUSH_ASYNC is the exit that does nothing else. */
	QUEUE_HCALL 0, LHCALL_SET_STACK, KERNEL_DS, stack_top, 1
	QUEUE_HCALL 1, LHCALL_LOAD_TLS, __PA(tls_descriptors), 0, 0
	QUEUE_HCALL 2, LHCALL_TS, 0, 0, 0
	QUEUE_HCALL 3, LHCALL_FLUSH_TLB, 0, 0, 0
	hcall	LHCALL_FLUSH_ASYNC
/*:*/

/*G:070 After the flush every slot we used must be 0xff again. */
	xorl	%ecx, %ecx			/* slots still pending */
	xorl	%esi, %esi
1:	cmpb	$HCALL_DONE, lguest_data + LGUEST_DATA_hcall_status(%esi)
	je	2f
	incl	%ecx
2:	incl	%esi
	cmpl	$4, %esi
	jb	1b
	PRINT	"faults: queued 4 async hypercalls, "
	PRINT_DEC %ecx
	PRINT	" still pending after FLUSH_ASYNC\n"
	jecxz	3f
	CRASH_MSG "the Host did not run the async hypercall ring"
3:
/*:*/
	PRINT	"faults: done\n"
	POWER_OFF
	.size	unpatched_cli, . - unpatched_cli

/*G:080 The page fault handler.  The Host pushed an error code below the usual
 * EIP, CS and EFLAGS (bit 0: the page was present, bit 1: a write, bit 2: from
 * user mode), and put the address in lguest_data.cr2.  We report both, look
 * up where to continue in the exception table, and return through lguest_iret
 * after dropping the error code, which iret does not expect. */
	.globl	page_fault
	.type	page_fault, @function
page_fault:
	pushal
	movl	lguest_data + LGUEST_DATA_cr2, %edx
	movl	32(%esp), %ecx			/* error code */
	movl	36(%esp), %ebx			/* faulting EIP */
	incl	page_faults
	PRINT	"page fault at EIP "
	PRINT_HEX %ebx
	PRINT	": cr2="
	PRINT_HEX %edx
	PRINT	" errcode="
	PRINT_HEX %ecx
	PRINT	"\n"
	movl	$__start___ex_table, %esi
1:	cmpl	$__stop___ex_table, %esi
	jae	no_fixup
	cmpl	(%esi), %ebx
	je	2f
	addl	$8, %esi
	jmp	1b
2:	movl	4(%esi), %eax
	movl	%eax, 36(%esp)			/* resume at the fixup */
	popal
	addl	$4, %esp			/* drop the error code */
	jmp	lguest_iret
	.size	page_fault, . - page_fault
	.type	no_fixup, @function
no_fixup:
	CRASH_MSG "page fault with no exception table entry"
	.size	no_fixup, . - no_fixup
/*:*/

/*G:090 The #GP handler only knows how to skip a stray cli or sti: the one
 * byte at the faulting EIP.  Anything else, including an in/out that the Host
 * should have emulated, is fatal. */
	.globl	general_protection
	.type	general_protection, @function
general_protection:
	pushal
	movl	32(%esp), %ecx			/* error code */
	movl	36(%esp), %ebx			/* faulting EIP */
	movzbl	(%ebx), %edx			/* opcode */
	PRINT	"general protection fault at EIP "
	PRINT_HEX %ebx
	PRINT	": errcode="
	PRINT_HEX %ecx
	PRINT	" opcode="
	PRINT_HEX %edx
	cmpl	$0xfa, %edx			/* cli */
	je	1f
	cmpl	$0xfb, %edx			/* sti */
	je	1f
	PRINT	"\n"
	CRASH_MSG "unexpected general protection fault"
1:	PRINT	", skipping it\n"
	incl	36(%esp)
	popal
	addl	$4, %esp			/* drop the error code */
	jmp	lguest_iret
	.size	general_protection, . - general_protection
/*:*/

	LGUEST_IRET
	CONSOLE_ROUTINES

	.data
	.balign	4
	.globl	page_faults
page_faults:	.long 0
/* Three empty TLS descriptors for LOAD_TLS (GDT entries 6 to 8). */
tls_descriptors:
	.long	0, 0, 0, 0, 0, 0

	LGUEST_DATA lguest_noirq_start, lguest_noirq_end
	STACK	stack_top, 8192

	.section .note.GNU-stack, "", @progbits
