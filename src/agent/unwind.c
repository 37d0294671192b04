/* A fast unwinder for the common case, tried before libunwind (stack.c):
 * it skips the agent's own frames along their frame pointers, walks the
 * program's stack with each object's DWARF CFI, found through the search
 * table of .eh_frame_hdr at module discovery, knows only the plain rules
 * (CFA = rsp or rbp + offset, return address at CFA-8, rbp saved at CFA+k
 * or unchanged, an undefined return address ends the stack), keeps the
 * rule of every pc in a lock-free cache, so that a warm capture costs a
 * few instructions a frame, and takes the outer frames of a thread's
 * stack from its memo of the last walk when they are provably the same.  Anything else (an
 * expression, a signal frame, a pc outside the known objects, a read that
 * would leave the thread's stack, objects loaded or unloaded since the
 * last discovery) makes it give up, and the caller takes the whole stack
 * from libunwind: the frames are libunwind's either way.  No malloc, no
 * lock, no descriptor: async-signal-safe. */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "agent.h"

#define OBJECT_CAPACITY 512u
#define CACHE_SETS 4096u /* of two rules each */
#define OWN_FRAMES_MOST 16u /* the agent's, between a hook and the unwinder */
#define MIN_PC 0x4000u /* a smaller return address ends the stack, as in libunwind */
#define MAX_STATES 8u /* DW_CFA_remember_state nesting */
#define REG_RBP 6u
#define REG_RSP 7u
#define REG_RA 16u
#define EH_PE_OMIT 0xffu
#define EH_PE_DATAREL_SDATA4 0x3bu

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* --- when the loaded objects change ------------------------------------
 * glibc counts objects ever added (_dl_load_adds, just after the loader's
 * three recursive locks in _rtld_global) and objects loaded now (per
 * namespace, _ns_nloaded, the second field of _rtld_global): an unload
 * changes their difference, dl_iterate_phdr's dlpi_subs.  They are found
 * once, checked against what dl_iterate_phdr says, and read on every
 * capture without a lock: a change since the last discovery makes the
 * capture give up and ask for a new discovery, so no rule or table of an
 * unloaded object is ever used for another one mapped at its place. */

static uint64_t agent_lo, agent_hi; /* our own code: its frames are not the stack */

static const uint64_t *dl_adds;
static const unsigned *dl_loaded; /* of the base namespace */
static const size_t *dl_namespaces; /* more than one: dlmopen, not followed */
static uint64_t seen_objects; /* objects_key() at the last discovery, 0 = none */
static uint64_t seen_subs;

static uint64_t objects_key(uint64_t adds, unsigned loaded)
{
	return (adds << 32 ^ loaded) | 1u << 31; /* never 0 */
}

static inline uint64_t objects_now(void)
{
	if (!dl_adds || LOAD_RELAXED(dl_namespaces) != 1)
		return 0;
	return objects_key(LOAD_RELAXED(dl_adds), LOAD_RELAXED(dl_loaded));
}

struct counters_probe {
	const char *base, *lock;
	size_t size;
	unsigned objects, loaded;
	uint64_t adds, subs, info_adds, info_subs;
	size_t namespaces;
	int usable;
};

static int inside(const struct counters_probe *p, const void *addr, size_t bytes)
{
	const char *a = addr;
	return a >= p->base && a + bytes <= p->base + p->size;
}

/* Called for each object with the loader's write lock held: the counters
 * cannot move under us. */
static int probe_counters(struct dl_phdr_info *info, size_t size, void *data)
{
	struct counters_probe *p = data;
	if (p->objects++)
		return 0;
	const char *adds = p->lock + 2 * sizeof(pthread_mutex_t);
	const char *nns = p->lock - sizeof(pthread_mutex_t) - sizeof(size_t);
	p->usable = size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs) &&
		    inside(p, adds, sizeof(uint64_t)) && inside(p, nns, sizeof(size_t)) &&
		    inside(p, p->base + sizeof(void *), sizeof(unsigned));
	if (p->usable) {
		p->info_adds = info->dlpi_adds;
		p->info_subs = info->dlpi_subs;
		memcpy(&p->adds, adds, sizeof(p->adds));
		memcpy(&p->namespaces, nns, sizeof(p->namespaces));
		memcpy(&p->loaded, p->base + sizeof(void *), sizeof(p->loaded));
	}
	return 0;
}

static void find_counters(const void *loader_lock)
{
	struct counters_probe p = { .lock = loader_lock };
	if (!loader_lock || !(p.base = rtld_global(&p.size)))
		return;
	dl_iterate_phdr(probe_counters, &p);
	if (!p.usable || p.adds != p.info_adds || p.namespaces != 1 || p.loaded != p.objects ||
	    p.adds - p.loaded != p.info_subs)
		return;
	dl_namespaces = (const size_t *)(p.lock - sizeof(pthread_mutex_t) - sizeof(size_t));
	dl_loaded = (const unsigned *)(p.base + sizeof(void *));
	dl_adds = (const uint64_t *)(p.lock + 2 * sizeof(pthread_mutex_t));
}

/* --- the objects and their .eh_frame_hdr --------------------------------
 * Rewritten in place by each discovery (one at a time, modules.c), each
 * entry under a sequence number that is odd while it changes: a reader
 * that sees it move gives up.  A reader only looks for the object of a pc
 * on its own stack, which stays loaded while it reads. */

struct object {
	uint32_t seq;
	uint64_t lo, hi; /* the object's PT_LOAD extent */
	uint64_t data_lo, data_hi; /* the segment holding .eh_frame_hdr and .eh_frame */
	uint64_t hdr, table, count; /* .eh_frame_hdr and its search table */
};

static struct object objects[OBJECT_CAPACITY];
static unsigned object_count;
static unsigned pass_count; /* objects written by the discovery under way */
static uint64_t pass_objects, pass_subs;

