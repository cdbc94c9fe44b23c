/* fpu.S: void fpu_sse_run(struct fpu_job *job)
 *
 * The x87 and SSE work of the "fpu" check, in assembly so that its state
 * lives in the FPU registers across the yields, where a kernel that lets two
 * processes share one FPU would lose it.  C code never touches the FPU here
 * (the C files are built with -mno-sse -mno-mmx and use no floating point),
 * so the x87 stack and the xmm registers stay ours across the callback.
 *
 * Per iteration, with the job's rounding/precision settings:
 *   x87:  term = sqrt(term * a + b); sum += term   (st0 sum, st1 term, st2 a, st3 b)
 *   SSE:  the same in single precision            (xmm0 sum, xmm3 term, xmm1 a, xmm2 b)
 * The term converges, but the sum keeps every term's low bits, so a register
 * lost or swapped at any point changes the final sums.  After each yield the
 * control word and MXCSR are read back and compared with the job's.
 *
 * struct fpu_job (selftest.c, offsets checked there with _Static_assert):
 *   0 cw   4 mxcsr   8 a (double)   16 b (double)   24 sa (float)   28 sb (float)
 *   32 iterations   36 yield(u32 i) or 0   40 x87 sum (80-bit)   52 sse sum (float)
 *   56 bad (count of wrong cw/mxcsr read-backs)   60 seen_cw   64 seen_mxcsr
 */
	.text
	.globl	fpu_sse_run
	.type	fpu_sse_run, @function
fpu_sse_run:
	pushl	%ebp
	pushl	%edi
	pushl	%esi
	pushl	%ebx
	movl	20(%esp), %esi		/* job */
	fninit
	fldcw	0(%esi)
	ldmxcsr	4(%esi)
	fldl	16(%esi)		/* b */
	fldl	8(%esi)			/* a, b */
	fld1				/* term = 1, a, b */
	fldz				/* sum = 0, term, a, b */
	xorps	%xmm0, %xmm0		/* sum = 0 */
	movss	one_f, %xmm3		/* term = 1 */
	movss	24(%esi), %xmm1		/* a */
	movss	28(%esi), %xmm2		/* b */
	xorl	%edi, %edi		/* i */
	cmpl	$0, 32(%esi)
	je	3f
1:
	fxch	%st(1)			/* term, sum, a, b */
	fmul	%st(2), %st		/* term *= a */
	fadd	%st(3), %st		/* term += b */
	fsqrt
	fadd	%st, %st(1)		/* sum += term */
	fxch	%st(1)			/* sum, term, a, b */

	mulss	%xmm1, %xmm3
	addss	%xmm2, %xmm3
	sqrtss	%xmm3, %xmm3
	addss	%xmm3, %xmm0

	movl	36(%esi), %eax
	testl	%eax, %eax
	jz	2f
	subl	$12, %esp		/* keep the C callee's stack 16-byte aligned */
	pushl	%edi
	call	*%eax			/* yield(i): other processes run here */
	addl	$16, %esp

	/* Still our control word (precision and rounding, the exception masks;
	 * reserved bits ignored) and our MXCSR (exception flags ignored, they
	 * are sticky and set by the arithmetic itself)? */
	subl	$8, %esp
	fnstcw	(%esp)
	stmxcsr	4(%esp)
	movzwl	(%esp), %eax
	movl	0(%esi), %edx
	xorl	%eax, %edx
	testl	$0x0f3f, %edx
	jnz	4f
	movl	4(%esp), %eax
	movl	4(%esi), %edx
	xorl	%eax, %edx
	testl	$0xffc0, %edx
	jz	5f
4:	incl	56(%esi)
	movzwl	(%esp), %eax
	movl	%eax, 60(%esi)
	movl	4(%esp), %eax
	movl	%eax, 64(%esi)
5:	addl	$8, %esp
2:
	incl	%edi
	cmpl	32(%esi), %edi
	jb	1b
3:
	fstpt	40(%esi)		/* sum, 80 bits */
	fstp	%st(0)			/* term */
	fstp	%st(0)			/* a */
	fstp	%st(0)			/* b: the x87 stack is empty again */
	movss	%xmm0, 52(%esi)
	popl	%ebx
	popl	%esi
	popl	%edi
	popl	%ebp
	ret

	.section .rodata
	.balign	4
one_f:	.long	0x3f800000		/* 1.0f */

	.section .note.GNU-stack, "", @progbits
