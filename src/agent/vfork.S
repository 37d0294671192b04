/* vfork for the agent: the child shares the parent's memory, so it must not
 * touch the database; htrace_in_vfork (thread-local, shared with the
 * parent until the child execs or exits) tells the hooks to record nothing,
 * and the parent clears it when it resumes.  The return address is kept in
 * a register, because the child may overwrite the shared stack. */
	.text
	.globl vfork
	.globl __vfork
	.type vfork, @function
	.type __vfork, @function
vfork:
__vfork:
	.cfi_startproc
	movq	htrace_in_vfork@gottpoff(%rip), %rax
	movl	$1, %fs:(%rax)
	popq	%rdi
	.cfi_adjust_cfa_offset -8
	.cfi_register rip, rdi
	movl	$58, %eax		/* SYS_vfork */
	syscall
	pushq	%rdi
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rip, 0
	testl	%eax, %eax
	jz	1f			/* the child keeps the flag */
	movq	htrace_in_vfork@gottpoff(%rip), %rdx
	movl	$0, %fs:(%rdx)
	cmpq	$-4095, %rax
	jae	2f
1:	ret
2:	negl	%eax
	movl	%eax, %edi
	jmp	agent_vfork_failed
	.cfi_endproc
	.size vfork, .-vfork
	.size __vfork, .-__vfork
	.section .note.GNU-stack, "", @progbits
