/* Hooks of close_range and closefrom: every tracked descriptor in the range
 * is recorded as closing before the call closes it. */
#include <linux/close_range.h>
#include <unistd.h>

#include "hooks.h"

struct range_close {
	unsigned lo, hi, api;
};

static void close_if_in_range(int fd, void *arg)
{
	const struct range_close *r = arg;
	engine_closing(fd, r->api, 0);
}

static int range_call_valid(unsigned lo, unsigned hi, int flags)
{
	return lo <= hi && !(flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC));
}

void record_range_closing(unsigned lo, unsigned hi, int flags, unsigned api)
{
	if (!range_call_valid(lo, hi, flags) || (flags & CLOSE_RANGE_CLOEXEC))
		return; /* fails, or only marks close-on-exec */
	if ((flags & CLOSE_RANGE_UNSHARE) && raw_count_entries("/proc/self/task") != 1) {
		/* the caller leaves the table the other threads keep using: from
		 * now on the process has two, and ours describes theirs */
		__atomic_add_fetch(&htrace_db.tables_unshared, 1, __ATOMIC_RELAXED);
		return;
	}
	struct range_close r = { lo, hi, api };
	KEEP_ERRNO(engine_for_each_open_in(lo, hi, close_if_in_range, &r));
}

AGENT_EXPORT int close_range(unsigned int lo, unsigned int hi, int flags)
{
	__typeof__(&close_range) real = REAL(close_range);
	RETURN_IF_MISSING(real, -1);
	record_range_closing(lo, hi, flags, HTRACE_API_close_range);
	return real(lo, hi, flags);
}

AGENT_EXPORT void closefrom(int lo)
{
	__typeof__(&closefrom) real = REAL(closefrom);
	if (!real)
		return;
	record_range_closing(lo < 0 ? 0u : (unsigned)lo, ~0u, 0, HTRACE_API_closefrom); /* glibc clamps lo to 0 */
	real(lo);
}
