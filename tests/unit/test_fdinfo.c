/* Unit test for src/cli/fdinfo.c: opens real descriptors of every kind in
 * this process (and a forked child that inherits them) and checks that
 * fdinfo describes each as the kernel sees it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "check.h"
#include "cli/fdinfo.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static char temp_dir[] = "/tmp/htrace-fdinfo-XXXXXX";
static char file_path[PATH_MAX], sock_path[PATH_MAX], fifo_path[PATH_MAX];

static void remove_temp_files(void)
{
	unlink(file_path);
	unlink(sock_path);
	unlink(fifo_path);
	rmdir(temp_dir);
}

static struct fd_details describe(struct fdinfo_ctx *ctx, int fd)
{
	struct fd_details d;
	CHECK_EQ_INT(fdinfo_describe(ctx, fd, &d), 0);
	CHECK_EQ_INT(d.fd, fd);
	return d;
}

static void check_fd(struct fdinfo_ctx *ctx, int fd, const char *type, const char *target)
{
	struct fd_details d = describe(ctx, fd);
	CHECK_EQ_STR(d.type, type);
	if (target)
		CHECK_EQ_STR(d.target, target);
	CHECK(d.flags >= 0);
}

static unsigned long long inode_of(int fd)
{
	struct stat st;
	CHECK_EQ_INT(fstat(fd, &st), 0);
	return (unsigned long long)st.st_ino;
}

static void check_inode(struct fdinfo_ctx *ctx, int fd)
{
	CHECK_EQ_INT(describe(ctx, fd).inode, inode_of(fd));
}

static int compare_ints(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return x < y ? -1 : x > y;
}

/* Our own reading of /proc/self/fd, ascending, without the directory's fd. */
static size_t list_own_fds(int *fds, size_t max)
{
	DIR *dir = opendir("/proc/self/fd");
	CHECK(dir != NULL);
	size_t n = 0;
	struct dirent *entry;
	while ((entry = readdir(dir))) {
		if (entry->d_name[0] == '.')
			continue;
		int fd = atoi(entry->d_name);
		if (fd != dirfd(dir)) {
			CHECK(n < max);
			fds[n++] = fd;
		}
	}
	closedir(dir);
	qsort(fds, n, sizeof *fds, compare_ints);
	return n;
}

static void check_list_equals(struct fdinfo_ctx *ctx, const int *expected, size_t n_expected)
{
	int *fds;
	size_t n;
	CHECK_EQ_INT(fdinfo_list(ctx, &fds, &n), 0);
	CHECK_EQ_INT(n, n_expected);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ_INT(fds[i], expected[i]);
	free(fds);
}

/* fdinfo_list starts a new snapshot of the socket tables. */
static void refresh(struct fdinfo_ctx *ctx)
{
	int *fds;
	size_t n;
	CHECK_EQ_INT(fdinfo_list(ctx, &fds, &n), 0);
	free(fds);
}

static bool list_contains(const int *fds, size_t n, int fd)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] == fd)
			return true;
	return false;
}

/* ---- setting descriptors up ---- */

static int must(int fd, const char *what)
{
	if (fd < 0)
		SKIP("cannot create %s: %s", what, strerror(errno));
	return fd;
}

