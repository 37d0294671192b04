/* behave MODE...: a victim whose end and leaks the run tests choose.
 *
 *   exit N      open and leak /dev/null in leak_here(), then exit(N)
 *   _exit N     the same, ending with _exit(N)
 *   segv        leak, then dereference NULL
 *   abort       leak, then abort()
 *   clean       open and close many descriptors, leak none, return 0
 *   deep        leak from 20 nested non-inlined calls (deep_1 .. deep_20)
 *   thread      a second thread leaks, the main thread returns
 *   mainexit    the main thread calls pthread_exit; a second thread leaks
 *               and then the process exits
 *   errno       checks that hooked calls leave errno as libc sets it
 *   selfcheck   prints how many descriptors and threads the process has
 *   args ...    prints its arguments, one per line
 *   many N      leaks N descriptors
 *   raw         opens /dev/null with a raw syscall instruction (untracked)
 *   rawthread   the same after a thread has come and gone
 *   vfork       leaks, then a vfork child _exits without exec
 *   forklock    a thread holds the loader lock (inside dl_iterate_phdr)
 *               while main forks; the child leaks, taking a stack
 *   cancelclose a thread is cancelled in close(): the descriptor stays open
 *   closefrom   closefrom(-1): glibc closes everything from 0
 *   clonefork   a clone() child without CLONE_VM leaks and exits
 *   sysfork     the same with a child of syscall(SYS_fork)
 *   pidfdmsg    receives its own pidfd with SCM_PIDFD (SO_PASSPIDFD) and
 *               leaks it ("LEAK <fd>"); exit 77 when the kernel has none
 *   fanotify    a fanotify group watches a file it then opens; the event's
 *               descriptor, read from the group, is leaked; exit 77 without
 *               fanotify (it needs CAP_SYS_ADMIN)
 *   fanotifyreadv  the same with two files, whose events are read with
 *               readv into iovecs of one event, none, and the rest
 *   fanotifypreadv2, fanotifypreadv64v2  the same with preadv2 and
 *               preadv64v2 at offset -1
 *   unshare     a thread closes a range in a private copy of the table
 *   unsharesolo a thread comes and goes, then main (alone again) closes a
 *               range with CLOSE_RANGE_UNSHARE: the closes are real
 *   aged        leaks one descriptor, waits 1.5 s, leaks another
 *   scope       prints which objects define _Unwind_RaiseException and
 *               backtrace for the program ("SCOPE lib lib")
 *   churn N     N threads one after the other, each opening and closing
 *               /dev/null once (2 events each), none leaked
 *   badname DIR creates and leaks DIR/"leak-\xff\xfe.txt", a name that is
 *               not UTF-8
 *   clone3probe calls clone3 with a NULL and an unreadable argument, as
 *               programs probing for it do; prints "PROBE <errno>" for each
 *   clone3nocopy  the same where a seccomp filter refuses process_vm_readv
 *   wrongmode   calls that fail with EBADF on open descriptors of the
 *               wrong mode (read on O_WRONLY, fsync on O_PATH);
 *               prints "WRONGMODE <number of EBADF>", leaks nothing
 *   logintty    login_tty on /dev/null, which fails (not a terminal);
 *               prints "LOGINTTY <result>", leaks nothing
 *   closerangedenied  leaks, then a seccomp filter makes close_range fail
 *               with ENOSYS (as before Linux 5.9), and close_range(3, ~0U)
 *               closes nothing; prints "CLOSERANGE <result> <errno>"
 * Each leak prints "LEAK <fd>" on stdout. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <link.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/fanotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <utmp.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

static NOINLINE int leak_here(void)
{
	int fd = open("/dev/null", O_RDONLY);
	printf("LEAK %d\n", fd);
	fflush(stdout);
	return fd;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

#define DEEP(n, next)                                  \
	static NOINLINE int deep_##n(int x)            \
	{                                              \
		int r = next(x + 1);                   \
		__asm__ volatile("" ::: "memory");     \
		return r + 1;                          \
	}
static NOINLINE int deep_bottom(int x)
{
	(void)x;
	return leak_here();
}
DEEP(20, deep_bottom) DEEP(19, deep_20) DEEP(18, deep_19) DEEP(17, deep_18)
DEEP(16, deep_17) DEEP(15, deep_16) DEEP(14, deep_15) DEEP(13, deep_14)
DEEP(12, deep_13) DEEP(11, deep_12) DEEP(10, deep_11) DEEP(9, deep_10)
DEEP(8, deep_9) DEEP(7, deep_8) DEEP(6, deep_7) DEEP(5, deep_6)
DEEP(4, deep_5) DEEP(3, deep_4) DEEP(2, deep_3) DEEP(1, deep_2)

static void *thread_leak(void *arg)
{
	(void)arg;
	leak_here();
	return NULL;
}

static int clean(void)
{
	for (int i = 0; i < 2000; i++) {
		int p[2];
		int fd = open("/dev/null", O_RDONLY);
		if (fd < 0 || pipe(p) < 0)
			return 1;
		close(fd);
		close(p[0]);
		close(p[1]);
		FILE *f = fopen("/dev/null", "r");
		if (f)
			fclose(f);
	}
	return 0;
}

static int check(int cond, const char *what)
{
	if (!cond)
		printf("ERRNO FAIL %s (errno %d)\n", what, errno);
	return !cond;
}

static int errno_checks(void)
{
	int bad = 0;
	errno = 0;
	bad += check(open("/nonexistent/x", O_RDONLY) == -1 && errno == ENOENT, "open ENOENT");
	errno = 1234;
	int fd = open("/dev/null", O_RDONLY);
	bad += check(fd >= 0 && errno == 1234, "open success keeps errno");
	errno = 4321;
	bad += check(close(fd) == 0 && errno == 4321, "close success keeps errno");
	bad += check(close(fd) == -1 && errno == EBADF, "close EBADF");
	errno = 77;
	FILE *f = fopen("/dev/null", "r");
	bad += check(f && errno == 77, "fopen keeps errno");
	errno = 78;
	bad += check(fclose(f) == 0 && errno == 78, "fclose keeps errno");
	bad += check(dup2(12345, 3) == -1 && errno == EBADF, "dup2 EBADF");
	printf(bad ? "ERRNO BAD\n" : "ERRNO OK\n");
	return bad != 0;
}

static void *main_exit_thread(void *arg)
{
	(void)arg;
	usleep(100000);
	leak_here();
	exit(0);
}

static int lock_held[2], lock_release[2];

static int hold_loader_lock(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)info;
	(void)size;
	(void)arg;
	char c = 1;
	if (write(lock_held[1], &c, 1) != 1 || read(lock_release[0], &c, 1) != 1)
		return 1;
	return 1;
}

static void *loader_lock_holder(void *arg)
{
	dl_iterate_phdr(hold_loader_lock, arg);
	return NULL;
}

/* The child must not hang on the loader lock the vanished thread holds. */
static int fork_with_loader_lock_held(void)
{
	pthread_t t;
	char c;
	if (pipe(lock_held) < 0 || pipe(lock_release) < 0)
		return 1;
	pthread_create(&t, NULL, loader_lock_holder, NULL);
	if (read(lock_held[0], &c, 1) != 1)
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		alarm(10);
		leak_here();
		_exit(0);
	}
	int status = 1;
	waitpid(pid, &status, 0);
	c = 0;
	if (write(lock_release[1], &c, 1) != 1)
		return 1;
	pthread_join(t, NULL);
	return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void *close_cancelled(void *arg)
{
	int fd = *(int *)arg;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cancel(pthread_self());
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	close(fd); /* acts on the pending cancel before closing */
	printf("NOT CANCELLED\n");
	return NULL;
}

