/* Keeping stacks possible in a fork child.  glibc 2.36 does not reset, in
 * the child, the loader lock that dl_iterate_phdr takes (unwinders and our
 * module table need it): when another thread of the parent held it at the
 * moment of fork, the child's first unwind would wait forever.  At start we
 * find that lock (a recursive mutex inside ld.so's _rtld_global, held by us
 * while dl_iterate_phdr runs our callback); in the child, a lock held by a
 * thread that no longer exists is reset.  Where the lock cannot be found,
 * a child of a threaded parent takes no stacks until it execs. */
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>

#include "agent.h"

/* The fields of glibc's x86_64 pthread_mutex_t that tell who holds it. */
struct mutex_head {
	int lock;
	unsigned int count;
	int owner;
	unsigned int nusers;
	int kind;
};

#define MUTEX_KIND_RECURSIVE 1

static struct mutex_head *loader_lock;
static int parent_was_threaded;
/* The thread that called fork, as the parent numbered it: the child's only
 * thread.  Each thread's own (TLS), so that two threads forking at once do
 * not give each other's child the wrong one. */
static AGENT_TLS int forking_tid;
int fork_child_without_stacks AGENT_HIDDEN;

struct lock_search {
	char *base;
	size_t size;
	int tid;
	struct mutex_head *found;
	int matches;
};

static int looks_held_by(const struct mutex_head *m, int tid)
{
	return m->owner == tid && m->count >= 1 && m->lock != 0 &&
	       (m->kind & 0x7f) == MUTEX_KIND_RECURSIVE;
}

static int search_while_locked(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)info;
	(void)size;
	struct lock_search *s = data;
	for (size_t off = 0; off + sizeof(struct mutex_head) <= s->size; off += sizeof(int)) {
		struct mutex_head *m = (struct mutex_head *)(s->base + off);
		if (looks_held_by(m, s->tid)) {
			s->found = m;
			s->matches++;
		}
	}
	return 1;
}

char *rtld_global(size_t *size)
{
	Dl_info info;
	const ElfW(Sym) *sym = NULL;
	char *base = dlsym(RTLD_DEFAULT, "_rtld_global");
	if (!base || !dladdr1(base, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym)
		return NULL;
	*size = sym->st_size;
	return base;
}

void forksafe_init(void)
{
	struct lock_search s = { .tid = (int)RAW0(SYS_gettid) };
	if (!(s.base = rtld_global(&s.size)))
		return;
	dl_iterate_phdr(search_while_locked, &s);
	/* exactly one candidate, and released once dl_iterate_phdr returned */
	if (s.matches == 1 && s.found->owner == 0)
		loader_lock = s.found;
}

const void *forksafe_loader_lock(void)
{
	return loader_lock;
}

void forksafe_before_fork(void)
{
	parent_was_threaded = !__libc_single_threaded;
	forking_tid = current_tid();
}

void forksafe_in_child(void)
{
	fork_child_without_stacks = 0;
	if (loader_lock) {
		/* held (or being taken or released, owner not yet or no longer
		 * set) by a thread that did not come along */
		if (loader_lock->lock != 0 && loader_lock->owner != forking_tid)
			memset(loader_lock, 0, offsetof(struct mutex_head, kind));
	} else if (parent_was_threaded) {
		fork_child_without_stacks = 1;
	}
}
