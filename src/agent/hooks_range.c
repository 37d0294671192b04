/* Hooks of close_range and closefrom: every tracked descriptor in the range
 * is recorded as closing before the call closes it (unless close_range
 * would fail: closefrom falls back to closing each). */
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hooks.h"

struct range_close {
	unsigned lo, hi, api;
	int works; /* close_range's answer: 0 not asked yet, 1 closes, -1 fails */
};

/* Whether close_range can close anything here: a kernel before 5.9 has
 * none (ENOSYS), and a seccomp policy may refuse it.  Asked each time (a
 * policy can come later) by closing a number no descriptor can have. */
static int close_range_works(void)
{
	return RAW3(SYS_close_range, ~0u, ~0u, 0) == 0;
}

/* A tracked descriptor in the range: closing, unless close_range would
 * fail (asked at the first one, so a range with none costs no probe). */
static void close_if_in_range(int fd, void *arg)
{
	struct range_close *r = arg;
	if (r->api != HTRACE_API_closefrom && !r->works)
		r->works = close_range_works() ? 1 : -1;
	if (r->works >= 0)
		engine_closing(fd, r->api, 0);
}

static int range_call_valid(unsigned lo, unsigned hi, int flags)
{
	return lo <= hi && !(flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC));
}

void record_range_closing(unsigned lo, unsigned hi, int flags, unsigned api)
{
	if (!range_call_valid(lo, hi, flags) || (flags & (CLOSE_RANGE_CLOEXEC | CLOSE_RANGE_UNSHARE)))
		return; /* fails, only marks close-on-exec, or is decided afterwards */
	struct range_close r = { lo, hi, api, 0 }; /* when close_range fails, they stay open */
	KEEP_ERRNO(engine_for_each_open_in(lo, hi, close_if_in_range, &r));
}

static void close_if_kernel_closed(int fd, void *arg)
{
	if (!raw_fd_is_open(fd))
		engine_closing(fd, ((const struct range_close *)arg)->api, HTRACE_EV_IMPLICIT);
}

/* close_range with CLOSE_RANGE_UNSHARE gave the calling thread a table of
 * its own (when it was shared) and closed the range there.  The process's
 * table, the one /proc/PID/fd shows, is the main thread's: when the main
 * thread called, record what the kernel closed; when another thread did,
 * the main thread kept the old table, and the call is only counted. */
void record_range_closed_unshared(unsigned lo, unsigned hi, int flags, unsigned api)
{
	if (!(flags & CLOSE_RANGE_UNSHARE) || (flags & CLOSE_RANGE_CLOEXEC))
		return;
	if (RAW0(SYS_gettid) != RAW0(SYS_getpid)) {
		__atomic_add_fetch(&htrace_db.tables_unshared, 1, __ATOMIC_RELAXED);
		return;
	}
	struct range_close r = { lo, hi, api, 0 };
	KEEP_ERRNO(engine_for_each_open_in(lo, hi, close_if_kernel_closed, &r));
}

static __attribute__((noinline)) int traced_close_range(unsigned int lo, unsigned int hi, int flags)
{
	record_range_closing(lo, hi, flags, HTRACE_API_close_range);
	int result = REAL(close_range)(lo, hi, flags);
	if (result == 0)
		record_range_closed_unshared(lo, hi, flags, HTRACE_API_close_range);
	return result;
}
HOOK_SPLIT(close_range, int, (unsigned int lo, unsigned int hi, int flags), (lo, hi, flags), -1)

AGENT_EXPORT void closefrom(int lo)
{
	__typeof__(&closefrom) real = REAL(closefrom);
	if (!real)
		return;
	if (hooks_quiet()) {
		real(lo);
		return;
	}
	record_range_closing(lo < 0 ? 0u : (unsigned)lo, ~0u, 0, HTRACE_API_closefrom); /* glibc clamps lo to 0 */
	real(lo);
}
