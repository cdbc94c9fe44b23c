/* iret.S - the Guest that lguest_iret's no-interrupt window exists for.
 *
 * It patches its own cli/sti/popf/pushf call sites with lguest's templates at
 * boot, then spins in main_loop with interrupts enabled while the clock
 * interrupts it again and again; every handler returns through lguest_iret.
 * The clock handler refuses to be re-entered, and refuses an interrupted EIP
 * inside [lguest_noirq_start, lguest_noirq_end): an interrupt delivered where
 * the Host promised never to deliver one stops the Guest with a CRASH that
 * says so.  After TICKS ticks it prints a summary and powers off. */
#include "lguest.h"

#define TICKS		20
#define TICK_NS		50000		/* about 50000 instructions per tick */
#define SPIN		1000		/* busy-work iterations per main loop pass */

/* Paravirt operation numbers used in .parainstructions (our own numbering;
 * Linux uses the offset of the operation in paravirt_ops divided by 4). */
#define PARAVIRT_irq_disable	1	/* cli */
#define PARAVIRT_irq_enable	2	/* sti */
#define PARAVIRT_restore_fl	3	/* popf, flags in EAX */
#define PARAVIRT_save_fl	4	/* pushf, result in EAX */
#define PARAINSTR_SIZE		8	/* {u32 instr; u8 type; u8 len; u16 clobbers} */

/*G:010 Entry, as in every lguest Guest: the Launcher starts us on the byte
 * after the signature, with no stack. :*/
	.section .init.text, "ax", @progbits
	.ascii	"GenuineLguest"
	.globl	guest_entry
	.type	guest_entry, @function
guest_entry:
	movl	$stack_top, %esp
	movl	%esi, %eax
	addl	$PAGE_OFFSET, %eax
	jmp	iret_init
	.size	guest_entry, . - guest_entry

/*G:020 The patch templates.  On real hardware "cli" is one byte; for a Guest
 * in ring 1 it is a #GP, because the Guest may not touch the real IF flag.
 * lguest's Guest keeps its interrupt flag in lguest_data.irq_enabled instead,
 * so disabling interrupts is a store to memory.  Calling a function for every
 * cli would be slow, so the kernel patches the instructions in place: each
 * template below sits between an lgstart_ and an lgend_ label, and the bytes
 * between them are copied over a call site that has room for them.
 * irq_enabled is the first field of lguest_data, so its address is simply
 * lguest_data.  They live in .text (not in discarded init code) because a
 * kernel would need them again to patch modules loaded later. */
#define LGUEST_PATCH(name, insns...)			\
	.type lgstart_##name, @function;		\
	lgstart_##name:	insns; lgend_##name:;		\
	.size lgstart_##name, lgend_##name - lgstart_##name; \
	.globl lgstart_##name; .globl lgend_##name

	.text
LGUEST_PATCH(cli, movl $0, lguest_data + LGUEST_DATA_irq_enabled)
LGUEST_PATCH(sti, movl $X86_EFLAGS_IF, lguest_data + LGUEST_DATA_irq_enabled)
LGUEST_PATCH(popf, movl %eax, lguest_data + LGUEST_DATA_irq_enabled)
LGUEST_PATCH(pushf, movl lguest_data + LGUEST_DATA_irq_enabled, %eax)
/*:*/

/*G:030 Call sites.  A paravirt kernel compiles each interrupt-flag operation
 * as a small, fixed-size site and records it in the .parainstructions table:
 * where it is, which operation it performs, and how long it is.  Ours start
 * out holding the native instruction padded with NOPs (ten bytes for cli and
 * sti, five for popf and pushf: the length of the template they will receive).
 * Left unpatched, the cli and sti sites would #GP in ring 1, so forgetting to
 * patch is not a silent bug here either. */
.macro PARAVIRT_SITE_END start:req, type:req, size:req
	.ifgt	(\start + \size) - .
	.fill	(\start + \size) - ., 1, 0x90
	.endif
.Lsite_end\@:
	.pushsection .parainstructions, "a"
	.long	\start
	.byte	\type
	.byte	.Lsite_end\@ - \start
	.short	0				/* clobbers: unused */
	.popsection
.endm

.macro CLI_SITE
.Lcli\@:	cli
	PARAVIRT_SITE_END .Lcli\@, PARAVIRT_irq_disable, 10
.endm

.macro STI_SITE
.Lsti\@:	sti
	PARAVIRT_SITE_END .Lsti\@, PARAVIRT_irq_enable, 10
.endm

