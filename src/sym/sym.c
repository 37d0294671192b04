/* The symbolizer: maps PCs of a traced process to module, function, offset
 * and file:line with elfutils libdwfl, preferring DWARF over ELF symbols,
 * expands the functions inlined at a PC from DWARF, and caches every answer
 * per (pc, is_return_address). */

#include "sym/sym.h"

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_INITIAL_CAPACITY 256 /* a power of two */
#define PATHS_INITIAL_CAPACITY 64 /* a power of two */

struct loaded_module {
	uint64_t start, end;
	uint64_t bias;
	char *path;
	const char *name; /* basename, inside path */
	Dwfl_Module *dwfl_module; /* NULL when the file could not be reported */
};

struct cache_slot {
	int used;
	int is_return_address;
	struct sym_frame frame;
	int inline_done; /* inline_frames/inline_count hold the answer */
	size_t inline_count; /* 0: nothing inlined at pc, frame is the answer */
	struct sym_frame *inline_frames; /* malloc'ed, inline_count of them */
};

/* Source paths this file built, each kept once until sym_close. */
struct path_set {
	char **paths;
	size_t capacity; /* a power of two, or 0 while empty */
	size_t count;
};

struct symbolizer {
	Dwfl *dwfl;
	struct loaded_module *modules;
	size_t module_count;
	struct cache_slot *slots;
	size_t capacity; /* a power of two, or 0 without a cache */
	size_t used_slots;
	struct path_set joined_paths;
};

/* What explains a lookup address: a function's name and absolute start. */
struct function_match {
	const char *name;
	uint64_t start;
	int guess;
};

static const Dwfl_Callbacks offline_callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

static const char *basename_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

int sym_open_elf_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

/* Reports one module to dwfl; a file that cannot be opened, or is not a
 * regular file, leaves it NULL. */
static void report_module(Dwfl *dwfl, struct loaded_module *module)
{
	int fd = sym_open_elf_file(module->path);
	module->dwfl_module =
		fd < 0 ? NULL : dwfl_report_elf(dwfl, module->name, module->path, fd, module->bias, true);
	if (fd >= 0 && !module->dwfl_module)
		close(fd); /* consumed only on success */
}

static int copy_modules(struct symbolizer *s, const struct sym_module *mods,
			size_t n)
{
	s->modules = calloc(n ? n : 1, sizeof(*s->modules));
	if (!s->modules)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct loaded_module *module = &s->modules[i];
		module->start = mods[i].start;
		module->end = mods[i].end;
		module->bias = mods[i].bias;
		module->path = strdup(mods[i].path ? mods[i].path : "?");
		if (!module->path)
			return -1;
		module->name = basename_of(module->path);
		s->module_count++;
	}
	return 0;
}

static int open_dwfl(struct symbolizer *s)
{
	s->dwfl = dwfl_begin(&offline_callbacks);
	if (!s->dwfl)
		return -1;
	dwfl_report_begin(s->dwfl);
	/* A relative path ("linux-vdso.so.1") means nothing in this process. */
	for (size_t i = 0; i < s->module_count; i++)
		if (s->modules[i].path[0] == '/')
			report_module(s->dwfl, &s->modules[i]);
	return dwfl_report_end(s->dwfl, NULL, NULL) == 0 ? 0 : -1;
}

struct symbolizer *sym_open(const struct sym_module *mods, size_t n)
{
	struct symbolizer *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (copy_modules(s, mods, n) < 0 || open_dwfl(s) < 0) {
		sym_close(s);
		errno = ENOMEM;
		return NULL;
	}
	return s;
}

void sym_close(struct symbolizer *s)
{
	if (!s)
		return;
	if (s->dwfl)
		dwfl_end(s->dwfl);
	for (size_t i = 0; i < s->module_count; i++)
		free(s->modules[i].path);
	free(s->modules);
	for (size_t i = 0; i < s->capacity; i++)
		free(s->slots[i].inline_frames);
	free(s->slots);
	for (size_t i = 0; i < s->joined_paths.capacity; i++)
		free(s->joined_paths.paths[i]);
	free(s->joined_paths.paths);
	free(s);
}

