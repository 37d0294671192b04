/* Stacks: captured with libunwind's unw_backtrace, which follows the DWARF
 * unwind tables and so is correct through code built without frame
 * pointers, then stored once per distinct stack in the depot, a lock-free
 * open-addressing hash over a bump-allocated region.  An event holds only
 * the stack's offset in the depot.
 *
 * libunwind is loaded with dlopen(RTLD_LOCAL), not linked: linked to a
 * preloaded library it would join the program's global scope, where its
 * _Unwind_* and backtrace() would replace libgcc's and glibc's for the
 * whole program (C++ exceptions, thread cancellation). */
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <libunwind.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "agent.h"

#define COUNT(field) __atomic_add_fetch(&htrace_db.field, 1, __ATOMIC_RELAXED)
#define MAX_AGENT_FRAMES 8u
#define MAX_PROBES 64u

static uint64_t agent_lo, agent_hi; /* our own code, whose frames are hidden */
static uint64_t unwinder_lo, unwinder_hi; /* libunwind's code */
static uintptr_t stack_limit; /* RLIMIT_STACK: how far a thread's own stack reaches */

#define LIBUNWIND_SONAME "libunwind.so.8"
static int (*unwinder_backtrace)(void **pcs, int size);

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
	modules_find_self(&unwinder_lo, &unwinder_hi, (const void *)unwinder_backtrace);
	agent_self.unwinding = 1; /* libunwind's set-up wants a pipe: refused */
	/* per-thread caches: no libunwind lock for a fork child to inherit held */
	set_caching(*local, UNW_CACHE_PER_THREAD);
	void *warmup[4];
	unwinder_backtrace(warmup, 4);
	agent_self.unwinding = 0;
	return 0;
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

static unsigned unwind(uint64_t *frames, unsigned depth)
{
	void *pcs[HTRACE_MAX_DEPTH + MAX_AGENT_FRAMES];
	int cancel_state;
	/* libunwind calls read and close, cancellation points, inside calls
	 * that are not */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	agent_self.unwinding = 1;
	int n = unwinder_backtrace(pcs, (int)(depth + MAX_AGENT_FRAMES));
	agent_self.unwinding = 0;
	pthread_setcancelstate(cancel_state, NULL);
	int first = 0;
	while (first < n && in_agent((uint64_t)pcs[first]))
		first++;
	unsigned kept = (unsigned)(n - first) < depth ? (unsigned)(n - first) : depth;
	for (unsigned i = 0; i < kept; i++)
		frames[i] = (uint64_t)pcs[first + i];
	return kept;
}

uint32_t stack_capture(void)
{
	if (agent_self.unwinding) {
		COUNT(stacks_nested); /* a signal handler's call during our unwind */
		return 0;
	}
	if (!unwinder_backtrace)
		return 0;
	if (fork_child_without_stacks || on_alternate_stack()) {
		COUNT(stacks_skipped);
		return 0;
	}
	uint64_t frames[HTRACE_MAX_DEPTH];
	unsigned kept = unwind(frames, htrace_db.stack_depth);
	int is_new = 0;
	uint32_t id = depot_put(frames, kept, &is_new);
	if (is_new && !modules_cover(frames, kept))
		modules_refresh(); /* a new stack reaches into an object loaded since */
	return id;
}

/* --- the depot ----------------------------------------------------------- */

static uint32_t stack_hash(const uint64_t *pc, unsigned depth)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (unsigned i = 0; i < depth; i++)
		h = (h ^ pc[i]) * 0x100000001b3ULL;
	return (uint32_t)(h ^ (h >> 32));
}

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

static int record_equals(uint32_t off, uint32_t hash, const uint64_t *pc, unsigned depth)
{
	const struct htrace_stack *rec = (const struct htrace_stack *)(htrace_db.depot_addr + off);
	return rec->hash == hash && rec->depth == depth &&
	       memcmp(rec->pc, pc, depth * sizeof(uint64_t)) == 0;
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

uint32_t depot_put(const uint64_t *pc, unsigned depth, int *is_new)
{
	if (!depth || !htrace_db.depot_addr)
		return 0;
	uint32_t hash = stack_hash(pc, depth), pending = 0;
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
