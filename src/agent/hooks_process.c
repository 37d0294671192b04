/* Hooks of the calls that rearrange descriptors inside libc, where no
 * individual call reaches us: openpty, forkpty, login_tty and daemon; and
 * _Fork, which skips the pthread_atfork handlers through which the agent
 * learns of every other fork.  vfork is in vfork.S. */
#include <dlfcn.h>
#include <sched.h>
#include <stdarg.h>
#include <unistd.h>

#include "hooks.h"

AGENT_EXPORT int openpty(int *amaster, int *aslave, char *name, const struct termios *t,
			 const struct winsize *w)
{
	__typeof__(&openpty) real = REAL(openpty);
	RETURN_IF_MISSING(real, -1);
	int result = real(amaster, aslave, name, t, w);
	if (result == 0)
		KEEP_ERRNO({
			engine_opened(*amaster, HTRACE_API_openpty, 0);
			engine_opened(*aslave, HTRACE_API_openpty, 0);
		});
	return result;
}

static void close_if_kernel_closed(int fd, void *api)
{
	if (!raw_fd_is_open(fd))
		engine_closing(fd, (unsigned)(uintptr_t)api, HTRACE_EV_IMPLICIT);
}

void record_std_replaced(unsigned api)
{
	KEEP_ERRNO({
		for (int fd = 0; fd <= 2; fd++)
			engine_resync(fd, api);
		engine_for_each_open(close_if_kernel_closed, (void *)(uintptr_t)api);
	});
}

AGENT_EXPORT int login_tty(int fd)
{
	__typeof__(&login_tty) real = REAL(login_tty);
	RETURN_IF_MISSING(real, -1);
	int result = real(fd);
	if (result == 0) /* it fails before it touches 0-2 (not a terminal) */
		record_std_replaced(HTRACE_API_login_tty);
	return result;
}

AGENT_EXPORT pid_t forkpty(int *amaster, char *name, const struct termios *t,
			   const struct winsize *w)
{
	__typeof__(&forkpty) real = REAL(forkpty);
	RETURN_IF_MISSING(real, -1);
	pid_t pid = real(amaster, name, t, w);
	if (pid == 0)
		record_std_replaced(HTRACE_API_forkpty);
	else if (pid > 0)
		KEEP_ERRNO(engine_opened(*amaster, HTRACE_API_forkpty, 0));
	return pid;
}

/* daemon returns only in the detached child, where 0-2 now point at
 * /dev/null unless noclose. */
AGENT_EXPORT int daemon(int nochdir, int noclose)
{
	__typeof__(&daemon) real = REAL(daemon);
	RETURN_IF_MISSING(real, -1);
	int result = real(nochdir, noclose);
	if (result == 0 && !noclose)
		record_std_replaced(HTRACE_API_daemon);
	return result;
}

/* A clone child that does not share our memory is a fork child: it must
 * reset its database as one before running fn.  Its start record sits at
 * the top of the child's own stack, so nothing is allocated. */
struct clone_start {
	int (*fn)(void *);
	void *arg;
};

static int clone_child_start(void *record)
{
	struct clone_start start = *(struct clone_start *)record;
	agent_after_fork_child();
	return start.fn(start.arg);
}

static pid_t (*real_fork_syscall)(void);

void hooks_process_init(void)
{
	real_fork_syscall = (pid_t(*)(void))dlsym(RTLD_NEXT, "_Fork");
}

/* clone: with CLONE_PIDFD the parent gets a pidfd in *parent_tid; with
 * CLONE_VFORK the child borrows our memory until it execs or exits, as
 * after vfork; without CLONE_VM the child is a fork child. */
static int clone_hooked(int (*real)(int (*)(void *), void *, int, void *, ...), unsigned api,
			int (*fn)(void *), void *stack, int flags, void *arg, pid_t *parent_tid,
			void *tls, pid_t *child_tid)
{
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	if (!(flags & CLONE_VM))
		forksafe_before_fork(); /* a fork child: the loader lock's holder matters */
	if (!(flags & CLONE_VM) && stack && fn) {
		uintptr_t top = ((uintptr_t)stack - sizeof(struct clone_start)) & ~(uintptr_t)15;
		struct clone_start *start = (struct clone_start *)top;
		start->fn = fn;
		start->arg = arg;
		fn = clone_child_start;
		arg = start;
		stack = start;
	}
	int borrowed = (flags & CLONE_VM) && (flags & CLONE_VFORK);
	if (borrowed)
		htrace_in_vfork = 1;
	int pid = real(fn, stack, flags, arg, parent_tid, tls, child_tid);
	if (borrowed)
		htrace_in_vfork = 0;
	if (pid > 0 && (flags & CLONE_PIDFD) && parent_tid)
		KEEP_ERRNO(engine_opened(*parent_tid, api, 0));
	return pid;
}

#define HOOK_CLONE(name)                                                        \
	AGENT_EXPORT int name(int (*fn)(void *), void *stack, int flags, void *arg, ...) \
	{                                                                       \
		va_list ap;                                                     \
		va_start(ap, arg);                                              \
		pid_t *parent_tid = va_arg(ap, pid_t *);                        \
		void *tls = va_arg(ap, void *);                                 \
		pid_t *child_tid = va_arg(ap, pid_t *);                         \
		va_end(ap);                                                     \
		return clone_hooked(REAL(name), HTRACE_API_##name, fn, stack, flags, arg, \
				    parent_tid, tls, child_tid);                \
	}

HOOK_CLONE(clone)
HOOK_CLONE(__clone)

pid_t _Fork(void);

AGENT_EXPORT pid_t _Fork(void)
{
	RETURN_IF_MISSING(real_fork_syscall, -1);
	forksafe_before_fork(); /* _Fork runs no pthread_atfork handler */
	pid_t pid = real_fork_syscall();
	if (pid == 0)
		KEEP_ERRNO(agent_after_fork_child());
	return pid;
}

/* The error path of vfork.S. */
AGENT_HIDDEN pid_t agent_vfork_failed(int error)
{
	errno = error;
	return -1;
}