static void object_write(struct object *slot, const struct object *o)
{
	uint32_t seq = LOAD_RELAXED(&slot->seq);
	if (!(seq & 1) && slot->lo == o->lo && slot->hi == o->hi && slot->hdr == o->hdr &&
	    slot->table == o->table && slot->count == o->count && slot->data_lo == o->data_lo &&
	    slot->data_hi == o->data_hi)
		return;
	seq |= 1; /* odd, even when a writer was lost in fork */
	STORE_RELAXED(&slot->seq, seq);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	STORE_RELAXED(&slot->lo, o->lo);
	STORE_RELAXED(&slot->hi, o->hi);
	STORE_RELAXED(&slot->data_lo, o->data_lo);
	STORE_RELAXED(&slot->data_hi, o->data_hi);
	STORE_RELAXED(&slot->hdr, o->hdr);
	STORE_RELAXED(&slot->table, o->table);
	STORE_RELAXED(&slot->count, o->count);
	STORE(&slot->seq, seq + 1);
}

/* A consistent copy of entry i; 0 while it is being rewritten. */
static int object_read(unsigned i, struct object *o)
{
	struct object *slot = &objects[i];
	uint32_t seq = LOAD(&slot->seq);
	o->lo = LOAD_RELAXED(&slot->lo);
	o->hi = LOAD_RELAXED(&slot->hi);
	o->data_lo = LOAD_RELAXED(&slot->data_lo);
	o->data_hi = LOAD_RELAXED(&slot->data_hi);
	o->hdr = LOAD_RELAXED(&slot->hdr);
	o->table = LOAD_RELAXED(&slot->table);
	o->count = LOAD_RELAXED(&slot->count);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return !(seq & 1) && LOAD_RELAXED(&slot->seq) == seq;
}

static int object_of(uint64_t pc, struct object *o)
{
	unsigned n = LOAD(&object_count);
	for (unsigned i = 0; i < n; i++) {
		if (!object_read(i, o))
			return 0;
		if (pc >= o->lo && pc < o->hi)
			return 1;
	}
	return 0;
}

/* --- reading DWARF ------------------------------------------------------ */

struct reader {
	const uint8_t *p, *end;
	int bad;
};

static uint64_t read_bytes(struct reader *r, unsigned n)
{
	uint64_t v = 0;
	if ((size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return 0;
	}
	memcpy(&v, r->p, n);
	r->p += n;
	return v;
}

static uint64_t read_uleb(struct reader *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; r->p < r->end && shift < 64; shift += 7) {
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = 1;
	return 0;
}

static int64_t read_sleb(struct reader *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; r->p < r->end && shift < 64; shift += 7) {
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			if (shift + 7 < 64 && (b & 0x40))
				v |= ~0ULL << (shift + 7);
			return (int64_t)v;
		}
	}
	r->bad = 1;
	return 0;
}

/* A pointer encoded as DW_EH_PE enc says: absolute or pc-relative only. */
static uint64_t read_encoded(struct reader *r, unsigned enc)
{
	uint64_t at = (uint64_t)r->p, v;
	switch (enc & 0x0f) {
	case 0x00: case 0x04: case 0x0c: v = read_bytes(r, 8); break;
	case 0x01: v = read_uleb(r); break;
	case 0x02: v = read_bytes(r, 2); break;
	case 0x03: v = read_bytes(r, 4); break;
	case 0x09: v = (uint64_t)read_sleb(r); break;
	case 0x0a: v = (uint64_t)(int64_t)(int16_t)read_bytes(r, 2); break;
	case 0x0b: v = (uint64_t)(int64_t)(int32_t)read_bytes(r, 4); break;
	default: r->bad = 1; return 0;
	}
	if ((enc & 0x70) == 0x10)
		v += at;
	else if (enc & 0xf0)
		r->bad = 1; /* relative to something else, or indirect */
	return v;
}

/* --- discovery: called by modules_refresh around dl_iterate_phdr --------- */

static int object_table(struct object *o)
{
	if (o->hdr < o->data_lo || o->hdr + 4 > o->data_hi)
		return -1;
	const uint8_t *hdr = (const uint8_t *)o->hdr;
	struct reader r = { hdr + 4, (const uint8_t *)o->data_hi, 0 };
	if (hdr[0] != 1 || hdr[2] == EH_PE_OMIT || hdr[3] != EH_PE_DATAREL_SDATA4)
		return -1;
	read_encoded(&r, hdr[1]); /* .eh_frame itself: not needed */
	o->count = read_encoded(&r, hdr[2]);
	o->table = (uint64_t)r.p;
	if (r.bad || !o->count || o->count > (o->data_hi - o->table) / 8)
		return -1;
	return 0;
}

static int object_from(const struct dl_phdr_info *info, uint64_t lo, uint64_t hi,
		       struct object *o)
{
	memset(o, 0, sizeof(*o));
	o->lo = lo;
	o->hi = hi;
	const ElfW(Phdr) *eh = NULL;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME)
			eh = &info->dlpi_phdr[i];
	if (!eh)
		return -1;
	o->hdr = info->dlpi_addr + eh->p_vaddr;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_filesz;
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_R) && o->hdr >= lo && o->hdr < hi) {
			o->data_lo = lo;
			o->data_hi = hi;
		}
	}
	return o->data_hi ? object_table(o) : -1;
}

void unwind_refresh_begin(void)
{
	pass_count = 0;
	pass_objects = 0;
	pass_subs = seen_subs;
}

/* With the loader's write lock held (inside dl_iterate_phdr). */
void unwind_refresh_object(const struct dl_phdr_info *info, size_t size, uint64_t lo,
			   uint64_t hi)
{
	if (!pass_count && !pass_objects && dl_adds) {
		pass_objects = objects_now();
		pass_subs = size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)
				    ? info->dlpi_subs
				    : 0;
	}
	struct object o;
	if (pass_count < OBJECT_CAPACITY && lo < hi && object_from(info, lo, hi, &o) == 0)
		object_write(&objects[pass_count++], &o);
}

static uint64_t rule_cache[2 * CACHE_SETS];

static void cache_clear(void)
{
	for (unsigned i = 0; i < 2 * CACHE_SETS; i++)
		STORE_RELAXED(&rule_cache[i], 0);
}

void unwind_forget_objects(void)
{
	STORE(&seen_objects, 0);
}

void unwind_refresh_end(void)
{
	STORE(&object_count, pass_count);
	if (pass_subs != seen_subs) /* an object went: its rules with it */
		cache_clear();
	seen_subs = pass_subs;
	STORE(&seen_objects, pass_objects);
}

/* --- the stack's bounds -------------------------------------------------
 * Every read of a saved register lies between the sp where the capture
 * starts and the end of the thread's stack.  The main thread's stack ends
 * at __libc_stack_end and is at most RLIMIT_STACK long; another thread's
 * is glibc's stack block, whose fields in the thread's descriptor
 * (pthread_self(), at the block's top, above the frames) are found on the
 * first capture of a thread: the one pair (block, size) that holds sp and
 * ends just above the descriptor. */

