/* Reads the trace database out of a target process (see reader.h). */
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "htrace/apis.h"
#include "sym/sym.h"

#define AGENT_BASENAME "libhtrace.so"
#define MAX_RETRIES 100 /* re-reads of one torn slot or record */
#define MAX_REREADS 20000 /* of all of them, in one reading of the database */
/* Slots and records still torn after their re-reads (left out) beyond
 * which the database is refused: more than threads killed in the middle
 * of a write could leave. */
#define MAX_TORN 1000
#define MAX_RING_EVENTS (64u << 20)
#define MAX_MODULES 65536u
#define MAX_DEPOT (1u << 30)

#define READ_PIECE (1ul << 30) /* the kernel moves at most about 2 GiB a call */

static int read_memory(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t piece = len - done < READ_PIECE ? len - done : READ_PIECE;
		struct iovec local = { (char *)buf + done, piece },
			     remote = { (void *)(addr + done), piece };
		ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
		if (n != (ssize_t)piece) {
			if (n >= 0)
				errno = EFAULT;
			return -1;
		}
		done += piece;
	}
	return 0;
}

int reader_write(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = { (void *)buf, len }, remote = { (void *)addr, len };
	ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
	if (n == (ssize_t)len)
		return 0;
	if (n >= 0)
		errno = EFAULT;
	return -1;
}

/* Why a debugger-like access to pid was refused, in one line. */
static void explain_permission(pid_t pid, char *why, size_t len)
{
	int scope = -1;
	FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
	if (f) {
		if (fscanf(f, "%d", &scope) != 1)
			scope = -1;
		fclose(f);
	}
	if (scope < 0) {
		snprintf(why, len, "permission denied reading process %d: htrace needs the permission a "
			 "debugger needs (ptrace): the same user as the process, or root (Yama's "
			 "ptrace_scope, which can restrict it further, is not enabled here)", (int)pid);
		return;
	}
	const char *rule = scope == 1 ? "only a parent process may, unless htrace has CAP_SYS_PTRACE (run it as root, or set ptrace_scope to 0)"
		: scope == 2 ? "only processes with CAP_SYS_PTRACE may (run htrace as root)"
		: scope == 3 ? "no process may (attaching is disabled until reboot)"
		: "htrace must run as the same user as the process, or as root";
	snprintf(why, len, "permission denied reading process %d: htrace needs the permission a "
		 "debugger needs (ptrace); with Yama ptrace_scope=%d, %s", (int)pid, scope, rule);
}

/* --- locating htrace_db ------------------------------------------------- */

struct agent_mapping {
	char path[4096];
	char mapped_file[96]; /* /proc/PID/map_files/START-END: the file as loaded */
	uint64_t base; /* start of the mapping at file offset 0 */
};

/* The agent's mapping, also when its file was replaced on disk since the
 * process loaded it (maps then says "path (deleted)"). */
static int is_agent_path(char *path)
{
	static const char deleted[] = " (deleted)";
	size_t len = strlen(path);
	if (len > sizeof(deleted) - 1 && !strcmp(path + len - (sizeof(deleted) - 1), deleted))
		path[len - (sizeof(deleted) - 1)] = '\0';
	const char *slash = strrchr(path, '/');
	return slash && strcmp(slash + 1, AGENT_BASENAME) == 0;
}

