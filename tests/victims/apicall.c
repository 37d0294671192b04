/* apicall NAME: performs the descriptor API NAME (a row of
 * include/htrace/apis.def) for real and prints, one EXPECT line each, the
 * OPEN / CLOSE events and FILE/DIR owners that htrace must have recorded;
 * then exits leaving its descriptors open so they show as leaked.
 * tests/test_apis.py runs it under `htrace run --json --history` and checks
 * the report against these lines.  `apicall --list` prints every NAME.
 *
 * Output lines:  EXPECT PID <pid>        following lines concern this process
 *                EXPECT OPEN <fd> <api>  / EXPECT CLOSE <fd> <api>
 *                EXPECT OWNER <fd> <fdopen|fdopendir>
 *                EXPECT BAD <fd> <api>   a BAD REFERENCE by api on fd
 *                SKIP <reason>           (exit 77: the kernel refuses the API)
 * The call under test is made directly by a function named call_<api>
 * ("syscall(openat)" -> call_syscall_openat), which the test finds as the
 * first frame outside libc of the OPEN stack, and of every BAD REFERENCE
 * stack.  The APIs that use a descriptor are called on one that is not
 * open (EBADF), or through a FILE or DIR whose number was closed and
 * reused. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/landlock.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <linux/userfaultfd.h>
#include <mqueue.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utmp.h>

/* glibc exports these but declares them only under _FORTIFY_SOURCE, or not
 * at all. */
extern int __open(const char *path, int flags, ...);
extern int __open64(const char *path, int flags, ...);
extern int __open_2(const char *path, int flags);
extern int __open64_2(const char *path, int flags);
extern int __openat_2(int dirfd, const char *path, int flags);
extern int __openat64_2(int dirfd, const char *path, int flags);
extern int __pipe(int fds[2]);
extern int __dup2(int fd, int newfd);
extern int __fcntl(int fd, int cmd, ...);
extern int __close(int fd);
extern mqd_t __mq_open_2(const char *name, int flags);
extern ssize_t __getdelim(char **line, size_t *n, int delim, FILE *fp);
extern ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
extern ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
extern ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t buflen);
extern ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int fl);
extern ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int fl,
			      struct sockaddr *a, socklen_t *l);
extern ssize_t __readlinkat_chk(int fd, const char *p, char *buf, size_t n, size_t buflen);
extern char *__fgets_chk(char *buf, size_t size, int n, FILE *fp);
extern size_t __fread_chk(void *buf, size_t buflen, size_t s, size_t n, FILE *fp);
extern int __fprintf_chk(FILE *fp, int flag, const char *fmt, ...);
extern int __vfprintf_chk(FILE *fp, int flag, const char *fmt, va_list ap);
extern int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);

#define TEST_FN static __attribute__((noinline, noclone)) void
#define KERNEL_SIGSET_SIZE 8 /* the kernel's sigset_t, not glibc's */

static const char *api_name = "?";
static int out_fd = STDOUT_FILENO; /* where EXPECT lines go */

/* ---- output ---- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdprintf(out_fd, fmt, ap);
	va_end(ap);
}

static void expect_pid(pid_t pid) { say("EXPECT PID %d\n", (int)pid); }
static void expect_open(int fd, const char *api) { say("EXPECT OPEN %d %s\n", fd, api); }
static void expect_close(int fd, const char *api) { say("EXPECT CLOSE %d %s\n", fd, api); }
static void expect_owner(int fd, const char *owner) { say("EXPECT OWNER %d %s\n", fd, owner); }
static void expect_bad(int fd, const char *api) { say("EXPECT BAD %d %s\n", fd, api); }

/* fds 0-2 replaced by a terminal or /dev/null: closed, then opened anew. */
static void expect_stdio_replaced(const char *api)
{
	for (int fd = 0; fd <= 2; fd++) {
		expect_close(fd, api);
		expect_open(fd, api);
	}
}

static _Noreturn void die(const char *what)
{
	const char *why = errno ? strerror(errno) : "unexpected result";
	dprintf(STDERR_FILENO, "apicall %s: %s: %s\n", api_name, what, why);
	if (out_fd != STDOUT_FILENO) /* stderr may be /dev/null by now */
		say("ERROR %s: %s\n", what, why);
	exit(1);
}

static _Noreturn void skip(const char *what)
{
	say("SKIP %s: %s\n", what, strerror(errno));
	exit(77);
}

/* ---- checking results ---- */

static long must(long result, const char *what)
{
	if (result < 0)
		die(what);
	return result;
}

static void *must_ptr(void *result, const char *what)
{
	if (!result)
		die(what);
	return result;
}

/* For a call made on a descriptor that is not open. */
static void must_be_ebadf(long result, const char *what)
{
	if (result == -1 && errno == EBADF)
		return;
	if (result != -1)
		errno = 0;
	die(what);
}

/* For APIs the machine may refuse: missing kernel feature or privilege. */
static long must_or_skip(long result, const char *what)
{
	if (result >= 0)
		return result;
	switch (errno) {
	case EPERM: case EACCES: case ENOSYS: case EINVAL:
	case EOPNOTSUPP: case ENODEV: case ENOENT:
		skip(what);
	default:
		die(what);
	}
}

/* ---- setup helpers (their own opens are not the call under test) ---- */

static int open_null(void)
{
	int fd = must(open("/dev/null", O_RDONLY), "open /dev/null");
	expect_open(fd, "open");
	return fd;
}

/* A number that was open and is not any more. */
static int closed_descriptor(void)
{
	int fd = open_null();
	must(close(fd), "close");
	expect_close(fd, "close");
	return fd;
}

static int open_root_dir(void)
{
	int fd = must(open("/", O_RDONLY | O_DIRECTORY), "open /");
	expect_open(fd, "open");
	return fd;
}

static void temp_path(char *buf, size_t size, const char *tag)
{
	snprintf(buf, size, "/tmp/htrace-apicall-%d-%s", (int)getpid(), tag);
}

static void ipc_name(char *buf, size_t size, const char *tag)
{
	snprintf(buf, size, "/htrace-apicall-%d-%s", (int)getpid(), tag);
}

/* n descriptors at consecutive numbers from lo up, copies of /dev/null. */
static void open_consecutive(int lo, int n, int *fds)
{
	int src = open_null();
	for (int i = 0; i < n; i++) {
		fds[i] = must(fcntl(src, F_DUPFD, lo + i), "fcntl F_DUPFD");
		if (fds[i] != lo + i) {
			errno = EBUSY;
			die("descriptor range already in use");
		}
		expect_open(fds[i], "fcntl");
	}
}

static void wait_for_child(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		errno = 0;
		die("child failed");
	}
}

/* A listening UNIX socket (abstract name, nothing on disk) and a client
 * connected to it; returns the listener. */
static int listening_pair(const char *tag)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int len = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1,
			   "htrace-apicall-%d-%s", (int)getpid(), tag);
	socklen_t addr_len = offsetof(struct sockaddr_un, sun_path) + 1 + len;

	int listener = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	expect_open(listener, "socket");
	must(bind(listener, (struct sockaddr *)&addr, addr_len), "bind");
	must(listen(listener, 4), "listen");
	int client = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	expect_open(client, "socket");
	must(connect(client, (struct sockaddr *)&addr, addr_len), "connect");
	return listener;
}

/* ---- SCM_RIGHTS ---- */

#define FDS_PER_MESSAGE 2

struct fd_message {
	struct msghdr hdr;
	struct iovec iov;
	char byte;
	union { /* aligned room for one SCM_RIGHTS header */
		char buf[CMSG_SPACE(sizeof(int) * FDS_PER_MESSAGE)];
		struct cmsghdr align;
	} control;
};

static void fd_message_init(struct fd_message *m)
{
	memset(m, 0, sizeof *m);
	m->iov.iov_base = &m->byte;
	m->iov.iov_len = 1;
	m->hdr.msg_iov = &m->iov;
	m->hdr.msg_iovlen = 1;
	m->hdr.msg_control = m->control.buf;
	m->hdr.msg_controllen = sizeof m->control.buf;
}

/* Sends two fresh /dev/null descriptors in one datagram. */
static void send_two_fds(int sock)
{
	struct fd_message m;
	int fds[FDS_PER_MESSAGE] = { open_null(), open_null() };

	fd_message_init(&m);
	struct cmsghdr *c = CMSG_FIRSTHDR(&m.hdr);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof fds);
	memcpy(CMSG_DATA(c), fds, sizeof fds);
	must(sendmsg(sock, &m.hdr, 0), "sendmsg");
}

/* A datagram socketpair with `messages` messages of two descriptors queued
 * on sv[1]; returns sv[1]. */
static int socket_with_fds_queued(int messages)
{
	int sv[2];
	must(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), "socketpair");
	expect_open(sv[0], "socketpair");
	expect_open(sv[1], "socketpair");
	for (int i = 0; i < messages; i++)
		send_two_fds(sv[0]);
	return sv[1];
}