static const struct loaded_module *module_containing(const struct symbolizer *s,
						     uint64_t pc)
{
	for (size_t i = 0; i < s->module_count; i++)
		if (s->modules[i].start <= pc && pc < s->modules[i].end)
			return &s->modules[i];
	return NULL;
}

/* ---- functions from DWARF ---- */

static const char *subprogram_name(Dwarf_Die *die)
{
	Dwarf_Attribute attr;
	const char *name = dwarf_diename(die);
	if (!name)
		name = dwarf_formstring(
			dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
	return name;
}

static int range_start_containing(Dwarf_Die *die, Dwarf_Addr addr,
				  Dwarf_Addr *start)
{
	Dwarf_Addr base, low, high;
	ptrdiff_t offset = 0;
	while ((offset = dwarf_ranges(die, offset, &base, &low, &high)) > 0) {
		if (low <= addr && addr < high) {
			*start = low;
			return 1;
		}
	}
	return 0;
}

/* The function's entry, or the start of its part holding addr when the entry
 * lies above addr (a .cold part placed before the function). */
static int subprogram_start(Dwarf_Die *die, Dwarf_Addr addr, Dwarf_Addr *start)
{
	Dwarf_Addr entry;
	if (dwarf_entrypc(die, &entry) == 0 && entry <= addr) {
		*start = entry;
		return 1;
	}
	return range_start_containing(die, addr, start);
}

static int describe_subprogram(Dwarf_Die *die, Dwarf_Addr addr,
			       Dwarf_Addr bias, struct function_match *fn)
{
	Dwarf_Addr start;
	const char *name = subprogram_name(die);
	if (!name || !subprogram_start(die, addr, &start))
		return 0;
	fn->name = name;
	fn->start = start + bias;
	fn->guess = 0;
	return 1;
}

/* The DIEs that physically hold addr, innermost first: lexical blocks and
 * inlined instances, then the subprogram they are part of, ..., the CU.
 * dwarf_getscopes alone is not enough: past an inlined instance it goes on
 * with the scopes of its abstract origin, never reaching the function the
 * code was inlined into, so its innermost DIE is walked out from again, as
 * eu-addr2line -i does.  *scopes is malloc'ed; returns their count, or 0
 * (*scopes NULL) when none. */
static int physical_scopes(Dwfl_Module *mod, uint64_t addr, Dwarf_Addr *bias,
			   Dwarf_Die **cu, Dwarf_Die **scopes)
{
	Dwarf_Die *lexical = NULL;
	*scopes = NULL;
	*cu = dwfl_module_addrdie(mod, addr, bias);
	if (!*cu)
		return 0;
	int count = dwarf_getscopes(*cu, addr - *bias, &lexical);
	if (count <= 0) {
		free(lexical);
		return 0;
	}
	Dwarf_Die innermost = lexical[0];
	free(lexical);
	count = dwarf_getscopes_die(&innermost, scopes);
	if (count <= 0) {
		free(*scopes);
		*scopes = NULL;
		return 0;
	}
	return count;
}

static int function_from_dwarf(Dwfl_Module *mod, uint64_t addr,
			       struct function_match *fn)
{
	Dwarf_Addr bias;
	Dwarf_Die *cu, *scopes;
	int count = physical_scopes(mod, addr, &bias, &cu, &scopes);
	int found = 0;
	for (int i = 0; i < count && !found; i++)
		if (dwarf_tag(&scopes[i]) == DW_TAG_subprogram)
			found = describe_subprogram(&scopes[i], addr - bias,
						    bias, fn);
	free(scopes);
	return found;
}

/* ---- functions from ELF symbol tables ---- */

static int is_defined_function(const GElf_Sym *sym, const char *name)
{
	int type = GELF_ST_TYPE(sym->st_info);
	return name && name[0] && sym->st_shndx != SHN_UNDEF &&
	       (type == STT_FUNC || type == STT_GNU_IFUNC);
}

/* The closest function symbol at or below addr, whatever its size. */
static int nearest_preceding_function(Dwfl_Module *mod, uint64_t addr,
				      struct function_match *fn)
{
	int count = dwfl_module_getsymtab(mod);
	int found = 0;
	for (int i = 1; i < count; i++) {
		GElf_Sym sym;
		GElf_Addr value;
		const char *name = dwfl_module_getsym_info(mod, i, &sym, &value,
							   NULL, NULL, NULL);
		if (!is_defined_function(&sym, name) || value > addr ||
		    (found && value <= fn->start))
			continue;
		fn->name = name;
		fn->start = value;
		found = 1;
	}
	fn->guess = 1;
	return found;
}

static int function_from_symtab(Dwfl_Module *mod, uint64_t addr,
				struct function_match *fn)
{
	GElf_Off offset;
	GElf_Sym sym;
	const char *name = dwfl_module_addrinfo(mod, addr, &offset, &sym, NULL,
						NULL, NULL);
	if (!name)
		return nearest_preceding_function(mod, addr, fn);
	fn->name = name;
	fn->start = addr - offset;
	fn->guess = sym.st_size == 0 || offset >= sym.st_size;
	return 1;
}

/* ---- the function and its offset ---- */

static void describe_function(Dwfl_Module *mod, uint64_t pc, uint64_t addr,
			      struct sym_frame *out)
{
	struct function_match fn;
	if (!function_from_dwarf(mod, addr, &fn) &&
	    !function_from_symtab(mod, addr, &fn))
		return;
	out->function = fn.name;
	out->offset = pc - fn.start;
	out->guess = fn.guess;
}

/* ---- source paths made absolute, kept in a set ---- */

static size_t string_hash(const char *text)
{
	size_t h = 14695981039346656037ULL; /* FNV-1a */
	for (; *text; text++)
		h = (h ^ (unsigned char)*text) * 1099511628211ULL;
	return h;
}

static char **find_path(char **paths, size_t capacity, const char *path)
{
	size_t mask = capacity - 1;
	size_t i = string_hash(path) & mask;
	while (paths[i] && strcmp(paths[i], path) != 0)
		i = (i + 1) & mask;
	return &paths[i];
}

static int grow_path_set(struct path_set *set)
{
	size_t capacity = set->capacity ? set->capacity * 2 : PATHS_INITIAL_CAPACITY;
	char **paths = calloc(capacity, sizeof(*paths));
	if (!paths)
		return -1;
	for (size_t i = 0; i < set->capacity; i++)
		if (set->paths[i])
			*find_path(paths, capacity, set->paths[i]) = set->paths[i];
	free(set->paths);
	set->paths = paths;
	set->capacity = capacity;
	return 0;
}

/* Takes ownership of path; returns the kept copy, or NULL (path freed). */
static const char *keep_path(struct path_set *set, char *path)
{
	if ((set->count + 1) * 2 > set->capacity && grow_path_set(set) < 0) {
		free(path);
		return NULL;
	}
	char **slot = find_path(set->paths, set->capacity, path);
	if (*slot) {
		free(path);
		return *slot;
	}
	set->count++;
	return *slot = path;
}

/* file itself when absolute, else comp_dir/file kept in the set. */
static const char *absolute_source_path(struct symbolizer *s, const char *file,
					const char *comp_dir)
{
	char *joined;
	if (file[0] == '/' || !comp_dir || !comp_dir[0])
		return file;
	if (asprintf(&joined, "%s/%s", comp_dir, file) < 0)
		return file;
	const char *kept = keep_path(&s->joined_paths, joined);
	return kept ? kept : file;
}

static void describe_source(struct symbolizer *s, Dwfl_Module *mod,
			    uint64_t addr, struct sym_frame *out)
{
	Dwfl_Line *line = dwfl_module_getsrc(mod, addr);
	if (!line)
		return;
	int lineno = 0;
	const char *file = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
	if (file && lineno > 0) {
		out->file = absolute_source_path(s, file, dwfl_line_comp_dir(line));
		out->line = lineno;
	}
}

/* ---- resolving ---- */

static uint64_t lookup_address(uint64_t pc, int is_return_address)
{
	return is_return_address && pc > 0 ? pc - 1 : pc;
}

static void resolve_uncached(struct symbolizer *s, uint64_t pc,
			     int is_return_address, struct sym_frame *out)
{
	memset(out, 0, sizeof(*out));
	out->pc = pc;
	out->module = "?";
	const struct loaded_module *module = module_containing(s, pc);
	if (!module)
		return;
	out->module = module->name;
	if (!module->dwfl_module)
		return;
	uint64_t addr = lookup_address(pc, is_return_address);
	describe_function(module->dwfl_module, pc, addr, out);
	describe_source(s, module->dwfl_module, addr, out);
}

/* ---- inlined functions ---- */

/* The CU's file table and compilation directory, for DW_AT_call_file. */
struct cu_files {
	Dwarf_Files *files; /* NULL without a line table */
	const char *comp_dir;
};

static void cu_files_of(Dwarf_Die *cu, struct cu_files *out)
{
	Dwarf_Attribute attr;
	size_t count;
	if (dwarf_getsrcfiles(cu, &out->files, &count) != 0)
		out->files = NULL;
	out->comp_dir = dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &attr));
}