static unsigned port_of(int fd, bool peer)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof addr;
	CHECK_EQ_INT(peer ? getpeername(fd, (struct sockaddr *)&addr, &len)
			  : getsockname(fd, (struct sockaddr *)&addr, &len),
		     0);
	if (addr.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
	return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

static int inet_socket(int type, const char *what)
{
	int fd = must(socket(AF_INET, type, 0), what);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	must(bind(fd, (struct sockaddr *)&addr, sizeof addr), what);
	return fd;
}

static int udp6_socket(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in6 addr = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int unix_socket_at(const char *name, bool abstract)
{
	int fd = must(socket(AF_UNIX, SOCK_STREAM, 0), "unix socket");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	CHECK(len + 2 <= sizeof addr.sun_path);
	memcpy(addr.sun_path + abstract, name, len);
	socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + abstract + len);
	must(bind(fd, (struct sockaddr *)&addr, addr_len), "unix socket address");
	return fd;
}

static int signal_fd(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	return must(signalfd(-1, &mask, 0), "signalfd");
}

static int pidfd_of_self(void)
{
	int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		fprintf(stderr, "note: pidfd_open unavailable (%s), not checked\n", strerror(errno));
	return fd;
}

static void make_temp_paths(void)
{
	if (!mkdtemp(temp_dir))
		SKIP("mkdtemp: %s", strerror(errno));
	char *real = realpath(temp_dir, NULL);
	CHECK(real != NULL);
	snprintf(file_path, sizeof file_path, "%s/file-XXXXXX", real);
	snprintf(sock_path, sizeof sock_path, "%s/s.sock", real);
	snprintf(fifo_path, sizeof fifo_path, "%s/fifo", real);
	free(real);
	atexit(remove_temp_files);
}

/* ---- the checks ---- */

static void check_files(struct fdinfo_ctx *ctx)
{
	int file = must(mkstemp(file_path), "temporary file");
	check_fd(ctx, file, "file", file_path);
	check_inode(ctx, file);

	char *dir_path = realpath(temp_dir, NULL);
	CHECK(dir_path != NULL);
	int dir = must(open(dir_path, O_RDONLY | O_DIRECTORY), "directory");
	check_fd(ctx, dir, "directory", dir_path);
	check_inode(ctx, dir);
	free(dir_path);

	must(mkfifo(fifo_path, 0600), "fifo");
	int fifo = must(open(fifo_path, O_RDWR), "fifo");
	check_fd(ctx, fifo, "fifo", fifo_path);

	int dev_null = must(open("/dev/null", O_RDONLY), "/dev/null");
	check_fd(ctx, dev_null, "chardev", "/dev/null");
}

static void check_flags(struct fdinfo_ctx *ctx)
{
	int cloexec = must(open("/dev/null", O_RDONLY | O_CLOEXEC), "/dev/null");
	int inherited = must(open("/dev/null", O_WRONLY | O_APPEND), "/dev/null");
	struct fd_details with = describe(ctx, cloexec), without = describe(ctx, inherited);
	CHECK((with.flags & O_CLOEXEC) != 0);
	CHECK_EQ_INT(with.flags & O_ACCMODE, O_RDONLY);
	CHECK_EQ_INT(without.flags & O_CLOEXEC, 0);
	CHECK_EQ_INT(without.flags & O_ACCMODE, O_WRONLY);
	CHECK((without.flags & O_APPEND) != 0);
}

static void check_pipe(struct fdinfo_ctx *ctx)
{
	int ends[2];
	must(pipe(ends), "pipe");
	char read_end[64], write_end[64];
	snprintf(read_end, sizeof read_end, "pipe:[%llu] (read end)", inode_of(ends[0]));
	snprintf(write_end, sizeof write_end, "pipe:[%llu] (write end)", inode_of(ends[1]));
	check_fd(ctx, ends[0], "pipe", read_end);
	check_fd(ctx, ends[1], "pipe", write_end);
	check_inode(ctx, ends[0]);
}

/* Returns the listener, for the child's checks; *expected gets its target. */
static int check_tcp(struct fdinfo_ctx *ctx, char *expected, size_t size)
{
	int listener = inet_socket(SOCK_STREAM, "TCP socket");
	must(listen(listener, 4), "TCP listen");
	int client = must(socket(AF_INET, SOCK_STREAM, 0), "TCP client");
	struct sockaddr_in addr;
	socklen_t len = sizeof addr;
	CHECK_EQ_INT(getsockname(listener, (struct sockaddr *)&addr, &len), 0);
	must(connect(client, (struct sockaddr *)&addr, len), "TCP connect");
	int accepted = must(accept(listener, NULL, NULL), "TCP accept");

	refresh(ctx);
	unsigned server_port = port_of(listener, false), client_port = port_of(client, false);
	CHECK_EQ_INT(port_of(client, true), server_port);
	char text[128];
	snprintf(expected, size, "TCP 127.0.0.1:%u (listening)", server_port);
	check_fd(ctx, listener, "socket", expected);
	snprintf(text, sizeof text, "TCP 127.0.0.1:%u -> 127.0.0.1:%u", client_port, server_port);
	check_fd(ctx, client, "socket", text);
	snprintf(text, sizeof text, "TCP 127.0.0.1:%u -> 127.0.0.1:%u", server_port, client_port);
	check_fd(ctx, accepted, "socket", text);
	check_inode(ctx, accepted);
	return listener;
}

static void check_udp(struct fdinfo_ctx *ctx)
{
	char text[128];
	int udp = inet_socket(SOCK_DGRAM, "UDP socket");
	int udp6 = udp6_socket();
	refresh(ctx);
	snprintf(text, sizeof text, "UDP 127.0.0.1:%u", port_of(udp, false));
	check_fd(ctx, udp, "socket", text);
	if (udp6 < 0) {
		fprintf(stderr, "note: no IPv6 loopback, UDP6 not checked\n");
		return;
	}
	snprintf(text, sizeof text, "UDP6 [::1]:%u", port_of(udp6, false));
	check_fd(ctx, udp6, "socket", text);
}

static void check_socketpair_end(struct fdinfo_ctx *ctx, int fd, int other)
{
	struct fd_details d = describe(ctx, fd);
	char with_peer[64];
	snprintf(with_peer, sizeof with_peer, "UNIX (unnamed) -> socket:[%llu]", inode_of(other));
	CHECK_EQ_STR(d.type, "socket");
	if (strcmp(d.target, "UNIX (unnamed)") != 0)
		CHECK_EQ_STR(d.target, with_peer);
	CHECK_EQ_INT(d.inode, inode_of(fd));
}

static void check_unix(struct fdinfo_ctx *ctx)
{
	char text[PATH_MAX + 8], name[64];
	snprintf(name, sizeof name, "htrace-fdinfo-%d", (int)getpid());
	int named = unix_socket_at(sock_path, false), abstract = unix_socket_at(name, true);
	int pair[2];
	must(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), "socketpair");
	int netlink = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	refresh(ctx);

	snprintf(text, sizeof text, "UNIX %s", sock_path);
	check_fd(ctx, named, "socket", text);
	snprintf(text, sizeof text, "UNIX @%s", name);
	check_fd(ctx, abstract, "socket", text);
	check_socketpair_end(ctx, pair[0], pair[1]);
	check_socketpair_end(ctx, pair[1], pair[0]);
	if (netlink >= 0)
		check_fd(ctx, netlink, "socket", "NETLINK");

	/* A socket file opened by path is a "socket" named by its path. */
	int by_path = must(open(sock_path, O_PATH), "O_PATH on a socket file");
	check_fd(ctx, by_path, "socket", sock_path);
}