static void expect_received_fds(const struct msghdr *hdr, const char *api)
{
	int count = 0;
	if (hdr->msg_flags & MSG_CTRUNC) {
		errno = 0;
		die("control data truncated");
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(hdr); c; c = CMSG_NXTHDR((struct msghdr *)hdr, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (int i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			expect_open(fd, api);
			count++;
		}
	}
	if (count != FDS_PER_MESSAGE) {
		errno = 0;
		die("wrong number of descriptors received");
	}
}

/* ---- open family ---- */

TEST_FN call_open(void) { expect_open(must(open("/dev/null", O_RDONLY), "open"), "open"); }
TEST_FN call_open64(void) { expect_open(must(open64("/dev/null", O_RDONLY), "open64"), "open64"); }
TEST_FN call___open(void) { expect_open(must(__open("/dev/null", O_RDONLY), "__open"), "__open"); }
TEST_FN call___open64(void) { expect_open(must(__open64("/dev/null", O_RDONLY), "__open64"), "__open64"); }
TEST_FN call___open_2(void) { expect_open(must(__open_2("/dev/null", O_RDONLY), "__open_2"), "__open_2"); }
TEST_FN call___open64_2(void) { expect_open(must(__open64_2("/dev/null", O_RDONLY), "__open64_2"), "__open64_2"); }

TEST_FN call_openat(void)
{
	int dir = must(open("/dev", O_RDONLY | O_DIRECTORY), "open /dev");
	expect_open(dir, "open");
	expect_open(must(openat(dir, "null", O_RDONLY), "openat"), "openat");
}

TEST_FN call_openat64(void)
{
	int dir = must(open("/dev", O_RDONLY | O_DIRECTORY), "open /dev");
	expect_open(dir, "open");
	expect_open(must(openat64(dir, "null", O_RDONLY), "openat64"), "openat64");
}

TEST_FN call___openat_2(void)
{
	int dir = must(open("/dev", O_RDONLY | O_DIRECTORY), "open /dev");
	expect_open(dir, "open");
	expect_open(must(__openat_2(dir, "null", O_RDONLY), "__openat_2"), "__openat_2");
}

TEST_FN call___openat64_2(void)
{
	int dir = must(open("/dev", O_RDONLY | O_DIRECTORY), "open /dev");
	expect_open(dir, "open");
	expect_open(must(__openat64_2(dir, "null", O_RDONLY), "__openat64_2"), "__openat64_2");
}

TEST_FN call_creat(void)
{
	char path[128];
	temp_path(path, sizeof path, "creat");
	int fd = must(creat(path, 0600), "creat");
	unlink(path);
	expect_open(fd, "creat");
}

TEST_FN call_creat64(void)
{
	char path[128];
	temp_path(path, sizeof path, "creat64");
	int fd = must(creat64(path, 0600), "creat64");
	unlink(path);
	expect_open(fd, "creat64");
}

/* A handle for "/" that open_by_handle_at can turn back into a descriptor. */
static struct file_handle *root_handle(void)
{
	struct file_handle *h = must_ptr(malloc(sizeof *h + MAX_HANDLE_SZ), "malloc");
	int mount_id;
	h->handle_bytes = MAX_HANDLE_SZ;
	must_or_skip(name_to_handle_at(AT_FDCWD, "/", h, &mount_id, 0), "name_to_handle_at");
	return h;
}

TEST_FN call_open_by_handle_at(void)
{
	struct file_handle *h = root_handle();
	int mount_fd = open_root_dir();
	int fd = must_or_skip(open_by_handle_at(mount_fd, h, O_RDONLY), "open_by_handle_at");
	expect_open(fd, "open_by_handle_at");
	free(h);
}

TEST_FN call_open_tree(void)
{
	int fd = must_or_skip(open_tree(AT_FDCWD, "/", OPEN_TREE_CLOEXEC), "open_tree");
	expect_open(fd, "open_tree");
}

TEST_FN call_fsopen(void)
{
	expect_open(must_or_skip(fsopen("tmpfs", FSOPEN_CLOEXEC), "fsopen"), "fsopen");
}

/* A filesystem context for a new tmpfs, ready for fsmount. */
static int created_fs_context(void)
{
	int fs = must_or_skip(fsopen("tmpfs", FSOPEN_CLOEXEC), "fsopen");
	expect_open(fs, "fsopen");
	must_or_skip(fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0), "fsconfig");
	return fs;
}

TEST_FN call_fsmount(void)
{
	int fs = created_fs_context();
	expect_open(must_or_skip(fsmount(fs, FSMOUNT_CLOEXEC, 0), "fsmount"), "fsmount");
}

TEST_FN call_fspick(void)
{
	expect_open(must_or_skip(fspick(AT_FDCWD, "/", FSPICK_CLOEXEC), "fspick"), "fspick");
}

/* ---- sockets and pipes ---- */

TEST_FN call_socket(void)
{
	expect_open(must(socket(AF_UNIX, SOCK_STREAM, 0), "socket"), "socket");
}

TEST_FN call_socketpair(void)
{
	int sv[2];
	must(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), "socketpair");
	expect_open(sv[0], "socketpair");
	expect_open(sv[1], "socketpair");
}

TEST_FN call_accept(void)
{
	int listener = listening_pair("accept");
	expect_open(must(accept(listener, NULL, NULL), "accept"), "accept");
	int bad = closed_descriptor();
	must_be_ebadf(accept(bad, NULL, NULL), "accept of a closed descriptor");
	expect_bad(bad, "accept");
}

TEST_FN call_accept4(void)
{
	int listener = listening_pair("accept4");
	expect_open(must(accept4(listener, NULL, NULL, SOCK_CLOEXEC), "accept4"), "accept4");
	int bad = closed_descriptor();
	must_be_ebadf(accept4(bad, NULL, NULL, SOCK_CLOEXEC), "accept4 of a closed descriptor");
	expect_bad(bad, "accept4");
}

static void expect_pipe(const int p[2], const char *api)
{
	expect_open(p[0], api);
	expect_open(p[1], api);
}

TEST_FN call_pipe(void)
{
	int p[2];
	must(pipe(p), "pipe");
	expect_pipe(p, "pipe");
}

TEST_FN call___pipe(void)
{
	int p[2];
	must(__pipe(p), "__pipe");
	expect_pipe(p, "__pipe");
}

TEST_FN call_pipe2(void)
{
	int p[2];
	must(pipe2(p, O_CLOEXEC), "pipe2");
	expect_pipe(p, "pipe2");
}

/* ---- duplication ---- */

TEST_FN call_dup(void)
{
	int src = open_null();
	expect_open(must(dup(src), "dup"), "dup");
	int bad = closed_descriptor();
	must_be_ebadf(dup(bad), "dup of a closed descriptor");
	expect_bad(bad, "dup");
}

/* Target 100 is free: only an OPEN; target `busy` is open: CLOSE then OPEN. */
static void expect_dup_onto_free_and_busy(int onto_free, int onto_busy, const char *api)
{
	expect_open(onto_free, api);
	expect_close(onto_busy, api);
	expect_open(onto_busy, api);
}

TEST_FN call_dup2(void)
{
	int src = open_null(), busy = open_null();
	int onto_free = must(dup2(src, 100), "dup2 onto a free number");
	int onto_busy = must(dup2(src, busy), "dup2 onto an open descriptor");
	expect_dup_onto_free_and_busy(onto_free, onto_busy, "dup2");
}

TEST_FN call___dup2(void)
{
	int src = open_null(), busy = open_null();
	int onto_free = must(__dup2(src, 100), "__dup2 onto a free number");
	int onto_busy = must(__dup2(src, busy), "__dup2 onto an open descriptor");
	expect_dup_onto_free_and_busy(onto_free, onto_busy, "__dup2");
}

TEST_FN call_dup3(void)
{
	int src = open_null(), busy = open_null();
	int onto_free = must(dup3(src, 100, O_CLOEXEC), "dup3 onto a free number");
	int onto_busy = must(dup3(src, busy, O_CLOEXEC), "dup3 onto an open descriptor");
	expect_dup_onto_free_and_busy(onto_free, onto_busy, "dup3");
}

TEST_FN call_fcntl(void)
{
	int src = open_null();
	int plain = must(fcntl(src, F_DUPFD, 10), "fcntl F_DUPFD");
	int cloexec = must(fcntl(src, F_DUPFD_CLOEXEC, 20), "fcntl F_DUPFD_CLOEXEC");
	must(fcntl(src, F_GETFD), "fcntl F_GETFD");
	expect_open(plain, "fcntl");
	expect_open(cloexec, "fcntl");
}

TEST_FN call_fcntl64(void)
{
	int src = open_null();
	int plain = must(fcntl64(src, F_DUPFD, 10), "fcntl64 F_DUPFD");
	int cloexec = must(fcntl64(src, F_DUPFD_CLOEXEC, 20), "fcntl64 F_DUPFD_CLOEXEC");
	expect_open(plain, "fcntl64");
	expect_open(cloexec, "fcntl64");
}

TEST_FN call___fcntl(void)
{
	int src = open_null();
	int plain = must(__fcntl(src, F_DUPFD, 10), "__fcntl F_DUPFD");
	int cloexec = must(__fcntl(src, F_DUPFD_CLOEXEC, 20), "__fcntl F_DUPFD_CLOEXEC");
	expect_open(plain, "__fcntl");
	expect_open(cloexec, "__fcntl");
}

/* ---- anonymous-inode descriptors ---- */

TEST_FN call_eventfd(void) { expect_open(must(eventfd(0, EFD_CLOEXEC), "eventfd"), "eventfd"); }

TEST_FN call_timerfd_create(void)
{
	expect_open(must(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), "timerfd_create"), "timerfd_create");
}

TEST_FN call_signalfd(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	int fd = must(signalfd(-1, &mask, SFD_CLOEXEC), "signalfd");
	sigaddset(&mask, SIGUSR1); /* updating an existing one creates nothing */
	must(signalfd(fd, &mask, 0), "signalfd update");
	expect_open(fd, "signalfd");
}

TEST_FN call_epoll_create(void) { expect_open(must(epoll_create(1), "epoll_create"), "epoll_create"); }
TEST_FN call_epoll_create1(void) { expect_open(must(epoll_create1(EPOLL_CLOEXEC), "epoll_create1"), "epoll_create1"); }
TEST_FN call_inotify_init(void) { expect_open(must(inotify_init(), "inotify_init"), "inotify_init"); }
TEST_FN call_inotify_init1(void) { expect_open(must(inotify_init1(IN_CLOEXEC), "inotify_init1"), "inotify_init1"); }

