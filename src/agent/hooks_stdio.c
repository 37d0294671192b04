/* Hand-written hooks of the stdio and dirent calls that do not fit a
 * generated shape: fdopen and fdopendir (a descriptor becomes owned by a
 * FILE* or DIR*, none is created), freopen (one closed, one opened) and
 * fcloseall. */
#include "hooks.h"

static __attribute__((noinline)) FILE *traced_fdopen(int fd, const char *mode)
{
	FILE *fp = REAL(fdopen)(fd, mode);
	if (fp)
		KEEP_ERRNO(engine_set_owner(fd, HTRACE_API_fdopen, fp));
	else if (errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_fdopen));
	return fp;
}
HOOK_SPLIT(fdopen, FILE *, (int fd, const char *mode), (fd, mode), NULL)

static __attribute__((noinline)) DIR *traced_fdopendir(int fd)
{
	DIR *dir = REAL(fdopendir)(fd);
	if (dir)
		KEEP_ERRNO(engine_set_owner(fd, HTRACE_API_fdopendir, dir));
	else if (errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_fdopendir));
	return dir;
}
HOOK_SPLIT(fdopendir, DIR *, (int fd), (fd), NULL)

/* freopen closes fp's descriptor (even when it then fails to open the new
 * file) and opens another, often with the same number. */
static FILE *reopen(FILE *(*real)(const char *, const char *, FILE *), unsigned api,
		    const char *path, const char *mode, FILE *fp)
{
	if (!real) {
		errno = ENOSYS;
		return NULL;
	}
	RETURN_IF_QUIET(real(path, mode, fp));
	int old = fp ? fileno_unlocked(fp) : -1;
	if (old >= 0)
		KEEP_ERRNO(close_through(old, api, fp));
	FILE *result = real(path, mode, fp);
	if (result)
		KEEP_ERRNO({
			int fd = fileno(result);
			engine_opened(fd, api, 0);
			if (!is_standard_stream(result))
				engine_set_owner(fd, api, result); /* the standard streams stay unowned */
		});
	return result;
}

AGENT_EXPORT FILE *freopen(const char *path, const char *mode, FILE *fp)
{
	return reopen(REAL(freopen), HTRACE_API_freopen, path, mode, fp);
}

AGENT_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *fp)
{
	return reopen(REAL(freopen64), HTRACE_API_freopen64, path, mode, fp);
}

static void forget_if_kernel_closed(int fd, void *api)
{
	if (!raw_fd_is_open(fd))
		engine_closing(fd, (unsigned)(uintptr_t)api, HTRACE_EV_IMPLICIT);
}

/* glibc's fcloseall flushes every stream; whatever descriptor it did close
 * is recorded after the fact, by asking the kernel. */
static __attribute__((noinline)) int traced_fcloseall(void)
{
	int result = REAL(fcloseall)();
	KEEP_ERRNO(engine_for_each_open(forget_if_kernel_closed,
					(void *)(uintptr_t)HTRACE_API_fcloseall));
	return result;
}
HOOK_SPLIT(fcloseall, int, (void), (), EOF)
