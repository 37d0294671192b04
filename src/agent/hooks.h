/* What every hook file of the agent shares: the declarations of the
 * interposed functions as apis.def spells them, REAL(name) to reach the next
 * definition (libc's), and the guards that keep hooks transparent: errno
 * preserved, nothing recorded in a vfork child, the unwinder refused the
 * descriptors it would create while we unwind. */
#ifndef HTRACE_HOOKS_H
#define HTRACE_HOOKS_H

#include <dirent.h>
#include <errno.h>
#include <mqueue.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <termios.h>

#include "agent.h"
#include "table.h"

struct file_handle;
struct winsize;

/* Each row of apis.def, declared as we define it (compatible with libc's
 * own declarations where it has them). */
#define HOOK(name, shape, ret, params, args, what) ret name params;
#define SYSCALL(name, effect, what)
#include "htrace/apis.def"
#undef HOOK
#undef SYSCALL

/* The next definition of each api's function (libc's), resolved on first
 * use by real_function_first (out of line); NULL when libc has none. */
extern void *real_functions[HTRACE_API_COUNT] AGENT_HIDDEN;
void *real_function_first(unsigned api) AGENT_HIDDEN __attribute__((cold, noinline));

static inline void *real_function(unsigned api)
{
	void *fn = __atomic_load_n(&real_functions[api], __ATOMIC_ACQUIRE);
	return __builtin_expect(fn != NULL, 1) ? fn : real_function_first(api);
}
#define REAL(name) ((__typeof__(&name))real_function(HTRACE_API_##name))

/* errno = ENOSYS, out of line (errno's address is a call). */
void missing_function(void) AGENT_HIDDEN __attribute__((cold, noinline));

/* Returns from a hook whose libc function does not exist. */
#define RETURN_IF_MISSING(fn, failure)          \
	do {                                    \
		if (__builtin_expect(!(fn), 0)) {  \
			missing_function();     \
			return failure;         \
		}                               \
	} while (0)

/* Recording around a real call must leave errno as the real call set it.
 * (errno's address is asked for once: __errno_location is a call.) */
#define KEEP_ERRNO(stmt)                                \
	do {                                            \
		int *errno_at_ = &errno;                \
		int saved_errno_ = *errno_at_;          \
		stmt;                                   \
		*errno_at_ = saved_errno_;              \
	} while (0)

/* While tracing is off (hooks_quiet, table.h) a hook returns call, its
 * libc function's, as a tail call: nothing is recorded or looked at.  For
 * the hooks that cannot be split (HOOK_SPLIT, below): those with variable
 * arguments, and freopen's shared body. */
#define RETURN_IF_QUIET(call)                   \
	do {                                    \
		if (hooks_quiet())              \
			return call;            \
	} while (0)

/* A hook in two parts: the exported function, which while tracing is off
 * calls libc's function as a tail call and nothing else, and else
 * traced_NAME(args), the hook's work, also as a tail call.  Out of line,
 * the work neither makes the quiet path save registers nor breaks the
 * chain of frame pointers that stacks are taken along.  The first call
 * resolves libc's function in unresolved_NAME, again by a tail call. */
#define HOOK_SPLIT(name, ret, params, args, missing)                        \
	HOOK_UNRESOLVED(name, ret, params, args, missing)                   \
	AGENT_EXPORT ret name params                                        \
	{                                                                   \
		HOOK_QUIET_OR_TRACED(name, args)                            \
	}

/* HOOK_SPLIT for the calls the unwinder makes (pipe, pipe2): while the
 * thread unwinds, the exported function hands its return address to
 * refusing_NAME, which refuses the unwinder's call (unwinder_refused) and
 * lets any other through, with tracing on or off. */
#define HOOK_SPLIT_UNWINDER(name, ret, params, args, missing)               \
	HOOK_UNRESOLVED(name, ret, params, args, missing)                   \
	static __attribute__((cold, noinline)) ret refusing_##name(        \
		const void *caller, HOOK_PARAMS params)                     \
	{                                                                   \
		if (unwinder_refused(caller))                               \
			return missing;                                     \
		return unresolved_##name args;                              \
	}                                                                   \
	AGENT_EXPORT ret name params                                        \
	{                                                                   \
		if (__builtin_expect(agent_self.unwinding, 0))              \
			return refusing_##name HOOK_WITH_CALLER args;       \
		HOOK_QUIET_OR_TRACED(name, args)                            \
	}

