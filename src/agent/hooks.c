/* The hooks whose behaviour follows from their shape in apis.def (a new
 * descriptor returned, a FILE* or DIR* returned, a descriptor, FILE* or DIR*
 * closed), generated from the table, and the resolution of every hook's
 * real function with dlsym(RTLD_NEXT).  The hand-written hooks are in the
 * hooks_*.c topic files. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "hooks.h"

static const char *const hook_symbol[HTRACE_API_COUNT] = {
#define HOOK(name, shape, ret, params, args, what) [HTRACE_API_##name] = #name,
#define SYSCALL(name, effect, what)
#include "htrace/apis.def"
#undef HOOK
#undef SYSCALL
};

void *real_functions[HTRACE_API_COUNT];
static int (*real_pthread_cancel)(pthread_t); /* see close_guarded; on first use */
static int cancel_called; /* pthread_cancel has been called */

void *real_function_first(unsigned api)
{
	void *fn = NULL;
	if (hook_symbol[api]) {
		fn = dlsym(RTLD_NEXT, hook_symbol[api]);
		__atomic_store_n(&real_functions[api], fn, __ATOMIC_RELEASE);
	}
	return fn;
}

void missing_function(void)
{
	errno = ENOSYS;
}

int hooks_resolve(void)
{
	int missing = 0;
	for (unsigned api = 1; api < HTRACE_API_COUNT; api++)
		if (hook_symbol[api] && !real_function(api))
			missing++;
	return missing;
}

int unwinder_refused(const void *caller)
{
	if (!stack_caller_is_unwinder(caller))
		return 0;
	__atomic_add_fetch(&htrace_db.unwinder_refusals, 1, __ATOMIC_RELAXED);
	errno = EMFILE;
	return 1;
}

/* --- generated hooks --------------------------------------------------- */

/* Every generated hook (HOOK_SPLIT, hooks.h): call the real function,
 * then look at its result (`after`, a statement that may use `result`);
 * errno is kept by the recording itself (KEEP_ERRNO). */
#define HOOK_CALL(name, ret, params, args, missing, ...)                    \
	static __attribute__((noinline)) ret traced_##name params           \
	{                                                                   \
		ret result = REAL(name) args;                               \
		__VA_ARGS__;                                                \
		return result;                                              \
	}                                                                   \
	HOOK_SPLIT(name, ret, params, args, missing)

#define RECORD_OPENED(name) record_opened((int)result, HTRACE_API_##name)
#define RECORD_BAD(name, fd) KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_##name))

#define HOOK_FD_RESULT(name, ret, params, args) \
	HOOK_CALL(name, ret, params, args, (ret)-1, if (result >= 0) RECORD_OPENED(name))

