/* stress: proves that htrace's agent keeps exactly the kernel's view of the
 * descriptor table under load.  Worker threads open, close, dup2 (onto their
 * own descriptors) and pass descriptors to each other over SCM_RIGHTS while
 * a timer thread sends SIGUSR1, whose handler opens and closes a descriptor.
 * At checkpoints (workers parked on a barrier, the signal blocked) the
 * agent's htrace_open_fds() must equal the /proc/self/fd listing.  Some
 * checkpoints fork a child that checks what it inherited, works, leaks one
 * descriptor and exits; at the end the program execs itself
 * (`stress --after-exec FD...`) and the new image checks the descriptors it
 * inherited, then leaks exactly one descriptor in leak_on_purpose().
 *
 * stdout (read by tests/test_stress.py): "ROOT <pid>", "CHILD <pid> <fd>",
 * "FINAL <pid> <fd>" (the pid and the descriptor leaked on purpose), and
 * "OPS <n> SIGNALS <n> CHECKPOINTS <n>".  Exit 0 on success, 1 on a
 * mismatch, 77 without the agent. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "htrace.h"

#define WORKERS 4
#define SLOTS 24 /* descriptors a worker holds at most */
#define PHASES 16
#define STEPS_PER_PHASE 2200
#define FORK_EVERY_PHASES 5
#define MIN_TOTAL_OPS 100000
#define MAX_FDS 4096
#define PASSED_ON_EXEC 3
#define SIGNAL_PERIOD_NS 200000

#define NEEDED_AFTER_FORK (HTRACE_FD_IS_OPEN | HTRACE_FD_INHERITED_FORK | HTRACE_FD_HAS_STACK)
#define NEEDED_AFTER_EXEC (HTRACE_FD_IS_OPEN | HTRACE_FD_INHERITED_EXEC)

struct worker {
	int id;
	pthread_t thread;
	unsigned rng;
	int slots[SLOTS]; /* -1 when empty */
	int inbox[2]; /* socketpair: others send on [1], this worker receives on [0] */
	long ops;
};

static struct worker workers[WORKERS];
static pthread_barrier_t phase_start, phase_end;
static atomic_int workers_stop, timer_stop;
static atomic_long signal_opens;
static int initial_fds[MAX_FDS], n_initial;
static int checkpoints;

/* ---- output and failure ---- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdprintf(STDOUT_FILENO, fmt, ap);
	va_end(ap);
}

static _Noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void fail(const char *fmt, ...)
{
	va_list ap;
	dprintf(STDERR_FILENO, "stress[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vdprintf(STDERR_FILENO, fmt, ap);
	va_end(ap);
	dprintf(STDERR_FILENO, "\n");
	exit(1);
}

static int must(int result, const char *what)
{
	if (result < 0)
		fail("%s: %s", what, strerror(errno));
	return result;
}

/* ---- comparing the agent with the kernel ---- */

static int compare_ints(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The kernel's descriptors, ascending, without the listing's own. */
static int kernel_fds(int *fds, int max)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;
	if (!dir)
		fail("opendir /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd != dirfd(dir) && n < max)
			fds[n++] = fd;
	}
	closedir(dir);
	qsort(fds, n, sizeof *fds, compare_ints);
	return n;
}

static int agent_fds(int *fds, int max)
{
	int n = htrace_open_fds(fds, max);
	if (n > max)
		fail("the agent believes %d descriptors open, more than %d", n, max);
	return n;
}

static int contains(const int *fds, int n, int fd)
{
	return bsearch(&fd, fds, n, sizeof *fds, compare_ints) != NULL;
}

static void print_kernel_only(int fd)
{
	char link[64], target[256] = "?";
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t len = readlink(link, target, sizeof target - 1);
	if (len >= 0)
		target[len] = '\0';
	dprintf(STDERR_FILENO, "  fd %d: open in the kernel (%s), agent state 0x%x\n",
		fd, target, htrace_fd_state(fd));
}

static void print_diff(const int *agent, int n_agent, const int *kernel, int n_kernel)
{
	for (int i = 0; i < n_kernel; i++)
		if (!contains(agent, n_agent, kernel[i]))
			print_kernel_only(kernel[i]);
	for (int i = 0; i < n_agent; i++)
		if (!contains(kernel, n_kernel, agent[i]))
			dprintf(STDERR_FILENO, "  fd %d: believed open by the agent (state 0x%x), closed in the kernel\n",
				agent[i], htrace_fd_state(agent[i]));
}