static int cancel_in_close(void)
{
	pthread_t t;
	int fd = leak_here();
	pthread_create(&t, NULL, close_cancelled, &fd);
	pthread_join(t, NULL);
	return fcntl(fd, F_GETFD) < 0; /* still open */
}

static int clone_child_leaks(void *arg)
{
	(void)arg;
	leak_here();
	return 0;
}

static int clone3_probe(void)
{
	long bad[] = { syscall(SYS_clone3, NULL, 0),
		       syscall(SYS_clone3, (void *)16, sizeof(struct clone_args)) };
	for (int i = 0; i < 2; i++) {
		if (bad[i] != -1)
			return 1; /* a child: cannot happen with these arguments */
		printf("PROBE %d\n", errno);
	}
	return 0;
}

static int wrong_mode(void)
{
	char c;
	int w = open("/dev/null", O_WRONLY), p = open("/tmp", O_PATH | O_DIRECTORY), ebadf = 0;
	if (w < 0 || p < 0)
		return 1;
	ebadf += read(w, &c, 1) < 0 && errno == EBADF;
	ebadf += fsync(p) < 0 && errno == EBADF;
	printf("WRONGMODE %d\n", ebadf);
	close(w);
	close(p);
	return 0;
}

static int login_tty_on_devnull(void)
{
	int fd = open("/dev/null", O_RDWR);
	int result = login_tty(fd);
	printf("LOGINTTY %d\n", result);
	close(fd);
	return 0;
}

