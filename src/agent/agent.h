/* Internal interface of the agent (libhtrace.so): what the hooks call to
 * feed the engine, and the per-thread state that keeps hooks reentrant and
 * vfork-safe.  Nothing here is visible outside the library. */
#ifndef HTRACE_AGENT_H
#define HTRACE_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "htrace/apis.h"
#include "htrace/db.h"

#define AGENT_HIDDEN __attribute__((visibility("hidden")))
#define AGENT_EXPORT __attribute__((visibility("default")))
#define AGENT_TLS __thread __attribute__((tls_model("initial-exec")))
/* A function of the hooks' hot paths, inlined even where gcc would not. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Per-thread state.  Zero in a new thread. */
struct agent_thread {
	int tid; /* cached gettid(), 0 until first needed */
	int unwinding; /* inside the unwinder: take no stack, refuse it descriptors */
	uintptr_t stack_top; /* highest stack address seen on the thread's own stack */
	unsigned block_searches; /* unwind.c: searches of its stack block that failed */
	/* engine.c: the run of ring records this thread writes its events in */
	uint64_t ring_next, ring_stop; /* the next record's address; past the run's last */
	uint64_t ring_start; /* the run's first record, counted from the cursor's start */
	uint32_t ring_run; /* the run's length; 0: none yet */
	uint32_t ring_capacity; /* the ring's capacity when it was taken; 0: none */
	uint32_t ring_takes; /* runs taken: run_next sees a signal handler's */
	int ring_taking; /* in run_take: a signal handler's event takes no run */
};
extern AGENT_TLS struct agent_thread agent_self AGENT_HIDDEN;

/* The thread's id, asked of the kernel once per thread (out of line, so
 * that the hooks' path stays short). */
int thread_id_first_time(void) AGENT_HIDDEN;

static inline int current_tid(void)
{
	int tid = agent_self.tid;
	return __builtin_expect(tid != 0, 1) ? tid : thread_id_first_time();
}

/* Non-zero in a vfork child (set by our vfork, shared with the parent's
 * memory until the child execs or exits): hooks then record nothing. */
extern AGENT_TLS int htrace_in_vfork AGENT_HIDDEN;

/* The database, exported under HTRACE_DB_SYMBOL for the client. */
extern struct htrace_db htrace_db;
/* The same, as the agent's own code reaches it without the GOT. */
extern struct htrace_db htrace_db_here AGENT_HIDDEN;

/* --- init.c ---------------------------------------------------------- */
void agent_init(void) AGENT_HIDDEN;
void agent_after_fork_child(void) AGENT_HIDDEN;
void agent_fail(const char *why) AGENT_HIDDEN;
void agent_env_ignored(const char *name, const char *value, const char *why,
		       const char *instead) AGENT_HIDDEN;

/* --- engine.c: the live table, the ring, recording ------------------- */
void engine_init(void) AGENT_HIDDEN;
/* Maps (without using memory yet) the ring and the stack depot, so that
 * the client can turn tracing on by itself; tracing starts when trace. */
int engine_reserve(uint32_t max_traces, uint32_t stack_depth, int trace) AGENT_HIDDEN;
/* A descriptor now exists (after the call that created it returned). */
void engine_opened(int fd, unsigned api, unsigned flags) AGENT_HIDDEN;
/* A descriptor is about to be closed (before the call that closes it). */
void engine_closing(int fd, unsigned api, unsigned flags) AGENT_HIDDEN;
/* Before a dup2 or dup3 onto fd: true when tracing and the kernel has fd
 * open but the table does not (it was opened while tracing was off), so
 * that the call's implicit close of it is recorded too (one fcntl, only
 * when the table does not have fd open). */
int engine_open_untracked(int fd) AGENT_HIDDEN;
/* dup2, dup3: fd now names another open file description; what it named
 * before (if the table had it open, or was_open_untracked) was closed
 * inside the call.  Both events share one stack. */
void engine_replaced(int fd, unsigned api, int was_open_untracked) AGENT_HIDDEN;
/* fclose, pclose, closedir, freopen: owner's descriptor is about to be
 * closed; a descriptor that is no longer owner's is a BAD REFERENCE. */
void engine_closing_wrapped(int fd, unsigned api, const void *owner) AGENT_HIDDEN;
/* A call through owner (a FILE* or DIR*) uses fd: it must still be owner's. */
void engine_check_owner(int fd, unsigned api, const void *owner) AGENT_HIDDEN;
/* api failed with EBADF on fd, or closed what was not open. */
void engine_bad_reference(int fd, unsigned api, unsigned flags) AGENT_HIDDEN;
/* fd is now owned by a FILE* or DIR* (owner), wrapped by api. */
void engine_set_owner(int fd, unsigned api, const void *owner) AGENT_HIDDEN;
int engine_is_open(int fd) AGENT_HIDDEN;
/* The API of fd's OPEN event when the table has it open, else 0. */
unsigned engine_open_api(int fd) AGENT_HIDDEN;
/* Brings fd's entry in line with the kernel after a call that changed it
 * behind our back (daemon, login_tty, fcloseall); api names the call. */
