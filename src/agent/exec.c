/* Leaks across exec.  A descriptor open without O_CLOEXEC passes into the
 * image an exec starts, and the stack that opened it would die with the old
 * image.  So, just before an exec:
 *
 *   - under `htrace run` (HTRACE_SUPERVISOR names the htrace process, and
 *     it is our tracer), the calling thread stops itself with
 *     HTRACE_EXEC_STOP_SIGNAL so that htrace reads the database and reports
 *     the descriptors about to pass (db.h);
 *   - the old image hands its knowledge to the new one in the environment:
 *     HTRACE_FROM=<pid>:<exe>, one HTRACE_M<i>=<start>:<end>:<bias>:<path>
 *     per object its stacks point into, and one
 *     HTRACE_F<fd>=<dev>:<ino>:<api>:<tid>:<time>:<pc>,<pc>,... per
 *     descriptor that will survive (numbers in hex).  The strings live in a
 *     private mapping (no malloc), given back if the exec fails.
 *
 * The new image's agent adopts them at start: each object gets a made-up
 * address range far above user space (PREVIOUS_BASE + i * PREVIOUS_STRIDE)
 * in its module table, flagged HTRACE_MOD_PREVIOUS_IMAGE, so the client's
 * symbolizer resolves the old addresses against the old files; a descriptor
 * whose device and inode still match gets its old OPEN with that stack.  The
 * variables are removed from environ before main runs. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "exec.h"

#define HANDOVER_FD_BYTES (320u << 10) /* descriptor strings; the rest go without */
#define HANDOVER_MODULE_BYTES (192u << 10)
#define HANDOVER_MAX_MODULES 512u
#define PREVIOUS_BASE 0x4000000000000000ULL
#define PREVIOUS_STRIDE (1ULL << 40)

extern char **environ;

static int supervisor_pid; /* HTRACE_SUPERVISOR: `htrace run`'s pid */

/* --- a bounded string writer over the mapping ----------------------------- */

struct writer {
	char *p, *end;
	int full;
};

static void put_char(struct writer *w, char c)
{
	if (w->p < w->end)
		*w->p++ = c;
	else
		w->full = 1;
}

static void put_str(struct writer *w, const char *s)
{
	while (*s)
		put_char(w, *s++);
}

static void put_hex(struct writer *w, uint64_t v)
{
	char digits[16];
	int n = 0;
	do {
		digits[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	while (n)
		put_char(w, digits[--n]);
}

/* --- the old image: what is about to pass --------------------------------- */

static const struct htrace_module *module_table(unsigned *count)
{
	*count = __atomic_load_n(&htrace_db.module_count, __ATOMIC_ACQUIRE);
	return (const struct htrace_module *)htrace_db.modules_addr;
}

/* fd passes into the new image: open, no close-on-exec, not 0-2 (meant to
 * pass), and the agent knows the stack that opened it. */
static int passes_with_stack(int fd, struct htrace_fd_slot *slot, struct stat *st)
{
	if (fd <= 2 || !engine_slot_save(fd, slot) || !depot_get(slot->open.stack))
		return 0;
	long fdflags = RAW2(SYS_fcntl, fd, F_GETFD);
	return fdflags >= 0 && !(fdflags & FD_CLOEXEC) && RAW2(SYS_fstat, fd, st) == 0;
}

struct handover_build {
	struct writer fds;
	char **vars;
	size_t nvars, maxvars;
	uint64_t modules_used[HANDOVER_MAX_MODULES / 64];
};

static void add_var(struct handover_build *b, char *start)
{
	if (b->nvars < b->maxvars)
		b->vars[b->nvars++] = start;
}

static void write_fd(int fd, void *arg)
{
	struct handover_build *b = arg;
	struct htrace_fd_slot slot;
	struct stat st;
	if (b->fds.full || !passes_with_stack(fd, &slot, &st))
		return;
	const struct htrace_stack *stack = depot_get(slot.open.stack);
	struct writer w = b->fds;
	char *start = w.p;
	put_str(&w, "HTRACE_F");
	put_hex(&w, (uint64_t)fd);
	put_char(&w, '=');
	const uint64_t fields[] = { st.st_dev, st.st_ino, slot.open.api, (uint32_t)slot.open.tid,
				    slot.open.time_ns };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		put_hex(&w, fields[i]);
		put_char(&w, ':');
	}
	unsigned depth = stack->depth < HTRACE_MAX_DEPTH ? stack->depth : HTRACE_MAX_DEPTH;
	for (unsigned i = 0; i < depth; i++) {
		int m = modules_index_of(stack->pc[i]);
		if (m >= 0 && (unsigned)m < HANDOVER_MAX_MODULES)
			b->modules_used[m / 64] |= 1ULL << (m % 64);
		put_hex(&w, stack->pc[i]);
		put_char(&w, i + 1 < depth ? ',' : '\0');
	}
	if (w.full || b->nvars == b->maxvars) {
		b->fds.full = 1;
		return;
	}
	b->fds = w;
	add_var(b, start);
}

static void write_modules(struct handover_build *b, struct writer *w)
{
	unsigned count;
	const struct htrace_module *m = module_table(&count);
	for (unsigned i = 0; m && i < count && i < HANDOVER_MAX_MODULES; i++) {
		if (!(b->modules_used[i / 64] & (1ULL << (i % 64))))
			continue;
		char *start = w->p;
		put_str(w, "HTRACE_M");
		put_hex(w, i);
		put_char(w, '=');
		put_hex(w, m[i].start);
		put_char(w, ':');
		put_hex(w, m[i].end);
		put_char(w, ':');
		put_hex(w, m[i].bias);
		put_char(w, ':');
		put_str(w, m[i].path);
		put_char(w, '\0');
		if (w->full)
			return;
		add_var(b, start);
	}
}

static void write_origin(struct handover_build *b, struct writer *w)
{
	char *start = w->p;
	put_str(w, "HTRACE_FROM=");
	put_hex(w, (uint32_t)htrace_db.pid);
	put_char(w, ':');
	put_str(w, htrace_db.exe);
	put_char(w, '\0');
	if (!w->full)
		add_var(b, start);
}

/* HTRACE_FROM=, or HTRACE_F / HTRACE_M then a hex number and '=' (not,
 * say, HTRACE_MAX_TRACES). */
static int is_handover_var(const char *var)
{
	if (!strncmp(var, "HTRACE_FROM=", 12))
		return 1;
	if (strncmp(var, "HTRACE_", 7) || (var[7] != 'F' && var[7] != 'M'))
		return 0;
	const char *p = var + 8;
	while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))
		p++;
	return p > var + 8 && *p == '=';
}