TEST_FN call_fanotify_init(void)
{
	int fd = must_or_skip(fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDONLY), "fanotify_init");
	expect_open(fd, "fanotify_init");
}

TEST_FN call_memfd_create(void)
{
	expect_open(must(memfd_create("apicall", MFD_CLOEXEC), "memfd_create"), "memfd_create");
}

TEST_FN call_pidfd_open(void)
{
	expect_open(must_or_skip(pidfd_open(getpid(), 0), "pidfd_open"), "pidfd_open");
}

TEST_FN call_pidfd_getfd(void)
{
	int self = must_or_skip(pidfd_open(getpid(), 0), "pidfd_open");
	expect_open(self, "pidfd_open");
	int src = open_null();
	expect_open(must_or_skip(pidfd_getfd(self, src, 0), "pidfd_getfd"), "pidfd_getfd");
}

/* ---- terminals ---- */

TEST_FN call_posix_openpt(void)
{
	expect_open(must(posix_openpt(O_RDWR | O_NOCTTY), "posix_openpt"), "posix_openpt");
}

TEST_FN call_getpt(void) { expect_open(must(getpt(), "getpt"), "getpt"); }

TEST_FN call_openpty(void)
{
	int master, slave;
	must(openpty(&master, &slave, NULL, NULL, NULL), "openpty");
	expect_open(master, "openpty");
	expect_open(slave, "openpty");
}

/* The child gets the terminal on 0-2 and exits; the parent keeps the master. */
TEST_FN call_forkpty(void)
{
	int master;
	pid_t child = must(forkpty(&master, NULL, NULL, NULL), "forkpty");
	if (child == 0)
		exit(0);
	wait_for_child(child);
	expect_pid(child);
	expect_stdio_replaced("forkpty");
	expect_pid(getpid());
	expect_open(master, "forkpty");
}

/* login_tty needs a process that may start a session: a child does it,
 * saying what to expect before the call, as afterwards stdout is the
 * terminal. */
TEST_FN call_login_tty(void)
{
	int master, slave;
	pid_t child = must(fork(), "fork");
	if (child > 0) {
		wait_for_child(child);
		return;
	}
	must(openpty(&master, &slave, NULL, NULL, NULL), "openpty");
	expect_pid(getpid());
	expect_open(master, "openpty");
	expect_open(slave, "openpty");
	expect_close(slave, "login_tty");
	expect_stdio_replaced("login_tty");
	must(login_tty(slave), "login_tty");
	exit(0);
}

/* Only the detached child returns; it writes through a copy of stdout. */
TEST_FN call_daemon(void)
{
	out_fd = must(dup(STDOUT_FILENO), "dup stdout");
	must(daemon(1, 0), "daemon");
	expect_pid(getpid());
	expect_stdio_replaced("daemon");
}

/* ---- POSIX IPC ---- */

TEST_FN call_shm_open(void)
{
	char name[64];
	ipc_name(name, sizeof name, "shm");
	int fd = must(shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600), "shm_open");
	shm_unlink(name);
	expect_open(fd, "shm_open");
}

static mqd_t create_queue(const char *name)
{
	mqd_t q = must_or_skip(mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, NULL), "mq_open");
	expect_open(q, "mq_open");
	return q;
}

TEST_FN call_mq_open(void)
{
	char name[64];
	ipc_name(name, sizeof name, "mq");
	mqd_t q = must_or_skip(mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, NULL), "mq_open");
	mq_unlink(name);
	expect_open(q, "mq_open");
}

TEST_FN call___mq_open_2(void)
{
	char name[64];
	ipc_name(name, sizeof name, "mq2");
	create_queue(name);
	mqd_t q = __mq_open_2(name, O_RDWR);
	int saved = errno;
	mq_unlink(name);
	errno = saved;
	expect_open(must(q, "__mq_open_2"), "__mq_open_2");
}

TEST_FN call_mq_close(void)
{
	char name[64];
	ipc_name(name, sizeof name, "mqc");
	mqd_t q = create_queue(name);
	mq_unlink(name);
	must(mq_close(q), "mq_close");
	expect_close(q, "mq_close");
}

/* ---- temporary files ---- */

/* Makes a template "/tmp/htrace-apicall-PID-XXXXXX<suffix>". */
static void temp_template(char *buf, size_t size, const char *suffix)
{
	snprintf(buf, size, "/tmp/htrace-apicall-%d-XXXXXX%s", (int)getpid(), suffix);
}

static void expect_temp_file(int fd, char *path, const char *api)
{
	unlink(path);
	expect_open(fd, api);
}

#define SUFFIX ".tmp"
#define SUFFIX_LEN 4

TEST_FN call_mkstemp(void)
{
	char path[128];
	temp_template(path, sizeof path, "");
	expect_temp_file(must(mkstemp(path), "mkstemp"), path, "mkstemp");
}

TEST_FN call_mkstemp64(void)
{
	char path[128];
	temp_template(path, sizeof path, "");
	expect_temp_file(must(mkstemp64(path), "mkstemp64"), path, "mkstemp64");
}

TEST_FN call_mkostemp(void)
{
	char path[128];
	temp_template(path, sizeof path, "");
	expect_temp_file(must(mkostemp(path, O_CLOEXEC), "mkostemp"), path, "mkostemp");
}

TEST_FN call_mkostemp64(void)
{
	char path[128];
	temp_template(path, sizeof path, "");
	expect_temp_file(must(mkostemp64(path, O_CLOEXEC), "mkostemp64"), path, "mkostemp64");
}

TEST_FN call_mkstemps(void)
{
	char path[128];
	temp_template(path, sizeof path, SUFFIX);
	expect_temp_file(must(mkstemps(path, SUFFIX_LEN), "mkstemps"), path, "mkstemps");
}

TEST_FN call_mkstemps64(void)
{
	char path[128];
	temp_template(path, sizeof path, SUFFIX);
	expect_temp_file(must(mkstemps64(path, SUFFIX_LEN), "mkstemps64"), path, "mkstemps64");
}

TEST_FN call_mkostemps(void)
{
	char path[128];
	temp_template(path, sizeof path, SUFFIX);
	expect_temp_file(must(mkostemps(path, SUFFIX_LEN, O_CLOEXEC), "mkostemps"), path, "mkostemps");
}

TEST_FN call_mkostemps64(void)
{
	char path[128];
	temp_template(path, sizeof path, SUFFIX);
	expect_temp_file(must(mkostemps64(path, SUFFIX_LEN, O_CLOEXEC), "mkostemps64"), path, "mkostemps64");
}

/* ---- stdio streams ---- */

static int file_fd(FILE *fp, const char *what)
{
	return fileno(must_ptr(fp, what));
}

TEST_FN call_tmpfile(void) { expect_open(file_fd(tmpfile(), "tmpfile"), "tmpfile"); }
TEST_FN call_tmpfile64(void) { expect_open(file_fd(tmpfile64(), "tmpfile64"), "tmpfile64"); }
TEST_FN call_fopen(void) { expect_open(file_fd(fopen("/dev/null", "r"), "fopen"), "fopen"); }
TEST_FN call_fopen64(void) { expect_open(file_fd(fopen64("/dev/null", "r"), "fopen64"), "fopen64"); }

TEST_FN call_fdopen(void)
{
	int fd = open_null();
	must_ptr(fdopen(fd, "r"), "fdopen");
	expect_owner(fd, "fdopen");
}

static FILE *fopen_null(void)
{
	FILE *fp = must_ptr(fopen("/dev/null", "r"), "fopen /dev/null");
	expect_open(fileno(fp), "fopen");
	return fp;
}

TEST_FN call_freopen(void)
{
	FILE *fp = fopen_null();
	int old_fd = fileno(fp);
	int new_fd = file_fd(freopen("/dev/zero", "r", fp), "freopen");
	expect_close(old_fd, "freopen");
	expect_open(new_fd, "freopen");
}

TEST_FN call_freopen64(void)
{
	FILE *fp = fopen_null();
	int old_fd = fileno(fp);
	int new_fd = file_fd(freopen64("/dev/zero", "r", fp), "freopen64");
	expect_close(old_fd, "freopen64");
	expect_open(new_fd, "freopen64");
}

TEST_FN call_popen(void) { expect_open(file_fd(popen("exit 0", "r"), "popen"), "popen"); }

TEST_FN call_fclose(void)
{
	FILE *fp = fopen_null();
	int fd = fileno(fp);
	must(fclose(fp), "fclose");
	expect_close(fd, "fclose");
}

TEST_FN call_pclose(void)
{
	FILE *fp = must_ptr(popen("exit 0", "r"), "popen");
	int fd = fileno(fp);
	expect_open(fd, "popen");
	must(pclose(fp), "pclose");
	expect_close(fd, "pclose");
}

/* glibc's fcloseall flushes every stream but leaves the descriptors open;
 * expect a CLOSE only for those the kernel really closed. */
TEST_FN call_fcloseall(void)
{
	out_fd = must(dup(STDOUT_FILENO), "dup stdout");
	expect_open(out_fd, "dup");
	int fds[] = { 0, 1, 2, fileno(fopen_null()), fileno(fopen_null()) };
	must(fcloseall(), "fcloseall");
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fcntl(fds[i], F_GETFD) < 0)
			expect_close(fds[i], "fcloseall");
}

/* ---- directory streams ---- */

TEST_FN call_opendir(void) { expect_open(dirfd(must_ptr(opendir("/"), "opendir")), "opendir"); }

TEST_FN call_fdopendir(void)
{
	int fd = open_root_dir();
	must_ptr(fdopendir(fd), "fdopendir");
	expect_owner(fd, "fdopendir");
}