/* From here on the system call nr fails with error, as a seccomp policy
 * or an older kernel makes it; exit 77 when no filter can be installed. */
static void deny_syscall(int nr, int error)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)error),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog program = { sizeof(filter) / sizeof(filter[0]), filter };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
		printf("SKIP no seccomp filter: %s\n", strerror(errno));
		exit(77);
	}
}

/* clone3 probed where process_vm_readv is refused (a seccomp policy). */
static int clone3_probe_without_copy(void)
{
	deny_syscall(__NR_process_vm_readv, EPERM);
	return clone3_probe();
}

static int close_range_denied(void)
{
	leak_here();
	deny_syscall(__NR_close_range, ENOSYS); /* as on kernels before 5.9 */
	int result = close_range(3, ~0u, 0);
	printf("CLOSERANGE %d %d\n", result, result ? errno : 0);
	return 0;
}

/* syscall(SYS_fork): a fork without pthread_atfork handlers; the child
 * leaks and exits. */
static int syscall_fork(void)
{
	long pid = syscall(SYS_fork);
	if (pid == 0)
		_exit(clone_child_leaks(NULL));
	int status = 1;
	if (pid < 0 || waitpid((pid_t)pid, &status, 0) < 0)
		return 1;
	return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#define SCM_PIDFD 0x04
#endif

/* A byte over a socket pair whose receiving end asks for the sender's
 * pidfd: the pidfd received is leaked. */
static int receive_pidfd(void)
{
	int sv[2], on = 1;
	char byte = 'x', control[CMSG_SPACE(sizeof(int))];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 1;
	if (setsockopt(sv[1], SOL_SOCKET, SO_PASSPIDFD, &on, sizeof(on)) != 0) {
		printf("SKIP no SO_PASSPIDFD\n");
		return 77;
	}
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	if (write(sv[0], &byte, 1) != 1 || recvmsg(sv[1], &msg, 0) != 1)
		return 1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_PIDFD) {
			int fd;
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
			printf("LEAK %d\n", fd);
		}
	close(sv[0]);
	close(sv[1]);
	return 0;
}

/* Says "LEAK fd" for each event's descriptor in len bytes at buf. */
static void say_fanotify_leaks(const char *buf, ssize_t len)
{
	for (const struct fanotify_event_metadata *m = (const void *)buf; FAN_EVENT_OK(m, len);
	     m = FAN_EVENT_NEXT(m, len))
		if (m->fd >= 0)
			printf("LEAK %d\n", m->fd);
}

/* Reads the group's events and leaks the descriptor each one carries. */
static NOINLINE int read_fanotify_events(int group)
{
	char buf[4096] __attribute__((aligned(8)));
	ssize_t len = read(group, buf, sizeof(buf));
	say_fanotify_leaks(buf, len);
	return len <= 0;
}

/* Iovecs for readv and preadv2 at offset -1: the first one event long,
 * an empty one, then the rest, so that the second event goes into the
 * third, which is not next to the first in memory (a zeroed gap between
 * them): the agent must take each iovec's own part of what was read. */
struct two_iovecs {
	char first[FAN_EVENT_METADATA_LEN] __attribute__((aligned(8)));
	char gap[64];
	char rest[4096] __attribute__((aligned(8)));
	struct iovec v[3];
};

