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

/* clone with CLONE_PIDFD writes a pidfd to parent_tid.  (A child that does
 * not share our memory runs fn without passing back through here: its
 * database keeps the parent's pid until its next fork or exec.) */
#define HOOK_CLONE(name)                                                        \
	AGENT_EXPORT int name(int (*fn)(void *), void *stack, int flags, void *arg, ...) \
	{                                                                       \
		va_list ap;                                                     \
		va_start(ap, arg);                                              \
		pid_t *parent_tid = va_arg(ap, pid_t *);                        \
		void *tls = va_arg(ap, void *);                                 \
		pid_t *child_tid = va_arg(ap, pid_t *);                         \
		va_end(ap);                                                     \
		__typeof__(&name) real = REAL(name);                            \
		RETURN_IF_MISSING(real, -1);                                    \
		int pid = real(fn, stack, flags, arg, parent_tid, tls, child_tid); \
		if (pid > 0 && (flags & CLONE_PIDFD) && parent_tid)             \
			KEEP_ERRNO(engine_opened(*parent_tid, HTRACE_API_##name, 0)); \
		return pid;                                                     \
	}

HOOK_CLONE(clone)
HOOK_CLONE(__clone)

pid_t _Fork(void);

AGENT_EXPORT pid_t _Fork(void)
{
	static pid_t (*real)(void);
	if (!real)
		real = (pid_t(*)(void))dlsym(RTLD_NEXT, "_Fork");
	RETURN_IF_MISSING(real, -1);
	pid_t pid = real();
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
