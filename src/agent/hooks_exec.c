/* Hooks of the exec family and of posix_spawn: before the image is
 * replaced, `htrace run` gets to see the descriptors about to pass into the
 * new one, and the new image is handed the stacks that opened them
 * (exec.c).  system and popen start their shell inside libc, where the
 * environment cannot be grown without racing other threads: they get the
 * report only.  execv, execvp and the execl forms go through our execve and
 * execvpe; a failed exec returns as it would have, errno intact.  When the
 * environment grown by the handover is too big for the kernel (E2BIG), the
 * exec is tried again with the program's own. */
#include <dlfcn.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "hooks.h"

extern char **environ;

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			const posix_spawnattr_t *, char *const[], char *const[]);

static execve_fn real_execve, real_execvpe;
static execveat_fn real_execveat;
static int (*real_system)(const char *);
static spawn_fn real_posix_spawn, real_posix_spawnp;

void hooks_exec_init(void)
{
	if (real_execve)
		return;
	real_execve = (execve_fn)dlsym(RTLD_NEXT, "execve");
	real_execvpe = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
	real_execveat = (execveat_fn)dlsym(RTLD_NEXT, "execveat");
	real_posix_spawn = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
	real_posix_spawnp = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawnp");
	real_system = (int (*)(const char *))dlsym(RTLD_NEXT, "system");
}

/* Runs an exec-like call with the handover environment, and again with
 * envp alone when the kernel finds the larger one too big. */
#define WITH_HANDOVER(path, envp, call_with)                                   \
	({                                                                     \
		exec_stop_for_client(path, HTRACE_EXEC_BY_EXEC);               \
		struct handover h_;                                            \
		char *const *grown_ = exec_handover(envp, &h_);                \
		int result_ = call_with(grown_);                               \
		if (result_ != 0 && grown_ != (envp) && errno == E2BIG)        \
			result_ = call_with(envp);                             \
		exec_handover_release(&h_);                                    \
		result_;                                                       \
	})

/* execve and execvpe: the same arguments, the file named by path. */
static int exec_with_handover(execve_fn real, const char *path, char *const argv[],
			      char *const envp[])
{
	RETURN_IF_MISSING(real, -1);
#define CALL(env) real(path, argv, env)
	return WITH_HANDOVER(path, envp, CALL);
#undef CALL
}

AGENT_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	hooks_exec_init(); /* at once when the agent has started */
	return exec_with_handover(real_execve, path, argv, envp);
}

AGENT_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	hooks_exec_init();
	return exec_with_handover(real_execvpe, file, argv, envp);
}

AGENT_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
			  int flags)
{
	hooks_exec_init(); /* at once when the agent has started */
	RETURN_IF_MISSING(real_execveat, -1);
#define CALL(env) real_execveat(dirfd, path, argv, env, flags)
	return WITH_HANDOVER(path, envp, CALL);
#undef CALL
}

AGENT_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	__typeof__(&fexecve) real = REAL(fexecve);
	RETURN_IF_MISSING(real, -1);
#define CALL(env) real(fd, argv, env)
	char what[32] = "descriptor ";
	size_t len = 11;
	for (unsigned v = (unsigned)fd, div = 1000000000; div; div /= 10)
		if (v / div || div == 1 || len > 11)
			what[len++] = (char)('0' + v / div % 10);
	what[len] = '\0';
	int result = WITH_HANDOVER(what, envp, CALL);
#undef CALL
	if (result == -1 && errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_fexecve));
	return result;
}

AGENT_EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

AGENT_EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

/* The execl forms: their arguments gathered on the stack, as libc does. */
#define GATHER_ARGS(arg, argv, after)                                          \
	size_t n_ = 1;                                                         \
	va_list ap_;                                                           \
	va_start(ap_, arg);                                                    \
	while (va_arg(ap_, char *))                                            \
		n_++;                                                          \
	va_end(ap_);                                                           \
	char *argv[n_ + 1];                                                    \
	argv[0] = (char *)(arg);                                               \
	va_start(ap_, arg);                                                    \
	for (size_t i_ = 1; i_ <= n_; i_++)                                    \
		argv[i_] = i_ < n_ ? va_arg(ap_, char *) : NULL;               \
	(void)va_arg(ap_, char *); /* the terminating NULL */                  \
	after;                                                                 \
	va_end(ap_)

AGENT_EXPORT int execl(const char *path, const char *arg, ...)
{
	GATHER_ARGS(arg, argv, (void)0);
	return execve(path, argv, environ);
}

AGENT_EXPORT int execlp(const char *file, const char *arg, ...)
{
	GATHER_ARGS(arg, argv, (void)0);
	return execvpe(file, argv, environ);
}

AGENT_EXPORT int execle(const char *path, const char *arg, ...)
{
	char *const *envp;
	GATHER_ARGS(arg, argv, envp = va_arg(ap_, char *const *));
	return execve(path, argv, envp);
}

/* posix_spawn returns once the child has executed (or failed to), so the
 * handover mapping is released in the parent afterwards.  The stop reports
 * the parent's descriptors without O_CLOEXEC; file actions may still close
 * or move some of them, and the child adopts only those whose device and
 * inode match. */
static int spawn_with_handover(spawn_fn real, pid_t *pid, const char *path,
			       const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
			       char *const argv[], char *const envp[])
{
	if (!real)
		return ENOSYS;
	exec_stop_for_client(path, HTRACE_EXEC_BY_POSIX_SPAWN);
	struct handover h;
	int result = real(pid, path, fa, attr, argv, exec_handover(envp, &h));
	if (result == E2BIG && h.map)
		result = real(pid, path, fa, attr, argv, envp);
	exec_handover_release(&h);
	return result;
}

AGENT_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			     const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	hooks_exec_init();
	return spawn_with_handover(real_posix_spawn, pid, path, fa, attr, argv, envp);
}

AGENT_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			      const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	hooks_exec_init();
	return spawn_with_handover(real_posix_spawnp, pid, file, fa, attr, argv, envp);
}

/* "/bin/sh -c COMMAND", as much of it as the database keeps. */
static void stop_for_shell(const char *command)
{
	char what[sizeof(htrace_db.exec_path)] = "/bin/sh -c ";
	size_t len = strlen(what), room = sizeof(what) - 1 - len;
	size_t n = command ? strnlen(command, room) : 0;
	memcpy(what + len, command ? command : "", n);
	what[len + n] = '\0';
	exec_stop_for_client(what, HTRACE_EXEC_BY_SHELL);
}

AGENT_EXPORT int system(const char *command)
{
	hooks_exec_init();
	if (!real_system) {
		errno = ENOSYS;
		return -1;
	}
	if (command) /* system(NULL) only asks whether a shell exists */
		stop_for_shell(command);
	return real_system(command);
}

AGENT_EXPORT FILE *popen(const char *command, const char *mode)
{
	__typeof__(&popen) real = REAL(popen);
	RETURN_IF_MISSING(real, NULL);
	stop_for_shell(command);
	FILE *result = real(command, mode);
	if (result)
		KEEP_ERRNO({
			int fd = fileno(result);
			engine_opened(fd, HTRACE_API_popen, 0);
			engine_set_owner(fd, HTRACE_API_popen, result);
		});
	return result;
}
