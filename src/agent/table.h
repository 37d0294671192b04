/* The live descriptor table's slots and the primitives that write them,
 * shared by the engine (engine.c) and the hooks; and the one test a hook
 * makes while tracing is off (hooks_quiet), after which it only calls
 * libc. */
#ifndef HTRACE_AGENT_TABLE_H
#define HTRACE_AGENT_TABLE_H

#include "agent.h"

#define FDTAB_LIMIT ((uint64_t)HTRACE_FDTAB_TOP * HTRACE_FDTAB_CHUNK)

/* The table's top array: chunk addresses, 0 until a chunk is created. */
extern uint64_t table_chunks[HTRACE_FDTAB_TOP] AGENT_HIDDEN;

/* fd's slot when its chunk exists, else NULL (also out of range). */
static inline struct htrace_fd_slot *table_slot(int fd)
{
	if (fd < 0 || (uint64_t)fd >= FDTAB_LIMIT)
		return NULL;
	struct htrace_fd_slot *chunk = (struct htrace_fd_slot *)__atomic_load_n(
		&table_chunks[(unsigned)fd / HTRACE_FDTAB_CHUNK], __ATOMIC_ACQUIRE);
	return chunk ? &chunk[(unsigned)fd % HTRACE_FDTAB_CHUNK] : NULL;
}

/* A slot has one writer at a time (a number is closed before it can be
 * opened again), so its generation moves with plain ordered stores, no
 * locked instruction: odd while the fields change. */
ALWAYS_INLINE void slot_begin(struct htrace_fd_slot *slot)
{
	uint32_t gen = __atomic_load_n(&slot->gen, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->gen, gen + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE); /* odd before any field changes */
}

ALWAYS_INLINE void slot_end(struct htrace_fd_slot *slot)
{
	uint32_t gen = __atomic_load_n(&slot->gen, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->gen, gen + 1, __ATOMIC_RELEASE);
}

ALWAYS_INLINE void slot_close(struct htrace_fd_slot *slot)
{
	slot_begin(slot);
	slot->state = HTRACE_FD_CLOSED;
	slot->owner = 0;
	slot->owner_api = 0;
	slot->stale_owner = 0;
	slot_end(slot);
}

/* slot's descriptor is open as recorded in this tracing period (db.h). */
static inline int slot_current(const struct htrace_fd_slot *slot)
{
	return slot &&
	       htrace_slot_current(__atomic_load_n(&htrace_db.state, __ATOMIC_ACQUIRE),
				   __atomic_load_n(&htrace_db.trace_from_seq, __ATOMIC_ACQUIRE),
				   __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE), slot->open.seq);
}

/* Tracing off and no client request waiting: a hook is then its libc
 * function and nothing more, called as a tail call.  (The table is not
 * kept meanwhile; -enable starts a new period, see db.h.) */
ALWAYS_INLINE int hooks_quiet(void)
{
	return !htrace_db_tracing(__atomic_load_n(&htrace_db_here.state, __ATOMIC_RELAXED)) &&
	       __atomic_load_n(&htrace_db_here.mailbox_seq, __ATOMIC_RELAXED) ==
		       htrace_db_here.mailbox_done;
}

#endif