TEST_FN call_closedir(void)
{
	DIR *dir = must_ptr(opendir("/"), "opendir");
	int fd = dirfd(dir);
	expect_open(fd, "opendir");
	must(closedir(dir), "closedir");
	expect_close(fd, "closedir");
}

/* ---- receiving descriptors ---- */

TEST_FN call_recvmsg(void)
{
	int sock = socket_with_fds_queued(1);
	struct fd_message m;
	fd_message_init(&m);
	must(recvmsg(sock, &m.hdr, 0), "recvmsg");
	expect_received_fds(&m.hdr, "recvmsg");
}

#define MESSAGES 2

static void mmsg_init(struct fd_message m[MESSAGES], struct mmsghdr v[MESSAGES])
{
	memset(v, 0, sizeof(struct mmsghdr) * MESSAGES);
	for (int i = 0; i < MESSAGES; i++) {
		fd_message_init(&m[i]);
		v[i].msg_hdr = m[i].hdr;
	}
}

static void expect_mmsg_fds(struct mmsghdr v[MESSAGES], int received, const char *api)
{
	if (received != MESSAGES) {
		errno = 0;
		die("recvmmsg received too few messages");
	}
	for (int i = 0; i < MESSAGES; i++)
		expect_received_fds(&v[i].msg_hdr, api);
}

TEST_FN call_recvmmsg(void)
{
	int sock = socket_with_fds_queued(MESSAGES);
	struct fd_message m[MESSAGES];
	struct mmsghdr v[MESSAGES];
	mmsg_init(m, v);
	int received = must(recvmmsg(sock, v, MESSAGES, 0, NULL), "recvmmsg");
	expect_mmsg_fds(v, received, "recvmmsg");
}

/* ---- closing ---- */

TEST_FN call_close(void)
{
	int fd = open_null();
	must(close(fd), "close");
	expect_close(fd, "close");
}

TEST_FN call___close(void)
{
	int fd = open_null();
	must(__close(fd), "__close");
	expect_close(fd, "__close");
}

#define RANGE_LO 200
#define RANGE_N 3

/* Closes RANGE_N descriptors with one call; a CLOSE_RANGE_CLOEXEC call on
 * another must close nothing. */
TEST_FN call_close_range(void)
{
	int fds[RANGE_N], kept;
	open_consecutive(RANGE_LO, RANGE_N, fds);
	open_consecutive(RANGE_LO + 10, 1, &kept);
	must_or_skip(close_range(RANGE_LO, RANGE_LO + RANGE_N - 1, 0), "close_range");
	must_or_skip(close_range(kept, kept, CLOSE_RANGE_CLOEXEC), "close_range CLOEXEC");
	for (int i = 0; i < RANGE_N; i++)
		expect_close(fds[i], "close_range");
}

/* One above the highest descriptor open now (at least RANGE_LO), so that
 * closefrom closes nothing it was not given. */
static int above_open_fds(void)
{
	struct rlimit lim;
	int highest = RANGE_LO - 1;
	must(getrlimit(RLIMIT_NOFILE, &lim), "getrlimit");
	int limit = lim.rlim_cur < 65536 ? (int)lim.rlim_cur : 65536;
	for (int fd = RANGE_LO; fd < limit; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			highest = fd;
	return highest + 1;
}

TEST_FN call_closefrom(void)
{
	int fds[RANGE_N], lo = above_open_fds();
	open_consecutive(lo, RANGE_N, fds);
	closefrom(lo);
	for (int i = 0; i < RANGE_N; i++)
		expect_close(fds[i], "closefrom");
}

/* ---- raw syscall() ---- */

TEST_FN call_syscall(void)
{
	must(syscall(SYS_getpid), "syscall(getpid)");
	int fd = must(syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY), "syscall(openat)");
	expect_open(fd, "syscall(openat)");
}

TEST_FN call_syscall_open(void)
{
	expect_open(must(syscall(SYS_open, "/dev/null", O_RDONLY), "open"), "syscall(open)");
}

TEST_FN call_syscall_openat(void)
{
	int dir = must(open("/dev", O_RDONLY | O_DIRECTORY), "open /dev");
	expect_open(dir, "open");
	expect_open(must(syscall(SYS_openat, dir, "null", O_RDONLY), "openat"), "syscall(openat)");
}

TEST_FN call_syscall_openat2(void)
{
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC };
	int fd = must_or_skip(syscall(SYS_openat2, AT_FDCWD, "/dev/null", &how, sizeof how), "openat2");
	expect_open(fd, "syscall(openat2)");
}

TEST_FN call_syscall_creat(void)
{
	char path[128];
	temp_path(path, sizeof path, "sys-creat");
	int fd = must(syscall(SYS_creat, path, 0600), "creat");
	unlink(path);
	expect_open(fd, "syscall(creat)");
}

TEST_FN call_syscall_open_by_handle_at(void)
{
	struct file_handle *h = root_handle();
	int mount_fd = open_root_dir();
	int fd = must_or_skip(syscall(SYS_open_by_handle_at, mount_fd, h, O_RDONLY), "open_by_handle_at");
	expect_open(fd, "syscall(open_by_handle_at)");
	free(h);
}

TEST_FN call_syscall_open_tree(void)
{
	int fd = must_or_skip(syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLOEXEC), "open_tree");
	expect_open(fd, "syscall(open_tree)");
}

TEST_FN call_syscall_fsopen(void)
{
	int fd = must_or_skip(syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC), "fsopen");
	expect_open(fd, "syscall(fsopen)");
}

TEST_FN call_syscall_fsmount(void)
{
	int fs = created_fs_context();
	int fd = must_or_skip(syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0), "fsmount");
	expect_open(fd, "syscall(fsmount)");
}

TEST_FN call_syscall_fspick(void)
{
	int fd = must_or_skip(syscall(SYS_fspick, AT_FDCWD, "/", FSPICK_CLOEXEC), "fspick");
	expect_open(fd, "syscall(fspick)");
}

TEST_FN call_syscall_socket(void)
{
	expect_open(must(syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0), "socket"), "syscall(socket)");
}

TEST_FN call_syscall_socketpair(void)
{
	int sv[2];
	must(syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, sv), "socketpair");
	expect_open(sv[0], "syscall(socketpair)");
	expect_open(sv[1], "syscall(socketpair)");
}

TEST_FN call_syscall_accept(void)
{
	int listener = listening_pair("sys-accept");
	expect_open(must(syscall(SYS_accept, listener, NULL, NULL), "accept"), "syscall(accept)");
}

TEST_FN call_syscall_accept4(void)
{
	int listener = listening_pair("sys-accept4");
	int fd = must(syscall(SYS_accept4, listener, NULL, NULL, SOCK_CLOEXEC), "accept4");
	expect_open(fd, "syscall(accept4)");
}

TEST_FN call_syscall_pipe(void)
{
	int p[2];
	must(syscall(SYS_pipe, p), "pipe");
	expect_pipe(p, "syscall(pipe)");
}

TEST_FN call_syscall_pipe2(void)
{
	int p[2];
	must(syscall(SYS_pipe2, p, O_CLOEXEC), "pipe2");
	expect_pipe(p, "syscall(pipe2)");
}

TEST_FN call_syscall_dup(void)
{
	int src = open_null();
	expect_open(must(syscall(SYS_dup, src), "dup"), "syscall(dup)");
}

TEST_FN call_syscall_dup2(void)
{
	int src = open_null(), busy = open_null();
	int onto_free = must(syscall(SYS_dup2, src, 100), "dup2 onto a free number");
	int onto_busy = must(syscall(SYS_dup2, src, busy), "dup2 onto an open descriptor");
	/* the kernel takes the numbers as unsigned int: this is dup2(src, src),
	 * which closes and opens nothing */
	must(syscall(SYS_dup2, src, (long)src | 1L << 32), "dup2 onto itself, high bits set");
	expect_dup_onto_free_and_busy(onto_free, onto_busy, "syscall(dup2)");
}

TEST_FN call_syscall_dup3(void)
{
	int src = open_null(), busy = open_null();
	int onto_free = must(syscall(SYS_dup3, src, 100, O_CLOEXEC), "dup3 onto a free number");
	int onto_busy = must(syscall(SYS_dup3, src, busy, O_CLOEXEC), "dup3 onto an open descriptor");
	expect_dup_onto_free_and_busy(onto_free, onto_busy, "syscall(dup3)");
}

TEST_FN call_syscall_fcntl(void)
{
	int src = open_null();
	int plain = must(syscall(SYS_fcntl, src, F_DUPFD, 10), "fcntl F_DUPFD");
	int cloexec = must(syscall(SYS_fcntl, src, F_DUPFD_CLOEXEC, 20), "fcntl F_DUPFD_CLOEXEC");
	must(syscall(SYS_fcntl, src, F_GETFD), "fcntl F_GETFD");
	expect_open(plain, "syscall(fcntl)");
	expect_open(cloexec, "syscall(fcntl)");
}

TEST_FN call_syscall_eventfd(void)
{
	expect_open(must(syscall(SYS_eventfd, 0), "eventfd"), "syscall(eventfd)");
}

TEST_FN call_syscall_eventfd2(void)
{
	expect_open(must(syscall(SYS_eventfd2, 0, EFD_CLOEXEC), "eventfd2"), "syscall(eventfd2)");
}

TEST_FN call_syscall_timerfd_create(void)
{
	int fd = must(syscall(SYS_timerfd_create, CLOCK_MONOTONIC, TFD_CLOEXEC), "timerfd_create");
	expect_open(fd, "syscall(timerfd_create)");
}

static void usr2_mask(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGUSR2);
}