static void check_anon_inodes(struct fdinfo_ctx *ctx)
{
	check_fd(ctx, must(eventfd(0, 0), "eventfd"), "eventfd", "anon_inode:[eventfd]");
	check_fd(ctx, must(timerfd_create(CLOCK_MONOTONIC, 0), "timerfd"), "timerfd", NULL);
	check_fd(ctx, signal_fd(), "signalfd", NULL);
	check_fd(ctx, must(epoll_create1(0), "epoll"), "epoll", NULL);
	check_fd(ctx, must(inotify_init1(0), "inotify"), "inotify", NULL);
	check_fd(ctx, must(memfd_create("htrace-test", 0), "memfd"), "memfd", "memfd:htrace-test");

	int pidfd = pidfd_of_self();
	if (pidfd >= 0) {
		char text[32];
		snprintf(text, sizeof text, "pid %d", (int)getpid());
		check_fd(ctx, pidfd, "pidfd", text);
	}
}

static void check_errors(struct fdinfo_ctx *ctx)
{
	struct fd_details d;
	int closed = must(dup(STDERR_FILENO), "dup");
	close(closed);
	CHECK_EQ_INT(fdinfo_describe(ctx, closed, &d), -ENOENT);
	CHECK(fdinfo_describe(ctx, -1, &d) < 0);

	errno = 0;
	CHECK(fdinfo_open(0x7fffffff) == NULL);
	CHECK(errno != 0);
}

/* A forked child holds the same descriptors; fdinfo sees them from outside. */
static void check_child(const int *own_fds, size_t n_own, int listener,
			const char *listener_target)
{
	int go[2];
	must(pipe(go), "pipe");
	int expected[4096];
	size_t n = list_own_fds(expected, sizeof expected / sizeof expected[0]);
	pid_t child = fork();
	if (child < 0)
		SKIP("fork: %s", strerror(errno));
	if (child == 0) {
		char byte;
		while (read(go[0], &byte, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	struct fdinfo_ctx *ctx = fdinfo_open(child);
	CHECK(ctx != NULL);
	check_list_equals(ctx, expected, n);
	for (size_t i = 0; i < n_own; i++)
		CHECK(list_contains(expected, n, own_fds[i]));
	check_fd(ctx, listener, "socket", listener_target);
	check_fd(ctx, go[0], "pipe", NULL);
	fdinfo_close(ctx);
	kill(child, SIGKILL);
	CHECK_EQ_INT(waitpid(child, NULL, 0), child);
	close(go[0]);
	close(go[1]);
}

int main(void)
{
	make_temp_paths();
	struct fdinfo_ctx *ctx = fdinfo_open(getpid());
	CHECK(ctx != NULL);

	check_files(ctx);
	check_flags(ctx);
	check_pipe(ctx);
	char listener_target[128];
	int listener = check_tcp(ctx, listener_target, sizeof listener_target);
	check_udp(ctx);
	check_unix(ctx);
	check_anon_inodes(ctx);
	check_errors(ctx);

	int own[4096];
	size_t n_own = list_own_fds(own, sizeof own / sizeof own[0]);
	CHECK(n_own > 20);
	check_list_equals(ctx, own, n_own);
	check_child(own, n_own, listener, listener_target);

	fdinfo_close(ctx);
	printf("test_fdinfo: ok\n");
	return 0;
}