static int find_agent_mapping(pid_t pid, struct agent_mapping *out)
{
	char maps[64];
	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(maps, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno; /* no /proc/PID: no process */
	char line[4352];
	int found = -ENOENT;
	while (found && fgets(line, sizeof(line), f)) {
		unsigned long long start, end, offset;
		char path[4096] = "";
		if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %4095[^\n]", &start, &end, &offset, path) < 3)
			continue;
		if (offset == 0 && is_agent_path(path)) {
			snprintf(out->path, sizeof(out->path), "%s", path);
			snprintf(out->mapped_file, sizeof(out->mapped_file), "/proc/%d/map_files/%llx-%llx",
				 (int)pid, start, end);
			out->base = start;
			found = 0;
		}
	}
	fclose(f);
	return found;
}

/* The address of symbol in the ELF file at path mapped at base; 0 if none. */
static uint64_t symbol_address(const char *path, uint64_t base, const char *symbol)
{
	int fd = sym_open_elf_file(path); /* the maps' path may name a FIFO now */
	if (fd < 0)
		return 0;
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	uint64_t addr = 0, first_load = UINT64_MAX;
	size_t nphdr = 0;
	if (elf && elf_getphdrnum(elf, &nphdr) == 0) {
		for (size_t i = 0; i < nphdr; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD && ph.p_offset == 0)
				first_load = ph.p_vaddr;
		}
	}
	for (Elf_Scn *scn = NULL; elf && first_load != UINT64_MAX && (scn = elf_nextscn(elf, scn));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
			continue;
		Elf_Data *data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *name;
			if (gelf_getsym(data, (int)i, &sym) && sym.st_shndx != SHN_UNDEF &&
			    (name = elf_strptr(elf, sh.sh_link, sym.st_name)) && !strcmp(name, symbol))
				addr = base - first_load + sym.st_value;
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return addr;
}

/* --- reading ------------------------------------------------------------ */

enum reader_error reader_header(pid_t pid, uint64_t db_addr, struct htrace_db *out)
{
	if (read_memory(pid, db_addr, out, sizeof(*out)) < 0)
		return errno == ESRCH ? READER_NO_PROCESS : READER_PERMISSION;
	return READER_OK;
}

static enum reader_error check_header(const struct htrace_db *db, char *why, size_t len)
{
	if (db->magic == 0) {
		snprintf(why, len, "the agent is loaded but has not started yet");
		return READER_NOT_READY;
	}
	if (db->magic != HTRACE_DB_MAGIC || db->version != HTRACE_DB_VERSION) {
		snprintf(why, len,
			 "the database was written by an incompatible agent (version %u, this htrace reads %u)",
			 db->version, (unsigned)HTRACE_DB_VERSION);
		return READER_VERSION;
	}
	if (db->size != sizeof(*db) || db->api_hash != htrace_api_hash()) {
		snprintf(why, len, "the database was written by an incompatible agent (version %u, but "
			 "another build: its layout or API table differs from this htrace's)", db->version);
		return READER_VERSION;
	}
	if (db->ring_capacity > MAX_RING_EVENTS || db->ring_reserved > MAX_RING_EVENTS ||
	    db->module_capacity > MAX_MODULES || db->depot_bytes > MAX_DEPOT ||
	    db->stack_depth > HTRACE_MAX_DEPTH) {
		snprintf(why, len, "the database header is corrupt (sizes out of range)");
		return READER_CORRUPT;
	}
	if (db->mailbox_seq == UINT64_MAX) { /* no count of requests gets there */
		snprintf(why, len, "the database header is corrupt (request count out of range)");
		return READER_CORRUPT;
	}
	return READER_OK;
}

/* Whether a torn slot or record may be read once more: not once the
 * reading has made MAX_REREADS (it is then left out at once, so that a
 * database that stays half written is not read for hours). */
static int reread_allowed(struct rereads *r)
{
	if (r->left == 0)
		return 0;
	r->left--;
	return 1;
}

/* Reads one slot until a copy is bracketed by the same even generation. */
static int read_slot(pid_t pid, uint64_t addr, struct htrace_fd_slot *out, struct rereads *r)
{
	for (int tries = 0; tries < MAX_RETRIES && reread_allowed(r); tries++) {
		uint32_t gen_after;
		if (read_memory(pid, addr, out, sizeof(*out)) < 0 ||
		    read_memory(pid, addr, &gen_after, sizeof(gen_after)) < 0)
			return -1;
		if (!(out->gen & 1) && out->gen == gen_after)
			return 0;
	}
	out->state = HTRACE_FD_CLOSED; /* never whole: leave it out */
	r->torn++;
	return 0;
}

/* A chunk copied whole, then its generations read again: a slot whose
 * generation is odd or moved between the two was being written, and is
 * read again on its own. */
static int read_chunk(pid_t pid, uint64_t addr, struct htrace_fd_slot *chunk,
		      struct htrace_fd_slot *again, struct rereads *r)
{
	size_t bytes = HTRACE_FDTAB_CHUNK * sizeof(*chunk);
	if (read_memory(pid, addr, chunk, bytes) < 0 || read_memory(pid, addr, again, bytes) < 0)
		return -1;
	for (unsigned i = 0; i < HTRACE_FDTAB_CHUNK; i++)
		if ((chunk[i].gen & 1) || chunk[i].gen != again[i].gen)
			if (read_slot(pid, addr + i * sizeof(*chunk), &chunk[i], r) < 0)
				return -1;
	return 0;
}

static int append_open(struct target_db *t, int fd, const struct htrace_fd_slot *slot,
		       size_t *cap)
{
	if (t->nopen == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		struct open_slot *grown = realloc(t->open, *cap * sizeof(*grown));
		if (!grown)
			return -1;
		t->open = grown;
	}
	t->open[t->nopen].fd = fd;
	t->open[t->nopen].slot = *slot;
	t->nopen++;
	return 0;
}

static int event_is_whole(const struct htrace_event *e)
{
	return e->seq != 0 && e->seq == e->seq_end;
}

/* An event an agent could have written: its kind, API and descriptor in
 * range; else the database is corrupt (errno EBADMSG). */
static int event_plausible(const struct htrace_event *e)
{
	if (e->kind >= HTRACE_OPEN && e->kind <= HTRACE_BAD_REFERENCE && e->api < HTRACE_API_COUNT &&
	    e->fd >= 0)
		return 1;
	errno = EBADMSG;
	return 0;
}

static int read_table(struct target_db *t)
{
	uint64_t *top = calloc(HTRACE_FDTAB_TOP, sizeof(*top));
	struct htrace_fd_slot *chunk = malloc(HTRACE_FDTAB_CHUNK * sizeof(*chunk));
	struct htrace_fd_slot *again = malloc(HTRACE_FDTAB_CHUNK * sizeof(*again));
	size_t cap = 0;
	int rc = (top && chunk && again) ? 0 : -1;
	if (!rc)
		rc = read_memory(t->pid, t->db.fdtab_addr, top, HTRACE_FDTAB_TOP * sizeof(*top));
	for (unsigned c = 0; !rc && c < HTRACE_FDTAB_TOP; c++) {
		if (!top[c])
			continue;
		rc = read_chunk(t->pid, top[c], chunk, again, &t->rereads);
		for (unsigned i = 0; !rc && i < HTRACE_FDTAB_CHUNK; i++)
			if (htrace_slot_current(t->db.state, t->db.trace_from_seq, chunk[i].state,
						chunk[i].open.seq))
				rc = event_plausible(&chunk[i].open)
					     ? append_open(t, (int)(c * HTRACE_FDTAB_CHUNK + i),
							   &chunk[i], &cap)
					     : -1;
	}
	free(top);
	free(chunk);
	free(again);
	return rc;
}

static int by_seq(const void *a, const void *b)
{
	uint64_t x = ((const struct htrace_event *)a)->seq, y = ((const struct htrace_event *)b)->seq;
	return x < y ? -1 : x > y;
}

/* How many of the ring's records from its start may have been written:
 * its capacity, or less while the ring has not gone round once (the count
 * of records handed out, read after the header, covers every event the
 * header counts; one that cannot be read leaves the whole ring). */
static uint32_t ring_records_used(const struct target_db *t)
{
	uint32_t capacity = t->db.ring_capacity;
	uint64_t taken;
	if (!t->db.ring_taken_addr ||
	    read_memory(t->pid, t->db.ring_taken_addr, &taken, sizeof(taken)) < 0)
		return capacity;
	uint64_t used = taken > t->db.next_seq ? taken : t->db.next_seq;
	return used < capacity ? (uint32_t)used : capacity;
}

static int read_ring(struct target_db *t)
{
	uint32_t n = t->db.ring_addr ? ring_records_used(t) : 0;
	if (!n)
		return 0;
	t->events = malloc((size_t)n * sizeof(*t->events));
	if (!t->events || read_memory(t->pid, t->db.ring_addr, t->events, (size_t)n * sizeof(*t->events)) < 0)
		return -1;
	size_t kept = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct htrace_event *e = &t->events[i];
		for (int tries = 0; e->seq && !event_is_whole(e) && tries < MAX_RETRIES &&
				    reread_allowed(&t->rereads);
		     tries++)
			if (read_memory(t->pid, t->db.ring_addr + i * sizeof(*e), e, sizeof(*e)) < 0)
				return -1;
		t->rereads.torn += e->seq && !event_is_whole(e);
		/* at any place (threads write runs of their own), and of this
		 * tracing period only (an earlier one's are discarded, db.h) */
		if (event_is_whole(e) && e->seq <= t->db.next_seq && e->seq >= t->db.trace_from_seq) {
			if (!event_plausible(e))
				return -1;
			t->events[kept++] = *e;
		}
	}
	t->nevents = kept;
	qsort(t->events, kept, sizeof(*t->events), by_seq);
	return 0;
}