/* Where the inlined instance die was called from, into frame->file/line. */
static void describe_call_site(struct symbolizer *s, Dwarf_Die *die,
			       const struct cu_files *cu, struct sym_frame *frame)
{
	Dwarf_Attribute attr;
	Dwarf_Word file_index, line;
	const char *file;
	frame->file = NULL;
	frame->line = 0;
	if (!cu->files ||
	    dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &file_index) != 0 ||
	    dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &line) != 0 ||
	    line == 0 || line > INT_MAX ||
	    !(file = dwarf_filesrc(cu->files, file_index, NULL, NULL)))
		return;
	frame->file = absolute_source_path(s, file, cu->comp_dir);
	frame->line = (int)line;
}

static size_t count_inlined(Dwarf_Die *scopes, int count, int *subprogram)
{
	size_t inlined = 0;
	for (int i = 0; i < count; i++) {
		int tag = dwarf_tag(&scopes[i]);
		if (tag == DW_TAG_subprogram) {
			*subprogram = i;
			return inlined;
		}
		inlined += tag == DW_TAG_inlined_subroutine;
	}
	*subprogram = -1;
	return 0;
}

/* Fills frames[0 .. inlined]: frame k is named after the kth inlined
 * instance of scopes, innermost first, and placed where the one before it
 * was called from (frame 0 at base, the line table's answer); the last is
 * the out-of-line function scopes[subprogram]. */