#define MAX_BLOCK_SEARCHES 64u

static uint64_t main_stack_end, main_stack_size, main_thread;
static size_t descriptor_size; /* sizeof(struct pthread) */
static long block_field; /* offset of (stackblock, stackblock_size); 0 unknown, -1 none */

/* (stackblock, stackblock_size) of glibc's struct pthread: a mapped block
 * holding sp and, at its top, the descriptor (and no less) */
static int is_block_of(const uint64_t *field, uint64_t sp, uint64_t self)
{
	uint64_t block = field[0], size = field[1];
	if (block < 65536 || size < 16384 || size > UINT64_MAX - block)
		return 0;
	uint64_t end = block + size;
	return block <= sp && sp < self && self < end && end - self >= descriptor_size &&
	       end - self <= descriptor_size + 65536;
}

static void find_block_field(uint64_t sp, uint64_t self)
{
	long found = -1;
	unsigned matches = 0;
	for (size_t off = 0; off + 16 <= descriptor_size; off += 8) {
		if (is_block_of((const uint64_t *)(self + off), sp, self)) {
			found = (long)off;
			matches++;
		}
	}
	if (matches == 1)
		STORE_RELAXED(&block_field, found);
	else if (matches > 1) /* the layout is not what we think */
		STORE_RELAXED(&block_field, -1);
	else /* this thread runs off its own stack (a coroutine): its business */
		agent_self.block_searches++;
}

/* The thread's stack block as last found (a thread keeps its block for
 * life, and a new thread starts with these 0) */
static AGENT_TLS uint64_t block_start, block_end;

static __attribute__((noinline)) uint64_t thread_stack_end(uint64_t sp);

/* The end of the stack sp lies on, or 0 when it is not known.  The
 * thread's block is read end first, as thread_stack_end writes it last:
 * a signal handler that records it between the two reads leaves this
 * capture an end of 0, never the handler's end with an older start. */
ALWAYS_INLINE uint64_t stack_end(uint64_t sp)
{
	if (sp < main_stack_end && main_stack_end - sp < main_stack_size)
		return main_stack_end;
	uint64_t end = block_end;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (sp >= block_start && sp < end)
		return end;
	return thread_stack_end(sp);
}

/* stack_end off the main thread's stack, from the thread's descriptor */
static uint64_t thread_stack_end(uint64_t sp)
{
	if (!descriptor_size)
		return 0;
	uint64_t self = (uint64_t)pthread_self();
	long off = LOAD_RELAXED(&block_field);
	if (!off && self != main_thread && agent_self.block_searches < MAX_BLOCK_SEARCHES) {
		/* the main thread's has no block */
		find_block_field(sp, self);
		off = LOAD_RELAXED(&block_field);
	}
	if (off <= 0 || !is_block_of((const uint64_t *)(self + off), sp, self))
		return 0;
	block_end = 0; /* a signal handler's capture in between sees neither */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	block_start = *(const uint64_t *)(self + off);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	block_end = self;
	return self;
}

/* --- the rule of a pc --------------------------------------------------- */

struct rule {
	int end; /* the return address is undefined: the outermost frame */
	int cfa_rbp; /* CFA = rbp + cfa_off, else rsp + cfa_off */
	int64_t cfa_off;
	int64_t rbp_at; /* rbp saved at CFA + rbp_at; 0: unchanged */
};

enum { SAME, UNDEFINED, AT_CFA, OTHER };

struct row {
	uint64_t cfa_reg;
	int64_t cfa_off;
	int how[3]; /* of rbp, rsp, the return address */
	int64_t at[3];
};

struct cfa_program {
	const uint8_t *p, *end;
	uint64_t code_align;
	int64_t data_align;
	const struct row *initial; /* the CIE's row, for DW_CFA_restore */
};

static int tracked(uint64_t reg)
{
	return reg == REG_RBP ? 0 : reg == REG_RSP ? 1 : reg == REG_RA ? 2 : -1;
}

static void set_rule(struct row *row, uint64_t reg, int how, int64_t at)
{
	int i = tracked(reg);
	if (i >= 0) {
		row->how[i] = how;
		row->at[i] = at;
	}
}

static void restore_rule(struct row *row, const struct row *initial, uint64_t reg)
{
	int i = tracked(reg);
	if (i >= 0 && initial) {
		row->how[i] = initial->how[i];
		row->at[i] = initial->at[i];
	}
}

struct cfa_run {
	struct row row, saved[MAX_STATES];
	unsigned depth;
	uint64_t loc, pc;
};

static int advance(struct cfa_run *run, const struct cfa_program *prog, uint64_t delta)
{
	run->loc += delta * prog->code_align;
	return run->loc > run->pc;
}

/* One instruction with an operand in its low six bits; 1 when the pc's row
 * is complete. */
static int run_primary(struct cfa_run *run, const struct cfa_program *prog, struct reader *r,
		       uint8_t op)
{
	uint64_t low = op & 0x3f;
	switch (op & 0xc0) {
	case 0x40:
		return advance(run, prog, low);
	case 0x80:
		set_rule(&run->row, low, AT_CFA, (int64_t)read_uleb(r) * prog->data_align);
		return 0;
	default:
		restore_rule(&run->row, prog->initial, low);
		return 0;
	}
}

/* One extended instruction; 1 when the pc's row is complete, -1 for what
 * this unwinder does not follow. */
