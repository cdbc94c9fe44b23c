/* lguest.h - what every example Guest shares: the Host/Guest ABI constants of
 * Linux 2.6.23's lguest (see shared/docs/lguest-abi.md and lgdbg/abi.py) and a
 * handful of assembler macros: a hypercall, console output through SEND_DMA,
 * power-off, IDT gates, the lguest_data structure and lguest_iret.
 *
 * It is included by the preprocessor (the examples are .S files built with
 * "gcc -m32 -c"), so it may only hold #defines and gas macros; code and data
 * appear only where a Guest invokes one of the macros that emit them. */

#ifndef LGUEST_EXAMPLES_H
#define LGUEST_EXAMPLES_H

/* Memory: the Launcher maps guest-physical 0 at PAGE_OFFSET and nothing below
 * it, so every pointer we hand the Host must be converted with __PA(). */
#define PAGE_OFFSET		0xC0000000
#define __PA(x)			((x) - PAGE_OFFSET)
#define PAGE_SIZE		4096

/* Segments: the Guest kernel is in ring 1, so it runs with RPL 1. */
#define GUEST_PL		1
#define __KERNEL_CS		0x60
#define __KERNEL_DS		0x68
#define KERNEL_DS		(__KERNEL_DS | GUEST_PL)
#define X86_EFLAGS_IF		0x200

/* Hypercalls (2.6.23 numbering): EAX = call, EDX/EBX/ECX = arguments. */
#define LGUEST_TRAP_ENTRY	0x1f
#define LHCALL_FLUSH_ASYNC	0
#define LHCALL_LGUEST_INIT	1
#define LHCALL_CRASH		2
#define LHCALL_LOAD_GDT		3
#define LHCALL_NEW_PGTABLE	4
#define LHCALL_FLUSH_TLB	5
#define LHCALL_LOAD_IDT_ENTRY	6
#define LHCALL_SET_STACK	7
#define LHCALL_TS		8
#define LHCALL_SET_CLOCKEVENT	9
#define LHCALL_HALT		10
#define LHCALL_BIND_DMA		12
#define LHCALL_SEND_DMA		13
#define LHCALL_SET_PTE		14
#define LHCALL_SET_PMD		15
#define LHCALL_LOAD_TLS		16

/* struct lguest_data, 2.6.23 layout (sizeof 1128). */
#define LGUEST_DATA_irq_enabled		0
#define LGUEST_DATA_blocked_interrupts	4
#define LGUEST_DATA_cr2			8
#define LGUEST_DATA_time		12
#define LGUEST_DATA_hcall_status	20
#define LGUEST_DATA_hcalls		84
#define LGUEST_DATA_reserve_mem		1108
#define LGUEST_DATA_guestid		1112
#define LGUEST_DATA_tsc_khz		1116
#define LGUEST_DATA_noirq_start		1120
#define LGUEST_DATA_noirq_end		1124
#define LGUEST_DATA_SIZE		1128
#define LHCALL_RING_SIZE		64
#define HCALL_SLOT			16	/* eax, edx, ebx, ecx */
#define HCALL_DONE			0xff

/* struct lguest_dma, the 2.6.23 console's one-shot buffer list. */
#define LGUEST_MAX_DMA_SECTIONS	16
#define LGUEST_DMA_used_len	0
#define LGUEST_DMA_addr		4
#define LGUEST_DMA_len		68
#define LGUEST_DMA_SIZE		100
#define LGUEST_CONSOLE_DMA_KEY	0

/* Interrupts and gates. */
#define FIRST_EXTERNAL_VECTOR	0x20
#define INTERRUPT_GATE		0x8e00	/* P=1, DPL=0, type 0xE */
#define TRAP_GATE		0x8f00	/* P=1, DPL=0, type 0xF */

/* Boot header (the Linux "zero page") at guest-physical 0. */
#define BOOT_CMD_LINE_PTR	0x228

/* ------------------------------------------------------------------------
 * hcall NR [, ARG1 [, ARG2 [, ARG3]]]
 * Arguments are operands, so "$5", "%esi" or "foo" all work.  EAX, EDX, EBX
 * and ECX are clobbered (the Host itself only ever writes EAX). */
.macro hcall nr:req, arg1, arg2, arg3
	.ifnb \arg1
	movl	\arg1, %edx
	.endif
	.ifnb \arg2
	movl	\arg2, %ebx
	.endif
	.ifnb \arg3
	movl	\arg3, %ecx
	.endif
	movl	$\nr, %eax
	int	$LGUEST_TRAP_ENTRY
.endm