/* Must run while no other thread can open or close anything. */
static void checkpoint(const char *where)
{
	static int agent[MAX_FDS], kernel[MAX_FDS];
	int n_agent = agent_fds(agent, MAX_FDS); /* before the listing opens its directory */
	int n_kernel = kernel_fds(kernel, MAX_FDS);
	if (n_agent != n_kernel || memcmp(agent, kernel, n_agent * sizeof(int)) != 0) {
		dprintf(STDERR_FILENO, "stress[%d]: checkpoint %s: the agent's descriptors differ from the kernel's\n",
			(int)getpid(), where);
		print_diff(agent, n_agent, kernel, n_kernel);
		exit(1);
	}
	checkpoints++;
}

/* ---- the descriptor leaked on purpose ---- */

static __attribute__((noinline)) int leak_on_purpose(void)
{
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0)
		fail("open /dev/null: %s", strerror(errno));
	return fd;
}

/* ---- signals ---- */

static void on_sigusr1(int sig)
{
	int saved_errno = errno;
	(void)sig;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		atomic_fetch_add(&signal_opens, 1);
	}
	errno = saved_errno;
}

static void set_sigusr1_blocked(int blocked)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static void install_sigusr1_handler(void)
{
	struct sigaction sa = { .sa_handler = on_sigusr1, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	must(sigaction(SIGUSR1, &sa, NULL), "sigaction");
}

/* Sends SIGUSR1 to the workers in turn until told to stop. */
static void *timer_main(void *arg)
{
	struct timespec period = { 0, SIGNAL_PERIOD_NS };
	(void)arg;
	for (unsigned i = 0; !atomic_load(&timer_stop); i++) {
		nanosleep(&period, NULL);
		pthread_kill(workers[i % WORKERS].thread, SIGUSR1);
	}
	return NULL;
}

/* ---- one worker's operations, all on its own slots ---- */

static unsigned next_random(struct worker *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 17;
	w->rng ^= w->rng << 5;
	return w->rng;
}

static int random_slot(struct worker *w, int want_full)
{
	int start = next_random(w) % SLOTS;
	for (int i = 0; i < SLOTS; i++) {
		int s = (start + i) % SLOTS;
		if ((w->slots[s] >= 0) == want_full)
			return s;
	}
	return -1;
}

static void store(struct worker *w, int slot, int fd, const char *what)
{
	w->slots[slot] = must(fd, what);
	w->ops++;
}

static void release(struct worker *w, int slot)
{
	must(close(w->slots[slot]), "close");
	w->slots[slot] = -1;
	w->ops++;
}

static void send_fd(int sock, int fd)
{
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
	memset(&control, 0, sizeof(control)); /* no uninitialised padding sent */
	char byte = 0;
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	if (sendmsg(sock, &msg, MSG_DONTWAIT) < 0 && errno != EAGAIN)
		fail("sendmsg: %s", strerror(errno));
}

/* A descriptor another worker sent, or -1 when none is waiting. */
static int receive_fd(int sock, int flags)
{
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
	char byte;
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	if (recvmsg(sock, &msg, MSG_DONTWAIT | flags) < 0) {
		if (errno == EAGAIN)
			return -1;
		fail("recvmsg: %s", strerror(errno));
	}
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS || (msg.msg_flags & MSG_CTRUNC))
		fail("recvmsg: no descriptor in the message");
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

/* Gives the descriptor in slot to another worker, then closes our copy. */
static void pass_to_neighbour(struct worker *w, int slot)
{
	int to = (w->id + 1 + next_random(w) % (WORKERS - 1)) % WORKERS;
	send_fd(workers[to].inbox[1], w->slots[slot]);
	w->ops++;
	release(w, slot);
}

static void open_into(struct worker *w, int slot)
{
	int received;
	switch (next_random(w) % 7) {
	case 0: store(w, slot, open("/dev/null", O_RDONLY | O_CLOEXEC), "open"); break;
	case 1: store(w, slot, openat(AT_FDCWD, "/dev/zero", O_RDONLY), "openat"); break;
	case 2: store(w, slot, eventfd(0, EFD_CLOEXEC), "eventfd"); break;
	case 3: store(w, slot, socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket"); break;
	case 4: {
		int p[2], other;
		must(pipe2(p, O_CLOEXEC), "pipe2");
		w->ops++;
		w->slots[slot] = p[0];
		if ((other = random_slot(w, 0)) >= 0)
			w->slots[other] = p[1];
		else
			must(close(p[1]), "close");
		break;
	}
	case 5: {
		int src = random_slot(w, 1);
		if (src >= 0)
			store(w, slot, fcntl(w->slots[src], F_DUPFD_CLOEXEC, 0), "fcntl F_DUPFD_CLOEXEC");
		else
			store(w, slot, dup(w->inbox[0]), "dup");
		break;
	}
	default:
		received = receive_fd(w->inbox[0], next_random(w) % 2 ? MSG_CMSG_CLOEXEC : 0);
		if (received >= 0)
			store(w, slot, received, "recvmsg");
		else
			store(w, slot, open("/dev/null", O_RDONLY), "open");
	}
}

static void dup_onto_own(struct worker *w, int slot)
{
	int target = random_slot(w, 1); /* may be slot itself: dup2(fd, fd) */
	if (next_random(w) % 2 || target == slot)
		must(dup2(w->slots[slot], w->slots[target]), "dup2");
	else
		must(dup3(w->slots[slot], w->slots[target], O_CLOEXEC), "dup3");
	w->ops++;
}

static void dup_into_free(struct worker *w, int slot)
{
	int free_slot = random_slot(w, 0);
	if (free_slot >= 0)
		store(w, free_slot, dup(w->slots[slot]), "dup");
	else
		release(w, slot);
}

static void use(struct worker *w, int slot)
{
	switch (next_random(w) % 6) {
	case 0: case 1: release(w, slot); break;
	case 2: dup_onto_own(w, slot); break;
	case 3: pass_to_neighbour(w, slot); break;
	case 4:
		must(close_range(w->slots[slot], w->slots[slot], 0), "close_range");
		w->slots[slot] = -1;
		w->ops++;
		break;
	default: dup_into_free(w, slot);
	}
}

static void worker_step(struct worker *w)
{
	int slot = next_random(w) % SLOTS;
	if (w->slots[slot] < 0)
		open_into(w, slot);
	else
		use(w, slot);
}

static void worker_cleanup(struct worker *w)
{
	int fd;
	for (int s = 0; s < SLOTS; s++)
		if (w->slots[s] >= 0)
			release(w, s);
	while ((fd = receive_fd(w->inbox[0], 0)) >= 0)
		must(close(fd), "close");
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (;;) {
		pthread_barrier_wait(&phase_start);
		if (atomic_load(&workers_stop))
			break;
		set_sigusr1_blocked(0);
		for (int i = 0; i < STEPS_PER_PHASE; i++)
			worker_step(w);
		set_sigusr1_blocked(1);
		pthread_barrier_wait(&phase_end);
	}
	worker_cleanup(w);
	return NULL;
}

/* ---- forked children ---- */

static int is_initial(int fd)
{
	return contains(initial_fds, n_initial, fd);
}

static void check_fork_inheritance(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		int state = htrace_fd_state(fds[i]);
		int needed = is_initial(fds[i]) ? HTRACE_FD_IS_OPEN : NEEDED_AFTER_FORK;
		if ((state & needed) != needed)
			fail("child: inherited fd %d has state 0x%x, expected bits 0x%x", fds[i], state, needed);
	}
}

/* A few operations of the child's own: close half of what it inherited,
 * open, duplicate and close. */
static void child_work(int *fds, int n)
{
	int p[2];
	for (int i = 0; i < n; i += 2)
		if (!is_initial(fds[i]))
			must(close(fds[i]), "close inherited");
	for (int i = 0; i < 20; i++) {
		int a = must(open("/dev/null", O_RDONLY), "open");
		int b = must(dup(a), "dup");
		must(pipe(p), "pipe");
		must(dup2(p[0], b), "dup2");
		must(close(a), "close");
		must(close(b), "close");
		must(close(p[0]), "close");
		must(close(p[1]), "close");
	}
}

static _Noreturn void child_main(void)
{
	static int fds[MAX_FDS];
	int n = kernel_fds(fds, MAX_FDS);
	check_fork_inheritance(fds, n);
	checkpoint("child start");
	child_work(fds, n);
	checkpoint("child work");
	int leaked = leak_on_purpose();
	checkpoint("child leak");
	say("CHILD %d %d\n", (int)getpid(), leaked);
	exit(0);
}

static void wait_for(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("child %d failed (status 0x%x)", (int)pid, status);
}

static void fork_child(void)
{
	pid_t pid = must(fork(), "fork");
	if (pid == 0)
		child_main();
	wait_for(pid);
}

/* ---- the main image ---- */

static void start_workers(void)
{
	pthread_barrier_init(&phase_start, NULL, WORKERS + 1);
	pthread_barrier_init(&phase_end, NULL, WORKERS + 1);
	for (int i = 0; i < WORKERS; i++) {
		struct worker *w = &workers[i];
		w->id = i;
		w->rng = 2463534242u + 7919u * i;
		for (int s = 0; s < SLOTS; s++)
			w->slots[s] = -1;
		must(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, w->inbox), "socketpair");
	}
	for (int i = 0; i < WORKERS; i++)
		if ((errno = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i])) != 0)
			fail("pthread_create: %s", strerror(errno));
}