.macro POPF_SITE
.Lpopf\@:	pushl	%eax
	popfl
	PARAVIRT_SITE_END .Lpopf\@, PARAVIRT_restore_fl, 5
.endm

.macro PUSHF_SITE
.Lpushf\@:	pushfl
	popl	%eax
	PARAVIRT_SITE_END .Lpushf\@, PARAVIRT_save_fl, 5
.endm
/*:*/

	.globl	iret_init
	.type	iret_init, @function
iret_init:
	hcall	LHCALL_LGUEST_INIT, $__PA(lguest_data)
	PRINT	"iret: patching paravirt call sites\n"
	call	apply_paravirt
	PRINT	"iret: "
	PRINT_DEC patched_sites
	PRINT	" sites patched; taking "
	PRINT_DEC $TICKS
	PRINT	" clock interrupts in main_loop\n"

	SET_GATE FIRST_EXTERNAL_VECTOR + 0, timer_interrupt, INTERRUPT_GATE
	UNBLOCK_IRQ 0
	hcall	LHCALL_SET_CLOCKEVENT, $TICK_NS
	STI_SITE

/*G:040 The main loop runs with interrupts enabled, so the clock can land
 * anywhere in it.  Each pass reads the flags (pushf site), disables
 * interrupts for a short critical section (cli site), restores the flags
 * (popf site) and then does some busy work.  main_loop is reached exactly
 * once per pass, which makes it a good place for a debugger to stop. */
	.globl	main_loop
	.size	iret_init, . - iret_init
	.type	main_loop, @function
main_loop:
	PUSHF_SITE
	testl	$X86_EFLAGS_IF, %eax
	jz	irqs_off_in_main_loop
	CLI_SITE
	incl	loops
	POPF_SITE
	movl	$SPIN, %ecx
1:	addl	%ecx, spin_sum
	loop	1b
	cmpl	$TICKS, ticks
	jb	main_loop
/*:*/

	PRINT	"iret: "
	PRINT_DEC ticks
	PRINT	" ticks in "
	PRINT_DEC loops
	PRINT	" passes of main_loop, every one returned through lguest_iret\n"
	POWER_OFF

	.size	main_loop, . - main_loop
	.type	irqs_off_in_main_loop, @function
irqs_off_in_main_loop:
	CRASH_MSG "interrupts found disabled at the top of main_loop"
	.size	irqs_off_in_main_loop, . - irqs_off_in_main_loop

/*G:050 apply_paravirt walks .parainstructions and lets lguest_patch rewrite
 * each site; whatever the patch did not fill is padded with NOPs, so
 * execution still falls through to the instruction after the site.  This
 * runs before interrupts are ever enabled, so nobody can be executing a site
 * while we rewrite it. */
	.globl	apply_paravirt
	.type	apply_paravirt, @function
apply_paravirt:
	pushal
	cld
	movl	$__parainstructions, %ebx
1:	cmpl	$__parainstructions_end, %ebx
	jae	3f
	movl	(%ebx), %edi			/* site address */
	movzbl	4(%ebx), %eax			/* type */
	movzbl	5(%ebx), %ecx			/* length */
	pushl	%ecx
	pushl	%edi
	call	lguest_patch			/* EAX = bytes used */
	popl	%edi
	popl	%ecx
	addl	%eax, %edi
	subl	%eax, %ecx
	movb	$0x90, %al			/* nop */
	rep stosb
	addl	$PARAINSTR_SIZE, %ebx
	jmp	1b
3:	jmp	4f				/* modified code: serialise */
4:	popal
	ret
	.size	apply_paravirt, . - apply_paravirt
/*:*/

/*G:060 lguest_patch(type in EAX, site in EDI, room in ECX) returns how many
 * bytes it wrote.  If we have a template for the operation and the site has
 * room for it, copy it in.  Otherwise leave the site as it is and report it
 * fully used (Linux would fall back to a call to the C version instead). */
	.globl	lguest_patch
	.type	lguest_patch, @function
lguest_patch:
	pushl	%esi
	cmpl	$PARAVIRT_save_fl, %eax
	ja	1f
	movl	patch_templates(, %eax, 8), %esi	/* start */
	testl	%esi, %esi
	jz	1f
	movl	patch_templates + 4(, %eax, 8), %eax	/* end */
	subl	%esi, %eax				/* template length */
	cmpl	%ecx, %eax
	ja	1f
	movl	%eax, %ecx
	rep movsb
	incl	patched_sites
	popl	%esi
	ret
1:	movl	%ecx, %eax
	popl	%esi
	ret
	.size	lguest_patch, . - lguest_patch
