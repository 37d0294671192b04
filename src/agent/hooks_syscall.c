/* The hook of syscall(): a program that makes a descriptor system call
 * itself goes around every other hook, so the numbers listed in apis.def's
 * SYSCALL rows are decoded here, with the same effects as their wrappers. */
#include <fcntl.h>
#include <stdarg.h>
#include <asm/unistd.h>
#include <linux/bpf.h>
#include <linux/landlock.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sys/uio.h>

#include "hooks.h"

enum syscall_effect {
	SC_NONE,
	SC_FD_RESULT,
	SC_PAIR_ARG0,
	SC_PAIR_ARG3,
	SC_DUP_TO_ARG1,
	SC_FCNTL,
	SC_SIGNALFD,
	SC_RECVMSG,
	SC_RECVMMSG,
	SC_CLOSE_ARG0,
	SC_CLOSE_RANGE,
	SC_CLONE,
	SC_CLONE3,
	SC_SECCOMP,
	SC_BPF,
	SC_LANDLOCK,
};

static enum syscall_effect effect_of(long nr, unsigned *api)
{
	switch (nr) {
#define HOOK(name, shape, ret, params, args, what)
#define SYSCALL(name, effect, what) \
	case __NR_##name:           \
		*api = HTRACE_API_SYS_##name; \
		return effect;
#include "htrace/apis.def"
#undef HOOK
#undef SYSCALL
	default:
		return SC_NONE;
	}
}

/* Effects that happen before the call: closes. */
static void before(enum syscall_effect effect, unsigned api, const long *a)
{
	if (effect == SC_CLOSE_ARG0)
		engine_closing((int)a[0], api, 0);
	else if (effect == SC_CLOSE_RANGE)
		record_range_closing((unsigned)a[0], (unsigned)a[1], (int)a[2], api);
}

static void record_pair_at(long addr, unsigned api)
{
	const int *fds = (const int *)addr;
	engine_opened(fds[0], api, 0);
	engine_opened(fds[1], api, 0);
}

/* clone and clone3 return 0 in the child, which has its own copy of the
 * database unless it shares our memory. */
static int is_clone(enum syscall_effect effect)
{
	return effect == SC_CLONE || effect == SC_CLONE3;
}

/* The flags before the call: clone3's pointer may be anything (a program
 * probing for clone3 passes NULL), so its flags are copied without being
 * dereferenced; when it is not readable the kernel answers EFAULT, and 0
 * is as good as any.  Where the copy itself is refused (a seccomp policy
 * without process_vm_readv), the pointer is read only if its memory is
 * mapped. */
static uint64_t clone_flags_before(enum syscall_effect effect, const long *a)
{
	if (effect == SC_CLONE)
		return (uint64_t)a[0];
	uint64_t flags = 0;
	if ((unsigned long)a[1] < sizeof(flags))
		return 0;
	long copied = raw_copy_in(&flags, (const void *)a[0], sizeof(flags));
	if (copied == 0)
		return flags;
	if (copied != -EFAULT && raw_is_mapped((const void *)a[0], sizeof(flags)))
		return ((const struct clone_args *)a[0])->flags;
	return 0;
}

/* syscall(SYS_fork): a fork that runs no pthread_atfork handler (as
 * _Fork), made whether tracing is on or not. */
static long fork_by_syscall(__typeof__(&syscall) real)
{
	forksafe_before_fork();
	long pid = real(__NR_fork);
	if (pid == 0)
		KEEP_ERRNO(agent_after_fork_child());
	return pid;
}

/* flags: clone_flags_before's (the kernel read the same ones: the call
 * succeeded). */
static void after_clone(enum syscall_effect effect, unsigned api, const long *a, long result,
			uint64_t flags)
{
	if (result == 0) {
		if (!(flags & CLONE_VM))
			agent_after_fork_child();
		return;
	}
	if (!(flags & CLONE_PIDFD))
		return;
	const int *pidfd = effect == SC_CLONE ? (const int *)a[2]
					      : (const int *)((const struct clone_args *)a[0])->pidfd;
	engine_opened(*pidfd, api, 0);
}

/* The bpf() commands whose result is a new descriptor.  BPF_TOKEN_CREATE
 * (kernel 6.9) follows the last command of older headers; enum bpf_cmd
 * numbers are ABI, so it is named by number when the headers lack it. */
#define HTRACE_BPF_TOKEN_CREATE (BPF_PROG_BIND_MAP + 1)

static int bpf_cmd_opens(int cmd)
{
	switch (cmd) {
	case BPF_MAP_CREATE: case BPF_PROG_LOAD: case BPF_OBJ_GET:
	case BPF_PROG_GET_FD_BY_ID: case BPF_MAP_GET_FD_BY_ID:
	case BPF_RAW_TRACEPOINT_OPEN: case BPF_BTF_LOAD: case BPF_BTF_GET_FD_BY_ID:
	case BPF_LINK_CREATE: case BPF_LINK_GET_FD_BY_ID: case BPF_ENABLE_STATS:
	case BPF_ITER_CREATE: case HTRACE_BPF_TOKEN_CREATE:
		return 1;
	default:
		return 0;
	}
}