TEST_FN call_syscall_signalfd(void)
{
	sigset_t mask;
	usr2_mask(&mask);
	int fd = must(syscall(SYS_signalfd, -1, &mask, KERNEL_SIGSET_SIZE), "signalfd");
	must(syscall(SYS_signalfd, fd, &mask, KERNEL_SIGSET_SIZE), "signalfd update");
	expect_open(fd, "syscall(signalfd)");
}

TEST_FN call_syscall_signalfd4(void)
{
	sigset_t mask;
	usr2_mask(&mask);
	int fd = must(syscall(SYS_signalfd4, -1, &mask, KERNEL_SIGSET_SIZE, SFD_CLOEXEC), "signalfd4");
	must(syscall(SYS_signalfd4, fd, &mask, KERNEL_SIGSET_SIZE, 0), "signalfd4 update");
	expect_open(fd, "syscall(signalfd4)");
}

TEST_FN call_syscall_epoll_create(void)
{
	expect_open(must(syscall(SYS_epoll_create, 1), "epoll_create"), "syscall(epoll_create)");
}

TEST_FN call_syscall_epoll_create1(void)
{
	expect_open(must(syscall(SYS_epoll_create1, EPOLL_CLOEXEC), "epoll_create1"), "syscall(epoll_create1)");
}

TEST_FN call_syscall_inotify_init(void)
{
	expect_open(must(syscall(SYS_inotify_init), "inotify_init"), "syscall(inotify_init)");
}

TEST_FN call_syscall_inotify_init1(void)
{
	expect_open(must(syscall(SYS_inotify_init1, IN_CLOEXEC), "inotify_init1"), "syscall(inotify_init1)");
}

TEST_FN call_syscall_fanotify_init(void)
{
	int fd = must_or_skip(syscall(SYS_fanotify_init, FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDONLY), "fanotify_init");
	expect_open(fd, "syscall(fanotify_init)");
}

TEST_FN call_syscall_memfd_create(void)
{
	int fd = must(syscall(SYS_memfd_create, "apicall", MFD_CLOEXEC), "memfd_create");
	expect_open(fd, "syscall(memfd_create)");
}

TEST_FN call_syscall_memfd_secret(void)
{
	int fd = must_or_skip(syscall(SYS_memfd_secret, 0), "memfd_secret");
	expect_open(fd, "syscall(memfd_secret)");
}

TEST_FN call_syscall_pidfd_open(void)
{
	int fd = must_or_skip(syscall(SYS_pidfd_open, getpid(), 0), "pidfd_open");
	expect_open(fd, "syscall(pidfd_open)");
}

TEST_FN call_syscall_pidfd_getfd(void)
{
	int self = must_or_skip(pidfd_open(getpid(), 0), "pidfd_open");
	expect_open(self, "pidfd_open");
	int src = open_null();
	int fd = must_or_skip(syscall(SYS_pidfd_getfd, self, src, 0), "pidfd_getfd");
	expect_open(fd, "syscall(pidfd_getfd)");
}

TEST_FN call_syscall_userfaultfd(void)
{
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL) /* kernel older than 5.11 */
		fd = syscall(SYS_userfaultfd, O_CLOEXEC);
	expect_open(must_or_skip(fd, "userfaultfd"), "syscall(userfaultfd)");
}

TEST_FN call_syscall_perf_event_open(void)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof attr,
		.config = PERF_COUNT_SW_TASK_CLOCK,
		.disabled = 1,
		.exclude_kernel = 1,
		.exclude_hv = 1,
	};
	int fd = must_or_skip(syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC),
			      "perf_event_open");
	expect_open(fd, "syscall(perf_event_open)");
}

TEST_FN call_syscall_io_uring_setup(void)
{
	struct io_uring_params params;
	memset(&params, 0, sizeof params);
	int fd = must_or_skip(syscall(SYS_io_uring_setup, 4, &params), "io_uring_setup");
	expect_open(fd, "syscall(io_uring_setup)");
}

TEST_FN call_syscall_mq_open(void)
{
	char name[64];
	ipc_name(name, sizeof name, "sys-mq");
	/* The system call takes the name without its leading slash. */
	int fd = must_or_skip(syscall(SYS_mq_open, name + 1, O_CREAT | O_EXCL | O_RDWR, 0600, NULL),
			      "mq_open");
	mq_unlink(name);
	expect_open(fd, "syscall(mq_open)");
}

TEST_FN call_syscall_recvmsg(void)
{
	int sock = socket_with_fds_queued(1);
	struct fd_message m;
	fd_message_init(&m);
	must(syscall(SYS_recvmsg, sock, &m.hdr, 0), "recvmsg");
	expect_received_fds(&m.hdr, "syscall(recvmsg)");
}

TEST_FN call_syscall_recvmmsg(void)
{
	int sock = socket_with_fds_queued(MESSAGES);
	struct fd_message m[MESSAGES];
	struct mmsghdr v[MESSAGES];
	mmsg_init(m, v);
	int received = must(syscall(SYS_recvmmsg, sock, v, MESSAGES, 0, NULL), "recvmmsg");
	expect_mmsg_fds(v, received, "syscall(recvmmsg)");
}

TEST_FN call_syscall_close(void)
{
	int fd = open_null();
	must(syscall(SYS_close, fd), "close");
	expect_close(fd, "syscall(close)");
}

TEST_FN call_syscall_close_range(void)
{
	int fds[RANGE_N], kept;
	open_consecutive(RANGE_LO, RANGE_N, fds);
	open_consecutive(RANGE_LO + 10, 1, &kept);
	must_or_skip(syscall(SYS_close_range, RANGE_LO, RANGE_LO + RANGE_N - 1, 0), "close_range");
	must_or_skip(syscall(SYS_close_range, kept, kept, CLOSE_RANGE_CLOEXEC), "close_range CLOEXEC");
	for (int i = 0; i < RANGE_N; i++)
		expect_close(fds[i], "syscall(close_range)");
}

/* ---- the table ---- */

struct api_test {
	const char *name;
	void (*run)(void);
};

#define T(fn) { #fn, call_##fn }
#define S(fn) { "syscall(" #fn ")", call_syscall_##fn }

/* ---- clone with CLONE_PIDFD: the parent gets a pidfd ---- */

static int clone_child(void *arg)
{
	(void)arg;
	_exit(0);
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

TEST_FN call_clone(void)
{
	static char stack[64 * 1024] __attribute__((aligned(16)));
	int pidfd = -1;
	pid_t pid = must_or_skip(clone(clone_child, stack + sizeof stack, CLONE_PIDFD | SIGCHLD,
				       NULL, &pidfd), "clone CLONE_PIDFD");
	reap(pid);
	expect_open(pidfd, "clone");
}

extern int __clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);

TEST_FN call___clone(void)
{
	static char stack[64 * 1024] __attribute__((aligned(16)));
	int pidfd = -1;
	pid_t pid = must_or_skip(__clone(clone_child, stack + sizeof stack, CLONE_PIDFD | SIGCHLD,
					 NULL, &pidfd), "__clone CLONE_PIDFD");
	reap(pid);
	expect_open(pidfd, "__clone");
}

TEST_FN call_syscall_clone(void)
{
	int pidfd = -1;
	long pid = must_or_skip(syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pidfd, NULL, 0),
				"clone CLONE_PIDFD");
	if (pid == 0)
		_exit(0);
	reap((pid_t)pid);
	expect_open(pidfd, "syscall(clone)");
}

TEST_FN call_syscall_clone3(void)
{
	int pidfd = -1;
	struct clone_args args = { .flags = CLONE_PIDFD, .pidfd = (uintptr_t)&pidfd,
				   .exit_signal = SIGCHLD };
	long pid = must_or_skip(syscall(SYS_clone3, &args, sizeof(args)), "clone3 CLONE_PIDFD");
	if (pid == 0)
		_exit(0);
	reap((pid_t)pid);
	expect_open(pidfd, "syscall(clone3)");
}

/* ---- ioctl requests and system calls that return a new descriptor ---- */

/* Closes fd 0 (stdin), so that a call under test whose result 0 is not a
 * descriptor shows as inconsistent if htrace records it as one (no
 * descriptor may be created after it: it would take the number 0). */
static void close_stdin(void)
{
	must(close(STDIN_FILENO), "close stdin");
	expect_close(STDIN_FILENO, "close");
}

/* The peer of a pseudo-terminal master (TIOCGPTPEER) and the user namespace
 * owning our network namespace (NS_GET_USERNS, when the kernel lets us see
 * it) are new descriptors; TIOCGPTN's result is not. */
TEST_FN call_ioctl(void)
{
	int master = must(posix_openpt(O_RDWR | O_NOCTTY), "posix_openpt");
	expect_open(master, "posix_openpt");
	must(grantpt(master), "grantpt");
	must(unlockpt(master), "unlockpt");
	int peer = must_or_skip(ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY), "ioctl TIOCGPTPEER");
	expect_open(peer, "ioctl");
	int net_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (net_ns >= 0) {
		expect_open(net_ns, "open");
		int user_ns = ioctl(net_ns, NS_GET_USERNS);
		if (user_ns >= 0)
			expect_open(user_ns, "ioctl");
		else if (errno != EPERM && errno != ENOTTY)
			die("ioctl NS_GET_USERNS");
	}
	close_stdin();
	unsigned int pty_number;
	must(ioctl(master, TIOCGPTN, &pty_number), "ioctl TIOCGPTN");
}

/* Filters that allow everything: installed with a notification listener,
 * the result is a new descriptor; without one, or for another operation,
 * it is not. */