void engine_resync(int fd, unsigned api) AGENT_HIDDEN;
/* Calls fn for every descriptor the table holds open, in ascending order. */
void engine_for_each_open(void (*fn)(int fd, void *arg), void *arg) AGENT_HIDDEN;
/* The same for the descriptors in [lo, hi]: cost bounded by the range. */
void engine_for_each_open_in(unsigned lo, unsigned hi, void (*fn)(int fd, void *arg),
			     void *arg) AGENT_HIDDEN;
/* In a new image: fd, inherited through exec, gets the OPEN event the old
 * image handed over (exec.c).  Returns 0, or -1 without a slot. */
int engine_adopt(int fd, const struct htrace_event *open) AGENT_HIDDEN;
/* Copies fd's slot; returns 1 when it was open.  Restore puts a saved open
 * slot back (a close that did not happen: cancelled before the call). */
int engine_slot_save(int fd, struct htrace_fd_slot *out) AGENT_HIDDEN;
void engine_slot_restore(int fd, const struct htrace_fd_slot *saved) AGENT_HIDDEN;
/* In a fork child: marks the table's descriptors inherited from the parent
 * and brings the table in line with the kernel's copy. */
void engine_fork_child(void) AGENT_HIDDEN;
/* Records the descriptors open now as inherited at start. */
void engine_scan_inherited(void) AGENT_HIDDEN;
int engine_tracing(void) AGENT_HIDDEN;

/* --- forksafe.c: stacks in fork children ------------------------------- */
void forksafe_init(void) AGENT_HIDDEN;
void forksafe_before_fork(void) AGENT_HIDDEN;
void forksafe_in_child(void) AGENT_HIDDEN;
/* Set in a fork child that must take no stack (see forksafe.c). */
extern int fork_child_without_stacks AGENT_HIDDEN;
/* The loader's lock that dl_iterate_phdr holds, NULL when not found. */
const void *forksafe_loader_lock(void) AGENT_HIDDEN;
/* ld.so's _rtld_global and its size (from its symbol), or NULL. */
char *rtld_global(size_t *size) AGENT_HIDDEN;

/* --- stack.c: capture (unwind.c, else libunwind), store in the depot -- */
void stack_init(void) AGENT_HIDDEN;
void stack_fork_child(void) AGENT_HIDDEN;
/* The id of the calling stack (0: none), found from `frame`, a frame of
 * the agent's on the way from the hook here (__builtin_frame_address(0)
 * of the engine's function: the agent's frames inside it are not looked
 * at). */
uint32_t stack_capture(const void *frame) AGENT_HIDDEN;
/* True when addr (a caller's return address) lies in the unwinder. */
int stack_caller_is_unwinder(const void *addr) AGENT_HIDDEN;
/* The depot id of the stack (0 when dropped); *is_new says it was stored
 * just now. */
uint32_t depot_put(const uint64_t *pc, unsigned depth, int *is_new) AGENT_HIDDEN;
/* The depot was emptied (-disable): the threads' recent stacks' ids are
 * no longer good. */
void depot_forget_recent(void) AGENT_HIDDEN;
/* The stack of a depot id; NULL for 0 or without a depot. */
const struct htrace_stack *depot_get(uint32_t id) AGENT_HIDDEN;

/* The depot's hash of a stack, folded from its outermost frame inwards, so
 * that a stack sharing its outer frames with the last one (unwind.c) only
 * hashes its own inner frames. */
#define STACK_HASH_SEED 0xcbf29ce484222325ULL
static inline uint64_t stack_hash_step(uint64_t outer, uint64_t pc)
{
	return (outer ^ pc) * 0x100000001b3ULL;
}

static inline uint64_t stack_hash(const uint64_t *pc, unsigned depth)
{
	uint64_t h = STACK_HASH_SEED;
	for (unsigned i = depth; i-- > 0;)
		h = stack_hash_step(h, pc[i]);
	return h;
}

/* --- unwind.c: the fast unwinder, tried before libunwind ------------- */
#define UNWIND_GIVE_UP (-1) /* a frame it does not follow: ask libunwind */
#define UNWIND_STALE (-2) /* objects came or went since the last modules_refresh */
void unwind_init(uint64_t stack_limit, const void *loader_lock, uint64_t own_lo,
		 uint64_t own_hi) AGENT_HIDDEN;
/* What unwind_fast tells of a stack besides its frames. */
struct unwind_info {
	uint64_t hash; /* stack_hash of the frames */
	/* Not 0: a number that this thread gives to the frames after the
	 * first, the same for each of its stacks with the same such frames
	 * (while it keeps them in its memo), so that (tail, first frame)
	 * names the whole stack.  0: not known. */
	uint64_t tail;
	int joined; /* the outer frames came from the memo (HTRACE_UNWIND=check counts it) */
	/* Not 0: only pcs[0, filled) are written, the rest is still in the
	 * thread's memo, held for it until unwind_fast_finish. */
	unsigned filled;
};