static void fill_inline_frames(struct symbolizer *s, const struct sym_frame *base,
			       Dwarf_Die *scopes, int subprogram,
			       const struct cu_files *cu, struct sym_frame *frames)
{
	size_t k = 0;
	frames[0] = *base;
	for (int i = 0; i < subprogram; i++) {
		if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine)
			continue;
		frames[k].function = subprogram_name(&scopes[i]);
		frames[k].inlined = 1;
		frames[k].guess = 0;
		frames[k + 1] = *base;
		describe_call_site(s, &scopes[i], cu, &frames[k + 1]);
		k++;
	}
	const char *name = subprogram_name(&scopes[subprogram]);
	if (name) {
		frames[k].function = name;
		frames[k].guess = 0;
	}
	frames[k].inlined = 0;
}

/* The frames of the functions inlined at pc and of the one they are part
 * of, into a malloc'ed *out.  Returns their count; 0 (*out NULL) when
 * nothing is inlined there, base then being the answer; -1 when out of
 * memory. */
static long inline_frames(struct symbolizer *s, uint64_t pc, int is_return_address,
			  const struct sym_frame *base, struct sym_frame **out)
{
	*out = NULL;
	const struct loaded_module *module = module_containing(s, pc);
	if (!module || !module->dwfl_module)
		return 0;
	Dwarf_Addr bias;
	Dwarf_Die *cu, *scopes;
	int count = physical_scopes(module->dwfl_module,
				    lookup_address(pc, is_return_address),
				    &bias, &cu, &scopes);
	int subprogram;
	size_t inlined = count_inlined(scopes, count, &subprogram);
	long result = 0;
	if (inlined) {
		*out = calloc(inlined + 1, sizeof(**out));
		if (*out) {
			struct cu_files files;
			cu_files_of(cu, &files);
			fill_inline_frames(s, base, scopes, subprogram, &files, *out);
			result = (long)inlined + 1;
		} else {
			result = -1;
		}
	}
	free(scopes);
	return result;
}

static size_t copy_frames(const struct sym_frame *from, size_t count,
			  struct sym_frame *to, size_t max)
{
	size_t n = count < max ? count : max;
	memcpy(to, from, n * sizeof(*to));
	return n;
}

