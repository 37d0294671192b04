/* Stacks: captured by our own unwinder for the common case (unwind.c) or,
 * when it gives up, with libunwind's unw_backtrace; both follow the DWARF
 * unwind tables and so are correct through code built without frame
 * pointers, and both give the same frames.  A stack is then stored once
 * per distinct stack in the depot, a lock-free open-addressing hash over a
 * bump-allocated region (each thread remembers its last few stacks' places
 * there).  An event holds only the stack's offset in the depot.
 *
 * libunwind is loaded with dlopen(RTLD_LOCAL), not linked: linked to a
 * preloaded library it would join the program's global scope, where its
 * _Unwind_* and backtrace() would replace libgcc's and glibc's for the
 * whole program (C++ exceptions, thread cancellation).
 *
 * HTRACE_UNWIND=libunwind leaves our unwinder out; HTRACE_UNWIND=check
 * takes every stack with both, says on stderr where they differ, and how
 * often ours was used, at exit. */
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <libunwind.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "agent.h"

#define COUNT(field) __atomic_add_fetch(&htrace_db.field, 1, __ATOMIC_RELAXED)
#define MAX_AGENT_FRAMES 12u /* ours above a capture: about 7 in check mode */
#define MAX_PROBES 64u

static uint64_t agent_lo, agent_hi; /* our own code, whose frames are hidden */
static uint64_t unwinder_lo, unwinder_hi; /* libunwind's code */
static uintptr_t stack_limit; /* RLIMIT_STACK: how far a thread's own stack reaches */

#define LIBUNWIND_SONAME "libunwind.so.8"
static int (*unwinder_backtrace)(void **pcs, int size);

enum { FAST, LIBUNWIND_ONLY, CHECK };
static int unwind_mode;
static struct {
	uint64_t fast, gave_up, stale, libunwind_stale, mismatches, joined, recent, known;
} check_counts;
/* HTRACE_UNWIND=check: libunwind's step by step walk, without the cache of
 * unw_backtrace, which outlives a dlclose */
static struct {
	unw_addr_space_t *local;
	void (*flush_cache)(unw_addr_space_t, unw_word_t, unw_word_t);
	int (*getcontext)(unw_context_t *);
	int (*init_local)(unw_cursor_t *, unw_context_t *);
	int (*step)(unw_cursor_t *);
	int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
} walk;

int stack_caller_is_unwinder(const void *addr)
{
	uint64_t a = (uint64_t)addr;
	return a >= unwinder_lo && a < unwinder_hi;
}

/* libunwind sets itself up on first use (and wants a pipe then, which it
 * is refused, see refuse_unwinder): do it now, not in a hook. */
