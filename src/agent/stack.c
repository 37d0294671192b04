/* Stacks: captured with libunwind's unw_backtrace, which follows the DWARF
 * unwind tables and so is correct through code built without frame
 * pointers, then stored once per distinct stack in the depot, a lock-free
 * open-addressing hash over a bump-allocated region.  An event holds only
 * the stack's offset in the depot. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <string.h>

#include "agent.h"

#define COUNT(field) __atomic_add_fetch(&htrace_db.field, 1, __ATOMIC_RELAXED)
#define MAX_AGENT_FRAMES 8u
#define MAX_PROBES 64u

static uint64_t agent_lo, agent_hi; /* our own code, whose frames are hidden */
static uint64_t unwinder_lo, unwinder_hi; /* libunwind's code */

int stack_caller_is_unwinder(const void *addr)
{
	uint64_t a = (uint64_t)addr;
	return a >= unwinder_lo && a < unwinder_hi;
}

/* libunwind sets itself up on first use (and wants a pipe then, which it
 * is refused, see refuse_unwinder): do it now, not in a hook. */
void stack_init(void)
{
	modules_find_self(&agent_lo, &agent_hi, (const void *)stack_init);
	modules_find_self(&unwinder_lo, &unwinder_hi, (const void *)unw_backtrace);
	void *warmup[4];
	agent_self.unwinding = 1;
	unw_backtrace(warmup, 4);
	agent_self.unwinding = 0;
}

static int in_agent(uint64_t pc)
{
	return pc >= agent_lo && pc < agent_hi;
}

uint32_t stack_capture(void)
{
	if (agent_self.unwinding) {
		COUNT(stacks_nested); /* a signal handler's call during our unwind */
		return 0;
	}
	unsigned depth = htrace_db.stack_depth;
	void *pcs[HTRACE_MAX_DEPTH + MAX_AGENT_FRAMES];
	agent_self.unwinding = 1;
	int n = unw_backtrace(pcs, (int)(depth + MAX_AGENT_FRAMES));
	agent_self.unwinding = 0;
	int first = 0;
	while (first < n && in_agent((uint64_t)pcs[first]))
		first++;
	unsigned kept = (unsigned)(n - first) < depth ? (unsigned)(n - first) : depth;
	uint64_t frames[HTRACE_MAX_DEPTH];
	for (unsigned i = 0; i < kept; i++)
		frames[i] = (uint64_t)pcs[first + i];
	return depot_put(frames, kept);
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
					__ATOMIC_ACQUIRE)) {
		modules_refresh_if_changed(); /* a new stack may point into a new module */
		return mine;
	}
	return expected;
}

uint32_t depot_put(const uint64_t *pc, unsigned depth)
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
			if (off == pending)
				return off;
		}
		if (record_equals(off, hash, pc, depth))
			return off;
	}
	COUNT(stacks_dropped);
	return 0;
}
