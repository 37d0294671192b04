/* The table of loaded objects (path, address range, load bias) that the
 * client's symbolizer needs to turn recorded addresses into names.  Filled
 * from dl_iterate_phdr at start and again whenever a newly stored stack has
 * an address outside every known object, or unwind.c sees objects loaded
 * or unloaded since; entries are never removed, only marked unloaded, so
 * that old stacks still resolve.  The same pass gives unwind.c each
 * object's unwind tables. */
#include <link.h>
#include <stddef.h>
#include <string.h>

#include "agent.h"

#define MODULE_CAPACITY 512u

static struct htrace_module module_table[MODULE_CAPACITY];
static unsigned long long seen_adds, seen_subs;
static int refreshing;

struct object_range {
	uint64_t lo, hi;
};

static struct object_range range_of(const struct dl_phdr_info *info)
{
	struct object_range r = { UINT64_MAX, 0 };
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if (lo < r.lo)
			r.lo = lo;
		if (hi > r.hi)
			r.hi = hi;
	}
	return r;
}

/* Entries seen loaded by the refresh under way (one refresh at a time). */
static uint64_t seen_now[MODULE_CAPACITY / 64];

/* The loaded entry of the object at start, or -1. */
static int module_known(uint64_t start, const char *path)
{
	for (unsigned i = 0; i < htrace_db.module_count; i++)
		if (module_table[i].start == start && strcmp(module_table[i].path, path) == 0 &&
		    !(module_table[i].flags & HTRACE_MOD_UNLOADED))
			return (int)i;
	return -1;
}

static void mark_seen(int i)
{
	if (i >= 0 && (unsigned)i < MODULE_CAPACITY)
		seen_now[i / 64] |= 1ULL << (i % 64);
}

static void module_add(uint64_t start, uint64_t end, uint64_t bias, const char *path)
{
	unsigned n = htrace_db.module_count;
	if (n >= MODULE_CAPACITY) {
		htrace_db.modules_dropped++;
		return;
	}
	struct htrace_module *m = &module_table[n];
	m->start = start;
	m->end = end;
	m->bias = bias;
	m->flags = 0;
	size_t len = strnlen(path, sizeof(m->path) - 1);
	memcpy(m->path, path, len);
	m->path[len] = '\0';
	__atomic_store_n(&htrace_db.module_count, n + 1, __ATOMIC_RELEASE);
}

int modules_add_previous(uint64_t start, uint64_t end, uint64_t bias, const char *path)
{
	unsigned n = htrace_db.module_count;
	module_add(start, end, bias, path);
	if (htrace_db.module_count == n)
		return -1;
	module_table[n].flags = HTRACE_MOD_PREVIOUS_IMAGE | HTRACE_MOD_UNLOADED;
	return 0;
}

static int add_object(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)data;
	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
		seen_adds = info->dlpi_adds;
		seen_subs = info->dlpi_subs;
	}
	struct object_range r = range_of(info);
	const char *path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : htrace_db.exe;
	int known = r.lo < r.hi ? module_known(r.lo, path) : -1;
	if (r.lo < r.hi && known < 0) {
		known = (int)htrace_db.module_count;
		module_add(r.lo, r.hi, info->dlpi_addr, path);
	}
	mark_seen(known);
	unwind_refresh_object(info, size, r.lo, r.hi);
	return 0;
}

/* After a pass that saw an object go: the entries it did not see. */
static void mark_unloaded(void)
{
	for (unsigned i = 0; i < htrace_db.module_count; i++)
		if (!(seen_now[i / 64] & (1ULL << (i % 64))))
			module_table[i].flags |= HTRACE_MOD_UNLOADED;
}

void modules_refresh(void)
{
	if (__atomic_exchange_n(&refreshing, 1, __ATOMIC_ACQUIRE))
		return; /* another thread is at it */
	unsigned long long subs_before = seen_subs;
	htrace_db.modules_addr = (uint64_t)module_table;
	htrace_db.module_capacity = MODULE_CAPACITY;
	memset(seen_now, 0, sizeof(seen_now));
	unwind_refresh_begin();
	dl_iterate_phdr(add_object, NULL);
	unwind_refresh_end();
	if (seen_subs != subs_before)
		mark_unloaded();
	__atomic_store_n(&refreshing, 0, __ATOMIC_RELEASE);
}

/* In a fork child, alone: a refresh that another thread of the parent had
 * under way will never end, and left the unwinder's object table half
 * written: it is made again on the next capture. */
void modules_fork_child(void)
{
	if (refreshing)
		unwind_forget_objects();
	refreshing = 0;
}

int modules_index_of(uint64_t pc)
{
	unsigned count = __atomic_load_n(&htrace_db.module_count, __ATOMIC_ACQUIRE);
	for (unsigned m = 0; m < count; m++)
		if (module_table[m].start <= pc && pc < module_table[m].end)
			return (int)m;
	return -1;
}

int modules_cover(const uint64_t *pc, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (modules_index_of(pc[i]) < 0)
			return 0;
	return 1;
}

struct find_request {
	uint64_t addr, lo, hi;
};

static int find_containing(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct find_request *req = data;
	struct object_range r = range_of(info);
	if (req->addr < r.lo || req->addr >= r.hi)
		return 0;
	req->lo = r.lo;
	req->hi = r.hi;
	return 1;
}

int modules_find_self(uint64_t *lo, uint64_t *hi, const void *addr)
{
	struct find_request req = { (uint64_t)addr, 0, 0 };
	int found = dl_iterate_phdr(find_containing, &req);
	*lo = req.lo;
	*hi = req.hi;
	return found ? 0 : -1;
}