static int run_extended(struct cfa_run *run, const struct cfa_program *prog, struct reader *r,
			uint8_t op)
{
	struct row *row = &run->row;
	uint64_t reg;
	switch (op) {
	case 0x00: return 0; /* nop */
	case 0x02: return advance(run, prog, read_bytes(r, 1));
	case 0x03: return advance(run, prog, read_bytes(r, 2));
	case 0x04: return advance(run, prog, read_bytes(r, 4));
	case 0x05: /* offset_extended */
		reg = read_uleb(r);
		set_rule(row, reg, AT_CFA, (int64_t)read_uleb(r) * prog->data_align);
		return 0;
	case 0x06: restore_rule(row, prog->initial, read_uleb(r)); return 0;
	case 0x07: set_rule(row, read_uleb(r), UNDEFINED, 0); return 0;
	case 0x08: set_rule(row, read_uleb(r), SAME, 0); return 0;
	case 0x09: /* register */
		reg = read_uleb(r);
		read_uleb(r);
		set_rule(row, reg, OTHER, 0);
		return 0;
	case 0x0a: /* remember_state */
		if (run->depth == MAX_STATES)
			return -1;
		run->saved[run->depth++] = *row;
		return 0;
	case 0x0b: /* restore_state */
		if (!run->depth)
			return -1;
		*row = run->saved[--run->depth];
		return 0;
	case 0x0c: /* def_cfa */
		row->cfa_reg = read_uleb(r);
		row->cfa_off = (int64_t)read_uleb(r);
		return 0;
	case 0x0d: row->cfa_reg = read_uleb(r); return 0;
	case 0x0e: row->cfa_off = (int64_t)read_uleb(r); return 0;
	case 0x11: /* offset_extended_sf */
		reg = read_uleb(r);
		set_rule(row, reg, AT_CFA, read_sleb(r) * prog->data_align);
		return 0;
	case 0x12: /* def_cfa_sf */
		row->cfa_reg = read_uleb(r);
		row->cfa_off = read_sleb(r) * prog->data_align;
		return 0;
	case 0x13: row->cfa_off = read_sleb(r) * prog->data_align; return 0;
	case 0x14: case 0x15: /* val_offset(_sf): not a saved value */
		reg = read_uleb(r);
		read_uleb(r);
		set_rule(row, reg, OTHER, 0);
		return 0;
	case 0x2e: read_uleb(r); return 0; /* GNU_args_size */
	default: return -1; /* expressions, set_loc, vendor extensions */
	}
}

/* Runs prog until the row of run->pc is complete; -1 when it cannot. */
static int run_program(struct cfa_run *run, const struct cfa_program *prog)
{
	struct reader r = { prog->p, prog->end, 0 };
	while (r.p < r.end) {
		uint8_t op = *r.p++;
		int done = op & 0xc0 ? run_primary(run, prog, &r, op) : run_extended(run, prog, &r, op);
		if (r.bad || done < 0)
			return -1;
		if (done)
			return 0;
	}
	return 0;
}

struct cie {
	struct cfa_program prog;
	unsigned fde_enc;
	int has_z;
};

/* A CIE or FDE record at at, within the object's data segment: its
 * contents after the length. */
static int record_at(const struct object *o, uint64_t at, struct reader *r)
{
	if (at < o->data_lo || at + 4 > o->data_hi)
		return -1;
	uint32_t len;
	memcpy(&len, (const void *)at, 4);
	if (len == 0 || len == 0xffffffffu || len > o->data_hi - at - 4)
		return -1;
	*r = (struct reader){ (const uint8_t *)at + 4, (const uint8_t *)at + 4 + len, 0 };
	return 0;
}

/* The augmentation of a CIE: "zR", "zPLR" and the like; 'S' (a signal
 * frame) and anything unknown are refused. */
static int cie_augmentation(struct reader *r, const char *aug, struct cie *c)
{
	c->fde_enc = 0;
	c->has_z = aug[0] == 'z';
	if (!aug[0])
		return 0;
	if (!c->has_z)
		return -1;
	uint64_t len = read_uleb(r);
	if (r->bad || len > (size_t)(r->end - r->p))
		return -1;
	const uint8_t *data_end = r->p + len;
	for (const char *a = aug + 1; *a; a++) {
		if (*a == 'R')
			c->fde_enc = (unsigned)read_bytes(r, 1);
		else if (*a == 'L')
			read_bytes(r, 1);
		else if (*a == 'P')
			read_encoded(r, (unsigned)read_bytes(r, 1) & 0x0f);
		else
			return -1;
	}
	r->p = data_end;
	return r->bad ? -1 : 0;
}

static int cie_parse(const struct object *o, uint64_t at, struct cie *c)
{
	struct reader r;
	if (record_at(o, at, &r) < 0 || read_bytes(&r, 4) != 0)
		return -1;
	unsigned version = (unsigned)read_bytes(&r, 1);
	const char *aug = (const char *)r.p;
	size_t aug_len = strnlen(aug, (size_t)(r.end - r.p));
	if (r.bad || (version != 1 && version != 3) || aug_len == (size_t)(r.end - r.p))
		return -1;
	r.p += aug_len + 1;
	c->prog.code_align = read_uleb(&r);
	c->prog.data_align = read_sleb(&r);
	uint64_t ra = version == 1 ? read_bytes(&r, 1) : read_uleb(&r);
	if (r.bad || ra != REG_RA || cie_augmentation(&r, aug, c) < 0)
		return -1;
	c->prog.p = r.p;
	c->prog.end = r.end;
	return 0;
}

/* The FDE that the search table gives for pc (the last that starts at or
 * below it), or 0. */
static uint64_t fde_search(const struct object *o, uint64_t pc)
{
	const int32_t *table = (const int32_t *)o->table;
	int64_t rel = (int64_t)(pc - o->hdr);
	uint64_t lo = 0, hi = o->count;
	if (rel < table[0])
		return 0;
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (table[2 * mid] <= rel)
			lo = mid;
		else
			hi = mid;
	}
	return o->hdr + (int64_t)table[2 * lo + 1];
}

/* The FDE's program, its CIE's, and the FDE's first address. */
static int fde_parse(const struct object *o, uint64_t at, uint64_t pc, struct cie *c,
		     struct cfa_program *fde, uint64_t *start)
{
	struct reader r;
	if (record_at(o, at, &r) < 0)
		return -1;
	uint64_t cie_at = at + 4 - read_bytes(&r, 4);
	if (r.bad || cie_at == at + 4 || cie_parse(o, cie_at, c) < 0)
		return -1;
	*start = read_encoded(&r, c->fde_enc);
	uint64_t range = read_encoded(&r, c->fde_enc & 0x0f);
	uint64_t aug_len = c->has_z ? read_uleb(&r) : 0;
	if (r.bad || aug_len > (size_t)(r.end - r.p) || pc < *start || pc - *start >= range)
		return -1;
	r.p += aug_len;
	*fde = (struct cfa_program){ r.p, r.end, c->prog.code_align, c->prog.data_align, NULL };
	return 0;
}