/* Loads libunwind privately; 0 when it is there. */
static int unwinder_load(void)
{
	void *lib = dlopen(LIBUNWIND_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return -1;
	int (*set_caching)(unw_addr_space_t, unw_caching_policy_t) =
		(int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(lib, "_ULx86_64_set_caching_policy");
	unw_addr_space_t *local = dlsym(lib, "_ULx86_64_local_addr_space");
	unwinder_backtrace = (int (*)(void **, int))dlsym(lib, "unw_backtrace");
	if (!set_caching || !local || !unwinder_backtrace)
		return -1;
	walk.local = local;
	walk.flush_cache = (void (*)(unw_addr_space_t, unw_word_t, unw_word_t))dlsym(lib, "_Ux86_64_flush_cache");
	walk.getcontext = (int (*)(unw_context_t *))dlsym(lib, "_Ux86_64_getcontext");
	walk.init_local = (int (*)(unw_cursor_t *, unw_context_t *))dlsym(lib, "_ULx86_64_init_local");
	walk.step = (int (*)(unw_cursor_t *))dlsym(lib, "_ULx86_64_step");
	walk.get_reg = (int (*)(unw_cursor_t *, unw_regnum_t, unw_word_t *))dlsym(lib, "_ULx86_64_get_reg");
	modules_find_self(&unwinder_lo, &unwinder_hi, (const void *)unwinder_backtrace);
	agent_self.unwinding = 1; /* libunwind's set-up wants a pipe: refused */
	/* per-thread caches: no libunwind lock for a fork child to inherit held */
	set_caching(*local, UNW_CACHE_PER_THREAD);
	void *warmup[4];
	unwinder_backtrace(warmup, 4);
	agent_self.unwinding = 0;
	return 0;
}

/* In a fork child: HTRACE_UNWIND=check counts the child's own stacks. */
void stack_fork_child(void)
{
	memset(&check_counts, 0, sizeof(check_counts));
}

void stack_init(void)
{
	modules_find_self(&agent_lo, &agent_hi, (const void *)stack_init);
	struct rlimit lim;
	stack_limit = 8u << 20;
	if (RAW4(SYS_prlimit64, 0, RLIMIT_STACK, 0, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
	    lim.rlim_cur > stack_limit)
		stack_limit = lim.rlim_cur;
	if (unwinder_load() < 0) {
		unwinder_backtrace = NULL;
		agent_fail("cannot load " LIBUNWIND_SONAME ": no stacks");
	}
	const char *mode = getenv("HTRACE_UNWIND");
	if (mode && !strcmp(mode, "libunwind"))
		unwind_mode = LIBUNWIND_ONLY;
	else if (mode && !strcmp(mode, "check"))
		unwind_mode = CHECK;
	else if (mode && *mode)
		agent_env_ignored("HTRACE_UNWIND", mode, "neither libunwind nor check",
				  "stacks are taken by the agent's unwinder first");
	unwind_init(stack_limit, forksafe_loader_lock(), agent_lo, agent_hi);
	modules_refresh(); /* the objects' unwind tables, now that unwind.c can follow changes */
}

static int in_agent(uint64_t pc)
{
	return pc >= agent_lo && pc < agent_hi;
}

/* libunwind needs several KiB of stack, more than a small alternate
 * signal stack may have left.  Near the highest address seen on the
 * thread's own stack we are on it; elsewhere the kernel is asked. */
static int on_alternate_stack(void)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	uintptr_t top = agent_self.stack_top;
	if (top && sp <= top + (1u << 20) && sp + stack_limit >= top) {
		if (sp > top)
			agent_self.stack_top = sp;
		return 0;
	}
	stack_t ss;
	if (RAW2(SYS_sigaltstack, 0, &ss) == 0 && (ss.ss_flags & SS_ONSTACK))
		return 1;
	if (sp > top)
		agent_self.stack_top = sp;
	return 0;
}

/* libunwind's stack, from the caller's frame as unwind_fast's would be. */
ALWAYS_INLINE int unwind_libunwind(uint64_t *pcs, unsigned max)
{
	int cancel_state;
	/* libunwind calls read and close, cancellation points, inside calls
	 * that are not */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	agent_self.unwinding = 1;
	int n = unwinder_backtrace((void **)pcs, (int)max);
	agent_self.unwinding = 0;
	pthread_setcancelstate(cancel_state, NULL);
	return n;
}

/* Where pcs[0..n) starts after our own frames, and how many frames from
 * there are kept (at most depth). */
static unsigned keep_frames(const uint64_t *pcs, int n, unsigned depth, unsigned *first)
{
	unsigned i = 0;
	while (i < (unsigned)n && in_agent(pcs[i]))
		i++;
	*first = i;
	return (unsigned)n - i < depth ? (unsigned)n - i : depth;
}

static inline void count_check(uint64_t *counter)
{
	if (unwind_mode == CHECK)
		__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

static void check_stored(uint32_t id, const uint64_t *frames, unsigned kept,
			 const struct unwind_info *info);
static void check_mismatch(const char *what);
static uint32_t depot_put_hashed(const uint64_t *pc, unsigned depth, uint64_t wide_hash,
				 int *is_new);

/* The stack's frames in pcs from pcs[*first] on (from the fast unwinder,
 * *fast set: perhaps only up to info->filled, see unwind_fast); returns
 * how many, or -1 for none taken: on an alternate signal stack, where
 * libunwind would be the one to take it.  Both unwinders are called from
 * this one function, so that they start from the same frame and hide the
 * same frames of ours. */
static int unwind(uint64_t *pcs, unsigned depth, unsigned *first, struct unwind_info *info,
		  int *fast, const void *frame)
{
	unsigned max = depth + MAX_AGENT_FRAMES;
	int n = unwind_mode == LIBUNWIND_ONLY ? UNWIND_GIVE_UP : unwind_fast(pcs, depth, info, frame);
	if (n == UNWIND_STALE) {
		count_check(&check_counts.stale);
		modules_refresh(); /* a dlopen or dlclose since the last */
		n = unwind_fast(pcs, depth, info, frame);
	}
	*fast = n >= 0;
	if (n < 0) {
		if (on_alternate_stack())
			return -1;
		count_check(&check_counts.gave_up);
		unsigned kept = keep_frames(pcs, unwind_libunwind(pcs, max), depth, first);
		*info = (struct unwind_info){ .hash = stack_hash(pcs + *first, kept) };
		return (int)kept;
	}
	if (info->joined)
		count_check(&check_counts.joined);
	*first = 0; /* ours starts outside the agent, with at most depth frames */
	return n;
}

/* --- the thread's recent stacks -----------------------------------------
 * A thread's consecutive stacks mostly differ in their first frame only
 * (the call site in the same function), and the fast unwinder numbers the
 * frames after the first (unwind_info.tail): so a few (tail, first frame)
 * pairs remembered with their depot ids spare the depot's hash probe and
 * word-by-word compare.  A first frame has two places, a pair picked from
 * its address, so that finding it takes one or two compares.  The ids are
 * forgotten with the depot (-disable: depot_forget_recent).  A signal
 * handler's capture while the thread is at it leaves them alone. */
#define RECENT_BITS 3u

struct recent_stack {
	uint64_t tail, first_pc, generation;
	uint32_t id;
};

static AGENT_TLS struct {
	struct recent_stack stack[1u << RECENT_BITS][2]; /* [0]: the newer */
	int busy;
} recent;

/* first_pc's pair of places: the high bits of a multiplicative hash, so
 * that call sites a few bytes apart take different pairs */
static struct recent_stack *recent_pair(uint64_t first_pc)
{
	return recent.stack[(first_pc * 0x9e3779b97f4a7c15ull) >> (64 - RECENT_BITS)];
}

static int recent_holds(const struct recent_stack *r, uint64_t tail, uint64_t first_pc,
			uint64_t generation)
{
	return r->first_pc == first_pc && r->tail == tail && r->generation == generation;
}

static uint64_t depot_generation = 1;

static uint64_t depot_generation_now(void)
{
	return __atomic_load_n(&depot_generation, __ATOMIC_ACQUIRE);
}

void depot_forget_recent(void)
{
	__atomic_add_fetch(&depot_generation, 1, __ATOMIC_ACQ_REL);
}

static uint32_t depot_id(const uint64_t *frames, unsigned kept, uint64_t hash)
{
	int is_new = 0;
	uint32_t id = depot_put_hashed(frames, kept, hash, &is_new);
	if (is_new && !modules_cover(frames, kept))
		modules_refresh(); /* a new stack reaches into an object loaded since */
	return id;
}

ALWAYS_INLINE uint32_t recent_find(uint64_t tail, uint64_t first_pc, uint64_t generation)
{
	const struct recent_stack *pair = recent_pair(first_pc);
	if (recent_holds(&pair[0], tail, first_pc, generation))
		return pair[0].id;
	return recent_holds(&pair[1], tail, first_pc, generation) ? pair[1].id : 0;
}

/* The depot id of frames[0, kept), a part of pcs, once all of them are
 * written (unwind_fast_finish). */
static uint32_t depot_id_of_all(uint64_t *pcs, const uint64_t *frames, unsigned kept,
				struct unwind_info *info)
{
	unwind_fast_finish(pcs, (unsigned)(frames - pcs) + kept, info, 1);
	return depot_id(frames, kept, info->hash);
}

/* Stack (tail, first_pc) among the thread's recent ones, taken while the
 * depot was at generation and still is; else 0.  recent.busy is held. */
static inline uint32_t recent_current(uint64_t tail, uint64_t first_pc, uint64_t generation)
{
	uint32_t id = recent_find(tail, first_pc, generation);
	return id && depot_generation_now() == generation ? id : 0; /* else the depot was emptied */
}

static inline uint32_t depot_id_of_recent(uint64_t *pcs, const uint64_t *frames, unsigned kept,
					  struct unwind_info *info, uint64_t generation)
{
	if (recent.busy)
		return depot_id_of_all(pcs, frames, kept, info);
	recent.busy = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	uint32_t id = recent_current(info->tail, frames[0], generation);
	if (id) {
		count_check(&check_counts.recent);
		unwind_fast_finish(pcs, 0, info, 0); /* the other frames are not needed */
	} else if ((id = depot_id_of_all(pcs, frames, kept, info))) {
		struct recent_stack *pair = recent_pair(frames[0]);
		pair[1] = pair[0];
		pair[0] = (struct recent_stack){
			.tail = info->tail, .first_pc = frames[0], .generation = generation, .id = id
		};
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	recent.busy = 0;
	return id;
}

/* The depot id of the stack when it is the first frame and the frames
 * after the first of the thread's last walk, already among its recent
 * stacks (unwind_fast_joined): no walk, no copy of the frames; else 0. */
static inline uint32_t stack_known(const void *frame, uint64_t generation)
{
	uint64_t first_pc, tail;
	if (recent.busy || !unwind_fast_joined(htrace_db.stack_depth, frame, &first_pc, &tail))
		return 0;
	recent.busy = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	uint32_t id = recent_current(tail, first_pc, generation);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	recent.busy = 0;
	return id;
}

/* No stack: in a fork child whose loader lock may be held by a vanished
 * thread, or on an alternate signal stack (see unwind). */
static uint32_t stack_skipped(void)
{
	COUNT(stacks_skipped);
	return 0;
}

/* The stack walked (by our unwinder, else libunwind) and its depot id. */
static __attribute__((noinline)) uint32_t stack_walked(const void *frame, uint64_t generation)
{
	uint64_t pcs[HTRACE_MAX_DEPTH + MAX_AGENT_FRAMES];
	struct unwind_info info;
	int fast;
	unsigned first;
	int got = unwind(pcs, htrace_db.stack_depth, &first, &info, &fast, frame);
	if (got < 0)
		return stack_skipped();
	unsigned kept = (unsigned)got;
	const uint64_t *frames = pcs + first;
	uint32_t id = kept && info.tail ? depot_id_of_recent(pcs, frames, kept, &info, generation)
					: depot_id_of_all(pcs, frames, kept, &info);
	if (unwind_mode == CHECK && fast && !on_alternate_stack())
		check_stored(id, frames, kept, &info); /* libunwind, with its need of stack */
	return id;
}

/* A stack known from the thread's last walk needs no walk (stack_known);
 * HTRACE_UNWIND=check walks it all the same, and says so if they differ. */
uint32_t stack_capture(const void *frame)
{
	if (agent_self.unwinding) {
		COUNT(stacks_nested); /* a signal handler's call while libunwind unwinds */
		return 0;
	}
	if (!unwinder_backtrace)
		return 0;
	if (fork_child_without_stacks)
		return stack_skipped();
	uint64_t generation = depot_generation_now();
	uint32_t known = unwind_mode != LIBUNWIND_ONLY ? stack_known(frame, generation) : 0;
	if (known && unwind_mode == FAST)
		return known;
	uint32_t id = stack_walked(frame, generation);
	if (known) {
		count_check(&check_counts.known);
		if (id != known)
			check_mismatch("the depot id of a stack known from the last walk");
	}
	return id;
}

/* --- HTRACE_UNWIND=check ------------------------------------------------ */

static char *put_text(char *at, const char *text)
{
	while (*text)
		*at++ = *text++;
	return at;
}

static char *put_number(char *at, uint64_t v, unsigned base)
{
	char digits[24];
	unsigned n = 0;
	do
		digits[n++] = "0123456789abcdef"[v % base];
	while ((v /= base));
	while (n)
		*at++ = digits[--n];
	return at;
}

static char *put_frames(char *at, const uint64_t *frames, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		at = put_number(put_text(at, " 0x"), frames[i], 16);
	return at;
}

static void say(const char *text, size_t len)
{
	RAW3(SYS_write, 2, text, len);
}

/* A difference HTRACE_UNWIND=check found in something else than the
 * frames: counted, and said in one line. */
static void check_mismatch(const char *what)
{
	char line[128], *at = put_text(line, "htrace: unwind mismatch: ");
	at = put_text(at, what);
	*at++ = '\n';
	count_check(&check_counts.mismatches);
	say(line, (size_t)(at - line));
}

/* libunwind's stack, step by step from fresh tables; -1 without. */
static __attribute__((noinline)) int libunwind_walk(uint64_t *pcs, unsigned max)
{
	unw_context_t context;
	unw_cursor_t cursor;
	unw_word_t ip;
	int n = 0, cancel_state;
	if (!walk.flush_cache || !walk.getcontext || !walk.init_local || !walk.step || !walk.get_reg)
		return -1;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	agent_self.unwinding = 1;
	walk.flush_cache(*walk.local, 0, 0);
	if (walk.getcontext(&context) < 0 || walk.init_local(&cursor, &context) < 0)
		n = -1;
	while (n >= 0 && (unsigned)n < max && walk.step(&cursor) > 0 &&
	       walk.get_reg(&cursor, UNW_REG_IP, &ip) >= 0)
		pcs[n++] = ip;
	agent_self.unwinding = 0;
	pthread_setcancelstate(cancel_state, NULL);
	return n;
}

static int same_frames(const uint64_t *a, unsigned n, const uint64_t *b, unsigned m)
{
	return n == m && !memcmp(a, b, n * sizeof(uint64_t));
}

/* libunwind's stack (from two frames of ours more, check_stored's and
 * this one, which it hides) against ours: said on stderr when they
 * differ, unless libunwind's own cache was wrong (a rule kept for an
 * unloaded object), as its walk from fresh tables shows. */
static __attribute__((noinline)) void check_against_libunwind(const uint64_t *ours, unsigned n,
							     unsigned depth)
{
	uint64_t pcs[HTRACE_MAX_DEPTH + MAX_AGENT_FRAMES];
	unsigned max = depth + MAX_AGENT_FRAMES, first;
	unsigned m = keep_frames(pcs, unwind_libunwind(pcs, max), depth, &first);
	count_check(&check_counts.fast);
	if (same_frames(ours, n, pcs + first, m))
		return;
	char line[128 + 3 * 20 * HTRACE_MAX_DEPTH], *at = put_text(line, "htrace: unwind mismatch: ours");
	at = put_frames(at, ours, n);
	at = put_frames(put_text(at, "; libunwind"), pcs + first, m);
	int walked = libunwind_walk(pcs, max);
	m = walked < 0 ? 0 : keep_frames(pcs, walked, depth, &first);
	if (walked >= 0 && same_frames(ours, n, pcs + first, m)) {
		count_check(&check_counts.libunwind_stale);
		return;
	}
	count_check(&check_counts.mismatches);
	at = put_frames(put_text(at, "; libunwind step by step"), pcs + first, m);
	*at++ = '\n';
	say(line, (size_t)(at - line));
}

/* HTRACE_UNWIND=check: what the fast unwinder's capture stored (the depot's
 * stack of id, else its frames, all written when there is no id), its
 * hash and its frames, against libunwind's. */
static __attribute__((noinline)) void check_stored(uint32_t id, const uint64_t *frames,
						   unsigned kept, const struct unwind_info *info)
{
	const struct htrace_stack *rec = depot_get(id);
	const uint64_t *ours = rec ? rec->pc : frames;
	unsigned n = rec ? rec->depth : kept;
	if (info->hash != stack_hash(ours, n))
		check_mismatch("the stack's hash");
	check_against_libunwind(ours, n, htrace_db.stack_depth);
}

__attribute__((destructor)) static void check_report(void)
{
	if (unwind_mode != CHECK)
		return;
	char line[256], *at = put_text(line, "htrace: unwind check: pid ");
	at = put_number(at, (uint64_t)RAW0(SYS_getpid), 10);
	at = put_number(put_text(at, ": fast "), check_counts.fast, 10);
	at = put_number(put_text(at, ", gave up "), check_counts.gave_up, 10);
	at = put_number(put_text(at, ", stale "), check_counts.stale, 10);
	at = put_number(put_text(at, ", libunwind stale "), check_counts.libunwind_stale, 10);
	at = put_number(put_text(at, ", mismatches "), check_counts.mismatches, 10);
	at = put_number(put_text(at, ", joined "), check_counts.joined, 10);
	at = put_number(put_text(at, ", recent "), check_counts.recent, 10);
	at = put_number(put_text(at, ", known "), check_counts.known, 10);
	*at++ = '\n';
	say(line, (size_t)(at - line));
}

/* --- the depot ----------------------------------------------------------- */

static size_t record_bytes(unsigned depth)
{
	return sizeof(struct htrace_stack) + depth * sizeof(uint64_t);
}

/* A new record holding the stack, not yet published; 0 when the depot is
 * full. */
static uint32_t record_new(uint32_t hash, const uint64_t *pc, unsigned depth)
{
	size_t bytes = record_bytes(depth);
	uint64_t off = __atomic_fetch_add(&htrace_db.depot_used, bytes, __ATOMIC_RELAXED);
	if (off + bytes > htrace_db.depot_bytes || off + bytes > UINT32_MAX)
		return 0;
	struct htrace_stack *rec = (struct htrace_stack *)(htrace_db.depot_addr + off);
	rec->hash = hash;
	rec->depth = (uint16_t)depth;
	memcpy(rec->pc, pc, depth * sizeof(uint64_t));
	return (uint32_t)off;
}

const struct htrace_stack *depot_get(uint32_t id)
{
	return id && htrace_db.depot_addr ? (const struct htrace_stack *)(htrace_db.depot_addr + id)
					  : NULL;
}

/* Compared word by word in line: a stack is a few words, too short for
 * memcmp's call to pay. */
static int record_equals(uint32_t off, uint32_t hash, const uint64_t *pc, unsigned depth)
{
	const struct htrace_stack *rec = depot_get(off);
	if (rec->hash != hash || rec->depth != depth)
		return 0;
	for (unsigned i = 0; i < depth; i++)
		if (rec->pc[i] != pc[i])
			return 0;
	return 1;
}

/* Publishes our record in an empty bucket; returns the bucket's record
 * (ours, or the one another thread published first). */
static uint32_t bucket_claim(uint32_t *bucket, uint32_t mine)
{
	uint32_t expected = 0;
	if (__atomic_compare_exchange_n(bucket, &expected, mine, 0, __ATOMIC_RELEASE,
					__ATOMIC_ACQUIRE))
		return mine;
	return expected;
}

static uint32_t depot_put_hashed(const uint64_t *pc, unsigned depth, uint64_t wide_hash,
				 int *is_new)
{
	if (!depth || !htrace_db.depot_addr)
		return 0;
	uint32_t hash = (uint32_t)(wide_hash ^ (wide_hash >> 32)), pending = 0;
	uint32_t *buckets = (uint32_t *)htrace_db.buckets_addr;
	uint32_t mask = htrace_db.nbuckets - 1;
	for (uint32_t probe = 0, i = hash & mask; probe < MAX_PROBES; probe++, i = (i + 1) & mask) {
		uint32_t off = __atomic_load_n(&buckets[i], __ATOMIC_ACQUIRE);
		if (!off) {
			if (!pending && !(pending = record_new(hash, pc, depth)))
				break;
			off = bucket_claim(&buckets[i], pending);
			if (off == pending) {
				*is_new = 1;
				return off;
			}
		}
		if (record_equals(off, hash, pc, depth))
			return off;
	}
	COUNT(stacks_dropped);
	return 0;
}

uint32_t depot_put(const uint64_t *pc, unsigned depth, int *is_new)
{
	return depot_put_hashed(pc, depth, stack_hash(pc, depth), is_new);
}