/* Fills pcs (or its start, see filled) with at most max return addresses
 * of the stack that called the agent (its first is the return address of
 * the hook; the agent's frames are skipped from `frame`, as for
 * stack_capture, or from its caller's when frame is not above its own),
 * innermost first, as libunwind's unw_backtrace gives them
 * after the agent's own frames, and *info; returns their number, or
 * UNWIND_GIVE_UP or UNWIND_STALE.  When info->filled is not 0, the frames
 * from there on are not written yet (often nobody needs them: a thread's recent stack is
 * named by its first frame and info->tail), and unwind_fast_finish must
 * follow, before the thread's next capture. */
int unwind_fast(uint64_t *pcs, unsigned max, struct unwind_info *info,
		const void *frame) AGENT_HIDDEN;
/* 1 when the stack is its first frame (*first_pc) and the frames after
 * the first of the thread's last walk (numbered *tail): see unwind.c. */
int unwind_fast_joined(unsigned max, const void *frame, uint64_t *first_pc,
		       uint64_t *tail) AGENT_HIDDEN;
/* Writes the rest of the n frames (copy) or not, and lets the memo go;
 * nothing when info->filled is 0. */
void unwind_fast_finish(uint64_t *pcs, unsigned n, struct unwind_info *info,
			int copy) AGENT_HIDDEN;
/* Called by modules_refresh around its dl_iterate_phdr, and for each
 * object from inside it. */
struct dl_phdr_info;
void unwind_refresh_begin(void) AGENT_HIDDEN;
/* The object table is not to be trusted (fork child of a refresh under
 * way): the next capture asks for a new discovery. */
void unwind_forget_objects(void) AGENT_HIDDEN;
void unwind_refresh_object(const struct dl_phdr_info *info, size_t size, uint64_t lo,
			   uint64_t hi) AGENT_HIDDEN;
void unwind_refresh_end(void) AGENT_HIDDEN;

/* --- modules.c: loaded objects, for the client's symbolizer ----------- */
void modules_refresh(void) AGENT_HIDDEN;
void modules_fork_child(void) AGENT_HIDDEN;
/* True when every pc lies in a module of the table. */
int modules_cover(const uint64_t *pc, unsigned n) AGENT_HIDDEN;
/* The table entry of the object holding pc, or -1. */
int modules_index_of(uint64_t pc) AGENT_HIDDEN;
/* Adds an object of the image before exec at a made-up range (exec.c);
 * -1 when the table is full. */
int modules_add_previous(uint64_t start, uint64_t end, uint64_t bias, const char *path) AGENT_HIDDEN;
int modules_find_self(uint64_t *lo, uint64_t *hi, const void *addr) AGENT_HIDDEN;

/* --- hooks.c: the real libc functions --------------------------------- */
int hooks_resolve(void) AGENT_HIDDEN;
/* Resolves what the process hooks need before any signal handler may call
 * them (_Fork is async-signal-safe; dlsym is not). */
void hooks_process_init(void) AGENT_HIDDEN;

/* --- raw.c: system calls that bypass libc (and so our own hooks) ------ */
long raw_syscall(long nr, long a, long b, long c, long d, long e, long f) AGENT_HIDDEN;
#define RAW0(nr) raw_syscall((nr), 0, 0, 0, 0, 0, 0)
#define RAW1(nr, a) raw_syscall((nr), (long)(a), 0, 0, 0, 0, 0)
#define RAW2(nr, a, b) raw_syscall((nr), (long)(a), (long)(b), 0, 0, 0, 0)
#define RAW3(nr, a, b, c) raw_syscall((nr), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define RAW4(nr, a, b, c, d) raw_syscall((nr), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define RAW6(nr, a, b, c, d, e, f) \
	raw_syscall((nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
/* Anonymous private memory straight from the kernel; NULL on failure. */
void *raw_map(size_t bytes) AGENT_HIDDEN;
void raw_unmap(void *addr, size_t bytes) AGENT_HIDDEN;
/* Gives pages back to the kernel; they read as zero afterwards. */
void raw_release(void *addr, size_t bytes) AGENT_HIDDEN;
/* Is fd open in the kernel right now? */
int raw_fd_is_open(int fd) AGENT_HIDDEN;
/* Copies bytes of the process's own memory at from, which the program
 * handed to a call and may be any address: 0, -EFAULT when it is not
 * readable (no fault is taken), or another -errno when the kernel refuses
 * the copy itself (a seccomp policy). */
long raw_copy_in(void *to, const void *from, size_t bytes) AGENT_HIDDEN;
/* Whether [at, at + bytes) lies in mapped memory (mincore). */
int raw_is_mapped(const void *at, size_t bytes) AGENT_HIDDEN;

#endif
