/* timer.S - a Guest that sleeps between clock ticks.
 *
 * The clock (virtual irq 0) arrives through an interrupt gate, a second irq
 * (irq 1, vector 0x21) through a trap gate, so one Guest shows both kinds of
 * gate.  Nothing raises irq 1 by itself: try
 *     lgdbg run lgdbg/images/timer.elf --irq 1@600
 * After TICKS ticks the Guest powers off. */
#include "lguest.h"

#define TICKS		5
#define TICK_NS		200000		/* 200 us between ticks */

/*G:010 The Launcher jumps to the byte after the signature.  We give ourselves
 * a stack (the Host starts us with ESP = 0) and go to timer_init. :*/
	.section .init.text, "ax", @progbits
	.ascii	"GenuineLguest"
	.globl	guest_entry
	.type	guest_entry, @function
guest_entry:
	movl	$stack_top, %esp
	movl	%esi, %eax
	addl	$PAGE_OFFSET, %eax
	jmp	timer_init
	.size	guest_entry, . - guest_entry

	.text
	.globl	timer_init
	.type	timer_init, @function
timer_init:
	hcall	LHCALL_LGUEST_INIT, $__PA(lguest_data)
	PRINT	"timer: waiting for 5 clock ticks, sleeping in HALT between them\n"

/*G:020 The Host keeps its own copy of our IDT, so installing a handler is a
 * hypercall per vector, with the two dwords of an ordinary i386 gate.  The
 * gate type matters to the Host: delivering through an interrupt gate (type
 * 0xE) clears lguest_data.irq_enabled, just as the CPU clears IF, so the
 * handler cannot be interrupted; a trap gate (type 0xF) leaves it alone.
 * Virtual irq N is delivered through vector 0x20 + N. */
	SET_GATE FIRST_EXTERNAL_VECTOR + 0, timer_interrupt, INTERRUPT_GATE
	SET_GATE FIRST_EXTERNAL_VECTOR + 1, irq1_trap, TRAP_GATE
/*:*/

/*G:030 Interrupts are masked in two places.  lguest_data.blocked_interrupts
 * is the "interrupt controller": the static value blocks irq 0 until the clock
 * is set up, like lguest_time_init does.  irq_enabled is the "IF flag" and
 * is still 0.  The Host only injects an irq that is neither blocked nor
 * disabled.  With both handlers in place we unblock irqs 0 and 1 and program
 * the first tick: SET_CLOCKEVENT is one-shot, in nanoseconds. */
	UNBLOCK_IRQ 0
	UNBLOCK_IRQ 1
	hcall	LHCALL_SET_CLOCKEVENT, $TICK_NS
/*:*/

/*G:040 The idle loop.  The check "anything left to do?" and going to sleep
 * must not be separated by an interrupt, or we could sleep through the last
 * tick forever.  So, as Linux's idle loop does, we disable interrupts, check,
 * and then HALT.  The Host wakes a halted Guest when an unblocked irq is
 * pending, forces irq_enabled to 0x200 ("sti; hlt" in one step) and delivers
 * it.  The handler returns through lguest_iret, which copies the IF bit of the
 * frame back into irq_enabled, and we come back here after the HALT. */
	.globl	idle_loop
	.size	timer_init, . - timer_init
	.type	idle_loop, @function
idle_loop:
	IRQS_OFF
	cmpl	$TICKS, ticks
	jae	timer_done
	hcall	LHCALL_HALT
	jmp	idle_loop
/*:*/

	.size	idle_loop, . - idle_loop
	.type	timer_done, @function
timer_done:
	PRINT	"timer: "
	PRINT_DEC ticks
	PRINT	" ticks, irq 1 seen "
	PRINT_DEC irq1_count
	PRINT	" times; powering off\n"
	POWER_OFF
	.size	timer_done, . - timer_done

/*G:050 The clock handler.  It came in through an interrupt gate, so the Host
 * has already set irq_enabled to 0 and no second interrupt can arrive until we
 * leave through lguest_iret.  The Host pushed EFLAGS, CS and EIP on our ring 1
 * stack (no error code for an irq); pushal keeps the interrupted registers,
 * which hypercalls would otherwise clobber.  The clock event is one-shot, so
 * each tick arms the next one, until we have had enough. */
	.globl	timer_interrupt
	.type	timer_interrupt, @function
timer_interrupt:
	pushal
	incl	ticks
	PRINT	"tick "
	PRINT_DEC ticks
	PRINT	"\n"
	cmpl	$TICKS, ticks
	jae	1f
	hcall	LHCALL_SET_CLOCKEVENT, $TICK_NS
1:	popal
	jmp	lguest_iret
	.size	timer_interrupt, . - timer_interrupt
/*:*/

/*G:060 The irq 1 handler, installed through a trap gate.  The Host did not
 * touch irq_enabled on the way in, so it still says whatever the interrupted
 * code had (0x200: irq 1 can only be injected while interrupts are enabled, or
 * into a halted Guest, where the Host forces them on).  Printing it shows the
 * difference between the two gates; the clock handler would see 0. */
	.globl	irq1_trap
	.type	irq1_trap, @function
irq1_trap:
	pushal
	incl	irq1_count
	PRINT	"irq 1 via trap gate, irq_enabled="
	PRINT_HEX lguest_data + LGUEST_DATA_irq_enabled
	PRINT	"\n"
	popal
	jmp	lguest_iret
	.size	irq1_trap, . - irq1_trap
/*:*/

	LGUEST_IRET
	CONSOLE_ROUTINES

	.data
	.balign	4
	.globl	ticks
ticks:		.long 0
	.globl	irq1_count
irq1_count:	.long 0

	LGUEST_DATA lguest_noirq_start, lguest_noirq_end
	STACK	stack_top, 8192

	.section .note.GNU-stack, "", @progbits