/* QUEUE_HCALL slot, nr, arg1, arg2, arg3: put a hypercall with constant
 * arguments into slot "slot" of the async ring (lguest_data.hcalls[]) and
 * only then mark it pending (status 0); x86 does not reorder stores, so no
 * barrier is needed.  A general async_hcall() keeps a cursor and falls back
 * to a synchronous call when the slot is still pending (the ring is full);
 * the examples use fixed slots of an empty ring. */
.macro QUEUE_HCALL slot:req, nr:req, arg1=0, arg2=0, arg3=0
	movl	$\nr, lguest_data + LGUEST_DATA_hcalls + (\slot) * HCALL_SLOT + 0
	movl	$\arg1, lguest_data + LGUEST_DATA_hcalls + (\slot) * HCALL_SLOT + 4
	movl	$\arg2, lguest_data + LGUEST_DATA_hcalls + (\slot) * HCALL_SLOT + 8
	movl	$\arg3, lguest_data + LGUEST_DATA_hcalls + (\slot) * HCALL_SLOT + 12
	movb	$0, lguest_data + LGUEST_DATA_hcall_status + (\slot)
.endm

/* PRINT "text": put the string in .rodata and send it to the console through
 * console_write (see CONSOLE_ROUTINES).  No register is changed. */
.macro PRINT text:req
	.pushsection .rodata, "a"
.Lprint_str\@:
	.ascii	"\text"
.Lprint_end\@:
	.popsection
	pushl	%esi
	pushl	%ecx
	movl	$.Lprint_str\@, %esi
	movl	$(.Lprint_end\@ - .Lprint_str\@), %ecx
	call	console_write
	popl	%ecx
	popl	%esi
.endm

/* PRINT_HEX operand / PRINT_DEC operand: print a 32-bit value as 0x%08x or in
 * decimal.  No register is changed; the operand must not be %esp-relative. */
.macro PRINT_HEX val:req
	pushl	%eax
	movl	\val, %eax
	call	print_hex
	popl	%eax
.endm

.macro PRINT_DEC val:req
	pushl	%eax
	movl	\val, %eax
	call	print_dec
	popl	%eax
.endm

/* CRASH_MSG "text": kill the Guest with a reason.  The Host copies the string
 * from guest-physical memory, so it gets the physical address. */
.macro CRASH_MSG text:req
	.pushsection .rodata, "a"
.Lcrash_str\@:
	.asciz	"\text"
	.popsection
	hcall	LHCALL_CRASH, $__PA(.Lcrash_str\@)
.endm

/* POWER_OFF: what lguest_power_off does: a CRASH whose message is exactly
 * "Power down", which the Launcher treats as a clean shutdown. */
.macro POWER_OFF
	CRASH_MSG "Power down"
.endm

/* SET_GATE vector, handler, INTERRUPT_GATE|TRAP_GATE
 * Build a standard i386 gate descriptor (selector __KERNEL_CS, the handler's
 * address split into its low and high halves) and hand both dwords to the
 * Host, which keeps its own copy of the Guest's IDT.  The split has to happen
 * at run time: the assembler cannot mask a relocatable address. */
.macro SET_GATE vector:req, handler:req, type:req
	movl	$\handler, %ebx
	andl	$0x0000ffff, %ebx
	orl	$(__KERNEL_CS << 16), %ebx
	movl	$\handler, %ecx
	andl	$0xffff0000, %ecx
	orl	$\type, %ecx
	movl	$\vector, %edx
	movl	$LHCALL_LOAD_IDT_ENTRY, %eax
	int	$LGUEST_TRAP_ENTRY
.endm

/* UNBLOCK_IRQ n: clear bit n of lguest_data.blocked_interrupts. */
.macro UNBLOCK_IRQ irq:req
	andl	$~(1 << \irq), lguest_data + LGUEST_DATA_blocked_interrupts
.endm

/* IRQS_OFF: the Guest's own "cli": interrupts are a field in lguest_data. */
.macro IRQS_OFF
	movl	$0, lguest_data + LGUEST_DATA_irq_enabled
.endm

/* ------------------------------------------------------------------------
 * LGUEST_DATA noirq_start, noirq_end: emit the 1128-byte struct lguest_data
 * into .data with the static initial values the Host expects: interrupts
 * disabled, irq 0 blocked, every async ring slot "done" (0xff). */
.macro LGUEST_DATA noirq_start=0, noirq_end=0
	.pushsection .data, "aw"
	.balign	4
	.globl	lguest_data
	.type	lguest_data, @object