#define HOOK_PARAMS(...) __VA_ARGS__
#define HOOK_WITH_CALLER(...) (__builtin_return_address(0), __VA_ARGS__)

/* The whole hook, out of line: on the first call, or when refusing_NAME
 * lets a call through. */
#define HOOK_UNRESOLVED(name, ret, params, args, missing)                   \
	static __attribute__((cold, noinline)) ret unresolved_##name params \
	{                                                                   \
		__typeof__(&name) real = REAL(name);                        \
		RETURN_IF_MISSING(real, missing);                           \
		if (hooks_quiet())                                          \
			return real args;                                   \
		return traced_##name args;                                  \
	}

#define HOOK_QUIET_OR_TRACED(name, args)                                    \
	__typeof__(&name) real = (__typeof__(&name))__atomic_load_n(        \
		&real_functions[HTRACE_API_##name], __ATOMIC_ACQUIRE);      \
	if (__builtin_expect(!real, 0))                                     \
		return unresolved_##name args;                              \
	if (hooks_quiet())                                                  \
		return real args;                                           \
	return traced_##name args;

/* A call returned the new descriptor fd: its OPEN. */
void record_opened(int fd, unsigned api) AGENT_HIDDEN;

/* dup2, dup3 (or a syscall doing their work) succeeded onto newfd: its old
 * descriptor was closed, a new one is there.  Its close can only be
 * recorded once the call has succeeded (recording it before would be wrong
 * when the call fails and newfd stays open).  was_open_untracked: what
 * engine_open_untracked(newfd) said before the call. */
void record_dup_onto(int newfd, unsigned api, int was_open_untracked) AGENT_HIDDEN;

/* refuse_unwinder's part while this thread unwinds (out of line). */
int unwinder_refused(const void *caller) AGENT_HIDDEN __attribute__((noinline));

/* True (errno EMFILE) when this call comes from the unwinder while this
 * thread unwinds: it must not create a descriptor (nor deadlock in us). */
static inline int refuse_unwinder(const void *caller)
{
	return __builtin_expect(agent_self.unwinding, 0) && unwinder_refused(caller);
}

/* stdin, stdout, stderr: FILEs over inherited descriptors, never recorded
 * as their owners (a program may dup2 over 1 and keep printing). */
static inline int is_standard_stream(const void *fp)
{
	return fp == stdin || fp == stdout || fp == stderr;
}

/* fclose, pclose, closedir, freopen: wrapper's descriptor fd is closing. */
void close_through(int fd, unsigned api, const void *wrapper) AGENT_HIDDEN;
/* A call through fp: its descriptor must still be fp's (while tracing). */
void check_file_use(FILE *fp, unsigned api) AGENT_HIDDEN;
/* hooks_msg.c: fanotify groups (made by fanotify_init while tracing).
 * The descriptors of the events (and their pidfds) in len bytes read
 * from fd, when fd is a fanotify group. */
void note_fanotify_group(unsigned api) AGENT_HIDDEN;
int fanotify_groups_made(void) AGENT_HIDDEN;
void record_fanotify_fds(int fd, const void *buf, size_t len, unsigned api) AGENT_HIDDEN;
/* The same for len bytes read into the iovecs v[0..n). */
void record_fanotify_fds_iov(int fd, const struct iovec *v, int n, size_t len,
			     unsigned api) AGENT_HIDDEN;

/* After EBADF (or POLLNVAL): a BAD REFERENCE for fd and fd2 (-1: none)
 * when the kernel has it closed.  The kernel also answers EBADF for an
 * open descriptor of the wrong mode (read on O_WRONLY, fsync on O_PATH),
 * which is no bad reference. */
void bad_reference_among(int fd, int fd2, unsigned api) AGENT_HIDDEN;

/* Descriptors carried by SCM_RIGHTS in a received message. */
void record_received_fds(const struct msghdr *msg, unsigned api) AGENT_HIDDEN;
/* close_range: records the tracked descriptors in [lo, hi] as closing. */
void record_range_closing(unsigned lo, unsigned hi, int flags, unsigned api) AGENT_HIDDEN;
/* close_range with CLOSE_RANGE_UNSHARE succeeded: see hooks_range.c. */
void record_range_closed_unshared(unsigned lo, unsigned hi, int flags, unsigned api) AGENT_HIDDEN;
/* After a call that rearranged descriptors inside libc (daemon, login_tty,
 * forkpty's child): 0-2 are replaced, and whatever the kernel no longer has
 * open is closed. */
void record_std_replaced(unsigned api) AGENT_HIDDEN;

#endif