static long stop_workers(void)
{
	long ops = 0;
	atomic_store(&workers_stop, 1);
	pthread_barrier_wait(&phase_start);
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(workers[i].thread, NULL);
		must(close(workers[i].inbox[0]), "close");
		must(close(workers[i].inbox[1]), "close");
		ops += workers[i].ops;
	}
	return ops;
}

static void run_phases(void)
{
	char where[32];
	for (int phase = 1; phase <= PHASES; phase++) {
		pthread_barrier_wait(&phase_start);
		pthread_barrier_wait(&phase_end);
		snprintf(where, sizeof where, "phase %d", phase);
		checkpoint(where);
		if (phase % FORK_EVERY_PHASES == 0)
			fork_child();
	}
}

/* Replaces the image, handing over PASSED_ON_EXEC descriptors opened
 * without O_CLOEXEC; one more, with O_CLOEXEC, must vanish. */
static _Noreturn void exec_self(void)
{
	int p[2], fds[PASSED_ON_EXEC];
	char numbers[PASSED_ON_EXEC][16];
	char *args[PASSED_ON_EXEC + 3] = { "stress", "--after-exec" };

	fds[0] = must(open("/dev/null", O_RDONLY), "open");
	must(pipe(p), "pipe");
	fds[1] = p[0];
	fds[2] = p[1];
	must(open("/dev/zero", O_RDONLY | O_CLOEXEC), "open");
	for (int i = 0; i < PASSED_ON_EXEC; i++) {
		snprintf(numbers[i], sizeof numbers[i], "%d", fds[i]);
		args[2 + i] = numbers[i];
	}
	args[2 + PASSED_ON_EXEC] = NULL;
	execv("/proc/self/exe", args);
	fail("execv /proc/self/exe: %s", strerror(errno));
}