static int read_modules(struct target_db *t)
{
	uint32_t count;
	if (read_memory(t->pid, t->db_addr + offsetof(struct htrace_db, module_count), &count,
			sizeof(count)) < 0)
		return -1;
	size_t n = count;
	if (n > t->db.module_capacity)
		n = t->db.module_capacity;
	if (!n || !t->db.modules_addr)
		return 0;
	t->modules = calloc(n, sizeof(*t->modules));
	if (!t->modules || read_memory(t->pid, t->db.modules_addr, t->modules, n * sizeof(*t->modules)) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		t->modules[i].path[sizeof(t->modules[i].path) - 1] = '\0';
	t->nmodules = n;
	return 0;
}

/* Read last, with depot_used read afresh: every stack named by the events
 * and slots already copied is then inside the copy. */
static int read_depot(struct target_db *t)
{
	uint64_t used;
	if (read_memory(t->pid, t->db_addr + offsetof(struct htrace_db, depot_used), &used,
			sizeof(used)) < 0)
		return -1;
	if (!t->db.depot_addr || used <= 8)
		return 0;
	if (used > t->db.depot_bytes)
		used = t->db.depot_bytes;
	t->depot = malloc(used);
	if (!t->depot || read_memory(t->pid, t->db.depot_addr, t->depot, used) < 0)
		return -1;
	t->depot_len = used;
	return 0;
}

const struct htrace_stack *target_stack(const struct target_db *t, uint32_t id)
{
	if (!id || id % 8 || (uint64_t)id + sizeof(struct htrace_stack) > t->depot_len)
		return NULL;
	const struct htrace_stack *s = (const struct htrace_stack *)(t->depot + id);
	if (s->depth > HTRACE_MAX_DEPTH ||
	    id + sizeof(*s) + s->depth * sizeof(uint64_t) > t->depot_len)
		return NULL;
	return s;
}

static enum reader_error locate(pid_t pid, struct target_db *t, char *why, size_t len)
{
	struct agent_mapping map;
	int rc = find_agent_mapping(pid, &map);
	if (rc == -ENOENT) {
		snprintf(why, len, "process %d does not have the htrace agent loaded (start it with "
			 "`htrace run` or LD_PRELOAD=.../%s)", (int)pid, AGENT_BASENAME);
		return READER_NO_AGENT;
	}
	if (rc == -EACCES || rc == -EPERM) {
		explain_permission(pid, why, len);
		return READER_PERMISSION;
	}
	if (rc < 0) {
		snprintf(why, len, "no such process: %d", (int)pid);
		return READER_NO_PROCESS;
	}
	/* the file as the process loaded it, even if replaced on disk since */
	t->db_addr = symbol_address(map.mapped_file, map.base, HTRACE_DB_SYMBOL);
	if (!t->db_addr)
		t->db_addr = symbol_address(map.path, map.base, HTRACE_DB_SYMBOL);
	if (!t->db_addr) {
		snprintf(why, len, "%s in process %d has no %s symbol", map.path, (int)pid,
			 HTRACE_DB_SYMBOL);
		return READER_VERSION;
	}
	return READER_OK;
}

enum reader_error reader_attach(pid_t pid, struct target_db *t, char *why, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	enum reader_error err = locate(pid, t, why, len);
	if (err)
		return err;
	if ((err = reader_header(pid, t->db_addr, &t->db))) {
		if (err == READER_PERMISSION)
			explain_permission(pid, why, len);
		else
			snprintf(why, len, "no such process: %d", (int)pid);
		return err;
	}
	if ((err = check_header(&t->db, why, len)))
		return err;
	t->db.exe[sizeof(t->db.exe) - 1] = '\0';
	t->db.failure[sizeof(t->db.failure) - 1] = '\0';
	t->db.exec_path[sizeof(t->db.exec_path) - 1] = '\0';
	t->db.exec_from[sizeof(t->db.exec_from) - 1] = '\0';
	return READER_OK;
}

/* More torn slots and records than any process could leave: errno EAGAIN. */
static int too_torn(const struct target_db *t)
{
	if (t->rereads.torn <= MAX_TORN)
		return 0;
	errno = EAGAIN;
	return 1;
}

enum reader_error reader_open(pid_t pid, struct target_db *t, char *why, size_t len)
{
	enum reader_error err = reader_attach(pid, t, why, len);
	if (err)
		return err;
	t->rereads = (struct rereads){ .left = MAX_REREADS };
	if (read_table(t) < 0 || read_ring(t) < 0 || read_depot(t) < 0 || read_modules(t) < 0 ||
	    too_torn(t)) {
		if (errno == EAGAIN)
			snprintf(why, len, "the trace database of process %d stays half written (%u "
				 "descriptor slots and ring records torn after re-reading): it is corrupt",
				 (int)pid, t->rereads.torn);
		else if (errno == EBADMSG)
			snprintf(why, len, "the trace database of process %d holds an event that no "
				 "agent writes (kind, API or descriptor out of range): it is corrupt",
				 (int)pid);
		else
			snprintf(why, len, "cannot read the trace database of process %d: %s", (int)pid,
				 strerror(errno));
		reader_free(t);
		return errno == ESRCH ? READER_NO_PROCESS : READER_CORRUPT;
	}
	return READER_OK;
}

void reader_free(struct target_db *t)
{
	free(t->open);
	free(t->events);
	free(t->modules);
	free(t->depot);
	memset(t, 0, sizeof(*t));
}
