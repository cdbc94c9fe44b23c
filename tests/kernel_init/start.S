/* start.S: process entry, the raw system call, the signal restorer and a
 * one-instruction memory probe, for the freestanding /init programs. */

	.text

/* The kernel starts a process with %esp at argc, then argv[], NULL, envp[],
 * NULL, auxv.  start_c(sp) finds them; the stack is 16-byte aligned first
 * because gcc's code assumes it at calls. */
	.globl	_start
	.type	_start, @function
_start:
	xorl	%ebp, %ebp
	movl	%esp, %eax
	andl	$-16, %esp
	subl	$12, %esp
	pushl	%eax
	call	start_c
	hlt				/* start_c never returns; hlt faults if it did */

/* long raw_syscall(long nr, long a1, ..., long a6)
 * i386 convention: eax = nr, ebx ecx edx esi edi ebp = a1..a6, result in eax.
 * In assembly because the sixth argument needs %ebp, which inline asm cannot
 * reliably claim.  fork returns twice through here: fine, nothing below
 * depends on which process we are. */
	.globl	raw_syscall
	.type	raw_syscall, @function
raw_syscall:
	pushl	%ebp
	pushl	%edi
	pushl	%esi
	pushl	%ebx
	movl	20(%esp), %eax
	movl	24(%esp), %ebx
	movl	28(%esp), %ecx
	movl	32(%esp), %edx
	movl	36(%esp), %esi
	movl	40(%esp), %edi
	movl	44(%esp), %ebp
	int	$0x80
	popl	%ebx
	popl	%esi
	popl	%edi
	popl	%ebp
	ret

/* sa_restorer for SA_SIGINFO handlers: the handler returns here, with %esp
 * at the rt signal frame's ucontext, and rt_sigreturn restores the registers
 * (including any the handler changed in the ucontext).  We give our own so
 * as not to depend on the kernel's vDSO. */
	.globl	restore_rt
	.type	restore_rt, @function
restore_rt:
	movl	$173, %eax		/* SYS_rt_sigreturn */
	int	$0x80
	hlt

/* u32 probe_read(const volatile u32 *p): the load is at the global label
 * probe_load, so a SIGSEGV handler that sees eip == probe_load can resume
 * at probe_done with an eax of its choosing. */
	.globl	probe_read, probe_load, probe_done
	.type	probe_read, @function
probe_read:
	movl	4(%esp), %edx
probe_load:
	movl	(%edx), %eax
probe_done:
	ret

	.section .note.GNU-stack, "", @progbits