TEST_FN call_syscall_seccomp(void)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = 1, .filter = &allow };
	uint32_t action = SECCOMP_RET_ALLOW;
	must_or_skip(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl PR_SET_NO_NEW_PRIVS");
	int fd = must_or_skip(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
				      SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog), "seccomp NEW_LISTENER");
	expect_open(fd, "syscall(seccomp)");
	close_stdin();
	must(syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action), "seccomp GET_ACTION_AVAIL");
	must(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog), "seccomp filter");
}

/* A one-element array map is a new descriptor; looking it up is not. */
TEST_FN call_syscall_bpf(void)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = sizeof(uint32_t);
	attr.value_size = sizeof(uint32_t);
	attr.max_entries = 1;
	int fd = must_or_skip(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr), "bpf BPF_MAP_CREATE");
	expect_open(fd, "syscall(bpf)");
	close_stdin();
	uint32_t key = 0, value;
	memset(&attr, 0, sizeof attr);
	attr.map_fd = fd;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)&value;
	must(syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &attr, sizeof attr), "bpf BPF_MAP_LOOKUP_ELEM");
}

/* A ruleset is a new descriptor; the ABI version query's result is not. */
TEST_FN call_syscall_landlock_create_ruleset(void)
{
	must_or_skip(syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION),
		     "landlock ABI version");
	struct landlock_ruleset_attr attr = { .handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE };
	int fd = must_or_skip(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0),
			      "landlock_create_ruleset");
	expect_open(fd, "syscall(landlock_create_ruleset)");
}

/* ---- using a descriptor that is not open: BAD REFERENCE ---- */

static char scratch[64];
static struct iovec scratch_iov = { scratch, sizeof scratch };
static struct msghdr scratch_msg = { .msg_iov = &scratch_iov, .msg_iovlen = 1 };
static struct mmsghdr scratch_mmsg = { .msg_hdr = { .msg_iov = &scratch_iov, .msg_iovlen = 1 } };
static const struct sockaddr_un unix_addr = { .sun_family = AF_UNIX };

/* call_<api>: the call (__VA_ARGS__) on fd, a number that was just closed,
 * fails with EBADF. */
#define TEST_CLOSED_FD(api, ...)                        \
	TEST_FN call_##api(void)                        \
	{                                               \
		int fd = closed_descriptor();           \
		must_be_ebadf((long)(__VA_ARGS__), #api); \
		expect_bad(fd, #api);                   \
	}

TEST_CLOSED_FD(read, read(fd, scratch, sizeof scratch))
TEST_CLOSED_FD(write, write(fd, scratch, sizeof scratch))
TEST_CLOSED_FD(pread, pread(fd, scratch, sizeof scratch, 0))
TEST_CLOSED_FD(pread64, pread64(fd, scratch, sizeof scratch, 0))
TEST_CLOSED_FD(pwrite, pwrite(fd, scratch, sizeof scratch, 0))
TEST_CLOSED_FD(pwrite64, pwrite64(fd, scratch, sizeof scratch, 0))
TEST_CLOSED_FD(readv, readv(fd, &scratch_iov, 1))
TEST_CLOSED_FD(writev, writev(fd, &scratch_iov, 1))
TEST_CLOSED_FD(preadv, preadv(fd, &scratch_iov, 1, 0))
TEST_CLOSED_FD(pwritev, pwritev(fd, &scratch_iov, 1, 0))
TEST_CLOSED_FD(preadv2, preadv2(fd, &scratch_iov, 1, 0, 0))
TEST_CLOSED_FD(pwritev2, pwritev2(fd, &scratch_iov, 1, 0, 0))
TEST_CLOSED_FD(preadv64, preadv64(fd, &scratch_iov, 1, 0))
TEST_CLOSED_FD(pwritev64, pwritev64(fd, &scratch_iov, 1, 0))
TEST_CLOSED_FD(preadv64v2, preadv64v2(fd, &scratch_iov, 1, 0, 0))
TEST_CLOSED_FD(pwritev64v2, pwritev64v2(fd, &scratch_iov, 1, 0, 0))
TEST_CLOSED_FD(send, send(fd, scratch, sizeof scratch, MSG_DONTWAIT))
TEST_CLOSED_FD(sendto, sendto(fd, scratch, sizeof scratch, MSG_DONTWAIT,
			      (const struct sockaddr *)&unix_addr, sizeof unix_addr))
TEST_CLOSED_FD(sendmsg, sendmsg(fd, &scratch_msg, MSG_DONTWAIT))
TEST_CLOSED_FD(sendmmsg, sendmmsg(fd, &scratch_mmsg, 1, MSG_DONTWAIT))
TEST_CLOSED_FD(recv, recv(fd, scratch, sizeof scratch, MSG_DONTWAIT))
TEST_CLOSED_FD(recvfrom, recvfrom(fd, scratch, sizeof scratch, MSG_DONTWAIT, NULL, NULL))
TEST_CLOSED_FD(fstat, fstat(fd, &(struct stat){ 0 }))
TEST_CLOSED_FD(fstat64, fstat64(fd, &(struct stat64){ 0 }))
/* A relative path, so that the directory descriptor is used. */
TEST_CLOSED_FD(fstatat, fstatat(fd, "null", &(struct stat){ 0 }, 0))
TEST_CLOSED_FD(fstatat64, fstatat64(fd, "null", &(struct stat64){ 0 }, 0))
TEST_CLOSED_FD(statx, statx(fd, "null", 0, STATX_BASIC_STATS, &(struct statx){ 0 }))
TEST_CLOSED_FD(lseek, lseek(fd, 0, SEEK_SET))
TEST_CLOSED_FD(lseek64, lseek64(fd, 0, SEEK_SET))
TEST_CLOSED_FD(fsync, fsync(fd))
TEST_CLOSED_FD(fdatasync, fdatasync(fd))
TEST_CLOSED_FD(ftruncate, ftruncate(fd, 0))
TEST_CLOSED_FD(ftruncate64, ftruncate64(fd, 0))
TEST_CLOSED_FD(fchmod, fchmod(fd, 0600))
TEST_CLOSED_FD(fchown, fchown(fd, (uid_t)-1, (gid_t)-1))
TEST_CLOSED_FD(fchdir, fchdir(fd))
TEST_CLOSED_FD(flock, flock(fd, LOCK_SH | LOCK_NB))
TEST_CLOSED_FD(fstatfs, fstatfs(fd, &(struct statfs){ 0 }))
TEST_CLOSED_FD(fstatvfs, fstatvfs(fd, &(struct statvfs){ 0 }))
TEST_CLOSED_FD(futimens, futimens(fd, NULL))
TEST_CLOSED_FD(fchmodat, fchmodat(fd, "null", 0600, 0))
TEST_CLOSED_FD(fchownat, fchownat(fd, "null", (uid_t)-1, (gid_t)-1, 0))
TEST_CLOSED_FD(unlinkat, unlinkat(fd, "htrace-apicall-none", 0))
TEST_CLOSED_FD(mkdirat, mkdirat(fd, "htrace-apicall-none", 0700))
TEST_CLOSED_FD(readlinkat, readlinkat(fd, "null", scratch, sizeof scratch))
TEST_CLOSED_FD(faccessat, faccessat(fd, "null", F_OK, 0))
TEST_CLOSED_FD(utimensat, utimensat(fd, "null", NULL, 0))
TEST_CLOSED_FD(epoll_wait, epoll_wait(fd, &(struct epoll_event){ 0 }, 1, 0))
TEST_CLOSED_FD(epoll_pwait, epoll_pwait(fd, &(struct epoll_event){ 0 }, 1, 0, NULL))
TEST_CLOSED_FD(bind, bind(fd, (const struct sockaddr *)&unix_addr, sizeof unix_addr))
TEST_CLOSED_FD(connect, connect(fd, (const struct sockaddr *)&unix_addr, sizeof unix_addr))
TEST_CLOSED_FD(listen, listen(fd, 1))
TEST_CLOSED_FD(shutdown, shutdown(fd, SHUT_RDWR))
TEST_CLOSED_FD(getsockopt, getsockopt(fd, SOL_SOCKET, SO_TYPE, scratch, &(socklen_t){ sizeof scratch }))
TEST_CLOSED_FD(setsockopt, setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)))
TEST_CLOSED_FD(getsockname, getsockname(fd, (struct sockaddr *)&(struct sockaddr_storage){ 0 },
					&(socklen_t){ sizeof(struct sockaddr_storage) }))
TEST_CLOSED_FD(getpeername, getpeername(fd, (struct sockaddr *)&(struct sockaddr_storage){ 0 },
					&(socklen_t){ sizeof(struct sockaddr_storage) }))
TEST_CLOSED_FD(getdents64, getdents64(fd, scratch, sizeof scratch))
TEST_CLOSED_FD(inotify_add_watch, inotify_add_watch(fd, "/", IN_ALL_EVENTS))
TEST_CLOSED_FD(inotify_rm_watch, inotify_rm_watch(fd, 1))
TEST_CLOSED_FD(timerfd_settime, timerfd_settime(fd, 0, &(struct itimerspec){ 0 }, NULL))
TEST_CLOSED_FD(timerfd_gettime, timerfd_gettime(fd, &(struct itimerspec){ 0 }))

/* Two descriptors, one open and one not: the one not open is reported,
 * first as the second argument, then as the first. */