/* landlock_create_ruleset flags that ask for information (ABI version,
 * errata) instead of creating a ruleset. */
#ifdef LANDLOCK_CREATE_RULESET_ERRATA
#define LANDLOCK_QUERY_FLAGS (LANDLOCK_CREATE_RULESET_VERSION | LANDLOCK_CREATE_RULESET_ERRATA)
#else
#define LANDLOCK_QUERY_FLAGS (LANDLOCK_CREATE_RULESET_VERSION | (1U << 1))
#endif

/* What the hook learns before the call and needs after it. */
struct before_call {
	uint64_t clone_flags; /* clone_flags_before, for a clone */
	int dup_untracked; /* engine_open_untracked of a dup's target */
};

/* Effects that happen after a successful call: new descriptors. */
static void after(enum syscall_effect effect, unsigned api, const long *a, long result,
		  const struct before_call *b)
{
	if (is_clone(effect)) {
		after_clone(effect, api, a, result, b->clone_flags);
		return;
	}
	if (effect == SC_CLOSE_RANGE) {
		record_range_closed_unshared((unsigned)a[0], (unsigned)a[1], (int)a[2], api);
		return;
	}
	switch (effect) {
	case SC_FD_RESULT:
		note_fanotify_group(api);
		engine_opened((int)result, api, 0);
		break;
	case SC_PAIR_ARG0:
		record_pair_at(a[0], api);
		break;
	case SC_PAIR_ARG3:
		record_pair_at(a[3], api);
		break;
	case SC_DUP_TO_ARG1:
		if ((unsigned)a[0] != (unsigned)a[1])
			record_dup_onto((int)result, api, b->dup_untracked);
		break;
	case SC_FCNTL:
		if (a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC)
			engine_opened((int)result, api, 0);
		break;
	case SC_SIGNALFD:
		if ((int)a[0] == -1)
			engine_opened((int)result, api, 0);
		break;
	case SC_RECVMSG:
		record_received_fds((const struct msghdr *)a[1], api);
		break;
	case SC_RECVMMSG:
		for (long i = 0; i < result; i++)
			record_received_fds(&((const struct mmsghdr *)a[1])[i].msg_hdr, api);
		break;
	case SC_SECCOMP:
		if ((unsigned)a[0] == SECCOMP_SET_MODE_FILTER &&
		    ((unsigned)a[1] & SECCOMP_FILTER_FLAG_NEW_LISTENER))
			engine_opened((int)result, api, 0);
		break;
	case SC_BPF:
		if (bpf_cmd_opens((int)a[0]))
			engine_opened((int)result, api, 0);
		break;
	case SC_LANDLOCK:
		if (!((unsigned)a[2] & LANDLOCK_QUERY_FLAGS))
			engine_opened((int)result, api, 0);
		break;
	default:
		break;
	}
}

/* libunwind checks that an address is readable by writing one byte of it
 * to a pipe of its own, through syscall(SYS_write); it is refused that pipe
 * (refuse_unwinder), so the check is answered here, without a descriptor,
 * by reading the byte with process_vm_readv. */
static long validate_for_unwinder(const void *addr)
{
	char byte;
	long rc = raw_copy_in(&byte, addr, 1);
	if (rc == 0 || rc == -ENOSYS || rc == -EPERM)
		return 1; /* readable, or no way to tell: trust libunwind's mincore */
	errno = EFAULT;
	return -1;
}

AGENT_EXPORT long syscall(long nr, ...)
{
	long a[6];
	va_list ap;
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == __NR_write && agent_self.unwinding &&
	    stack_caller_is_unwinder(__builtin_return_address(0)))
		return validate_for_unwinder((const void *)a[1]);
	__typeof__(&syscall) real = REAL(syscall);
	RETURN_IF_MISSING(real, -1);
	if (nr == __NR_fork)
		return fork_by_syscall(real);
	unsigned api = 0;
	enum syscall_effect effect = effect_of(nr, &api);
	if (!is_clone(effect)) /* a clone sharing our memory is marked even so */
		RETURN_IF_QUIET(real(nr, a[0], a[1], a[2], a[3], a[4], a[5]));
	if (effect != SC_NONE)
		KEEP_ERRNO(before(effect, api, a));
	struct before_call b = {
		.clone_flags = is_clone(effect) ? clone_flags_before(effect, a) : 0,
		.dup_untracked = effect == SC_DUP_TO_ARG1 && (unsigned)a[0] != (unsigned)a[1] &&
				 engine_open_untracked((int)a[1]),
	};
	if (is_clone(effect) && !(b.clone_flags & CLONE_VM))
		forksafe_before_fork(); /* a fork child: the loader lock's holder matters */
	/* with CLONE_VM and CLONE_VFORK, the child runs on our memory until it
	 * execs, as after vfork */
	int borrowed = (b.clone_flags & CLONE_VM) && (b.clone_flags & CLONE_VFORK);
	if (borrowed)
		htrace_in_vfork = 1;
	long result = real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (borrowed && result != 0)
		htrace_in_vfork = 0;
	if (effect != SC_NONE && result >= 0)
		KEEP_ERRNO(after(effect, api, a, result, &b));
	return result;
}
