/* unwinder MODE: stacks for the agent's own unwinder (src/agent/unwind.c)
 * to walk, run by tests/test_unwind.py with HTRACE_UNWIND=check, which
 * takes every stack with it and with libunwind and reports, at exit, how
 * many stacks it took and where the two differed.  Every mode opens and
 * closes /dev/null many times:
 *
 *   recurse     from 0 to 90 nested calls (beyond the 64 frames kept)
 *   threads     in threads on glibc's stacks, small ones (setstacksize),
 *               and stacks the program gives (setstack), all at once
 *   signals     in a signal handler, on the thread's stack and on an
 *               alternate stack (sigaltstack)
 *   coroutine   on a makecontext stack, and back on the main stack
 *   corothread  the same in a thread, whose first stacks are thus on the
 *               coroutine's, then in a plain thread
 *   plugins A B in plugins A and B (tests/plugins), each loaded, called
 *               and unloaded in turn, often at the same address
 *   plugthreads A B  the same in three threads at once
 *   fork        in a threaded process and its fork child
 *   outer       12 calls deep, under two callers in turn whose frames are
 *               at the same place: the inner frames of consecutive stacks
 *               are the same, registers and all, and only the return
 *               address into the caller differs (the unwinder's memo of
 *               its last walk must notice)
 *   moved       under two callers in turn whose frames are not at the
 *               same place, but whose callees' are (alloca makes up the
 *               difference): the inner frames are the same, registers and
 *               all, the words of the other caller's frames are still on
 *               the stack, unwritten, and only a saved rbp tells that the
 *               frames above moved (the memo must compare it)
 *   rbpcount    from a loop that keeps its counter in rbp, as code
 *               without frame pointers may: consecutive stacks differ in
 *               that rbp, which the loop's frame does not use (it saves
 *               rbp and its CFA is rsp + 32), so the memo of the last walk
 *               must still give their outer frames, and the thread's
 *               recent stacks their depot ids
 *
 * Prints "DONE <mode>" and exits 0; 1 when a call fails. */
#define _GNU_SOURCE
#include <alloca.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))
#define ROUNDS 200

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* Two descriptors, closed from one call site: the second close's stack is
 * the first one's, registers and all, from its first frame on. */
static NOINLINE void open_close(void)
{
	int fds[2] = { open("/dev/null", O_RDONLY), open("/dev/null", O_RDONLY) };
	int n = 2;
	__asm__("" : "+r"(n)); /* a loop gcc cannot peel into two call sites */
	for (int i = 0; i < n; i++)
		if (fds[i] < 0 || close(fds[i]))
			die("open or close /dev/null");
}

static NOINLINE int nested(int depth)
{
	if (!depth) {
		open_close();
		return 0;
	}
	int r = nested(depth - 1);
	__asm__ volatile("" : "+r"(r));
	return r + 1;
}

static void *thread_work(void *arg)
{
	for (int i = 0; i < ROUNDS; i++)
		nested((i + (int)(long)arg) % 40);
	return NULL;
}

static void start(pthread_t *t, pthread_attr_t *attr, long n)
{
	if (pthread_create(t, attr, thread_work, (void *)n))
		die("pthread_create");
}

static int threads(void)
{
	enum { PLAIN = 3, SMALL = 2, GIVEN = 2, ALL = PLAIN + SMALL + GIVEN };
	pthread_t t[ALL];
	pthread_attr_t small, given[GIVEN];
	pthread_attr_init(&small);
	pthread_attr_setstacksize(&small, 64 * 1024);
	for (long i = 0; i < PLAIN; i++)
		start(&t[i], NULL, i);
	for (long i = 0; i < SMALL; i++)
		start(&t[PLAIN + i], &small, i);
	for (long i = 0; i < GIVEN; i++) {
		size_t size = 256 * 1024;
		void *stack = aligned_alloc(4096, size);
		pthread_attr_init(&given[i]);
		if (!stack || pthread_attr_setstack(&given[i], stack, size))
			die("pthread_attr_setstack");
		start(&t[PLAIN + SMALL + i], &given[i], i);
	}
	for (int i = 0; i < ALL; i++)
		pthread_join(t[i], NULL);
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	nested(3);
}

static int signals(void)
{
	static char alt[64 * 1024];
	stack_t ss = { .ss_sp = alt, .ss_size = sizeof(alt) };
	struct sigaction on_stack = { .sa_handler = on_signal }, on_alt = on_stack;
	on_alt.sa_flags = SA_ONSTACK;
	if (sigaltstack(&ss, NULL) || sigaction(SIGUSR1, &on_stack, NULL) ||
	    sigaction(SIGUSR2, &on_alt, NULL))
		die("sigaction");
	for (int i = 0; i < ROUNDS; i++) {
		raise(i % 2 ? SIGUSR1 : SIGUSR2);
		nested(i % 5);
	}
	return 0;
}