static size_t resolve_inlined_uncached(struct symbolizer *s, uint64_t pc,
				       int is_return_address,
				       struct sym_frame *frames, size_t max)
{
	struct sym_frame base, *expanded;
	resolve_uncached(s, pc, is_return_address, &base);
	long count = inline_frames(s, pc, is_return_address, &base, &expanded);
	if (count <= 0)
		return copy_frames(&base, 1, frames, max);
	size_t n = copy_frames(expanded, (size_t)count, frames, max);
	free(expanded);
	return n;
}

/* ---- the cache: open addressing with linear probing ---- */

static size_t slot_hash(uint64_t pc, int is_return_address)
{
	uint64_t h = (pc ^ ((uint64_t)is_return_address << 63)) *
		     0x9e3779b97f4a7c15ULL;
	return (size_t)(h ^ (h >> 32));
}

static struct cache_slot *find_slot(struct cache_slot *slots, size_t capacity,
				    uint64_t pc, int is_return_address)
{
	size_t mask = capacity - 1;
	size_t i = slot_hash(pc, is_return_address) & mask;
	while (slots[i].used && (slots[i].frame.pc != pc ||
				 slots[i].is_return_address != is_return_address))
		i = (i + 1) & mask;
	return &slots[i];
}

static int grow_cache(struct symbolizer *s)
{
	size_t capacity = s->capacity ? s->capacity * 2 : CACHE_INITIAL_CAPACITY;
	struct cache_slot *slots = calloc(capacity, sizeof(*slots));
	if (!slots)
		return -1;
	for (size_t i = 0; i < s->capacity; i++) {
		const struct cache_slot *old = &s->slots[i];
		if (old->used)
			*find_slot(slots, capacity, old->frame.pc,
				   old->is_return_address) = *old;
	}
	free(s->slots);
	s->slots = slots;
	s->capacity = capacity;
	return 0;
}

/* The slot for the key, or NULL when the cache cannot hold one more entry. */
static struct cache_slot *cache_slot_for(struct symbolizer *s, uint64_t pc,
					 int is_return_address)
{
	if (s->capacity) {
		struct cache_slot *slot =
			find_slot(s->slots, s->capacity, pc, is_return_address);
		if (slot->used)
			return slot;
	}
	if ((s->used_slots + 1) * 2 > s->capacity && grow_cache(s) < 0)
		return NULL;
	return find_slot(s->slots, s->capacity, pc, is_return_address);
}

/* The slot holding the frame of the key, resolved now when new; NULL when
 * the cache cannot hold one more entry. */
static struct cache_slot *resolved_slot(struct symbolizer *s, uint64_t pc,
					int is_return_address)
{
	struct cache_slot *slot = cache_slot_for(s, pc, is_return_address);
	if (slot && !slot->used) {
		resolve_uncached(s, pc, is_return_address, &slot->frame);
		slot->is_return_address = is_return_address;
		slot->used = 1;
		s->used_slots++;
	}
	return slot;
}

void sym_resolve(struct symbolizer *s, uint64_t pc, int is_return_address,
		 struct sym_frame *out)
{
	is_return_address = is_return_address != 0;
	struct cache_slot *slot = resolved_slot(s, pc, is_return_address);
	if (slot)
		*out = slot->frame;
	else
		resolve_uncached(s, pc, is_return_address, out);
}

size_t sym_resolve_inlined(struct symbolizer *s, uint64_t pc, int is_return_address,
			   struct sym_frame *frames, size_t max)
{
	if (max == 0)
		return 0;
	is_return_address = is_return_address != 0;
	struct cache_slot *slot = resolved_slot(s, pc, is_return_address);
	if (!slot)
		return resolve_inlined_uncached(s, pc, is_return_address, frames, max);
	if (!slot->inline_done) {
		long count = inline_frames(s, pc, is_return_address, &slot->frame,
					   &slot->inline_frames);
		if (count < 0) /* out of memory: the frame alone, not cached */
			return copy_frames(&slot->frame, 1, frames, max);
		slot->inline_count = (size_t)count;
		slot->inline_done = 1;
	}
	if (!slot->inline_count)
		return copy_frames(&slot->frame, 1, frames, max);
	return copy_frames(slot->inline_frames, slot->inline_count, frames, max);
}