static void count_one(int fd, void *arg)
{
	(void)fd;
	++*(size_t *)arg;
}

static size_t count_open(void)
{
	size_t n = 0;
	engine_for_each_open(count_one, &n);
	return n;
}

char *const *exec_handover(char *const envp[], struct handover *h)
{
	memset(h, 0, sizeof(*h));
	if (htrace_in_vfork || !htrace_db.magic || !envp)
		return envp;
	size_t nenv = 0;
	while (envp[nenv])
		nenv++;
	size_t maxvars = nenv + count_open() + HANDOVER_MAX_MODULES + 2;
	size_t table = (maxvars + 1) * sizeof(char *);
	h->bytes = table + HANDOVER_FD_BYTES + HANDOVER_MODULE_BYTES;
	if (!(h->map = raw_map(h->bytes)))
		return envp;
	char *strings = (char *)h->map + table;
	struct handover_build b = { .vars = h->map, .maxvars = maxvars };
	b.fds = (struct writer){ strings, strings + HANDOVER_FD_BYTES, 0 };
	for (size_t i = 0; i < nenv; i++)
		if (!is_handover_var(envp[i]))
			add_var(&b, envp[i]);
	engine_for_each_open(write_fd, &b);
	struct writer modules = { strings + HANDOVER_FD_BYTES, strings + HANDOVER_FD_BYTES +
							       HANDOVER_MODULE_BYTES, 0 };
	write_modules(&b, &modules);
	write_origin(&b, &modules);
	b.vars[b.nvars] = NULL;
	return b.vars;
}

void exec_handover_release(struct handover *h)
{
	if (h->map)
		raw_unmap(h->map, h->bytes); /* a raw call: errno stays the exec's */
	h->map = NULL;
}

/* --- the stop for `htrace run` ---------------------------------------------- */