lguest_data:
	.long	0			/* irq_enabled */
	.long	1			/* blocked_interrupts: timer masked */
	.long	0			/* cr2, written by the Host */
	.long	0, 0			/* time: tv_sec, tv_nsec */
	.fill	LHCALL_RING_SIZE, 1, HCALL_DONE	/* hcall_status[] */
	.fill	LHCALL_RING_SIZE * 4, 4, 0	/* hcalls[]: eax, edx, ebx, ecx */
	.long	0			/* reserve_mem */
	.short	0, 0			/* guestid, padding */
	.long	0			/* tsc_khz */
	.long	\noirq_start		/* read by the Host once, at LGUEST_INIT */
	.long	\noirq_end
	.size	lguest_data, . - lguest_data
	.ifne	(. - lguest_data) - LGUEST_DATA_SIZE
	.error	"struct lguest_data has the wrong size"
	.endif
	.popsection
.endm

/* LGUEST_IRET: the Guest's replacement for "iret" (iret.S explains it at
 * length).  Handlers finish with "jmp lguest_iret". */
.macro LGUEST_IRET
	.globl	lguest_iret
	.globl	lguest_noirq_start
	.globl	lguest_noirq_end
	.type	lguest_iret, @function
lguest_iret:
	pushl	%eax
	movl	12(%esp), %eax
lguest_noirq_start:
	movl	%eax, %ss:lguest_data + LGUEST_DATA_irq_enabled
	popl	%eax
	iret
lguest_noirq_end:
	.size	lguest_iret, . - lguest_iret
.endm

/* STACK name, bytes: a static stack in .bss; "name" labels its top. */
.macro STACK name:req, bytes=8192
	.pushsection .bss, "aw", @nobits
	.balign	16
	.space	\bytes
	.globl	\name
\name:
	.popsection
.endm

/* ------------------------------------------------------------------------
 * CONSOLE_ROUTINES: console_write, print_hex and print_dec.  All three keep
 * every register, so they can be called from interrupt handlers. */
.macro CONSOLE_ROUTINES
	.pushsection .text, "ax"

/* console_write: ESI = virtual address of the text, ECX = byte count.
 * This is hvc_lguest's put_chars: a struct lguest_dma on the stack describing
 * one buffer (addr[0] = its physical address, len[0] = count, len[1] = 0 ends
 * the list), sent to key 0, which the Launcher recognises as the console.  The
 * Host stops the Guest, the Launcher copies the bytes to stdout and writes
 * used_len, and only then do we continue: the buffer may be reused at once. */
	.globl	console_write
	.type	console_write, @function
console_write:
	jecxz	2f
	pushal
	cld
	subl	$LGUEST_DMA_SIZE, %esp
	movl	%esp, %edi
	movl	%ecx, %edx
	xorl	%eax, %eax
	movl	$(LGUEST_DMA_SIZE / 4), %ecx
	rep stosl
	leal	-PAGE_OFFSET(%esi), %eax
	movl	%eax, LGUEST_DMA_addr(%esp)
	movw	%dx, LGUEST_DMA_len(%esp)
	leal	-PAGE_OFFSET(%esp), %ebx
	movl	$LGUEST_CONSOLE_DMA_KEY, %edx
	movl	$LHCALL_SEND_DMA, %eax
	int	$LGUEST_TRAP_ENTRY
	addl	$LGUEST_DMA_SIZE, %esp
	popal
2:	ret
	.size	console_write, . - console_write

/* print_hex: EAX as "0x" and eight lower-case hex digits. */
	.globl	print_hex
	.type	print_hex, @function
print_hex:
	pushal
	subl	$12, %esp
	movb	$0x30, (%esp)		/* '0' */
	movb	$0x78, 1(%esp)		/* 'x' */
	leal	9(%esp), %edi
	movl	$8, %ecx
1:	movl	%eax, %edx
	andl	$0xf, %edx
	movb	hex_digits(%edx), %dl
	movb	%dl, (%edi)
	decl	%edi
	shrl	$4, %eax
	loop	1b
	movl	%esp, %esi
	movl	$10, %ecx
	call	console_write
	addl	$12, %esp
	popal
	ret
	.size	print_hex, . - print_hex

/* print_dec: EAX as an unsigned decimal number. */
	.globl	print_dec
	.type	print_dec, @function
print_dec:
	pushal
	subl	$12, %esp
	leal	12(%esp), %esi
	movl	$10, %ebx
1:	xorl	%edx, %edx
	divl	%ebx
	addb	$0x30, %dl		/* + '0' */
	decl	%esi
	movb	%dl, (%esi)
	testl	%eax, %eax
	jnz	1b
	leal	12(%esp), %ecx
	subl	%esi, %ecx
	call	console_write
	addl	$12, %esp
	popal
	ret
	.size	print_dec, . - print_dec

	.popsection
	.pushsection .rodata, "a"
hex_digits:
	.ascii	"0123456789abcdef"
	.popsection
.endm

#endif /* LGUEST_EXAMPLES_H */
