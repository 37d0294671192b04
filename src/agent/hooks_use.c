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
			engine_bad_reference(fds[i].fd, api, 0);
}

AGENT_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	__typeof__(&poll) real = REAL(poll);
	RETURN_IF_MISSING(real, -1);
	RETURN_IF_QUIET(real(fds, n, timeout));
	int result = real(fds, n, timeout);
	if (result > 0)
		KEEP_ERRNO(report_invalid_polled(fds, n, HTRACE_API_poll));
	return result;
}

AGENT_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	__typeof__(&__poll_chk) real = REAL(__poll_chk);
	RETURN_IF_MISSING(real, -1);
	RETURN_IF_QUIET(real(fds, n, timeout, fdslen));
	int result = real(fds, n, timeout, fdslen);
	if (result > 0)
		KEEP_ERRNO(report_invalid_polled(fds, n, HTRACE_API___poll_chk));
	return result;
}

AGENT_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *ss)
{
	__typeof__(&ppoll) real = REAL(ppoll);
	RETURN_IF_MISSING(real, -1);
	RETURN_IF_QUIET(real(fds, n, t, ss));
	int result = real(fds, n, t, ss);
	if (result > 0)
		KEEP_ERRNO(report_invalid_polled(fds, n, HTRACE_API_ppoll));
	return result;
}

/* select failed with EBADF: the sets are left as they were given. */
static void report_invalid_selected(int n, const fd_set *r, const fd_set *w, const fd_set *e,
				    unsigned api)
{
	for (int fd = 0; fd < n && fd < FD_SETSIZE; fd++)
		if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (e && FD_ISSET(fd, e))) &&
		    !raw_fd_is_open(fd))
			engine_bad_reference(fd, api, 0);
}

AGENT_EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t)
{
	__typeof__(&select) real = REAL(select);
	RETURN_IF_MISSING(real, -1);
	RETURN_IF_QUIET(real(n, r, w, e, t));
	int result = real(n, r, w, e, t);
	if (result < 0 && errno == EBADF)
		KEEP_ERRNO(report_invalid_selected(n, r, w, e, HTRACE_API_select));
	return result;
}

AGENT_EXPORT int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t,
			 const sigset_t *ss)
{
	__typeof__(&pselect) real = REAL(pselect);
	RETURN_IF_MISSING(real, -1);
	RETURN_IF_QUIET(real(n, r, w, e, t, ss));
	int result = real(n, r, w, e, t, ss);
	if (result < 0 && errno == EBADF)
		KEEP_ERRNO(report_invalid_selected(n, r, w, e, HTRACE_API_pselect));
	return result;
}

#define HOOK_MMAP(name, off_type)                                                     \
	AGENT_EXPORT void *name(void *a, size_t n, int prot, int fl, int fd, off_type off) \
	{                                                                             \
		__typeof__(&name) real = REAL(name);                                  \
		RETURN_IF_MISSING(real, MAP_FAILED);                                  \
		RETURN_IF_QUIET(real(a, n, prot, fl, fd, off));                       \
		void *result = real(a, n, prot, fl, fd, off);                         \
		if (result == MAP_FAILED && errno == EBADF && !(fl & MAP_ANONYMOUS))  \
			KEEP_ERRNO(engine_bad_reference(fd, HTRACE_API_##name, 0));   \
		return result;                                                        \
	}

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