/* What libunwind's fast trace takes as a standard frame (or the last). */
static int rule_of_row(const struct row *row, struct rule *rule)
{
	*rule = (struct rule){ 0 };
	if (row->how[2] == UNDEFINED || row->how[0] == UNDEFINED) {
		rule->end = 1;
		return 0;
	}
	if (row->how[2] != AT_CFA || row->at[2] != -8 || row->how[0] == OTHER || row->how[1] == OTHER)
		return -1;
	if (row->cfa_reg != REG_RSP && row->cfa_reg != REG_RBP)
		return -1;
	if (row->cfa_off <= -(1 << 28) || row->cfa_off >= 1 << 28)
		return -1;
	if (row->how[0] == AT_CFA && (row->at[0] > -8 || row->at[0] <= -(1 << 14)))
		return -1;
	if (row->how[1] != SAME) /* step() takes sp = CFA: no other rule for rsp */
		return -1;
	rule->cfa_rbp = row->cfa_reg == REG_RBP;
	rule->cfa_off = row->cfa_off;
	rule->rbp_at = row->how[0] == AT_CFA ? row->at[0] : 0;
	return 0;
}

/* The rule at pc from the DWARF CFI; -1 when there is none we follow,
 * -2 when the object of pc is not (or not now) in the table. */
static int rule_compute(uint64_t pc, struct rule *rule)
{
	struct object o;
	struct cie cie;
	struct cfa_program fde;
	struct cfa_run run = { .row = { .cfa_reg = REG_RSP }, .pc = ~0ULL };
	uint64_t at, start;
	if (!object_of(pc, &o))
		return -2;
	if (!(at = fde_search(&o, pc)) || fde_parse(&o, at, pc, &cie, &fde, &start) < 0 ||
	    run_program(&run, &cie.prog) < 0)
		return -1;
	struct row initial = run.row;
	fde.initial = &initial;
	run.loc = start;
	run.pc = pc;
	run.depth = 0;
	if (run_program(&run, &fde) < 0)
		return -1;
	return rule_of_row(&run.row, rule);
}

/* --- the cache of rules -------------------------------------------------
 * A rule is one 64-bit word, read and written whole, so that threads share
 * the cache without a lock: bits 0-17 the CFA offset, 18 the outermost
 * frame, 19 the CFA is rbp + offset (else rsp + offset), 20 rbp is saved
 * at CFA - 8k (else unchanged), 21-28 k (1 when rbp is unchanged: CFA - 8k
 * is then the return address, the lowest slot read either way; 0: a pc
 * not followed), 29-63 the pc above its low 12 bits, which choose a set
 * of two words.  A rule that does not fit is not followed. */

#define W_OFF_MASK 0x3ffffu
#define W_END (1u << 18)
#define W_CFA_RBP (1u << 19)
#define W_RBP_SAVED (1u << 20)
#define W_K_SHIFT 21
#define W_K_MASK 0xffu
#define W_FOLLOWED ((uint64_t)W_K_MASK << W_K_SHIFT) /* k is never 0 in a rule followed */
#define W_TAG_SHIFT 29
#define SET_BITS 12

static uint64_t rule_pack(uint64_t pc, const struct rule *rule)
{
	uint64_t k = rule->rbp_at ? (uint64_t)(-rule->rbp_at / 8) : 1;
	if (pc >> 47 || rule->cfa_off < 0 || rule->cfa_off > W_OFF_MASK || rule->rbp_at % 8 ||
	    k > W_K_MASK)
		return 0;
	return pc >> SET_BITS << W_TAG_SHIFT | k << W_K_SHIFT | (uint64_t)rule->cfa_off |
	       (rule->rbp_at ? W_RBP_SAVED : 0) | (rule->cfa_rbp ? W_CFA_RBP : 0) |
	       (rule->end ? W_END : 0);
}

/* Into an empty way, else into each way in turn.  Never moves a word: one
 * read before a clear (objects went) must not be written back after it. */
static void cache_put(uint64_t *set, uint64_t w)
{
	static unsigned turn;
	unsigned way = 0;
	if (LOAD_RELAXED(&set[0])) {
		way = LOAD_RELAXED(&set[1]) ? LOAD_RELAXED(&turn) & 1 : 1;
		STORE_RELAXED(&turn, way + 1);
	}
	STORE_RELAXED(&set[way], w);
}

/* The rule at pc from the CFI, kept in the cache even when it is not
 * followed (but not when the object's table was not at hand). */
static __attribute__((noinline)) uint64_t rule_miss(uint64_t pc, uint64_t *set)
{
	struct rule rule;
	int got = rule_compute(pc, &rule);
	if (got == -2 || pc >> 47)
		return 0;
	uint64_t w = got == 0 ? rule_pack(pc, &rule) : 0;
	cache_put(set, w ? w : pc >> SET_BITS << W_TAG_SHIFT);
	return w;
}

/* The cache's word for pc, or 0 when it has none. */
static inline uint64_t rule_cached(uint64_t pc)
{
	const uint64_t *set = &rule_cache[2 * (pc & (CACHE_SETS - 1))], tag = pc >> SET_BITS;
	uint64_t w = LOAD_RELAXED(&set[0]);
	if (w >> W_TAG_SHIFT == tag)
		return w;
	w = LOAD_RELAXED(&set[1]);
	return w >> W_TAG_SHIFT == tag ? w : 0;
}

/* The rule at pc, without W_FOLLOWED when there is none we follow. */
static inline uint64_t rule_of(uint64_t pc)
{
	uint64_t w = rule_cached(pc);
	return w ? w : rule_miss(pc, &rule_cache[2 * (pc & (CACHE_SETS - 1))]);
}

/* --- the walk ----------------------------------------------------------- */

/* A frame's registers, and the lowest address its caller's may be read
 * from: its CFA (the first frame's sp), so that CFAs only grow. */
struct frame {
	uint64_t pc, sp, bp, lo;
};

/* Steps from frame f to its caller by rule w, reading within [f->lo, hi);
 * *bp_at is where it read rbp (0: it did not). */