#define HOOK_WRAPPER_RESULT(name, ret, params, args, descriptor_of)         \
	HOOK_CALL(name, ret, params, args, NULL, if (result) KEEP_ERRNO({   \
		int fd_ = descriptor_of(result);                            \
		engine_opened(fd_, HTRACE_API_##name, 0);                   \
		engine_set_owner(fd_, HTRACE_API_##name, result);           \
	}))

void close_through(int fd, unsigned api, const void *wrapper)
{
	if (is_standard_stream(wrapper))
		engine_closing(fd, api, 0); /* the standard streams have no owner record */
	else
		engine_closing_wrapped(fd, api, wrapper);
}

void bad_reference_among(int fd, int fd2, unsigned api)
{
	if (fd >= 0 && !raw_fd_is_open(fd))
		engine_bad_reference(fd, api, 0);
	if (fd2 >= 0 && fd2 != fd && !raw_fd_is_open(fd2))
		engine_bad_reference(fd2, api, 0);
}

static void check_wrapper(int fd, const void *wrapper, unsigned api)
{
	if (fd >= 0)
		engine_check_owner(fd, api, wrapper);
}

static int own_file_descriptor(FILE *fp);

void check_file_use(FILE *fp, unsigned api)
{
	if (engine_tracing())
		check_wrapper(own_file_descriptor(fp), fp, api);
}

/* The descriptor under a FILE* or DIR*; -1 (ignored) for NULL. */
static int file_descriptor(FILE *fp)
{
	return fp ? fileno(fp) : -1;
}

static int dir_descriptor(DIR *dir)
{
	return dir ? dirfd(dir) : -1;
}

/* A FILE of the program's own: not the standard streams, which have no
 * owner record (a program may dup2 over 1 and keep printing). */
static int own_file_descriptor(FILE *fp)
{
	if (!fp || is_standard_stream(fp))
		return -1;
	return fileno_unlocked(fp);
}

#define HOOK_CLOSE_WRAPPED(name, ret, params, args, wrapper, descriptor_of)  \
	static __attribute__((noinline)) ret traced_##name params           \
	{                                                                   \
		KEEP_ERRNO(close_through(descriptor_of(wrapper), HTRACE_API_##name, wrapper)); \
		return REAL(name) args;                                     \
	}                                                                   \
	HOOK_SPLIT(name, ret, params, args, (ret)-1)

#define HOOK_FILE_RESULT(name, ret, params, args) HOOK_WRAPPER_RESULT(name, ret, params, args, fileno)
#define HOOK_DIR_RESULT(name, ret, params, args) HOOK_WRAPPER_RESULT(name, ret, params, args, dirfd)
#define HOOK_CLOSE_FILE(name, ret, params, args) \
	HOOK_CLOSE_WRAPPED(name, ret, params, args, fp, file_descriptor)
#define HOOK_CLOSE_DIR(name, ret, params, args) \
	HOOK_CLOSE_WRAPPED(name, ret, params, args, dir, dir_descriptor)
/* close is a cancellation point that acts before the system call: a
 * thread cancelled there leaves through the hook with the descriptor still
 * open, and the cleanup handler puts the descriptor's slot back.  (glibc's
 * own pthread_cleanup_push: a cleanup attribute would need -fexceptions
 * and so libgcc_s in the program's scope.)  The guard's sigsetjmp and
 * copy of the slot cost more than the rest of the hook, so a close only
 * takes them once the process has called pthread_cancel: before that no
 * thread can be cancelled.  (A close that has already looked, when the
 * process's first pthread_cancel names its thread a few instructions
 * before the system call, goes unguarded.) */
AGENT_EXPORT int pthread_cancel(pthread_t thread)
{
	__atomic_store_n(&cancel_called, 1, __ATOMIC_SEQ_CST);
	int (*real)(pthread_t) = __atomic_load_n(&real_pthread_cancel, __ATOMIC_ACQUIRE);
	if (!real) {
		real = (int (*)(pthread_t))dlsym(RTLD_NEXT, "pthread_cancel");
		__atomic_store_n(&real_pthread_cancel, real, __ATOMIC_RELEASE);
	}
	return real ? real(thread) : ESRCH;
}

struct close_guard {
	int fd;
	int was_open;
	struct htrace_fd_slot saved;
};

static void close_cancelled(void *arg)
{
	const struct close_guard *g = arg;
	if (g->was_open && raw_fd_is_open(g->fd))
		engine_slot_restore(g->fd, &g->saved);
}

static __attribute__((noinline)) int close_with_guard(int (*real)(int), int fd, unsigned api)
{
	struct close_guard guard = { .fd = fd };
	KEEP_ERRNO({
		guard.was_open = engine_slot_save(fd, &guard.saved);
		engine_closing(fd, api, 0);
	});
	int result;
	pthread_cleanup_push(close_cancelled, &guard);
	result = real(guard.fd);
	pthread_cleanup_pop(0);
	return result;
}

static inline int close_guarded(int (*real)(int), int fd, unsigned api)
{
	if (__atomic_load_n(&cancel_called, __ATOMIC_SEQ_CST))
		return close_with_guard(real, fd, api);
	KEEP_ERRNO(engine_closing(fd, api, 0));
	return real(fd);
}

/* CLOSE_FD rows (close, __close, mq_close) take one descriptor named fd. */
#define HOOK_CLOSE_FD(name, ret, params, args)                              \
	static __attribute__((noinline)) ret traced_##name params           \
	{                                                                   \
		return close_guarded(REAL(name), fd, HTRACE_API_##name);    \
	}                                                                   \
	HOOK_SPLIT(name, ret, params, args, (ret)-1)

/* FD_RESULT whose argument fd must be open (dup, accept). */
#define HOOK_FD_FROM_FD(name, ret, params, args)                            \
	HOOK_CALL(name, ret, params, args, (ret)-1,                         \
		  if (result >= 0) RECORD_OPENED(name); else if (errno == EBADF) RECORD_BAD(name, fd))

/* The success path costs one comparison; EBADF on a closed descriptor is
 * a BAD REFERENCE. */
#define FAILED_EBADF(ret) (__builtin_expect(result == (ret)-1, 0) && errno == EBADF)
#define HOOK_USE_FD(name, ret, params, args) \
	HOOK_CALL(name, ret, params, args, (ret)-1, if (FAILED_EBADF(ret)) RECORD_BAD(name, fd))

/* read: USE_FD, and once the process has made a fanotify group, what is
 * read may hold new descriptors: record (hooks_msg.c) looks. */
#define HOOK_READING(name, ret, params, args, record)                       \
	HOOK_CALL(name, ret, params, args, (ret)-1,                         \
		  if (result > 0 && __builtin_expect(fanotify_groups_made(), 0))   \
			  KEEP_ERRNO(record);                               \
		  else if (FAILED_EBADF(ret)) RECORD_BAD(name, fd))
#define HOOK_READ_FD(name, ret, params, args) \
	HOOK_READING(name, ret, params, args,   \
		     record_fanotify_fds(fd, buf, (size_t)result, HTRACE_API_##name))
/* readv and the like: the same over the iovecs filled. */
#define HOOK_READV_FD(name, ret, params, args) \
	HOOK_READING(name, ret, params, args,    \
		     record_fanotify_fds_iov(fd, v, n, (size_t)result, HTRACE_API_##name))

/* posix_fadvise, posix_fallocate: the error number is the result. */
#define HOOK_USE_FD_ERRNUM(name, ret, params, args) \
	HOOK_CALL(name, ret, params, args, ENOSYS, if (result == EBADF) RECORD_BAD(name, fd))

/* Two descriptors: the one that is not open is the bad reference. */
#define HOOK_USE_FD2(name, ret, params, args)                               \
	HOOK_CALL(name, ret, params, args, (ret)-1, if (FAILED_EBADF(ret))  \
		KEEP_ERRNO(bad_reference_among(fd, fd2, HTRACE_API_##name)))

/* Through a FILE or DIR: checked before the call, while tracing. */
#define HOOK_USE_WRAPPER(name, ret, params, args, wrapper, descriptor_of)    \
	static __attribute__((noinline)) ret traced_##name params           \
	{                                                                   \
		if (engine_tracing())                                       \
			KEEP_ERRNO(check_wrapper(descriptor_of(wrapper), wrapper, \
						 HTRACE_API_##name));       \
		return REAL(name) args;                                     \
	}                                                                   \
	HOOK_SPLIT(name, ret, params, args, (ret)0)

#define HOOK_USE_FILE(name, ret, params, args) \
	HOOK_USE_WRAPPER(name, ret, params, args, fp, own_file_descriptor)
#define HOOK_USE_DIR(name, ret, params, args) \
	HOOK_USE_WRAPPER(name, ret, params, args, dir, dir_descriptor)

#define HOOK_CUSTOM(name, ret, params, args)

#define HOOK(name, shape, ret, params, args, what) HOOK_##shape(name, ret, params, args)
#define SYSCALL(name, effect, what)
#include "htrace/apis.def"
#undef HOOK
#undef SYSCALL