/* The TracerPid line of /proc/self/status, 0 when not traced or unknown. */
static int tracer_pid(void)
{
	int fd = (int)RAW4(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	char buf[4096];
	long n = RAW3(SYS_read, fd, buf, sizeof(buf) - 1);
	RAW1(SYS_close, fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *line = strstr(buf, "TracerPid:");
	if (!line)
		return 0;
	line += 10;
	while (*line == ' ' || *line == '\t')
		line++;
	return atoi(line);
}

void exec_stop_for_client(const char *path, unsigned how)
{
	if (!supervisor_pid || htrace_in_vfork || !htrace_db.magic || tracer_pid() != supervisor_pid)
		return;
	size_t len = path ? strnlen(path, sizeof(htrace_db.exec_path) - 1) : 0;
	memcpy(htrace_db.exec_path, path ? path : "", len);
	htrace_db.exec_path[len] = '\0';
	__atomic_store_n(&htrace_db.exec_pending, how, __ATOMIC_RELEASE);
	uint64_t stop = 1ULL << (HTRACE_EXEC_STOP_SIGNAL - 1), old;
	RAW4(SYS_rt_sigprocmask, SIG_UNBLOCK, &stop, &old, sizeof(stop));
	siginfo_t info;
	memset(&info, 0, sizeof(info));
	info.si_signo = HTRACE_EXEC_STOP_SIGNAL;
	info.si_code = SI_QUEUE;
	info.si_pid = htrace_db.pid;
	info.si_uid = (uid_t)RAW0(SYS_getuid);
	info.si_value.sival_int = HTRACE_EXEC_STOP_VALUE;
	long tid = RAW0(SYS_gettid);
	RAW4(SYS_rt_tgsigqueueinfo, htrace_db.pid, tid, HTRACE_EXEC_STOP_SIGNAL, &info);
	RAW4(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof(old));
	__atomic_store_n(&htrace_db.exec_pending, 0, __ATOMIC_RELEASE);
}

/* --- the new image: adopting what the old one handed over ------------------- */

struct previous_module {
	uint64_t start, end;
	unsigned index; /* in the old image's table */
	unsigned slot; /* made-up range number in ours */
};

static struct previous_module previous[HANDOVER_MAX_MODULES];
static unsigned nprevious;

/* Parses a hex number; *text moves past it and past one separator. */
static uint64_t take_hex(const char **text, int *ok)
{
	uint64_t v = 0;
	const char *p = *text;
	int digits = 0;
	for (;; p++, digits++) {
		int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
		if (d < 0)
			break;
		v = v << 4 | (unsigned)d;
	}
	if (!digits || digits > 16)
		*ok = 0;
	if (*p == ':' || *p == ',')
		p++;
	*text = p;
	return v;
}

static void adopt_module(const char *text)
{
	int ok = 1;
	uint64_t index = take_hex(&text, &ok);
	if (*text++ != '=')
		return;
	uint64_t start = take_hex(&text, &ok), end = take_hex(&text, &ok);
	uint64_t bias = take_hex(&text, &ok);
	if (!ok || start >= end || end - start >= PREVIOUS_STRIDE || nprevious >= HANDOVER_MAX_MODULES)
		return;
	unsigned slot = nprevious;
	uint64_t base = PREVIOUS_BASE + slot * PREVIOUS_STRIDE;
	if (modules_add_previous(base, base + (end - start), bias - start + base, text) < 0)
		return;
	previous[nprevious++] = (struct previous_module){ start, end, (unsigned)index, slot };
}

/* An old address moved into its object's made-up range; 0 if in none. */
static uint64_t translate(uint64_t pc)
{
	for (unsigned i = 0; i < nprevious; i++)
		if (previous[i].start <= pc && pc < previous[i].end)
			return PREVIOUS_BASE + previous[i].slot * PREVIOUS_STRIDE + (pc - previous[i].start);
	return 0;
}

static void adopt_descriptor(const char *text)
{
	int ok = 1;
	uint64_t fd = take_hex(&text, &ok);
	if (*text++ != '=' || !ok || fd > INT32_MAX)
		return;
	uint64_t dev = take_hex(&text, &ok), ino = take_hex(&text, &ok);
	uint64_t api = take_hex(&text, &ok), tid = take_hex(&text, &ok);
	uint64_t time_ns = take_hex(&text, &ok);
	uint64_t pc[HTRACE_MAX_DEPTH];
	unsigned depth = 0;
	while (ok && *text && depth < HTRACE_MAX_DEPTH) {
		uint64_t moved = translate(take_hex(&text, &ok));
		if (moved)
			pc[depth++] = moved;
	}
	struct stat st;
	if (!ok || !depth || api >= HTRACE_API_COUNT || RAW2(SYS_fstat, (int)fd, &st) != 0 ||
	    st.st_dev != dev || st.st_ino != ino)
		return; /* not the descriptor the old image meant */
	int is_new = 0;
	struct htrace_event open = { .time_ns = time_ns, .fd = (int32_t)fd, .tid = (int32_t)tid,
				     .stack = depot_put(pc, depth, &is_new), .api = (uint16_t)api,
				     .kind = HTRACE_OPEN, .flags = HTRACE_EV_INHERITED_EXEC };
	if (open.stack && engine_adopt((int)fd, &open) == 0)
		htrace_db.exec_inherited++;
}

static void adopt_origin(const char *text)
{
	int ok = 1;
	uint64_t pid = take_hex(&text, &ok);
	if (!ok || pid > INT32_MAX)
		return;
	htrace_db.exec_from_pid = (int32_t)pid;
	size_t len = strnlen(text, sizeof(htrace_db.exec_from) - 1);
	memcpy(htrace_db.exec_from, text, len);
	htrace_db.exec_from[len] = '\0';
}

/* Removes the handover variables from environ, as unsetenv would. */
static void strip_environment(void)
{
	char **kept = environ;
	for (char **var = environ; var && *var; var++)
		if (!is_handover_var(*var))
			*kept++ = *var;
	if (kept)
		*kept = NULL;
}

void exec_adopt(void)
{
	const char *supervisor = getenv("HTRACE_SUPERVISOR");
	supervisor_pid = supervisor ? atoi(supervisor) : 0;
	for (char **var = environ; var && *var; var++)
		if (is_handover_var(*var) && (*var)[7] == 'M')
			adopt_module(*var + 8);
	for (char **var = environ; var && *var; var++) {
		if (!strncmp(*var, "HTRACE_FROM=", 12))
			adopt_origin(*var + 12);
		else if (is_handover_var(*var) && (*var)[7] == 'F')
			adopt_descriptor(*var + 8);
	}
	strip_environment();
}
