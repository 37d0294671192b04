/* Hand-written hooks of calls that create descriptors but do not fit a
 * generated shape: the variadic open family and mq_open, calls that return
 * two descriptors (pipe, socketpair), and calls that create one only in some
 * modes (fcntl F_DUPFD*, signalfd with -1, dup2/dup3 onto a number, the
 * ioctl requests that return a descriptor). */
#include <fcntl.h>
#include <stdarg.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/stat.h>

#include "hooks.h"

static int needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

static mode_t mode_argument(int flags, va_list ap)
{
	return needs_mode(flags) ? (mode_t)va_arg(ap, int) : 0;
}

#define HOOK_OPEN(name)                                                     \
	AGENT_EXPORT int name(const char *path, int flags, ...)             \
	{                                                                   \
		va_list ap;                                                 \
		va_start(ap, flags);                                        \
		mode_t mode = mode_argument(flags, ap);                     \
		va_end(ap);                                                 \
		__typeof__(&name) real = REAL(name);                        \
		RETURN_IF_MISSING(real, -1);                                \
		if (refuse_unwinder(__builtin_return_address(0)))           \
			return -1;                                          \
		RETURN_IF_QUIET(real(path, flags, mode));                   \
		int fd = real(path, flags, mode);                           \
		if (fd >= 0)                                                \
			record_opened(fd, HTRACE_API_##name);               \
		return fd;                                                  \
	}

#define HOOK_OPENAT(name)                                                   \
	AGENT_EXPORT int name(int dirfd, const char *path, int flags, ...)  \
	{                                                                   \
		va_list ap;                                                 \
		va_start(ap, flags);                                        \
		mode_t mode = mode_argument(flags, ap);                     \
		va_end(ap);                                                 \
		__typeof__(&name) real = REAL(name);                        \
		RETURN_IF_MISSING(real, -1);                                \
		if (refuse_unwinder(__builtin_return_address(0)))           \
			return -1;                                          \
		RETURN_IF_QUIET(real(dirfd, path, flags, mode));            \
		int fd = real(dirfd, path, flags, mode);                    \
		if (fd >= 0)                                                \
			record_opened(fd, HTRACE_API_##name);               \
		else if (errno == EBADF)                                    \
			KEEP_ERRNO(bad_reference_among(dirfd, -1, HTRACE_API_##name)); \
		return fd;                                                  \
	}

HOOK_OPEN(open)
HOOK_OPEN(open64)
HOOK_OPEN(__open)
HOOK_OPEN(__open64)
HOOK_OPENAT(openat)
HOOK_OPENAT(openat64)

AGENT_EXPORT mqd_t mq_open(const char *name, int flags, ...)
{
	mode_t mode = 0;
	struct mq_attr *attr = NULL;
	if (flags & O_CREAT) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		attr = va_arg(ap, struct mq_attr *);
		va_end(ap);
	}
	__typeof__(&mq_open) real = REAL(mq_open);
	RETURN_IF_MISSING(real, (mqd_t)-1);
	RETURN_IF_QUIET(real(name, flags, mode, attr));
	mqd_t q = real(name, flags, mode, attr);
	if (q >= 0)
		KEEP_ERRNO(engine_opened(q, HTRACE_API_mq_open, 0));
	return q;
}

/* --- two descriptors at once ------------------------------------------ */

static void record_pair(const int fds[2], unsigned api)
{
	record_opened(fds[0], api);
	record_opened(fds[1], api);
}

#define HOOK_PIPE(name)                                                     \
	static __attribute__((noinline)) int traced_##name(int fds[2])      \
	{                                                                   \
		int result = REAL(name)(fds);                               \
		if (result == 0)                                            \
			record_pair(fds, HTRACE_API_##name);                \
		return result;                                              \
	}                                                                   \
	HOOK_SPLIT_UNWINDER(name, int, (int fds[2]), (fds), -1)

HOOK_PIPE(pipe)
HOOK_PIPE(__pipe)

static __attribute__((noinline)) int traced_pipe2(int fds[2], int flags)
{
	int result = REAL(pipe2)(fds, flags);
	if (result == 0)
		record_pair(fds, HTRACE_API_pipe2);
	return result;
}
HOOK_SPLIT_UNWINDER(pipe2, int, (int fds[2], int flags), (fds, flags), -1)

static __attribute__((noinline)) int traced_socketpair(int domain, int type, int protocol,
						       int sv[2])
{
	int result = REAL(socketpair)(domain, type, protocol, sv);
	if (result == 0)
		record_pair(sv, HTRACE_API_socketpair);
	return result;
}
HOOK_SPLIT(socketpair, int, (int domain, int type, int protocol, int sv[2]),
	   (domain, type, protocol, sv), -1)

/* --- record_opened and record_dup_onto (hooks.h) ------------------------ */

void record_opened(int fd, unsigned api)
{
	note_fanotify_group(api);
	KEEP_ERRNO(engine_opened(fd, api, 0));
}

void record_dup_onto(int newfd, unsigned api, int was_open_untracked)
{
	KEEP_ERRNO(engine_replaced(newfd, api, was_open_untracked));
}

/* --- descriptors created only in some modes ----------------------------- */

#define HOOK_DUP2(name)                                                     \
	static __attribute__((noinline)) int traced_##name(int fd, int newfd) \
	{                                                                   \
		int untracked = fd != newfd && engine_open_untracked(newfd); \
		int result = REAL(name)(fd, newfd);                         \
		if (result >= 0 && fd != newfd)                             \
			record_dup_onto(result, HTRACE_API_##name, untracked); \
		else if (result < 0 && errno == EBADF)                      \
			KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_##name)); \
		return result;                                              \
	}                                                                   \
	HOOK_SPLIT(name, int, (int fd, int newfd), (fd, newfd), -1)

HOOK_DUP2(dup2)
HOOK_DUP2(__dup2)

static __attribute__((noinline)) int traced_dup3(int fd, int newfd, int flags)
{
	int untracked = fd != newfd && engine_open_untracked(newfd);
	int result = REAL(dup3)(fd, newfd, flags);
	if (result >= 0)
		record_dup_onto(result, HTRACE_API_dup3, untracked);
	else if (errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_dup3));
	return result;
}
HOOK_SPLIT(dup3, int, (int fd, int newfd, int flags), (fd, newfd, flags), -1)

#define HOOK_FCNTL(name)                                                    \
	AGENT_EXPORT int name(int fd, int cmd, ...)                         \
	{                                                                   \
		va_list ap;                                                 \
		va_start(ap, cmd);                                          \
		void *arg = va_arg(ap, void *);                             \
		va_end(ap);                                                 \
		__typeof__(&name) real = REAL(name);                        \
		RETURN_IF_MISSING(real, -1);                                \
		RETURN_IF_QUIET(real(fd, cmd, arg));                        \
		int result = real(fd, cmd, arg);                            \
		if (result >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) \
			KEEP_ERRNO(engine_opened(result, HTRACE_API_##name, 0)); \
		else if (result < 0 && errno == EBADF)                      \
			KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_##name)); \
		return result;                                              \
	}

HOOK_FCNTL(fcntl)
HOOK_FCNTL(fcntl64)
HOOK_FCNTL(__fcntl)

static __attribute__((noinline)) int traced_signalfd(int fd, const sigset_t *mask, int flags)
{
	int result = REAL(signalfd)(fd, mask, flags);
	if (result >= 0 && fd == -1)
		KEEP_ERRNO(engine_opened(result, HTRACE_API_signalfd, 0));
	else if (result < 0 && errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_signalfd));
	return result;
}
HOOK_SPLIT(signalfd, int, (int fd, const sigset_t *mask, int flags), (fd, mask, flags), -1)

/* The ioctl requests whose result is a new descriptor: the peer of a
 * pseudo-terminal master, the namespaces an nsfs descriptor leads to, and
 * (recent kernels) the next/previous mount namespace and the namespaces of
 * a pidfd's process.  Request numbers belong to a driver: another driver
 * reusing one of these numbers for a non-descriptor result would be
 * misread.  The recent ones are compiled in only when the headers define
 * them (the kernel's <linux/pidfd.h> cannot be included with glibc's
 * <fcntl.h>, so they come from glibc's <sys/pidfd.h>). */
static int ioctl_opens(unsigned long request)
{
	return request == TIOCGPTPEER || request == NS_GET_USERNS || request == NS_GET_PARENT
#ifdef NS_MNT_GET_NEXT
	       || request == NS_MNT_GET_NEXT || request == NS_MNT_GET_PREV
#endif
#ifdef PIDFD_GET_CGROUP_NAMESPACE
	       || request == PIDFD_GET_CGROUP_NAMESPACE || request == PIDFD_GET_IPC_NAMESPACE
	       || request == PIDFD_GET_MNT_NAMESPACE || request == PIDFD_GET_NET_NAMESPACE
	       || request == PIDFD_GET_PID_NAMESPACE || request == PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE
	       || request == PIDFD_GET_TIME_NAMESPACE || request == PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE
	       || request == PIDFD_GET_USER_NAMESPACE || request == PIDFD_GET_UTS_NAMESPACE
#endif
		;
}

AGENT_EXPORT int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	__typeof__(&ioctl) real = REAL(ioctl);
	RETURN_IF_MISSING(real, -1);
	RETURN_IF_QUIET(real(fd, request, arg));
	int result = real(fd, request, arg);
	if (result >= 0 && ioctl_opens(request))
		KEEP_ERRNO(engine_opened(result, HTRACE_API_ioctl, 0));
	else if (result < 0 && errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_ioctl));
	return result;
}