static ucontext_t main_context, coroutine_context;

static void coroutine(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		nested(i % 7);
		swapcontext(&coroutine_context, &main_context);
	}
}

static int coroutines(void)
{
	size_t size = 128 * 1024;
	void *stack = malloc(size);
	if (!stack || getcontext(&coroutine_context))
		die("getcontext");
	coroutine_context.uc_stack.ss_sp = stack;
	coroutine_context.uc_stack.ss_size = size;
	coroutine_context.uc_link = &main_context;
	makecontext(&coroutine_context, coroutine, 0);
	for (int i = 0; i < ROUNDS; i++) {
		if (swapcontext(&main_context, &coroutine_context))
			die("swapcontext");
		nested(i % 3);
	}
	return 0;
}

static void *coroutine_thread(void *arg)
{
	(void)arg;
	coroutines();
	return NULL;
}

static void *plain_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++)
		nested(i % 3);
	return NULL;
}

/* The agent learns where glibc keeps a thread's stack from the first thread
 * that takes a stack: here from one that is running a coroutine. */
static int corothreads(void)
{
	void *(*bodies[])(void *) = { coroutine_thread, plain_thread };
	for (int i = 0; i < 2; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, bodies[i], NULL) || pthread_join(t, NULL))
			die("pthread_create");
	}
	return 0;
}

static const char *call_plugin(const char *path, int depth)
{
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	int (*plugin_open)(const char *, int) = lib ? (int (*)(const char *, int))dlsym(lib, "plugin_open") : NULL;
	if (!plugin_open || plugin_open("/dev/null", depth) < 0) {
		fprintf(stderr, "unwinder: %s: %s\n", path, dlerror());
		exit(1);
	}
	const char *at = (const char *)plugin_open;
	dlclose(lib);
	return at;
}

static const char *plugin_paths[2];
static int same_address;

static void *plugin_rounds(void *arg)
{
	int same = 0;
	for (int i = 0; i < ROUNDS / 4; i++) {
		same += call_plugin(plugin_paths[0], i % 6) == call_plugin(plugin_paths[1], i % 5);
		nested(i % 4);
	}
	if (!arg)
		same_address = same;
	return NULL;
}

/* The plugins in turn, in the main thread alone, or in three at once. */
static int plugins(const char *a, const char *b, int threads)
{
	pthread_t t[2];
	plugin_paths[0] = a;
	plugin_paths[1] = b;
	for (long i = 0; i < threads - 1; i++)
		if (pthread_create(&t[i], NULL, plugin_rounds, (void *)(i + 1)))
			die("pthread_create");
	plugin_rounds(NULL);
	for (int i = 0; i < threads - 1; i++)
		pthread_join(t[i], NULL);
	printf("SAME_ADDRESS %d\n", same_address);
	return 0;
}

static int forks(void)
{
	pthread_t t;
	start(&t, NULL, 0);
	for (int i = 0; i < 4; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (!pid) {
			thread_work((void *)1L);
			exit(0);
		}
		int status;
		if (waitpid(pid, &status, 0) != pid || status)
			die("child");
	}
	pthread_join(t, NULL);
	return 0;
}

/* Not folded into one function (their code differs); the same frame. */
static NOINLINE int outer_a(void)
{
	int r = nested(12);
	__asm__ volatile("" : "+r"(r));
	return r;
}

static NOINLINE int outer_b(void)
{
	int r = nested(12);
	__asm__ volatile("nop" : "+r"(r));
	return r + 1;
}

static int outers(void)
{
	for (int i = 0; i < ROUNDS; i++)
		if ((i & 1 ? outer_a() : outer_b()) < 0)
			return 1;
	return 0;
}

/* --- moved --------------------------------------------------------- */

static int measuring; /* the calls only measure where moved_leaf's frame is */
static uintptr_t leaf_at;

/* Saves rbp and clears it, as code without frame pointers may use it: the
 * frames inside it then have the same registers wherever its caller is,
 * and the step out of it reads the caller's rbp from the stack. */
static NOINLINE __attribute__((optimize("omit-frame-pointer"))) int moved_leaf(void)
{
	volatile char mark = 0;
	leaf_at = (uintptr_t)&mark;
	if (measuring)
		return mark;
	__asm__ volatile("xor %%ebp, %%ebp" : : : "rbp");
	return nested(2) + mark;
}

/* alloca: its frame is addressed from rbp, saved at CFA-16 */
static NOINLINE int moved_middle(size_t pad)
{
	char *p = alloca(pad);
	__asm__ volatile("" : : "r"(p) : "memory");
	return moved_leaf() + 1;
}

