/* Hand-written hooks of calls that use descriptors in ways a generated
 * shape cannot check: arrays and sets of descriptors (poll, select), a
 * descriptor that only counts without MAP_ANONYMOUS (mmap), and the
 * variadic fprintf.  Each reports, on failure only, the descriptors that
 * were not open as BAD REFERENCEs. */
#include <stdarg.h>
#include <sys/mman.h>

#include "hooks.h"

static void report_invalid_polled(const struct pollfd *fds, nfds_t n, unsigned api)
{
	for (nfds_t i = 0; i < n; i++)
		if (fds[i].fd >= 0 && (fds[i].revents & POLLNVAL))
			bad_reference_among(fds[i].fd, -1, api);
}

/* poll, __poll_chk, ppoll: an entry with POLLNVAL is a BAD REFERENCE. */
#define HOOK_POLL(name, params, args)                                       \
	static __attribute__((noinline)) int traced_##name params           \
	{                                                                   \
		int result = REAL(name) args;                               \
		if (result > 0)                                             \
			KEEP_ERRNO(report_invalid_polled(fds, n, HTRACE_API_##name)); \
		return result;                                              \
	}                                                                   \
	HOOK_SPLIT(name, int, params, args, -1)

HOOK_POLL(poll, (struct pollfd *fds, nfds_t n, int timeout), (fds, n, timeout))
HOOK_POLL(__poll_chk, (struct pollfd *fds, nfds_t n, int timeout, size_t fdslen),
	  (fds, n, timeout, fdslen))
HOOK_POLL(ppoll, (struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *ss),
	  (fds, n, t, ss))

/* select failed with EBADF: the sets are left as they were given. */
static void report_invalid_selected(int n, const fd_set *r, const fd_set *w, const fd_set *e,
				    unsigned api)
{
	for (int fd = 0; fd < n && fd < FD_SETSIZE; fd++)
		if ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (e && FD_ISSET(fd, e)))
			bad_reference_among(fd, -1, api);
}

/* select, pselect: EBADF names no set member; each is asked of the kernel. */
#define HOOK_SELECT(name, params, args)                                     \
	static __attribute__((noinline)) int traced_##name params           \
	{                                                                   \
		int result = REAL(name) args;                               \
		if (result < 0 && errno == EBADF)                           \
			KEEP_ERRNO(report_invalid_selected(n, r, w, e, HTRACE_API_##name)); \
		return result;                                              \
	}                                                                   \
	HOOK_SPLIT(name, int, params, args, -1)

HOOK_SELECT(select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t), (n, r, w, e, t))
HOOK_SELECT(pselect,
	    (int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t, const sigset_t *ss),
	    (n, r, w, e, t, ss))

#define HOOK_MMAP(name, off_type)                                                     \
	static __attribute__((noinline)) void *traced_##name(void *a, size_t n, int prot,   \
							     int fl, int fd, off_type off)  \
	{                                                                             \
		void *result = REAL(name)(a, n, prot, fl, fd, off);                   \
		if (result == MAP_FAILED && errno == EBADF && !(fl & MAP_ANONYMOUS))  \
			KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_##name));   \
		return result;                                                        \
	}                                                                             \
	HOOK_SPLIT(name, void *, (void *a, size_t n, int prot, int fl, int fd, off_type off), \
		   (a, n, prot, fl, fd, off), MAP_FAILED)

HOOK_MMAP(mmap, off_t)
HOOK_MMAP(mmap64, off64_t)

AGENT_EXPORT int fprintf(FILE *fp, const char *fmt, ...)
{
	__typeof__(&vfprintf) real = REAL(vfprintf);
	RETURN_IF_MISSING(real, -1);
	KEEP_ERRNO(check_file_use(fp, HTRACE_API_fprintf));
	va_list ap;
	va_start(ap, fmt);
	int result = real(fp, fmt, ap);
	va_end(ap);
	return result;
}

AGENT_EXPORT int __fprintf_chk(FILE *fp, int flag, const char *fmt, ...)
{
	__typeof__(&__vfprintf_chk) real = REAL(__vfprintf_chk);
	RETURN_IF_MISSING(real, -1);
	KEEP_ERRNO(check_file_use(fp, HTRACE_API___fprintf_chk));
	va_list ap;
	va_start(ap, fmt);
	int result = real(fp, flag, fmt, ap);
	va_end(ap);
	return result;
}