static inline int step(struct frame *f, uint64_t w, uint64_t hi, uint64_t *bp_at)
{
	uint64_t cfa = (w & W_CFA_RBP ? f->bp : f->sp) + (w & W_OFF_MASK);
	uint64_t below = w >> (W_K_SHIFT - 3) & W_K_MASK << 3; /* 8k */
	if (cfa < f->lo + below || cfa > hi) /* also when the sum wrapped */
		return -1;
	f->pc = *(const uint64_t *)(cfa - 8);
	*bp_at = 0;
	if (w & W_RBP_SAVED) {
		*bp_at = cfa - below;
		f->bp = *(const uint64_t *)*bp_at;
	}
	f->sp = f->lo = cfa;
	return 0;
}

/* The frame of the first caller outside the agent.  The agent is built
 * with frame pointers, so its own frames are skipped along the rbp chain,
 * a few instructions each, instead of by their CFI; the chain is checked
 * to climb (from this frame, above sp) below hi, and a break in it makes
 * the caller give up.  This needs every agent function that calls another
 * to save rbp at CFA-16 and never realign its stack: no assembly and no
 * over-aligned local on the way from a hook to here (test_unwind checks
 * the agent's code for it). */
ALWAYS_INLINE int first_outside_agent(struct frame *f, uint64_t hi, uint64_t frame)
{
	/* above sp, and not this frame: its return address is ours whether
	 * this is unwind_fast's frame, stack_capture's (where the route of
	 * unwind_fast_joined is inlined) or its own; the engine's frame,
	 * further out, when given */
	uint64_t here = (uint64_t)__builtin_frame_address(0);
	uint64_t at = frame > here ? frame : *(const uint64_t *)here;
	for (unsigned n = 0; n < OWN_FRAMES_MOST; n++) {
		if (at > hi - 16)
			return -1;
		const uint64_t *fp = (const uint64_t *)at;
		uint64_t ret = fp[1], next = fp[0];
		if (ret - agent_lo >= agent_hi - agent_lo) {
			f->pc = ret;
			f->sp = f->lo = at + 16;
			f->bp = next;
			return 0;
		}
		if (next <= at)
			return -1;
		at = next;
	}
	return -1;
}

/* --- the memo of the thread's last walk ----------------------------------
 * A program takes its descriptors in loops, so a thread's consecutive
 * stacks share their outer frames.  A walk is a function of a frame's
 * registers (pc, sp, rbp), of the rules (fixed while the objects are, which
 * the memo's objects key checks) and of the words it reads on the stack
 * (return addresses and saved rbp).  So when a walk reaches the registers
 * that the thread's last walk had at the same frame, and every word that
 * walk read above it and depended on (each return address, and a saved
 * rbp only where a CFA was taken from it) still holds the value it read,
 * the rest of the walk is the last one's: its frames are taken without their rules.  Those
 * words are compared independently of each other instead of being loaded
 * one after the other through the rules, which makes the outer frames of a
 * deep stack several times cheaper.  The memo also keeps, for each frame,
 * the hash of the stack from it outwards (stack_hash in agent.h), so that
 * only the new inner frames are hashed again. */
#define MEMO_FRAMES 32u

/* Arrays by field: the frames it gives are one copy, and its checks are
 * loads at a stride of one word. */
struct walk_memo {
	uint64_t objects; /* objects_now() of the walk */
	unsigned n, max; /* frames recorded (0: none), and the most it was asked for */
	uint64_t end_at, end_pc; /* a return address below MIN_PC that ended it, and where */
	/* in use, by a walk, from unwind_fast to unwind_fast_finish, or by
	 * unwind_fast_joined: a signal handler's capture leaves it alone (one that siglongjmps out
	 * of a capture leaves it set: the thread then walks without it) */
	int busy;
	uint64_t tail; /* the number of its frames after the first (unwind_info) */
	uint64_t pc[MEMO_FRAMES], sp[MEMO_FRAMES], bp[MEMO_FRAMES]; /* each frame's registers */
	/* where the step to each frame read rbp (when it did not: bp[j]
	 * itself, a check that always holds) */
	const uint64_t *bp_at[MEMO_FRAMES];
	uint64_t bp_read; /* bit j: the step to frame j read rbp (j < n only) */
	/* bit j: the step from frame j took its CFA from rbp (j < n - 1, and
	 * n - 1 when that step read the return address that ended the walk) */
	uint64_t cfa_rbp;
	/* bit j: the step to frame j read rbp, and the walk took a CFA from
	 * the value it read (bp_words_used): the rbp words worth comparing */
	uint64_t bp_used;
	uint64_t hash[MEMO_FRAMES]; /* of the frame and those outside it */
	/* 1: known that the walk from the second frame on did not use its
	 * rbp (memo_used_bp), until the next walk */
	int second_bp_unused;
};

static AGENT_TLS struct walk_memo memo;

/* Whether the memo's walk of n frames used frame j's rbp: whether a step
 * from it, or from a frame outside it before a step read rbp from the
 * stack, took its CFA from rbp.  Their rules are taken from the cache
 * only (the objects have not changed since the walk): these pcs are not
 * known to be on the stack yet, so their objects may be going away, and
 * a rule no longer cached counts as using rbp (no join there). */
static __attribute__((cold, noinline)) int memo_used_bp(const struct walk_memo *m, unsigned j,
							unsigned n)
{
	for (; j < n; j++) {
		uint64_t w = rule_cached(m->pc[j] - 1);
		if (!(w & W_FOLLOWED) || (w & W_CFA_RBP))
			return 1;
		if (w & (W_RBP_SAVED | W_END))
			return 0;
	}
	return 0;
}

/* The walk from f is the memo's from frame j: the same pc and sp, and
 * the same rbp where the memo's walk used it (so that a caller keeping a
 * loop counter in rbp, as code without frame pointers may, still joins). */
static int same_registers(const struct walk_memo *m, unsigned j, unsigned n,
			  const struct frame *f)
{
	return m->sp[j] == f->sp && m->pc[j] == f->pc &&
	       (m->bp[j] == f->bp || !memo_used_bp(m, j, n));
}

/* The highest frame above `from` whose words changed (n: the word that
 * ended the walk), or 0 when none did: frame by frame, from the top. */
static __attribute__((noinline)) unsigned memo_which_changed(const struct walk_memo *m,
							     unsigned from, unsigned n)
{
	if (m->end_at && *(const uint64_t *)m->end_at != m->end_pc)
		return n;
	for (unsigned j = n; --j > from;)
		if ((*(const uint64_t *)(m->sp[j] - 8) != m->pc[j]) |
		    ((m->bp_used >> j & 1) && *m->bp_at[j] != m->bp[j]))
			return j;
	return 0;
}