static void two_iovecs_init(struct two_iovecs *t)
{
	memset(t->gap, 0, sizeof(t->gap));
	t->v[0] = (struct iovec){ t->first, sizeof(t->first) };
	t->v[1] = (struct iovec){ t->gap, 0 };
	t->v[2] = (struct iovec){ t->rest, sizeof(t->rest) };
}

static int say_fanotify_leaks_iov(const struct two_iovecs *t, ssize_t len)
{
	if (len <= (ssize_t)sizeof(t->first))
		return 1; /* not both iovecs */
	say_fanotify_leaks(t->first, sizeof(t->first));
	say_fanotify_leaks(t->rest, len - (ssize_t)sizeof(t->first));
	return 0;
}

/* A group watches `files` files, which are then opened (the events), and
 * reader reads the events, whose descriptors are leaked. */
static int fanotify_event_leak(int (*reader)(int group), int files)
{
	int group = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY);
	if (group < 0) {
		printf("SKIP fanotify_init: %s\n", strerror(errno));
		return 77;
	}
	char path[2][32];
	int opened[2];
	for (int i = 0; i < files; i++) {
		strcpy(path[i], "/tmp/htrace-fanotify-XXXXXX");
		int file = mkstemp(path[i]);
		if (file < 0 || fanotify_mark(group, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, path[i]) != 0)
			return 1;
		close(file);
	}
	for (int i = 0; i < files; i++)
		opened[i] = open(path[i], O_RDONLY);
	int rc = reader(group);
	for (int i = 0; i < files; i++) {
		close(opened[i]);
		unlink(path[i]);
	}
	close(group);
	return rc;
}

static int fanotify_read_leak(void)
{
	return fanotify_event_leak(read_fanotify_events, 1);
}

/* Mode fanotifyNAME: two events read by NAME args into the iovecs t.v,
 * in NAME_fanotify_events, the function their stacks must show. */
#define FANOTIFY_IOVEC_MODE(name, args)                                        \
	static NOINLINE int name##_fanotify_events(int group)                  \
	{                                                                      \
		struct two_iovecs t;                                           \
		two_iovecs_init(&t);                                           \
		return say_fanotify_leaks_iov(&t, name args);                  \
	}                                                                      \
	static int fanotify_##name##_leak(void)                                \
	{                                                                      \
		return fanotify_event_leak(name##_fanotify_events, 2);         \
	}
FANOTIFY_IOVEC_MODE(readv, (group, t.v, 3))
FANOTIFY_IOVEC_MODE(preadv2, (group, t.v, 3, -1, 0))
FANOTIFY_IOVEC_MODE(preadv64v2, (group, t.v, 3, -1, 0))

static int clone_fork(void)
{
	static char stack[256 * 1024] __attribute__((aligned(16)));
	pid_t pid = clone(clone_child_leaks, stack + sizeof(stack), SIGCHLD, NULL);
	int status = 1;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return 1;
	return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void *close_unshared(void *arg)
{
	(void)arg;
	close_range(3, ~0u, CLOSE_RANGE_UNSHARE);
	return NULL;
}

static int unshare_and_close(void)
{
	pthread_t t;
	leak_here();
	pthread_create(&t, NULL, close_unshared, NULL);
	pthread_join(t, NULL);
	return 0;
}

static const char *defining_object(const char *symbol)
{
	Dl_info info;
	void *addr = dlsym(RTLD_DEFAULT, symbol);
	if (!addr || !dladdr(addr, &info) || !info.dli_fname)
		return "none";
	const char *slash = strrchr(info.dli_fname, '/');
	return slash ? slash + 1 : info.dli_fname;
}

/* open(2) straight to the kernel: no libc, no hook sees it. */
static int raw_open_devnull(void)
{
	long ret;
	static const char path[] = "/dev/null";
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(2L), "D"(path), "S"(0L), "d"(0L)
			 : "rcx", "r11", "memory");
	printf("RAW %ld\n", ret);
	return (int)ret;
}

static void *open_close_once(void *arg)
{
	(void)arg;
	int fd = open("/dev/null", O_RDONLY);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int churn(int n)
{
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, open_close_once, NULL) || pthread_join(t, NULL))
			return 1;
	}
	return 0;
}

