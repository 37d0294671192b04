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

/* The next definition of api's function (libc's), resolved on first use;
 * NULL when libc has none. */
void *real_function(unsigned api) AGENT_HIDDEN;
#define REAL(name) ((__typeof__(&name))real_function(HTRACE_API_##name))

/* Returns from a hook whose libc function does not exist. */
#define RETURN_IF_MISSING(fn, failure)          \
	do {                                    \
		if (!(fn)) {                    \
			errno = ENOSYS;         \
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

/* The engine's part of record_opened and record_dup_onto, out of line so
 * that the quiet path in the hooks saves no register. */
void opened_by_engine(int fd, unsigned api) AGENT_HIDDEN __attribute__((noinline));
void replaced_by_engine(int newfd, unsigned api) AGENT_HIDDEN __attribute__((noinline));

/* A call returned the new descriptor fd: its OPEN, in line while tracing
 * is off (table.h), else by the engine. */
ALWAYS_INLINE void record_opened(int fd, unsigned api)
{
	if (!quietly_opened(fd, api))
		opened_by_engine(fd, api);
}

/* dup2, dup3 (or a syscall doing their work) succeeded onto newfd: its old
 * descriptor was closed, a new one is there.  Its close can only be
 * recorded once the call has succeeded (recording it before would be wrong
 * when the call fails and newfd stays open). */
ALWAYS_INLINE void record_dup_onto(int newfd, unsigned api)
{
	if (!quietly_replaced(newfd, api))
		replaced_by_engine(newfd, api);
}

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
/* After EBADF from a call with two descriptors: the one not open. */
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