/* Two callers, not folded into one, over alloca areas that nothing
 * writes: the other caller's frames stay there as they were. */
static NOINLINE int moved_x(size_t shift, size_t pad)
{
	char *p = alloca(shift);
	__asm__ volatile("" : : "r"(p) : "memory");
	return moved_middle(pad) + 2;
}

static NOINLINE int moved_y(size_t shift, size_t pad)
{
	char *p = alloca(shift);
	__asm__ volatile("" : : "r"(p) : "memory");
	return moved_middle(pad) + 3;
}

#define MOVED_X_SHIFT 512u
#define MOVED_Y_SHIFT 1536u
#define MOVED_X_PAD 2048u

/* Called through one pointer from one call site, so that both callers
 * have the same return address and the same frame above them. */
static NOINLINE int moved_call(int (*volatile caller)(size_t, size_t), size_t shift, size_t pad)
{
	int r = caller(shift, pad);
	__asm__ volatile("" : "+r"(r)); /* not a tail call */
	return r;
}

/* The pad that puts moved_y's leaf where moved_x's is, or 0. */
static size_t moved_y_pad(void)
{
	measuring = 1;
	moved_call(moved_x, MOVED_X_SHIFT, MOVED_X_PAD);
	uintptr_t want = leaf_at;
	size_t found = 0;
	for (size_t pad = 16; pad <= 2 * MOVED_X_PAD && !found; pad += 16) {
		moved_call(moved_y, MOVED_Y_SHIFT, pad);
		if (leaf_at == want)
			found = pad;
	}
	measuring = 0;
	return found;
}

static int moveds(void)
{
	size_t y_pad = moved_y_pad();
	if (!y_pad) {
		fprintf(stderr, "unwinder: no alloca size puts both leaves at one place\n");
		return 1;
	}
	for (int i = 0; i < ROUNDS; i++) {
		int y = i & 1;
		if (moved_call(y ? moved_y : moved_x, y ? MOVED_Y_SHIFT : MOVED_X_SHIFT,
			       y ? y_pad : MOVED_X_PAD) < 0)
			return 1;
	}
	return 0;
}

/* rbpcount: the loop is in assembly, so that its counter is surely in rbp. */
#define RBP_ROUNDS 1000
void rbp_counting_loop(long rounds);
__attribute__((noinline, used)) void open_close_counted(long round)
{
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || round < 0 || close(fd))
		die("open or close /dev/null");
}
__asm__(".text\n"
	".type rbp_counting_loop, @function\n"
	"rbp_counting_loop:\n"
	"	.cfi_startproc\n"
	"	push %rbp\n"
	"	.cfi_def_cfa_offset 16\n"
	"	.cfi_offset %rbp, -16\n"
	"	push %rbx\n"
	"	.cfi_def_cfa_offset 24\n"
	"	.cfi_offset %rbx, -24\n"
	"	sub $8, %rsp\n"
	"	.cfi_def_cfa_offset 32\n"
	"	mov %rdi, %rbx\n"
	"	xor %ebp, %ebp\n"
	"1:	mov %rbp, %rdi\n"
	"	call open_close_counted\n"
	"	add $1, %rbp\n"
	"	cmp %rbx, %rbp\n"
	"	jl 1b\n"
	"	add $8, %rsp\n"
	"	.cfi_def_cfa_offset 24\n"
	"	pop %rbx\n"
	"	.cfi_def_cfa_offset 16\n"
	"	pop %rbp\n"
	"	.cfi_def_cfa_offset 8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size rbp_counting_loop, .-rbp_counting_loop\n");

static int rbp_counts(void)
{
	rbp_counting_loop(RBP_ROUNDS);
	return 0;
}

static int recursion(void)
{
	for (int i = 0; i <= 90; i++)
		nested(i);
	return 0;
}

/* The modes without arguments. */
static const struct {
	const char *name;
	int (*run)(void);
} modes[] = {
	{ "recurse", recursion },
	{ "threads", threads },
	{ "signals", signals },
	{ "coroutine", coroutines },
	{ "corothread", corothreads },
	{ "fork", forks },
	{ "outer", outers },
	{ "moved", moveds },
	{ "rbpcount", rbp_counts },
};

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int r = -1;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (argc == 2 && !strcmp(mode, modes[i].name))
			r = modes[i].run();
	if (argc == 4 && (!strcmp(mode, "plugins") || !strcmp(mode, "plugthreads")))
		r = plugins(argv[2], argv[3], !strcmp(mode, "plugins") ? 1 : 3);
	if (r < 0) {
		fprintf(stderr, "usage: unwinder recurse|threads|signals|coroutine|corothread|"
				"plugins A B|plugthreads A B|fork|outer|moved|rbpcount\n");
		return 2;
	}
	printf("DONE %s\n", mode);
	return r;
}