static void *idle_thread(void *arg)
{
	return arg;
}

/* The modes that are one function of their own. */
static const struct {
	const char *mode;
	int (*run)(void);
} scenarios[] = {
	{ "forklock", fork_with_loader_lock_held },
	{ "cancelclose", cancel_in_close },
	{ "clonefork", clone_fork },
	{ "unshare", unshare_and_close },
	{ "clone3probe", clone3_probe },
	{ "clone3nocopy", clone3_probe_without_copy },
	{ "wrongmode", wrong_mode },
	{ "logintty", login_tty_on_devnull },
	{ "closerangedenied", close_range_denied },
	{ "sysfork", syscall_fork },
	{ "pidfdmsg", receive_pidfd },
	{ "fanotify", fanotify_read_leak },
	{ "fanotifyreadv", fanotify_readv_leak },
	{ "fanotifypreadv2", fanotify_preadv2_leak },
	{ "fanotifypreadv64v2", fanotify_preadv64v2_leak },
};

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "clean";
	int n = argc > 2 ? atoi(argv[2]) : 0;
	if (!strcmp(mode, "args")) {
		for (int i = 2; i < argc; i++)
			printf("%s\n", argv[i]);
		return 0;
	}
	if (!strcmp(mode, "selfcheck")) {
		leak_here(); /* takes a stack: the unwinder is set up by now */
		printf("FDS %d TASKS %d\n", count_entries("/proc/self/fd") - 1,
		       count_entries("/proc/self/task"));
		return 0;
	}
	if (!strcmp(mode, "clean"))
		return clean();
	if (!strcmp(mode, "errno"))
		return errno_checks();
	if (!strcmp(mode, "deep"))
		return deep_1(0) < 0;
	if (!strcmp(mode, "churn"))
		return churn(n);
	if (!strcmp(mode, "many")) {
		for (int i = 0; i < n; i++)
			leak_here();
		return 0;
	}
	pthread_t t;
	if (!strcmp(mode, "raw"))
		return raw_open_devnull() < 0;
	if (!strcmp(mode, "rawthread")) {
		pthread_create(&t, NULL, idle_thread, NULL);
		pthread_join(t, NULL);
		return raw_open_devnull() < 0;
	}
	if (!strcmp(mode, "vfork")) {
		leak_here();
		pid_t pid = vfork();
		if (pid == 0)
			_exit(0);
		return pid < 0;
	}
	if (!strcmp(mode, "badname") && argc == 3) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/leak-\xff\xfe.txt", argv[2]);
		int fd = open(path, O_RDONLY | O_CREAT, 0600);
		if (fd < 0)
			return 1;
		printf("LEAK %d\n", fd);
		return 0;
	}
	if (!strcmp(mode, "aged")) {
		leak_here();
		usleep(1500000);
		leak_here();
		return 0;
	}
	if (!strcmp(mode, "scope")) {
		printf("SCOPE %s", defining_object("_Unwind_RaiseException"));
		printf(" %s\n", defining_object("backtrace"));
		return 0;
	}
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (!strcmp(mode, scenarios[i].mode))
			return scenarios[i].run();
	if (!strcmp(mode, "unsharesolo")) {
		leak_here();
		pthread_create(&t, NULL, idle_thread, NULL);
		pthread_join(t, NULL);
		return close_range(3, ~0u, CLOSE_RANGE_UNSHARE) != 0;
	}
	if (!strcmp(mode, "closefrom")) {
		leak_here();
		closefrom(-1);
		return 0;
	}
	if (!strcmp(mode, "thread")) {
		pthread_create(&t, NULL, thread_leak, NULL);
		pthread_join(t, NULL);
		return 0;
	}
	if (!strcmp(mode, "mainexit")) {
		pthread_create(&t, NULL, main_exit_thread, NULL);
		pthread_exit(NULL);
	}
	leak_here();
	if (!strcmp(mode, "exit"))
		exit(n);
	if (!strcmp(mode, "_exit"))
		_exit(n);
	if (!strcmp(mode, "segv"))
		*(volatile int *)0 = 1;
	if (!strcmp(mode, "abort"))
		abort();
	return 99;
}