/* Not 0 when the return address of the frame whose memo sp is at `at`
 * (inside m->sp) is no longer the memo's pc: one pointer over the memo's
 * bytes reaches both arrays */
#define PC_FROM_SP ((ptrdiff_t)offsetof(struct walk_memo, pc) - (ptrdiff_t)offsetof(struct walk_memo, sp))
#define RETURN_ADDRESS_CHANGED(at) \
	(*(const uint64_t *)(*(const uint64_t *)(at) - 8) ^ *(const uint64_t *)((at) + PC_FROM_SP))

/* 0 when every word that the memo's walk of n frames read above frame
 * `from`, and that the walk depended on, still holds; else the highest
 * frame whose words changed (n: the word that ended the walk), below which
 * no frame can join the memo.  Words usually hold, so they are first
 * compared all together, without a branch a frame: each return address
 * (four frames at a time, for the outer frames of a deep stack), then rbp
 * only where a step read it and a CFA was taken from it (bp_words_used:
 * code without frame pointers saves rbp as any other register, and seldom
 * takes a CFA from it). */
ALWAYS_INLINE unsigned memo_changed_above(const struct walk_memo *m, unsigned from, unsigned n)
{
	uint64_t diff = m->end_at ? *(const uint64_t *)m->end_at ^ m->end_pc : 0;
	const char *at = (const char *)&m->sp[from + 1], *end = (const char *)&m->sp[n];
	for (; end - at >= 32; at += 32)
		diff |= RETURN_ADDRESS_CHANGED(at) | RETURN_ADDRESS_CHANGED(at + 8) |
			RETURN_ADDRESS_CHANGED(at + 16) | RETURN_ADDRESS_CHANGED(at + 24);
	for (; at < end; at += 8)
		diff |= RETURN_ADDRESS_CHANGED(at);
	for (uint64_t bits = m->bp_used & ~1ull << from & ~(~0ull << n); bits; bits &= bits - 1) {
		unsigned j = (unsigned)__builtin_ctzll(bits);
		diff |= *m->bp_at[j] ^ m->bp[j];
	}
	return diff ? memo_which_changed(m, from, n) : 0;
}

/* The frames (of n) whose rbp, read from the stack by the step to them,
 * the walk used: a step from them, or from a frame outside them before
 * the next read of rbp, took its CFA from it.  Only the CFAs, which give
 * the return addresses' places, depend on rbp: a value no CFA was taken
 * from changes no frame of the walk (memo_used_bp asks the same of one
 * frame from the rules, or something stricter: a rule no longer cached,
 * or the last frame's, counts as using rbp). */
static uint64_t bp_words_used(uint64_t bp_read, uint64_t cfa_rbp, unsigned n)
{
	uint64_t used_bits = 0;
	int used = 0; /* frame j's rbp is used, from frame j on */
	for (unsigned j = n; j-- > 0;) {
		used = (cfa_rbp >> j & 1) || (used && !(bp_read >> (j + 1) & 1));
		if (used && (bp_read >> j & 1))
			used_bits |= 1ull << j;
	}
	return used_bits;
}

/* The hashes of frames [0, from), now that frame `from` has its own
 * (seed: none outside the last). */
static void memo_hash_inner(struct walk_memo *m, unsigned from, uint64_t outer)
{
	for (unsigned j = from; j-- > 0;)
		outer = m->hash[j] = stack_hash_step(outer, m->pc[j]);
}

static void memo_record_bp_at(struct walk_memo *m, unsigned j, uint64_t bp_at)
{
	m->bp_at[j] = bp_at ? (const uint64_t *)bp_at : &m->bp[j];
	m->bp_read = (m->bp_read & ~(1ull << j)) | (uint64_t)(bp_at != 0) << j;
}

static void memo_record(struct walk_memo *m, unsigned j, const struct frame *f, uint64_t bp_at)
{
	m->pc[j] = f->pc;
	m->sp[j] = f->sp;
	m->bp[j] = f->bp;
	memo_record_bp_at(m, j, bp_at);
}

/* The frame where a walk joins the memo's has its registers (its rbp
 * may differ where unused), but the step to it is the walk's own: where
 * it read rbp is recorded for the joins further in. */
static void memo_record_joined(struct walk_memo *m, unsigned j, const struct frame *f,
			       uint64_t bp_at)
{
	m->bp[j] = f->bp;
	if ((bp_at ? (const uint64_t *)bp_at : &m->bp[j]) != m->bp_at[j])
		memo_record_bp_at(m, j, bp_at);
}

/* The walk has joined the memo's at frame n: the hashes of the new
 * frames inside, and the first frame if it is the memo's too; the other
 * frames from there on are copied by unwind_fast_finish, if asked for.
 * Frames after the first that are new give the memo's tail a new number. */
static int memo_join(struct walk_memo *m, unsigned n, unsigned old_n, uint64_t *pcs,
		     struct unwind_info *info)
{
	memo_hash_inner(m, n, m->hash[n]);
	m->n = old_n;
	m->bp_used = bp_words_used(m->bp_read, m->cfa_rbp, old_n);
	if (n > 1)
		m->tail++;
	if (!n)
		pcs[n++] = m->pc[0];
	*info = (struct unwind_info){ .hash = m->hash[0], .tail = m->tail, .joined = 1,
				      .filled = n < old_n ? n : 0 };
	return (int)old_n;
}

/* Walks from f into pcs (at most max frames), recording the walk in m
 * (NULL: no memo) and taking the frames of m's last walk where it joins
 * it (left in the memo from info->filled on, see memo_join).  Returns the
 * number of frames, or UNWIND_GIVE_UP. */