static void record_initial_fds(void)
{
	n_initial = kernel_fds(initial_fds, MAX_FDS);
}

static void run_threads(void)
{
	pthread_t timer;
	set_sigusr1_blocked(1); /* inherited by the threads */
	install_sigusr1_handler();
	start_workers();
	if ((errno = pthread_create(&timer, NULL, timer_main, NULL)) != 0)
		fail("pthread_create: %s", strerror(errno));
	run_phases();
	long ops = stop_workers();
	atomic_store(&timer_stop, 1);
	pthread_join(timer, NULL);
	checkpoint("threads joined");
	say("OPS %ld SIGNALS %ld CHECKPOINTS %d\n", ops, atomic_load(&signal_opens), checkpoints);
	if (ops < MIN_TOTAL_OPS)
		fail("only %ld descriptor operations, fewer than %d", ops, MIN_TOTAL_OPS);
	if (atomic_load(&signal_opens) == 0)
		fail("the signal handler never ran");
}

/* ---- the image after exec ---- */

static int after_exec(int argc, char **argv)
{
	if (argc != PASSED_ON_EXEC)
		fail("--after-exec wants %d descriptors, got %d", PASSED_ON_EXEC, argc);
	for (int i = 0; i < argc; i++) {
		int fd = atoi(argv[i]), state = htrace_fd_state(fd);
		if (fcntl(fd, F_GETFD) < 0)
			fail("after exec: fd %d is not open", fd);
		if ((state & NEEDED_AFTER_EXEC) != NEEDED_AFTER_EXEC)
			fail("after exec: fd %d has state 0x%x, expected bits 0x%x", fd, state, NEEDED_AFTER_EXEC);
	}
	checkpoint("after exec");
	must(close(atoi(argv[0])), "close inherited");
	int leaked = leak_on_purpose();
	checkpoint("final");
	say("FINAL %d %d\n", (int)getpid(), leaked);
	return 0;
}

int main(int argc, char **argv)
{
	if (!htrace_open_fds || !htrace_fd_state) {
		say("SKIP: not running under the htrace agent (htrace_open_fds is NULL)\n");
		return 77;
	}
	if (argc > 1 && strcmp(argv[1], "--after-exec") == 0)
		return after_exec(argc - 2, argv + 2);
	say("ROOT %d\n", (int)getpid());
	record_initial_fds();
	checkpoint("start");
	run_threads();
	exec_self();
}
