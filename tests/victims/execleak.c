/* execleak MODE: a victim that leaks descriptors into the programs it
 * executes, for the tests of leaks across exec.
 *
 *   exec       opens a log file without O_CLOEXEC in open_leaky_log(), a
 *              socket without it in open_leaky_socket() and a file with
 *              O_CLOEXEC in open_private(), then execv()s itself as "child"
 *   execve     the same through execve() with its own environment
 *   execl      the same through execl()
 *   fexecve    the same through fexecve() on a descriptor of itself
 *   spawn      the same, but posix_spawn()s the child and waits for it
 *   system     the same, but runs the child through system()
 *   popen      the same, but runs the child through popen() and pclose()
 *   forkexec   the same from a fork child, which execs; the parent waits
 *   chain      execs itself as "middle", which opens one more without
 *              O_CLOEXEC in open_in_middle() and execs "child"
 *   cloexec    opens only with O_CLOEXEC, then execs "child"
 *   urghandler the same as exec, with a SIGURG handler that prints "SIGURG"
 *              (htrace's stop before the exec must never reach it)
 *   urgignored the same as exec, with SIGURG ignored and blocked
 *   many N     opens N descriptors without O_CLOEXEC (in main),
 *              printing "MANY <n>" instead of N OPEN lines, then execs "child"
 *   failexec   execs a program that does not exist, then checks that errno
 *              is ENOENT and that its environment is untouched
 *   child      prints "FD <n>" for each descriptor above 2 it has (from
 *              /proc/self/fd) and "ENV <name>" for every variable named
 *              like the exec handover's (HTRACE_F..., HTRACE_M...), then exits 0
 *              without closing what it inherited
 * Each descriptor opened prints "OPEN <fd> <function>" on stdout. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char self[4096];

static void opened(int fd, const char *function)
{
	if (fd < 0) {
		perror(function);
		exit(1);
	}
	printf("OPEN %d %s\n", fd, function);
	fflush(stdout);
}

__attribute__((noinline)) static void open_leaky_log(void)
{
	opened(open("/dev/null", O_WRONLY), __func__);
}

__attribute__((noinline)) static void open_leaky_socket(void)
{
	opened(socket(AF_UNIX, SOCK_STREAM, 0), __func__);
}

__attribute__((noinline)) static void open_private(void)
{
	opened(open("/dev/zero", O_RDONLY | O_CLOEXEC), __func__);
}

__attribute__((noinline)) static void open_in_middle(void)
{
	opened(open("/dev/zero", O_RDONLY), __func__);
}

static void open_all(void)
{
	open_leaky_log();
	open_leaky_socket();
	open_private();
}

static int child(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (atoi(e->d_name) > 2 && atoi(e->d_name) != dirfd(d))
			printf("FD %d\n", atoi(e->d_name));
	for (char **v = environ; *v; v++)
		if ((!strncmp(*v, "HTRACE_F", 8) || !strncmp(*v, "HTRACE_M", 8)) &&
		    strncmp(*v, "HTRACE_MAX_TRACES=", 18))
			printf("ENV %.*s\n", (int)strcspn(*v, "="), *v);
	fflush(stdout);
	if (d)
		closedir(d);
	_exit(0); /* keeps every inherited descriptor open to the end */
}

static int wait_for(pid_t pid)
{
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int run_exec(const char *how)
{
	char *argv[] = { self, "child", NULL };
	open_all();
	if (!strcmp(how, "exec"))
		execv(self, argv);
	else if (!strcmp(how, "execve"))
		execve(self, argv, environ);
	else if (!strcmp(how, "execl"))
		execl(self, self, "child", (char *)NULL);
	else if (!strcmp(how, "fexecve")) {
		int fd = open(self, O_RDONLY | O_CLOEXEC);
		opened(fd, "open_self");
		fexecve(fd, argv, environ);
	} else if (!strcmp(how, "spawn")) {
		pid_t pid;
		int err = posix_spawn(&pid, self, NULL, NULL, argv, environ);
		if (err) {
			fprintf(stderr, "posix_spawn: %s\n", strerror(err));
			return 1;
		}
		return wait_for(pid);
	} else if (!strcmp(how, "system")) {
		char command[4200];
		snprintf(command, sizeof(command), "exec '%s' child", self);
		return system(command) == 0 ? 0 : 1;
	} else if (!strcmp(how, "popen")) {
		char command[4200], line[64];
		snprintf(command, sizeof(command), "exec '%s' child", self);
		FILE *child = popen(command, "r");
		if (!child)
			return 1;
		while (fgets(line, sizeof(line), child))
			fputs(line, stdout); /* the child's FD lines */
		return pclose(child) == 0 ? 0 : 1;
	} else if (!strcmp(how, "forkexec")) {
		pid_t pid = fork();
		if (pid == 0) {
			execv(self, argv);
			_exit(127);
		}
		return wait_for(pid);
	}
	perror(how);
	return 1;
}

static void on_sigurg(int sig)
{
	(void)sig;
	static const char said[] = "SIGURG\n";
	if (write(STDOUT_FILENO, said, sizeof(said) - 1) < 0)
		_exit(3);
}

static int exec_with_sigurg(int ignore)
{
	struct sigaction sa = { .sa_handler = ignore ? SIG_IGN : on_sigurg };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGURG, &sa, NULL);
	if (ignore) {
		sigset_t urg;
		sigemptyset(&urg);
		sigaddset(&urg, SIGURG);
		sigprocmask(SIG_BLOCK, &urg, NULL);
	}
	return run_exec("exec");
}

static int fail_exec(void)
{
	size_t before = 0;
	while (environ[before])
		before++;
	open_leaky_log();
	errno = 0;
	execl("/nonexistent/program", "x", (char *)NULL);
	int err = errno;
	size_t after = 0;
	while (environ[after])
		after++;
	printf("ERRNO %s ENVIRON %s\n", err == ENOENT ? "ENOENT" : strerror(err),
	       before == after ? "same" : "changed");
	return 0;
}

int main(int argc, char **argv)
{
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (argc < 2 || n <= 0) {
		fprintf(stderr, "usage: execleak MODE\n");
		return 2;
	}
	self[n] = '\0';
	const char *mode = argv[1];
	if (!strcmp(mode, "child"))
		return child();
	if (!strcmp(mode, "middle")) {
		open_in_middle();
		execl(self, self, "child", (char *)NULL);
		return 1;
	}
	if (!strcmp(mode, "chain")) {
		open_all();
		execl(self, self, "middle", (char *)NULL);
		return 1;
	}
	if (!strcmp(mode, "cloexec")) {
		open_private();
		execl(self, self, "child", (char *)NULL);
		return 1;
	}
	if (!strcmp(mode, "urghandler") || !strcmp(mode, "urgignored"))
		return exec_with_sigurg(!strcmp(mode, "urgignored"));
	if (!strcmp(mode, "many") && argc > 2) {
		int count = atoi(argv[2]);
		struct rlimit lim = { (rlim_t)count + 64, (rlim_t)count + 64 };
		if (setrlimit(RLIMIT_NOFILE, &lim) != 0 && getrlimit(RLIMIT_NOFILE, &lim) == 0 &&
		    lim.rlim_cur < (rlim_t)count + 64)
			return 77;
		for (int i = 0; i < count; i++)
			if (open("/dev/null", O_WRONLY) < 0)
				return 1;
		printf("MANY %d\n", count);
		fflush(stdout);
		execl(self, self, "child", (char *)NULL);
		return 1;
	}
	if (!strcmp(mode, "failexec"))
		return fail_exec();
	return run_exec(mode);
}
