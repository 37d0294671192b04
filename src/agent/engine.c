/* The engine of the agent: the live descriptor table (each open descriptor
 * with its OPEN event; its slot primitives are in table.h), the ring of
 * about the last Max_Traces events, and the recording of OPEN and CLOSE
 * events into both.  Lock-free and allocation-free on the hot path: a
 * descriptor's slot is two array steps away whatever the number of open
 * descriptors, a slot is written under a generation counter (odd while
 * writing), an event is numbered with one atomic increment, and each
 * thread writes the ring's records in runs of its own. */
#include "agent.h"
#include "htrace.h"
#include "table.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>

#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define ATOMIC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
#define COUNT(field) __atomic_add_fetch(&htrace_db.field, 1, __ATOMIC_RELAXED)

uint64_t table_chunks[HTRACE_FDTAB_TOP];

#define CHUNK_BYTES (HTRACE_FDTAB_CHUNK * sizeof(struct htrace_fd_slot))

static __attribute__((cold, noinline)) struct htrace_fd_slot *chunk_create(unsigned index)
{
	void *chunk = raw_map(CHUNK_BYTES);
	if (!chunk) {
		COUNT(table_failures);
		return NULL;
	}
	uint64_t expected = 0;
	if (!__atomic_compare_exchange_n(&table_chunks[index], &expected, (uint64_t)chunk, 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		raw_unmap(chunk, CHUNK_BYTES);
		return (struct htrace_fd_slot *)expected;
	}
	return chunk;
}

/* The slot of fd, or NULL when fd is out of the table's range or (without
 * create) its chunk does not exist yet. */
ALWAYS_INLINE struct htrace_fd_slot *slot_of(int fd, int create)
{
	if (fd < 0 || (uint64_t)fd >= FDTAB_LIMIT) {
		if (create)
			COUNT(fds_beyond_table);
		return NULL;
	}
	struct htrace_fd_slot *slot = table_slot(fd);
	if (slot || !create)
		return slot;
	struct htrace_fd_slot *chunk = chunk_create((unsigned)fd / HTRACE_FDTAB_CHUNK);
	return chunk ? &chunk[(unsigned)fd % HTRACE_FDTAB_CHUNK] : NULL;
}

/* A consistent copy of fd's slot; returns 0 when the slot does not exist. */
static int slot_read(int fd, struct htrace_fd_slot *out)
{
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	if (!slot)
		return 0;
	for (int tries = 0; tries < 1000; tries++) {
		uint32_t gen = ATOMIC_LOAD(&slot->gen);
		if (gen & 1)
			continue;
		memcpy(out, slot, sizeof(*out));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (ATOMIC_LOAD(&slot->gen) == gen)
			return 1;
	}
	memcpy(out, slot, sizeof(*out)); /* a writer died mid-write (fork) */
	return 1;
}

__attribute__((cold, noinline)) int thread_id_first_time(void)
{
	return agent_self.tid = (int)RAW0(SYS_gettid);
}

int engine_tracing(void)
{
	return (ATOMIC_LOAD(&htrace_db.state) & (HTRACE_STATE_TRACING | HTRACE_STATE_FAILED)) ==
	       HTRACE_STATE_TRACING;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a few ns; ticks of 1-4 ms */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* seq_end of a ring record being written: the top bit (no event number
 * has it) and the writer's process id, so that a fork child, whose other
 * threads are gone, takes over a record that one of them left half
 * written instead of finding it busy for ever. */
#define RECORD_BUSY_BIT (1ull << 63)

static inline uint64_t record_busy(void)
{
	return RECORD_BUSY_BIT | (uint32_t)htrace_db.pid;
}

/* --- the threads' runs of records ----------------------------------------
 * Each thread writes its events into a run of consecutive records of its
 * own, taken from a cursor that goes round the ring, so that a record's
 * cache line is not moved between CPUs at each event (measured: with 2
 * threads, most of what tracing cost dup+dup2+close).  A thread's first
 * run is RUN_FIRST records (5 cache lines), each next one twice as long up
 * to RUN_MOST, so that a short-lived thread leaves few records unused and
 * a busy one takes the cursor's line rarely.  The ring then keeps about
 * the last Max_Traces events: a run that a thread left before filling it
 * (the thread ended, or made no event for a whole turn of the ring) keeps
 * older events in the rest of its records.  A thread takes another run
 * when its own is full, or when the cursor has gone round the ring since
 * it took it; a run stops at the ring's end, and the thread keeps the
 * address of its next record, so that an event finds its record with one
 * xadd and three compares.  The claim of each record (ring_claim) still
 * keeps two writers apart.  A ring of fewer than RUN_MIN_RING records
 * keeps the events in their order, each at the place of its number. */
#define RUN_FIRST 8u
#define RUN_MOST 64u
#define RUN_MIN_RING (16u * RUN_MOST)

static struct {
	uint64_t taken; /* records handed out so far, all runs together */
	uint8_t line[56];
} ring_runs __attribute__((aligned(64)));

static uint64_t ring_place(uint64_t at, uint32_t capacity)
{
	return capacity & (capacity - 1) ? at % capacity : at & (capacity - 1);
}

/* The next record of the thread's run, taken with one unlocked xadd of
 * the thread's own word (a signal handler's event, which comes between two
 * instructions, takes another): NULL when the run is full, when the cursor
 * has gone round the ring since the run's start (its records are then
 * other runs'), or when a signal handler took a run between the xadd and
 * the last reading of the run's description (whose stop and start are
 * then not this record's): the count of runs is compared last. */
static inline struct htrace_event *run_next(struct agent_thread *self, uint32_t capacity)
{
	uint32_t takes = self->ring_takes;
	uint64_t at = sizeof(struct htrace_event);
	__asm__ volatile("xaddq %0, %1" : "+r"(at), "+m"(self->ring_next) : : "memory");
	uint64_t stop = self->ring_stop, start = self->ring_start;
	uint64_t lap = ATOMIC_LOAD(&ring_runs.taken) - start;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	return at < stop && lap < capacity && self->ring_takes == takes ? (struct htrace_event *)at
									  : NULL;
}

/* A new run for the thread, twice as long as its last (up to RUN_MOST),
 * cut where it would go round the ring's end.  While it is described
 * (ring_taking) its stop is 0, so that a signal handler's event in between
 * fails run_next, and takes a record of its own from the cursor instead
 * of a run (cursor_record): the description is this run's alone. */
static void run_take(struct agent_thread *self, struct htrace_event *ring, uint32_t capacity)
{
	uint32_t length = self->ring_capacity == capacity && self->ring_run ? self->ring_run * 2
									       : RUN_FIRST;
	if (length > RUN_MOST)
		length = RUN_MOST;
	self->ring_taking = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	self->ring_stop = 0;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	uint64_t start = ATOMIC_ADD(&ring_runs.taken, length) - length;
	uint64_t place = ring_place(start, capacity);
	uint64_t usable = place + length > capacity ? capacity - place : length;
	self->ring_capacity = capacity;
	self->ring_run = length;
	self->ring_start = start;
	self->ring_next = (uint64_t)&ring[place];
	self->ring_takes++;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	self->ring_stop = (uint64_t)&ring[place + usable];
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	self->ring_taking = 0;
}

/* One record with a count of its own from the cursor, outside any run. */
static struct htrace_event *cursor_record(struct htrace_event *ring, uint32_t capacity)
{
	return &ring[ring_place(ATOMIC_ADD(&ring_runs.taken, 1) - 1, capacity)];
}

/* The record for event seq when the thread's run has none left (or it
 * has none, or the ring is small: then the place of seq's number). */
static __attribute__((noinline)) struct htrace_event *ring_record_slow(uint64_t seq,
								       uint32_t capacity)
{
	struct htrace_event *ring = (struct htrace_event *)htrace_db.ring_addr;
	if (!ring || !capacity)
		return NULL;
	if (capacity < RUN_MIN_RING)
		return &ring[ring_place(seq - 1, capacity)];
	struct agent_thread *self = &agent_self;
	if (self->ring_taking)
		return cursor_record(ring, capacity); /* a signal handler's, in run_take */
	for (int tries = 0; tries < 3; tries++) {
		run_take(self, ring, capacity);
		struct htrace_event *rec = run_next(self, capacity);
		if (rec)
			return rec;
	}
	return cursor_record(ring, capacity); /* handlers took three runs meanwhile */
}

/* The record event seq goes to: the next of the thread's run, while the
 * ring's capacity is the one the run was taken in. */
static inline struct htrace_event *ring_record(uint64_t seq)
{
	struct agent_thread *self = &agent_self;
	uint32_t capacity = htrace_db.ring_capacity;
	struct htrace_event *rec = self->ring_capacity == capacity ? run_next(self, capacity) : NULL;
	return __builtin_expect(rec != NULL, 1) ? rec : ring_record_slow(seq, capacity);
}

/* Claims seq's ring record by swapping its seq_end to record_busy().
 * When a writer of this process is still at work there, or a newer event
 * already fills it (the ring wrapped while this thread was delayed), the
 * older event is dropped and counted rather than mixed with the other. */
static struct htrace_event *ring_claim(uint64_t seq)
{
	struct htrace_event *rec = ring_record(seq);
	if (!rec)
		return NULL;
	uint64_t busy = record_busy(), current = ATOMIC_LOAD(&rec->seq_end);
	do {
		if (current == busy || (!(current & RECORD_BUSY_BIT) && current >= seq)) {
			COUNT(events_dropped);
			return NULL;
		}
	} while (!__atomic_compare_exchange_n(&rec->seq_end, &current, busy, 1, __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	return rec;
}

static void ring_put(const struct htrace_event *ev)
{
	struct htrace_event *rec = ring_claim(ev->seq);
	if (!rec)
		return;
	ATOMIC_STORE(&rec->seq, 0);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	/* the fields between seq and seq_end, as whole words */
	memcpy(&rec->time_ns, &ev->time_ns, offsetof(struct htrace_event, seq_end) -
						   offsetof(struct htrace_event, time_ns));
	ATOMIC_STORE(&rec->seq, ev->seq);
	ATOMIC_STORE(&rec->seq_end, ev->seq);
}

static __attribute__((cold, noinline)) void mailbox_serve(void);

/* The client's requests are carried out on the next hooked call. */
static inline void mailbox_check(void)
{
	if (__builtin_expect(ATOMIC_LOAD(&htrace_db.mailbox_seq) != htrace_db.mailbox_done, 0))
		mailbox_serve();
}

/* Tracing is on, once the mailbox has been looked at: else a call into the
 * engine records nothing (the table is not kept while tracing is off). */
static inline int engine_recording(void)
{
	mailbox_check();
	return engine_tracing();
}

#define TAKE_STACK UINT32_MAX /* event_record_stack: capture one now */

/* The tracing period (db.h: periods) an event starts in, read before it
 * looks at the tracing bit; period_over tells, once it is numbered,
 * whether an -enable came meanwhile (after a -disable, while the event
 * took its stack): then it belongs to no period. */
static inline uint32_t period_now(void)
{
	return ATOMIC_LOAD(&htrace_db.periods);
}

static inline int period_over(uint32_t period)
{
	return ATOMIC_LOAD(&htrace_db.periods) != period;
}

/* engine_recording, once *period is the period the call's events belong
 * to (read first: see period_now).  A call that passes records its events
 * without asking again: one that -disable catches midway is numbered in
 * a period that the next -enable ends. */
static inline int engine_recording_in(uint32_t *period)
{
	*period = period_now();
	return engine_recording();
}

/* Numbers the count events of one call (one atomic add) and puts them in
 * the ring; when their period ended meanwhile (period_over), none: their
 * number is 0, stale in the table. */
ALWAYS_INLINE void events_number(struct htrace_event *evs, unsigned count, uint32_t period)
{
	uint64_t first = __atomic_add_fetch(&htrace_db.next_seq, count, __ATOMIC_ACQ_REL) - count + 1;
	int over = __builtin_expect(period_over(period), 0);
	for (unsigned i = 0; i < count; i++) {
		evs[i].seq = evs[i].seq_end = over ? 0 : first + i;
		if (!over)
			ring_put(&evs[i]);
	}
}

/* Fills ev but for its number: who, when, and its stack (stack, or one
 * taken now; none with HTRACE_EV_NO_STACK, which it gets when none could
 * be taken). */
static inline void event_fill(struct htrace_event *ev, int fd, unsigned api, unsigned kind,
			      unsigned flags, uint32_t stack)
{
	*ev = (struct htrace_event){ .fd = fd, .tid = current_tid(), .api = (uint16_t)api,
				     .kind = (uint8_t)kind };
	ev->time_ns = now_ns();
	if (!(flags & HTRACE_EV_NO_STACK))
		ev->stack = stack == TAKE_STACK ? stack_capture(__builtin_frame_address(0)) : stack;
	if (!ev->stack)
		flags |= HTRACE_EV_NO_STACK;
	ev->flags = (uint8_t)flags;
}

/* Fills ev, numbers it in period (engine_recording_in) and puts it in the
 * ring. */
static inline void event_record_stack(struct htrace_event *ev, int fd, unsigned api,
				      unsigned kind, unsigned flags, uint32_t stack,
				      uint32_t period)
{
	event_fill(ev, fd, api, kind, flags, stack);
	events_number(ev, 1, period);
}

static inline void event_record(struct htrace_event *ev, int fd, unsigned api, unsigned kind,
				unsigned flags, uint32_t period)
{
	event_record_stack(ev, fd, api, kind, flags, TAKE_STACK, period);
}

/* Marks slot open with its OPEN event, owned by owner (0: none) through
 * owner_api: a new descriptor, so that a FILE or DIR still using the
 * number is reported again (stale_owner forgotten, as a close would). */
ALWAYS_INLINE void
slot_open(struct htrace_fd_slot *slot, const struct htrace_event *open, uint64_t owner,
	  unsigned owner_api)
{
	slot_begin(slot);
	slot->open = *open;
	slot->owner = owner;
	slot->owner_api = (uint16_t)owner_api;
	slot->stale_owner = 0;
	slot->state = HTRACE_FD_OPEN;
	slot_end(slot);
}

static inline void opened_traced(struct htrace_fd_slot *slot, int fd, unsigned api,
				 unsigned flags, uint32_t stack, uint32_t period)
{
	struct htrace_event ev;
	event_record_stack(&ev, fd, api, HTRACE_OPEN, flags, stack, period);
	if (slot)
		slot_open(slot, &ev, 0, 0);
}

ALWAYS_INLINE void
opened_with_stack(int fd, unsigned api, unsigned flags, uint32_t stack)
{
	uint32_t period;
	if (engine_recording_in(&period))
		opened_traced(slot_of(fd, 1), fd, api, flags, stack, period);
}

void engine_opened(int fd, unsigned api, unsigned flags)
{
	if (fd >= 0 && !htrace_in_vfork)
		opened_with_stack(fd, api, flags, TAKE_STACK);
}

/* Raises SIGABRT in this thread, as abort() would, so that a debugger or a
 * core dump stops at the offending call (--on-error=abort). */
static void abort_here(void)
{
	uint64_t unblock = 1ull << (SIGABRT - 1);
	RAW4(SYS_rt_sigprocmask, SIG_UNBLOCK, &unblock, 0, sizeof(unblock));
	RAW3(SYS_tgkill, RAW0(SYS_getpid), RAW0(SYS_gettid), SIGABRT);
}

void engine_bad_reference(int fd, unsigned api, unsigned flags)
{
	if (fd < 0 || htrace_in_vfork || agent_self.unwinding)
		return; /* -1 is no descriptor; the unwinder's probes are not the program's */
	uint32_t period;
	if (!engine_recording_in(&period))
		return;
	COUNT(bad_references);
	struct htrace_event ev;
	event_record(&ev, fd, api, HTRACE_BAD_REFERENCE, flags, period);
	if (htrace_db.on_error_abort)
		abort_here();
}

/* Closes that are deliberate about what they close: not a bad reference
 * when the descriptor belongs to a FILE or DIR. */
static int bulk_close(unsigned api)
{
	return api == HTRACE_API_close_range || api == HTRACE_API_closefrom ||
	       api == HTRACE_API_SYS_close_range || api == HTRACE_API_fcloseall ||
	       api == HTRACE_API_daemon || api == HTRACE_API_login_tty || api == HTRACE_API_forkpty;
}

/* The table's open fd is closing: a BAD REFERENCE first when it belongs to
 * a FILE or DIR (closed behind its back), then the CLOSE into *ev. */
ALWAYS_INLINE void
close_open_slot(struct htrace_fd_slot *slot, int fd, unsigned api, unsigned flags,
		struct htrace_event *ev, uint32_t period)
{
	if (slot->owner_api && !bulk_close(api))
		engine_bad_reference(fd, api, HTRACE_EV_OWNED);
	event_record(ev, fd, api, HTRACE_CLOSE, flags, period);
	slot_close(slot);
}

void engine_closing(int fd, unsigned api, unsigned flags)
{
	uint32_t period;
	if (fd < 0 || htrace_in_vfork || !engine_recording_in(&period))
		return;
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	int tracked_open = slot_current(slot);
	if (!tracked_open && !raw_fd_is_open(fd)) {
		if (!(flags & HTRACE_EV_IMPLICIT))
			engine_bad_reference(fd, api, 0); /* close of what is not open */
		return;
	}
	struct htrace_event ev; /* the ring has it; not read here */
	if (tracked_open) {
		close_open_slot(slot, fd, api, flags, &ev, period);
	} else {
		event_record(&ev, fd, api, HTRACE_CLOSE, flags, period); /* open, but not seen opened */
		if (slot)
			slot_close(slot); /* nothing of an earlier period outlives it */
	}
}

/* dup2 onto an open descriptor, tracing: its implicit CLOSE and the new
 * OPEN are one call, so they share one time, one stack and one increment
 * of next_seq, and the slot goes from the old OPEN to the new one in one
 * write.  tracked: the table had the old descriptor open (else it was
 * opened while tracing was off, and only the kernel knew it). */
static void replaced_traced(struct htrace_fd_slot *slot, int fd, unsigned api, int tracked,
			    uint32_t period)
{
	if (tracked && slot->owner_api && !bulk_close(api))
		engine_bad_reference(fd, api, HTRACE_EV_OWNED);
	struct htrace_event pair[2];
	event_fill(&pair[0], fd, api, HTRACE_CLOSE, HTRACE_EV_IMPLICIT, TAKE_STACK);
	pair[1] = pair[0];
	pair[1].kind = HTRACE_OPEN;
	pair[1].flags &= HTRACE_EV_NO_STACK;
	events_number(pair, 2, period);
	if (slot)
		slot_open(slot, &pair[1], 0, 0);
}

int engine_open_untracked(int fd)
{
	/* slot_current is false while tracing is off: asked first, as the
	 * common answer (the table has fd open) needs nothing else */
	return fd >= 0 && !htrace_in_vfork && !slot_current(slot_of(fd, 0)) && engine_tracing() &&
	       raw_fd_is_open(fd);
}

void engine_replaced(int fd, unsigned api, int was_open_untracked)
{
	uint32_t period;
	if (fd < 0 || htrace_in_vfork || !engine_recording_in(&period))
		return;
	/* slot_of(fd, 1) only when untracked: it costs dup2 8 instructions more */
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	int tracked = slot_current(slot);
	if (!tracked && !was_open_untracked) {
		opened_traced(slot_of(fd, 1), fd, api, 0, TAKE_STACK, period);
		return;
	}
	replaced_traced(tracked ? slot : slot_of(fd, 1), fd, api, tracked, period);
}

void engine_closing_wrapped(int fd, unsigned api, const void *owner)
{
	uint32_t period;
	if (fd < 0 || htrace_in_vfork || !engine_recording_in(&period))
		return;
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	int tracked_open = slot_current(slot);
	if (!tracked_open && !raw_fd_is_open(fd)) {
		engine_bad_reference(fd, api, HTRACE_EV_STALE); /* its descriptor is gone */
		return;
	}
	if (tracked_open && slot->owner != (uint64_t)owner)
		/* the number now means another open: closing it closes somebody else's */
		engine_bad_reference(fd, api, HTRACE_EV_STALE);
	struct htrace_event ev;
	event_record(&ev, fd, api, HTRACE_CLOSE, 0, period);
	if (slot)
		slot_close(slot);
}

/* Remembers that owner's stale use of slot's number was reported, unless
 * the slot was written since gen was read (a new open there, which resets
 * the memory: the next stale use is reported again).  Not the slot's
 * writer, this thread writes one word, then looks at the generation
 * across a full fence, and takes the word back when a writer came. */
static void remember_stale_owner(struct htrace_fd_slot *slot, uint32_t gen, uint64_t owner)
{
	if (gen & 1)
		return;
	__atomic_store_n(&slot->stale_owner, owner, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (ATOMIC_LOAD(&slot->gen) != gen)
		__atomic_compare_exchange_n(&slot->stale_owner, &owner, 0, 0, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED);
}

void engine_check_owner(int fd, unsigned api, const void *owner)
{
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	if (fd < 0 || !slot || htrace_in_vfork || !engine_recording())
		return;
	uint32_t gen = ATOMIC_LOAD(&slot->gen);
	int open = slot_current(slot);
	if (open && slot->owner == (uint64_t)owner)
		return;
	if (!open && raw_fd_is_open(fd))
		return; /* untracked: nothing to compare with */
	if (slot->stale_owner == (uint64_t)owner)
		return; /* said once for this FILE or DIR and this number */
	remember_stale_owner(slot, gen, (uint64_t)owner);
	engine_bad_reference(fd, api, HTRACE_EV_STALE);
}

void engine_set_owner(int fd, unsigned api, const void *owner)
{
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	if (htrace_in_vfork || !engine_recording() || !slot_current(slot))
		return;
	slot_begin(slot);
	slot->owner = (uint64_t)owner;
	slot->owner_api = (uint16_t)api;
	slot_end(slot);
}

int engine_is_open(int fd)
{
	struct htrace_fd_slot copy;
	return slot_read(fd, &copy) && slot_current(&copy);
}

unsigned engine_open_api(int fd)
{
	struct htrace_fd_slot copy;
	return slot_read(fd, &copy) && slot_current(&copy) ? copy.open.api : 0;
}

void engine_resync(int fd, unsigned api)
{
	int kernel_open = raw_fd_is_open(fd);
	if (engine_is_open(fd))
		engine_closing(fd, api, HTRACE_EV_IMPLICIT);
	if (kernel_open)
		engine_opened(fd, api, 0);
}

void engine_for_each_open_in(unsigned lo, unsigned hi, void (*fn)(int fd, void *arg), void *arg)
{
	mailbox_check(); /* a bulk close may find nothing to record */
	if (lo > hi || lo >= FDTAB_LIMIT)
		return;
	if (hi >= FDTAB_LIMIT)
		hi = (unsigned)(FDTAB_LIMIT - 1);
	for (unsigned index = lo / HTRACE_FDTAB_CHUNK; index <= hi / HTRACE_FDTAB_CHUNK; index++) {
		struct htrace_fd_slot *chunk = (struct htrace_fd_slot *)ATOMIC_LOAD(&table_chunks[index]);
		if (!chunk)
			continue;
		unsigned first = index * HTRACE_FDTAB_CHUNK;
		for (unsigned i = 0; i < HTRACE_FDTAB_CHUNK; i++)
			if (first + i >= lo && first + i <= hi && slot_current(&chunk[i]))
				fn((int)(first + i), arg);
	}
}

void engine_for_each_open(void (*fn)(int fd, void *arg), void *arg)
{
	engine_for_each_open_in(0, (unsigned)(FDTAB_LIMIT - 1), fn, arg);
}

int engine_slot_save(int fd, struct htrace_fd_slot *out)
{
	return slot_read(fd, out) && slot_current(out);
}

void engine_slot_restore(int fd, const struct htrace_fd_slot *saved)
{
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	if (!slot || ATOMIC_LOAD(&slot->state) == HTRACE_FD_OPEN)
		return;
	slot_open(slot, &saved->open, saved->owner, saved->owner_api);
}

int engine_adopt(int fd, const struct htrace_event *open)
{
	struct htrace_fd_slot *slot = slot_of(fd, 1);
	if (!slot)
		return -1;
	slot_open(slot, open, 0, 0);
	return 0;
}

static void mark_inherited(int fd, void *arg)
{
	struct htrace_fd_slot *slot = slot_of(fd, 0);
	slot_begin(slot);
	slot->open.flags |= (uint8_t)(uintptr_t)arg;
	slot_end(slot);
}

/* After fork, a slot whose writer was in another thread stays odd, its
 * fields half written: even it out as closed, so that a descriptor the
 * child's kernel has open there is taken as inherited without a record
 * (inherit_unrecorded_from_fork) rather than with a mix of two events. */
static void repair_generations(void)
{
	for (unsigned index = 0; index < HTRACE_FDTAB_TOP; index++) {
		struct htrace_fd_slot *chunk = (struct htrace_fd_slot *)table_chunks[index];
		for (unsigned i = 0; chunk && i < HTRACE_FDTAB_CHUNK; i++)
			if (chunk[i].gen & 1) {
				chunk[i].state = HTRACE_FD_CLOSED;
				chunk[i].gen++;
			}
	}
}

static void resync_one(int fd, void *arg)
{
	(void)arg;
	if (!raw_fd_is_open(fd)) {
		struct htrace_fd_slot *slot = slot_of(fd, 0);
		slot_begin(slot);
		slot->state = HTRACE_FD_CLOSED;
		slot_end(slot);
	}
}

static void mark_all_open(unsigned flag)
{
	repair_generations();
	engine_for_each_open(resync_one, NULL);
	engine_for_each_open(mark_inherited, (void *)(uintptr_t)flag);
}

static int scan_proc_self_fd(void (*found)(int fd));
static void inherit_unrecorded_from_fork(int fd);

void engine_fork_child(void)
{
	if (!engine_tracing()) {
		repair_generations(); /* the table is stale: nothing else to mark */
		return;
	}
	mark_all_open(HTRACE_EV_INHERITED_FORK);
	scan_proc_self_fd(inherit_unrecorded_from_fork);
}

/* --- descriptors open when the image started ------------------------- */

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int parse_fd_name(const char *name)
{
	int fd = 0;
	if (!*name)
		return -1;
	for (; *name; name++) {
		if (*name < '0' || *name > '9' || fd > 100000000)
			return -1;
		fd = fd * 10 + (*name - '0');
	}
	return fd;
}

/* Open when the image started: marked open with sequence number 0 and no
 * event in the ring, whether tracing is on yet or not (current if tracing
 * starts with the image, stale after a later -enable: see db.h). */
static void inherit_from_exec(int fd)
{
	struct htrace_event open = { .fd = fd, .tid = current_tid(), .api = HTRACE_API_NONE,
				     .kind = HTRACE_OPEN,
				     .flags = HTRACE_EV_INHERITED_EXEC | HTRACE_EV_NO_STACK };
	engine_adopt(fd, &open);
}

/* In a fork child: a descriptor another thread of the parent had opened
 * but not yet recorded when fork() copied the table. */
static void inherit_unrecorded_from_fork(int fd)
{
	if (!engine_is_open(fd))
		engine_opened(fd, HTRACE_API_NONE, HTRACE_EV_INHERITED_FORK | HTRACE_EV_NO_STACK);
}

/* Calls found(fd) for every descriptor in /proc/self/fd; -1 when that
 * directory cannot be read. */
static int scan_proc_self_fd(void (*found)(int fd))
{
	int dirfd = (int)RAW4(SYS_openat, AT_FDCWD, "/proc/self/fd",
			      O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dirfd < 0)
		return -1;
	char buf[4096] __attribute__((aligned(8)));
	long n;
	while ((n = RAW3(SYS_getdents64, dirfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
			int fd = parse_fd_name(d->d_name);
			if (fd >= 0 && fd != dirfd)
				found(fd);
			off += d->d_reclen;
		}
	}
	RAW1(SYS_close, dirfd);
	return n < 0 ? -1 : 0;
}

static void probe_fd_range(void)
{
	struct rlimit lim;
	long limit = 1024;
	if (RAW4(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
		limit = (long)lim.rlim_cur;
	if (limit > (long)FDTAB_LIMIT)
		limit = (long)FDTAB_LIMIT;
	for (long fd = 0; fd < limit; fd++)
		if (raw_fd_is_open((int)fd))
			inherit_from_exec((int)fd);
}

void engine_scan_inherited(void)
{
	if (scan_proc_self_fd(inherit_from_exec) < 0)
		probe_fd_range();
}

/* --- turning tracing on ---------------------------------------------- */

#define DEPOT_BYTES (4u << 20)
#define DEPOT_BUCKETS 65536u

int engine_reserve(uint32_t max_traces, uint32_t stack_depth, int trace)
{
	size_t ring_bytes = (size_t)max_traces * sizeof(struct htrace_event);
	void *ring = max_traces ? raw_map(ring_bytes) : NULL;
	void *depot = raw_map(DEPOT_BYTES);
	void *buckets = raw_map(DEPOT_BUCKETS * sizeof(uint32_t));
	if ((max_traces && !ring) || !depot || !buckets) {
		raw_unmap(ring, ring_bytes);
		raw_unmap(depot, DEPOT_BYTES);
		raw_unmap(buckets, DEPOT_BUCKETS * sizeof(uint32_t));
		return -1;
	}
	htrace_db.stack_depth = stack_depth;
	htrace_db.ring_capacity = max_traces;
	htrace_db.ring_reserved = max_traces;
	htrace_db.ring_addr = (uint64_t)ring;
	htrace_db.ring_taken_addr = (uint64_t)&ring_runs.taken;
	htrace_db.depot_bytes = DEPOT_BYTES;
	htrace_db.depot_used = 8; /* offset 0 means "no stack" */
	htrace_db.buckets_addr = (uint64_t)buckets;
	htrace_db.nbuckets = DEPOT_BUCKETS;
	htrace_db.depot_addr = (uint64_t)depot;
	if (trace)
		__atomic_or_fetch(&htrace_db.state, HTRACE_STATE_TRACING, __ATOMIC_RELEASE);
	return 0;
}

/* --- the mailbox ------------------------------------------------------- */

/* -disable: the ring and the depot go back to the kernel (mapped still,
 * so that -enable can start again without the agent). */
static void release_trace_memory(void)
{
	if (engine_tracing())
		return; /* enabled again meanwhile */
	depot_forget_recent(); /* first: a capture under way checks it again */
	raw_release((void *)htrace_db.ring_addr,
		    (size_t)htrace_db.ring_reserved * sizeof(struct htrace_event));
	raw_release((void *)htrace_db.depot_addr, htrace_db.depot_bytes);
	raw_release((void *)htrace_db.buckets_addr, htrace_db.nbuckets * sizeof(uint32_t));
	__atomic_store_n(&htrace_db.depot_used, 8, __ATOMIC_RELEASE);
	/* The table's stack ids now point at nothing; its slots are stale
	 * anyway, and the next -enable starts a new period (db.h).  An
	 * -enable that came while this ran may have recorded stacks that are
	 * gone: what it recorded so far is made stale too. */
	if (engine_tracing()) {
		depot_forget_recent();
		__atomic_store_n(&htrace_db.trace_from_seq,
				 __atomic_load_n(&htrace_db.next_seq, __ATOMIC_ACQUIRE) + 1,
				 __ATOMIC_RELEASE);
	}
}

static void mailbox_serve(void)
{
	static int busy;
	if (__atomic_exchange_n(&busy, 1, __ATOMIC_ACQUIRE))
		return; /* another thread is at it */
	uint64_t request = ATOMIC_LOAD(&htrace_db.mailbox_seq);
	if (request != ATOMIC_LOAD(&htrace_db.mailbox_done)) {
		if (htrace_db.mailbox_cmd == HTRACE_MAILBOX_RELEASE)
			release_trace_memory();
		ATOMIC_STORE(&htrace_db.mailbox_done, request);
	}
	__atomic_store_n(&busy, 0, __ATOMIC_RELEASE);
}

void engine_init(void)
{
	htrace_db.fdtab_addr = (uint64_t)table_chunks;
}

/* --- the public API of htrace.h ---------------------------------------- */

struct collect {
	int *fds;
	int max;
	int count;
};

static void collect_one(int fd, void *arg)
{
	struct collect *c = arg;
	if (c->count < c->max)
		c->fds[c->count] = fd;
	c->count++;
}

AGENT_EXPORT int htrace_open_fds(int *fds, int max)
{
	struct collect c = { fds, max < 0 ? 0 : max, 0 };
	engine_for_each_open(collect_one, &c);
	return c.count;
}

AGENT_EXPORT int htrace_fd_state(int fd)
{
	struct htrace_fd_slot copy;
	if (!slot_read(fd, &copy) || !slot_current(&copy))
		return 0;
	int state = HTRACE_FD_IS_OPEN;
	if (copy.open.flags & HTRACE_EV_INHERITED_EXEC)
		state |= HTRACE_FD_INHERITED_EXEC;
	if (copy.open.flags & HTRACE_EV_INHERITED_FORK)
		state |= HTRACE_FD_INHERITED_FORK;
	if (copy.open.stack)
		state |= HTRACE_FD_HAS_STACK;
	return state;
}