TEST_FN call_epoll_ctl(void)
{
	int ep = must(epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
	expect_open(ep, "epoll_create1");
	int fd = closed_descriptor();
	struct epoll_event ev = { .events = EPOLLIN };
	must_be_ebadf(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl of a closed target");
	expect_bad(fd, "epoll_ctl");
}

TEST_FN call_sendfile(void)
{
	int out = open_null();
	int in = closed_descriptor();
	must_be_ebadf(sendfile(out, in, NULL, 1), "sendfile");
	expect_bad(in, "sendfile");
}

TEST_FN call_sendfile64(void)
{
	int in = open_null();
	int out = closed_descriptor();
	must_be_ebadf(sendfile64(out, in, NULL, 1), "sendfile64");
	expect_bad(out, "sendfile64");
}

TEST_FN call_splice(void)
{
	int p[2];
	must(pipe(p), "pipe");
	expect_pipe(p, "pipe");
	int in = closed_descriptor();
	must_be_ebadf(splice(in, NULL, p[1], NULL, 1, SPLICE_F_NONBLOCK), "splice");
	expect_bad(in, "splice");
}

TEST_FN call_tee(void)
{
	int p[2];
	must(pipe(p), "pipe");
	expect_pipe(p, "pipe");
	int out = closed_descriptor();
	must_be_ebadf(tee(p[0], out, 1, SPLICE_F_NONBLOCK), "tee");
	expect_bad(out, "tee");
}

TEST_FN call_copy_file_range(void)
{
	int out = open_null();
	int in = closed_descriptor();
	must_be_ebadf(copy_file_range(in, NULL, out, NULL, 1, 0), "copy_file_range");
	expect_bad(in, "copy_file_range");
}

static void must_be_pollnval(int result, const struct pollfd *p, const char *what)
{
	if (result < 0)
		die(what);
	if (result != 1 || !(p->revents & POLLNVAL)) {
		errno = 0;
		die(what);
	}
}

TEST_FN call_poll(void)
{
	int fd = closed_descriptor();
	struct pollfd p = { .fd = fd, .events = POLLIN };
	must_be_pollnval(poll(&p, 1, 0), &p, "poll");
	expect_bad(fd, "poll");
}

TEST_FN call_ppoll(void)
{
	int fd = closed_descriptor();
	struct pollfd p = { .fd = fd, .events = POLLIN };
	must_be_pollnval(ppoll(&p, 1, &(struct timespec){ 0 }, NULL), &p, "ppoll");
	expect_bad(fd, "ppoll");
}

TEST_FN call_select(void)
{
	int fd = closed_descriptor();
	fd_set readable;
	FD_ZERO(&readable);
	FD_SET(fd, &readable);
	must_be_ebadf(select(fd + 1, &readable, NULL, NULL, &(struct timeval){ 0 }), "select");
	expect_bad(fd, "select");
}

TEST_FN call_pselect(void)
{
	int fd = closed_descriptor();
	fd_set readable;
	FD_ZERO(&readable);
	FD_SET(fd, &readable);
	must_be_ebadf(pselect(fd + 1, &readable, NULL, NULL, &(struct timespec){ 0 }, NULL), "pselect");
	expect_bad(fd, "pselect");
}

/* A shared mapping of a file: the descriptor counts (no MAP_ANONYMOUS). */
static void must_be_map_ebadf(void *result, const char *what)
{
	if (result == MAP_FAILED && errno == EBADF)
		return;
	if (result != MAP_FAILED)
		errno = 0;
	die(what);
}

TEST_FN call_mmap(void)
{
	int fd = closed_descriptor();
	must_be_map_ebadf(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0), "mmap");
	expect_bad(fd, "mmap");
}

TEST_FN call_mmap64(void)
{
	int fd = closed_descriptor();
	must_be_map_ebadf(mmap64(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0), "mmap64");
	expect_bad(fd, "mmap64");
}

/* ---- using a FILE or DIR whose descriptor is somebody else's ---- */

static FILE *fopen_null_rw(void)
{
	FILE *fp = must_ptr(fopen("/dev/null", "r+"), "fopen /dev/null");
	expect_open(fileno(fp), "fopen");
	return fp;
}

static DIR *opendir_root(void)
{
	DIR *dir = must_ptr(opendir("/"), "opendir /");
	expect_open(dirfd(dir), "opendir");
	return dir;
}

/* The caller has just closed fd behind its FILE or DIR (a BAD REFERENCE by
 * close, made by the caller); open() takes the number again, so that the
 * FILE or DIR now refers to another open. */
static void reuse_number(int fd, const char *path, int flags)
{
	expect_close(fd, "close");
	expect_bad(fd, "close");
	int again = must(open(path, flags), "open");
	if (again != fd) {
		errno = 0;
		die("the closed number was not reused");
	}
	expect_open(fd, "open");
}

static void must_be_true(int ok, const char *what)
{
	if (!ok) {
		errno = 0;
		die(what);
	}
}

/* The stale FILE's calls go on (on /dev/null again), with their usual
 * results. */
#define TEST_STALE_FILE(api, ok)                                \
	TEST_FN call_##api(void)                                \
	{                                                       \
		FILE *fp = fopen_null_rw();                     \
		int fd = fileno(fp);                            \
		must(close(fd), "close");                       \
		reuse_number(fd, "/dev/null", O_RDWR);          \
		must_be_true(ok, #api);                         \
		expect_bad(fd, #api);                           \
	}

TEST_STALE_FILE(fread, fread(scratch, 1, sizeof scratch, fp) == 0)
TEST_STALE_FILE(fwrite, fwrite(scratch, 1, sizeof scratch, fp) == sizeof scratch)
TEST_STALE_FILE(fgets, fgets(scratch, sizeof scratch, fp) == NULL)
TEST_STALE_FILE(fputs, fputs(api_name, fp) >= 0)
TEST_STALE_FILE(fflush, fflush(fp) == 0)
TEST_STALE_FILE(fseek, fseek(fp, 0, SEEK_SET) == 0)
TEST_STALE_FILE(ftell, ftell(fp) == 0)
/* With optimization, <stdio.h> inlines getline as a call of __getdelim:
 * the exported getline is called through its address. */
static ssize_t (*const volatile getline_symbol)(char **, size_t *, FILE *) = getline;
TEST_STALE_FILE(getline, getline_symbol(&(char *){ NULL }, &(size_t){ 0 }, fp) == -1)
TEST_STALE_FILE(fprintf, fprintf(fp, "%d\n", (int)getpid()) > 0)
TEST_STALE_FILE(getdelim, getdelim(&(char *){ NULL }, &(size_t){ 0 }, '\n', fp) == -1)
TEST_STALE_FILE(__getdelim, __getdelim(&(char *){ NULL }, &(size_t){ 0 }, '\n', fp) == -1)
TEST_STALE_FILE(__fgets_chk, __fgets_chk(scratch, sizeof scratch, sizeof scratch, fp) == NULL)
TEST_STALE_FILE(__fread_chk, __fread_chk(scratch, sizeof scratch, 1, sizeof scratch, fp) == 0)
TEST_STALE_FILE(__fprintf_chk, __fprintf_chk(fp, 1, "%d\n", (int)getpid()) > 0)

static struct file_handle *handle_buffer(void);
extern char **environ;

TEST_CLOSED_FD(linkat, linkat(fd, "a", fd, "b", 0))
TEST_CLOSED_FD(renameat, renameat(fd, "a", fd, "b"))
TEST_CLOSED_FD(renameat2, renameat2(fd, "a", fd, "b", 0))
TEST_CLOSED_FD(symlinkat, symlinkat("target", fd, "htrace-apicall-none"))
TEST_CLOSED_FD(mknodat, mknodat(fd, "htrace-apicall-none", S_IFIFO | 0600, 0))
TEST_CLOSED_FD(mkfifoat, mkfifoat(fd, "htrace-apicall-none", 0600))
TEST_CLOSED_FD(futimesat, futimesat(fd, "null", NULL))
TEST_CLOSED_FD(name_to_handle_at, name_to_handle_at(fd, "null", handle_buffer(), &(int){ 0 }, 0))
TEST_CLOSED_FD(fallocate, fallocate(fd, 0, 0, 1))
TEST_CLOSED_FD(fallocate64, fallocate64(fd, 0, 0, 1))
TEST_CLOSED_FD(syncfs, syncfs(fd))
TEST_CLOSED_FD(readahead, readahead(fd, 0, 1))
TEST_CLOSED_FD(sync_file_range, sync_file_range(fd, 0, 1, 0))
TEST_CLOSED_FD(vmsplice, vmsplice(fd, &scratch_iov, 1, 0))
TEST_CLOSED_FD(fgetxattr, fgetxattr(fd, "user.x", scratch, sizeof scratch))
TEST_CLOSED_FD(fsetxattr, fsetxattr(fd, "user.x", "v", 1, 0))
TEST_CLOSED_FD(flistxattr, flistxattr(fd, scratch, sizeof scratch))
TEST_CLOSED_FD(fremovexattr, fremovexattr(fd, "user.x"))
TEST_CLOSED_FD(eventfd_read, eventfd_read(fd, &(eventfd_t){ 0 }))
TEST_CLOSED_FD(eventfd_write, eventfd_write(fd, 1))
TEST_CLOSED_FD(fanotify_mark, fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, "/"))
TEST_CLOSED_FD(setns, setns(fd, 0))
TEST_CLOSED_FD(pidfd_send_signal, pidfd_send_signal(fd, 0, NULL, 0))
TEST_CLOSED_FD(epoll_pwait2, epoll_pwait2(fd, &(struct epoll_event){ 0 }, 1, &(struct timespec){ 0 }, NULL))
TEST_CLOSED_FD(fexecve, fexecve(fd, (char *const[]){ "x", NULL }, environ))

/* posix_fadvise and posix_fallocate return the error number. */
#define TEST_CLOSED_FD_ERRNUM(api, ...)                 \
	TEST_FN call_##api(void)                        \
	{                                               \
		int fd = closed_descriptor();           \
		if ((__VA_ARGS__) != EBADF)             \
			die(#api " did not return EBADF"); \
		expect_bad(fd, #api);                   \
	}

TEST_CLOSED_FD_ERRNUM(posix_fadvise, posix_fadvise(fd, 0, 0, POSIX_FADV_NORMAL))
TEST_CLOSED_FD_ERRNUM(posix_fadvise64, posix_fadvise64(fd, 0, 0, POSIX_FADV_NORMAL))
TEST_CLOSED_FD_ERRNUM(posix_fallocate, posix_fallocate(fd, 0, 1))
TEST_CLOSED_FD_ERRNUM(posix_fallocate64, posix_fallocate64(fd, 0, 1))

static struct file_handle *handle_buffer(void)
{
	static union {
		struct file_handle h;
		char bytes[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} buffer = { .h = { .handle_bytes = MAX_HANDLE_SZ } };
	return &buffer.h;
}

TEST_CLOSED_FD(__read_chk, __read_chk(fd, scratch, sizeof scratch, sizeof scratch))
TEST_CLOSED_FD(__pread_chk, __pread_chk(fd, scratch, sizeof scratch, 0, sizeof scratch))
TEST_CLOSED_FD(__pread64_chk, __pread64_chk(fd, scratch, sizeof scratch, 0, sizeof scratch))
TEST_CLOSED_FD(__recv_chk, __recv_chk(fd, scratch, sizeof scratch, sizeof scratch, 0))
TEST_CLOSED_FD(__recvfrom_chk, __recvfrom_chk(fd, scratch, sizeof scratch, sizeof scratch, 0, NULL, NULL))
TEST_CLOSED_FD(__readlinkat_chk, __readlinkat_chk(fd, "null", scratch, sizeof scratch, sizeof scratch))

TEST_FN call___poll_chk(void)
{
	int fd = closed_descriptor();
	struct pollfd p = { .fd = fd, .events = POLLIN };
	must_be_pollnval(__poll_chk(&p, 1, 0, sizeof p), &p, "__poll_chk");
	expect_bad(fd, "__poll_chk");
}

/* vfprintf needs a va_list of its caller's: call_vfprintf is variadic, and
 * the table runs it through run_vfprintf. */
static __attribute__((noinline, noclone)) void call_vfprintf(int count, ...)
{
	FILE *fp = fopen_null_rw();
	int fd = fileno(fp);
	must(close(fd), "close");
	reuse_number(fd, "/dev/null", O_RDWR);
	va_list ap;
	va_start(ap, count);
	int written = vfprintf(fp, "%d\n", ap);
	va_end(ap);
	must_be_true(written > 0, "vfprintf");
	expect_bad(fd, "vfprintf");
}

static void run_vfprintf(void) { call_vfprintf(1, (int)getpid()); }

static __attribute__((noinline, noclone)) void call___vfprintf_chk(int count, ...)
{
	FILE *fp = fopen_null_rw();
	int fd = fileno(fp);
	must(close(fd), "close");
	reuse_number(fd, "/dev/null", O_RDWR);
	va_list ap;
	va_start(ap, count);
	int written = __vfprintf_chk(fp, 1, "%d\n", ap);
	va_end(ap);
	must_be_true(written > 0, "__vfprintf_chk");
	expect_bad(fd, "__vfprintf_chk");
}

static void run_vfprintf_chk(void) { call___vfprintf_chk(1, (int)getpid()); }

/* The stale DIR reads the directory now open at its number. */
#define TEST_STALE_DIR(api, call)                               \
	TEST_FN call_##api(void)                                \
	{                                                       \
		DIR *dir = opendir_root();                      \
		int fd = dirfd(dir);                            \
		must(close(fd), "close");                       \
		reuse_number(fd, "/", O_RDONLY | O_DIRECTORY);  \
		call;                                           \
		expect_bad(fd, #api);                           \
	}

TEST_STALE_DIR(readdir, must_ptr(readdir(dir), "readdir"))
TEST_STALE_DIR(readdir64, must_ptr(readdir64(dir), "readdir64"))
TEST_STALE_DIR(rewinddir, rewinddir(dir))

static const struct api_test api_tests[] = {
	T(open), T(open64), T(__open), T(__open64), T(openat), T(openat64),
	T(__open_2), T(__open64_2), T(__openat_2), T(__openat64_2),
	T(creat), T(creat64), T(open_by_handle_at), T(open_tree), T(fsopen),
	T(fsmount), T(fspick), T(socket), T(socketpair), T(accept), T(accept4),
	T(pipe), T(__pipe), T(pipe2), T(dup), T(dup2), T(__dup2), T(dup3),
	T(fcntl), T(fcntl64), T(__fcntl), T(eventfd), T(timerfd_create),
	T(signalfd), T(epoll_create), T(epoll_create1), T(inotify_init),
	T(inotify_init1), T(fanotify_init), T(memfd_create), T(pidfd_open),
	T(pidfd_getfd), T(posix_openpt), T(getpt), T(openpty), T(forkpty),
	T(login_tty), T(daemon), T(shm_open), T(mq_open), T(__mq_open_2),
	T(mq_close), T(mkstemp), T(mkstemp64), T(mkostemp), T(mkostemp64),
	T(mkstemps), T(mkstemps64), T(mkostemps), T(mkostemps64), T(tmpfile),
	T(tmpfile64), T(fopen), T(fopen64), T(fdopen), T(freopen),
	T(freopen64), T(popen), T(fclose), T(pclose), T(fcloseall), T(opendir),
	T(fdopendir), T(closedir), T(recvmsg), T(recvmmsg), T(close),
	T(__close), T(close_range), T(closefrom), T(syscall),

	S(open), S(openat), S(openat2), S(creat), S(open_by_handle_at),
	S(open_tree), S(fsopen), S(fsmount), S(fspick), S(socket),
	S(socketpair), S(accept), S(accept4), S(pipe), S(pipe2), S(dup),
	S(dup2), S(dup3), S(fcntl), S(eventfd), S(eventfd2),
	S(timerfd_create), S(signalfd), S(signalfd4), S(epoll_create),
	S(epoll_create1), S(inotify_init), S(inotify_init1), S(fanotify_init),
	S(memfd_create), S(memfd_secret), S(pidfd_open), S(pidfd_getfd),
	S(userfaultfd), S(perf_event_open), S(io_uring_setup), S(mq_open),
	S(recvmsg), S(recvmmsg), S(close), S(close_range),
	T(clone), T(__clone), S(clone), S(clone3),
	T(ioctl), S(seccomp), S(bpf), S(landlock_create_ruleset),

	T(read), T(write), T(pread), T(pread64), T(pwrite), T(pwrite64),
	T(readv), T(writev), T(preadv), T(pwritev), T(preadv2), T(pwritev2),
	T(preadv64), T(pwritev64), T(preadv64v2), T(pwritev64v2),
	T(send), T(sendto), T(sendmsg), T(sendmmsg), T(recv), T(recvfrom),
	T(fstat), T(fstat64), T(fstatat), T(fstatat64), T(statx), T(lseek),
	T(lseek64), T(fsync), T(fdatasync), T(ftruncate), T(ftruncate64),
	T(fchmod), T(fchown), T(fchdir), T(flock), T(fstatfs), T(fstatvfs),
	T(futimens), T(fchmodat), T(fchownat), T(unlinkat), T(mkdirat),
	T(readlinkat), T(faccessat), T(utimensat), T(epoll_wait),
	T(epoll_pwait), T(epoll_ctl), T(bind), T(connect), T(listen),
	T(shutdown), T(getsockopt), T(setsockopt), T(getsockname),
	T(getpeername), T(getdents64), T(inotify_add_watch),
	T(inotify_rm_watch), T(timerfd_settime), T(timerfd_gettime),
	T(sendfile), T(sendfile64), T(splice), T(tee), T(copy_file_range),
	T(poll), T(ppoll), T(select), T(pselect), T(mmap), T(mmap64),
	T(fread), T(fwrite), T(fgets), T(fputs), T(fflush), T(fseek),
	T(ftell), T(getline), { "vfprintf", run_vfprintf }, T(fprintf),
	T(getdelim), T(__getdelim), T(__fgets_chk), T(__fread_chk), T(__fprintf_chk),
	T(__read_chk), T(__pread_chk), T(__pread64_chk), T(__recv_chk), T(__recvfrom_chk),
	T(__readlinkat_chk), T(__poll_chk), { "__vfprintf_chk", run_vfprintf_chk },
	T(linkat), T(renameat), T(renameat2), T(symlinkat), T(mknodat), T(mkfifoat), T(futimesat),
	T(name_to_handle_at), T(fallocate), T(fallocate64), T(syncfs), T(readahead),
	T(sync_file_range), T(vmsplice), T(fgetxattr), T(fsetxattr), T(flistxattr),
	T(fremovexattr), T(eventfd_read), T(eventfd_write), T(fanotify_mark), T(setns),
	T(pidfd_send_signal), T(epoll_pwait2), T(fexecve), T(posix_fadvise), T(posix_fadvise64),
	T(posix_fallocate), T(posix_fallocate64),
	T(readdir), T(readdir64), T(rewinddir),
};

#define N_TESTS (sizeof api_tests / sizeof api_tests[0])

static const struct api_test *find_test(const char *name)
{
	for (size_t i = 0; i < N_TESTS; i++)
		if (strcmp(api_tests[i].name, name) == 0)
			return &api_tests[i];
	return NULL;
}

static void list_tests(void)
{
	for (size_t i = 0; i < N_TESTS; i++)
		printf("%s\n", api_tests[i].name);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: apicall NAME | --list\n");
		return 1;
	}
	if (strcmp(argv[1], "--list") == 0) {
		list_tests();
		return 0;
	}
	const struct api_test *test = find_test(argv[1]);
	if (!test) {
		fprintf(stderr, "apicall: no test for API '%s' (see apicall --list)\n", argv[1]);
		return 1;
	}
	api_name = test->name;
	expect_pid(getpid());
	test->run();
	return 0;
}