/*:*/

/*G:070 The clock handler.  It arrives through an interrupt gate, so the Host
 * has set irq_enabled to 0 and nothing should interrupt us until lguest_iret
 * has finished.  Two things would prove that promise broken, and we check both
 * before touching the stack:
 *  - the interrupted EIP lies inside lguest_noirq_start..lguest_noirq_end:
 *    the previous interrupt's lguest_iret had already re-enabled interrupts
 *    but had not yet executed its iret, and we were injected in between;
 *  - the handler is already running: we were re-entered.
 * Either way the Guest stops with a CRASH naming the problem, instead of
 * quietly stacking one frame on top of another. */
	.globl	timer_interrupt
	.type	timer_interrupt, @function
timer_interrupt:
	cmpl	$lguest_noirq_start, (%esp)
	jb	1f
	cmpl	$lguest_noirq_end, (%esp)
	jb	interrupt_in_noirq_window
1:	btsl	$0, in_timer_interrupt
	jc	timer_reentered
	pushal
	incl	ticks
	PRINT	"tick "
	PRINT_DEC ticks
	PRINT	" interrupted "
	movl	32(%esp), %eax			/* saved EIP, above pushal */
	PRINT_HEX %eax
	PRINT	"\n"
	cmpl	$TICKS, ticks
	jae	2f
	hcall	LHCALL_SET_CLOCKEVENT, $TICK_NS
2:	movl	$0, in_timer_interrupt
	popal
	jmp	lguest_iret
/*:*/

	.size	timer_interrupt, . - timer_interrupt
	.type	interrupt_in_noirq_window, @function
interrupt_in_noirq_window:
	movl	(%esp), %eax
	PRINT	"iret: interrupt delivered at "
	PRINT_HEX %eax
	PRINT	", inside lguest_iret's noirq window\n"
	CRASH_MSG "nested interrupt inside lguest_iret's noirq window"

	.size	interrupt_in_noirq_window, . - interrupt_in_noirq_window
	.type	timer_reentered, @function
timer_reentered:
	movl	(%esp), %eax
	PRINT	"iret: timer interrupt at "
	PRINT_HEX %eax
	PRINT	" while its handler was still running\n"
	CRASH_MSG "timer interrupt re-entered its handler"
	.size	timer_reentered, . - timer_reentered

	.globl	lguest_iret
	.globl	lguest_noirq_start
	.globl	lguest_noirq_end
	.type	lguest_iret, @function
/*G:080 And here is lguest_iret, the Guest's "iret".  At ring 1 the real iret
 * cannot change the interrupt flag, and the real flag is always on anyway; our
 * interrupt state is lguest_data.irq_enabled.  So before the real iret we copy
 * the EFLAGS word of the frame we are returning to into irq_enabled.  We need
 * a register for that, so EAX goes on the stack first, which is why the EFLAGS
 * slot is at 12(%esp) rather than 8.
 *
 * The catch: once the store has put 0x200 into irq_enabled, interrupts are on
 * while we are still on the interrupted context's stack with a frame to pop.
 * An interrupt there would push a new frame on top and, if it kept happening,
 * recurse down the stack.  So the store, the pop and the iret sit between
 * lguest_noirq_start and lguest_noirq_end, addresses we gave the Host in
 * lguest_data: the Host never injects while EIP is inside that range.
 *
 * The store uses %ss: because when returning to user mode DS may already be
 * the user's segment; SS is still the kernel's. */
lguest_iret:
	pushl	%eax
	movl	12(%esp), %eax
lguest_noirq_start:
	movl	%eax, %ss:lguest_data + LGUEST_DATA_irq_enabled
	popl	%eax
	iret
lguest_noirq_end:
	.size	lguest_iret, . - lguest_iret
/*:*/

	CONSOLE_ROUTINES

	.section .rodata, "a"
	.balign	4
/* Templates by operation number: {lgstart_X, lgend_X}. */
patch_templates:
	.long	0, 0
	.long	lgstart_cli, lgend_cli
	.long	lgstart_sti, lgend_sti
	.long	lgstart_popf, lgend_popf
	.long	lgstart_pushf, lgend_pushf

	.data
	.balign	4
	.globl	ticks
ticks:			.long 0
	.globl	loops
loops:			.long 0
spin_sum:		.long 0
patched_sites:		.long 0
in_timer_interrupt:	.long 0

	LGUEST_DATA lguest_noirq_start, lguest_noirq_end
	STACK	stack_top, 8192

	.section .note.GNU-stack, "", @progbits