ALWAYS_INLINE int walk(const struct frame *start, uint64_t *pcs, unsigned max, uint64_t hi,
		       struct walk_memo *m, struct unwind_info *info)
{
	struct frame f = *start;
	unsigned n = 0, old_n = m ? m->n : 0, join_from = 0;
	uint64_t end_at = 0, end_pc = 0, bp_at = 0;
	if (m) {
		m->n = 0; /* a walk that gives up leaves no memo */
		m->second_bp_unused = 0;
	}
	for (;;) {
		if (m) {
			if (n < old_n && n >= join_from && same_registers(m, n, old_n, &f)) {
				join_from = memo_changed_above(m, n, old_n);
				if (!join_from) {
					memo_record_joined(m, n, &f, bp_at);
					return memo_join(m, n, old_n, pcs, info);
				}
			}
			memo_record(m, n, &f, bp_at);
		}
		pcs[n++] = f.pc;
		if (n == max)
			break;
		uint64_t w = rule_of(f.pc - 1); /* a return address is looked up in its call */
		if (!(w & W_FOLLOWED))
			return UNWIND_GIVE_UP;
		if (w & W_END)
			break;
		if (m) /* frame n - 1's step, by its rule */
			m->cfa_rbp = (m->cfa_rbp & ~(1ull << (n - 1))) |
				     (uint64_t)((w & W_CFA_RBP) != 0) << (n - 1);
		if (step(&f, w, hi, &bp_at) < 0)
			return UNWIND_GIVE_UP;
		if (f.pc < MIN_PC) {
			end_at = f.sp - 8;
			end_pc = f.pc;
			break;
		}
	}
	if (m) {
		memo_hash_inner(m, n, STACK_HASH_SEED);
		m->bp_read &= ~(~0ull << n); /* n <= MEMO_FRAMES < 64 */
		/* a step from the last frame only to a return address that ended
		 * the walk */
		m->cfa_rbp &= ~(~0ull << (end_at ? n : n - 1));
		m->bp_used = bp_words_used(m->bp_read, m->cfa_rbp, n);
		m->n = n;
		m->end_at = end_at;
		m->end_pc = end_pc;
		/* every frame walked: a tail of its own */
		*info = (struct unwind_info){ .hash = m->hash[0], .tail = ++m->tail };
	} else {
		*info = (struct unwind_info){ .hash = stack_hash(pcs, n) };
	}
	return (int)n;
}

__attribute__((noinline)) int unwind_fast(uint64_t *pcs, unsigned max, struct unwind_info *info,
					  const void *frame)
{
	/* first: on a stack it does not know (an alternate signal stack),
	 * nothing more is done here, not even a refresh of the objects */
	uint64_t hi = stack_end((uint64_t)__builtin_frame_address(0));
	if (!hi)
		return UNWIND_GIVE_UP;
	uint64_t now = objects_now();
	if (!now || now != LOAD(&seen_objects))
		return now ? UNWIND_STALE : UNWIND_GIVE_UP;
	struct frame f;
	if (first_outside_agent(&f, hi, (uint64_t)frame) < 0)
		return UNWIND_GIVE_UP;
	if (f.pc < MIN_PC || !max) {
		*info = (struct unwind_info){ .hash = stack_hash(pcs, 0) };
		return 0;
	}
	struct walk_memo *m = max <= MEMO_FRAMES && !memo.busy ? &memo : NULL;
	if (!m)
		return walk(&f, pcs, max, hi, NULL, info);
	m->busy = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (m->objects != now || m->max != max) {
		m->n = 0;
		m->objects = now;
		m->max = max;
	}
	int n = walk(&f, pcs, max, hi, m, info);
	if (n > 0 && info->filled)
		return n; /* the memo stays busy until unwind_fast_finish */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	m->busy = 0;
	return n;
}

/* Whether the stack is the first frame outside the agent (*first_pc) and
 * the frames after the first of m's walk: the first frame's caller has
 * the registers of m's second frame, and every word m's walk read above
 * it and depended on is unchanged (what unwind_fast would find, joining
 * there or at the first frame).  m is the thread's memo, held by the caller; what
 * memo_used_bp found for the second frame is kept in it. */
ALWAYS_INLINE int joins_memo_at_caller(struct walk_memo *m, unsigned max,
				       const void *frame, uint64_t *first_pc)
{
	unsigned n = m->n;
	if (n < 2 || m->max != max)
		return 0;
	uint64_t hi = stack_end((uint64_t)__builtin_frame_address(0));
	uint64_t now = objects_now();
	struct frame f;
	if (!hi || !now || now != LOAD(&seen_objects) || now != m->objects ||
	    first_outside_agent(&f, hi, (uint64_t)frame) < 0 || f.pc < MIN_PC)
		return 0;
	uint64_t w = rule_cached(f.pc - 1), bp_at;
	if (!(w & W_FOLLOWED) || (w & W_END))
		return 0;
	*first_pc = f.pc;
	if (step(&f, w, hi, &bp_at) < 0 || f.pc < MIN_PC || m->sp[1] != f.sp || m->pc[1] != f.pc)
		return 0;
	if (m->bp[1] != f.bp && !m->second_bp_unused) {
		if (memo_used_bp(m, 1, n))
			return 0;
		m->second_bp_unused = 1; /* a loop counter in rbp, say */
	}
	return !memo_changed_above(m, 1, n);
}

/* The common capture in a loop, in a fraction of unwind_fast's work (see
 * joins_memo_at_caller): 1 with the stack's first frame and the memo's
 * tail, which name it among stack.c's recent stacks; else 0.  The memo's
 * walk is left as it was (only second_bp_unused may be set).  The memo is
 * held meanwhile, so that a signal handler's capture walks without it. */
int unwind_fast_joined(unsigned max, const void *frame, uint64_t *first_pc, uint64_t *tail)
{
	if (memo.busy)
		return 0;
	memo.busy = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	int joined = joins_memo_at_caller(&memo, max, frame, first_pc);
	*tail = memo.tail;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	memo.busy = 0;
	return joined;
}

void unwind_fast_finish(uint64_t *pcs, unsigned n, struct unwind_info *info, int copy)
{
	if (!info->filled)
		return;
	if (copy && n > info->filled)
		memcpy(pcs + info->filled, memo.pc + info->filled, (n - info->filled) * sizeof(*pcs));
	info->filled = 0;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	memo.busy = 0;
}

void unwind_init(uint64_t stack_limit, const void *loader_lock, uint64_t own_lo, uint64_t own_hi)
{
	agent_lo = own_lo;
	agent_hi = own_hi;
	const uint64_t *end = dlsym(RTLD_DEFAULT, "__libc_stack_end");
	const uint32_t *size = dlsym(RTLD_DEFAULT, "_thread_db_sizeof_pthread");
	main_stack_end = end ? *end : 0;
	main_thread = (uint64_t)pthread_self();
	main_stack_size = stack_limit;
	descriptor_size = size ? *size : 0;
	find_counters(loader_lock);
}
