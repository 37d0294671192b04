/* Unit test of the symbolizer: maps this program and libc with
 * dl_iterate_phdr, then resolves addresses whose answers it knows. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "check.h"
#include "sym/sym.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <link.h>
#include <unistd.h>

#define MAX_MODULES 4

struct module_list {
	struct sym_module mods[MAX_MODULES];
	char paths[MAX_MODULES][PATH_MAX];
	size_t count;
};

__attribute__((noinline)) void *sym_test_target(void)
{
	return __builtin_return_address(0);
}

#ifdef __x86_64__
/* A one-byte function followed by code no symbol or DWARF describes, like an
 * internal function of a stripped library after an exported one. */
void sym_test_asm_exported(void);
__asm__(".pushsection .text\n"
	".globl sym_test_asm_exported\n"
	".type sym_test_asm_exported, @function\n"
	"sym_test_asm_exported:\n"
	"	ret\n"
	".size sym_test_asm_exported, 1\n"
	"	nop; nop; nop; nop; nop; nop; nop; nop\n"
	"	ret\n"
	".popsection\n");
#endif

#ifdef __x86_64__
/* Code inlined twice over: always_inline inlines even at -O0, and gcc then
 * describes it with DW_TAG_inlined_subroutine.  Each line number is taken on
 * the line it names. */
struct inline_site {
	uint64_t pc; /* inside inner_pc, inside middle_pc, inside the host */
	int lea_line, middle_call_line, host_call_line;
};

static inline __attribute__((always_inline)) uint64_t inner_pc(struct inline_site *site)
{
	uint64_t pc;
	/* The lea's own address, inside this inlined body at any -O level. */
	site->lea_line = __LINE__; __asm__ volatile("1: lea 1b(%%rip), %0" : "=r"(pc));
	return pc;
}

static inline __attribute__((always_inline)) void middle_pc(struct inline_site *site)
{
	site->middle_call_line = __LINE__; site->pc = inner_pc(site);
}

__attribute__((noinline)) void sym_inline_host(struct inline_site *site)
{
	site->host_call_line = __LINE__; middle_pc(site);
}
#endif

static const char *name_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static int is_libc(const char *path)
{
	return strcmp(name_of(path), "libc.so.6") == 0;
}

static int main_program_path(char *path)
{
	ssize_t len = readlink("/proc/self/exe", path, PATH_MAX - 1);
	if (len <= 0)
		return -1;
	path[len] = '\0';
	return 0;
}

static void set_load_range(struct sym_module *mod, const struct dl_phdr_info *info)
{
	mod->start = UINT64_MAX;
	mod->end = 0;
	mod->bias = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t start = info->dlpi_addr + ph->p_vaddr;
		if (start < mod->start)
			mod->start = start;
		if (start + ph->p_memsz > mod->end)
			mod->end = start + ph->p_memsz;
	}
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct module_list *list = arg;
	(void)size;
	if (list->count == MAX_MODULES)
		return 0;
	char *path = list->paths[list->count];
	if (info->dlpi_name[0] == '\0') {
		if (main_program_path(path) < 0)
			return 0;
	} else if (is_libc(info->dlpi_name)) {
		snprintf(path, PATH_MAX, "%s", info->dlpi_name);
	} else {
		return 0;
	}
	struct sym_module *mod = &list->mods[list->count++];
	set_load_range(mod, info);
	mod->path = path;
	return 0;
}

static const struct sym_module *find_libc(const struct module_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		if (is_libc(list->mods[i].path))
			return &list->mods[i];
	return NULL;
}

/* ---- an address in libc that no exported function covers ---- */

static int by_value(const void *a, const void *b)
{
	const GElf_Sym *x = a, *y = b;
	return x->st_value < y->st_value ? -1 : x->st_value > y->st_value;
}

static size_t sized_functions(Elf *elf, GElf_Sym **out)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr shdr;
	while ((scn = elf_nextscn(elf, scn)) && gelf_getshdr(scn, &shdr))
		if (shdr.sh_type == SHT_DYNSYM)
			break;
	if (!scn || !shdr.sh_entsize)
		return 0;
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t total = shdr.sh_size / shdr.sh_entsize, count = 0;
	*out = calloc(total, sizeof(**out));
	for (size_t i = 0; data && *out && i < total; i++) {
		GElf_Sym sym;
		int type;
		if (!gelf_getsym(data, i, &sym))
			continue;
		type = GELF_ST_TYPE(sym.st_info);
		if ((type == STT_FUNC || type == STT_GNU_IFUNC) && sym.st_size &&
		    sym.st_shndx != SHN_UNDEF)
			(*out)[count++] = sym;
	}
	qsort(*out, count, sizeof(**out), by_value);
	return count;
}

/* The middle of the first gap of 32 bytes or more between the exported
 * functions of one section; 0 when there is none. */
static uint64_t first_gap(const GElf_Sym *syms, size_t count)
{
	uint64_t covered_to = 0;
	for (size_t i = 0; i + 1 < count; i++) {
		if (syms[i].st_value + syms[i].st_size > covered_to)
			covered_to = syms[i].st_value + syms[i].st_size;
		if (syms[i].st_shndx == syms[i + 1].st_shndx &&
		    covered_to + 32 <= syms[i + 1].st_value)
			return covered_to + (syms[i + 1].st_value - covered_to) / 2;
	}
	return 0;
}

static uint64_t unexported_libc_address(const struct sym_module *libc)
{
	uint64_t address = 0;
	GElf_Sym *syms = NULL;
	int fd = open(libc->path, O_RDONLY);
	if (fd < 0 || elf_version(EV_CURRENT) == EV_NONE)
		return 0;
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	if (elf) {
		size_t count = sized_functions(elf, &syms);
		uint64_t vaddr = first_gap(syms, count);
		if (vaddr)
			address = libc->bias + vaddr;
		elf_end(elf);
	}
	free(syms);
	close(fd);
	return address;
}

/* ---- the checks ---- */

static void check_function_body(struct symbolizer *s, const char *exe_name)
{
	struct sym_frame f;
	uint64_t pc = (uint64_t)(uintptr_t)&sym_test_target + 4;
	sym_resolve(s, pc, 0, &f);
	CHECK_EQ_INT(f.pc, pc);
	CHECK_EQ_STR(f.module, exe_name);
	CHECK_EQ_STR(f.function, "sym_test_target");
	CHECK_EQ_INT(f.offset, 4);
	CHECK(f.file != NULL);
	CHECK(strlen(f.file) >= strlen("test_sym.c"));
	CHECK_EQ_STR(f.file + strlen(f.file) - strlen("test_sym.c"), "test_sym.c");
	CHECK(f.file[0] == '/');
	CHECK(f.line > 0);
	CHECK_EQ_INT(f.guess, 0);
}

static void check_return_address(struct symbolizer *s, uint64_t ret, int line)
{
	struct sym_frame f;
	sym_resolve(s, ret, 1, &f);
	CHECK_EQ_INT(f.pc, ret);
	CHECK_EQ_STR(f.function, "main");
	CHECK(f.offset > 0);
	CHECK(f.file != NULL && strstr(f.file, "test_sym.c") != NULL);
	CHECK_EQ_INT(f.line, line);
	CHECK_EQ_INT(f.guess, 0);
}

static void check_libc_export(struct symbolizer *s)
{
	struct sym_frame f;
	void *getpid_address = dlsym(RTLD_DEFAULT, "getpid");
	if (!getpid_address)
		SKIP("dlsym(getpid) failed: %s", dlerror());
	sym_resolve(s, (uint64_t)(uintptr_t)getpid_address, 0, &f);
	CHECK_EQ_STR(f.module, "libc.so.6");
	CHECK(f.function != NULL);
	CHECK(strcmp(f.function, "getpid") == 0 ||
	      strcmp(f.function, "__getpid") == 0);
	CHECK_EQ_INT(f.offset, 0);
	CHECK_EQ_INT(f.guess, 0);
}

/* A PC past the end of the nearest symbol, which DWARF does not explain, is
 * a guess. */
static void check_past_symbol_end(struct symbolizer *s)
{
#ifdef __x86_64__
	struct sym_frame f;
	uint64_t pc = (uint64_t)(uintptr_t)&sym_test_asm_exported + 4;
	sym_resolve(s, pc, 0, &f);
	CHECK_EQ_STR(f.function, "sym_test_asm_exported");
	CHECK_EQ_INT(f.offset, 4);
	CHECK_EQ_INT(f.guess, 1);
	sym_resolve(s, pc - 4, 0, &f);
	CHECK_EQ_STR(f.function, "sym_test_asm_exported");
	CHECK_EQ_INT(f.offset, 0);
	CHECK_EQ_INT(f.guess, 0);
#else
	(void)s;
#endif
}

/* Without libc debuginfo, a PC past every exported function is a guess. */
static void check_libc_internal(struct symbolizer *s, uint64_t pc)
{
	struct sym_frame f;
	if (!pc) {
		fprintf(stderr, "note: no gap between libc exports, not checked\n");
		return;
	}
	sym_resolve(s, pc, 1, &f);
	CHECK_EQ_STR(f.module, "libc.so.6");
	CHECK(f.function != NULL);
	CHECK_EQ_INT(f.guess, f.file == NULL);
}

static void check_unknown(struct symbolizer *s)
{
	struct sym_frame f;
	sym_resolve(s, 0x10, 0, &f);
	CHECK_EQ_INT(f.pc, 0x10);
	CHECK_EQ_STR(f.module, "?");
	CHECK(f.function == NULL);
	CHECK(f.file == NULL);
	CHECK_EQ_INT(f.line, 0);

	sym_resolve(s, 0x1800, 1, &f);
	CHECK_EQ_STR(f.module, "libghost.so.1");
	CHECK(f.function == NULL);
	CHECK(f.file == NULL);
	CHECK_EQ_INT(f.line, 0);
}

static void check_cached(struct symbolizer *s, uint64_t ret)
{
	struct sym_frame first, second;
	sym_resolve(s, ret, 1, &first);
	sym_resolve(s, ret, 1, &second);
	CHECK(first.module == second.module);
	CHECK(first.function == second.function);
	CHECK(first.file == second.file);
	CHECK_EQ_INT(first.line, second.line);
	CHECK_EQ_INT(first.offset, second.offset);
}

static int ends_with_test_sym_c(const char *file)
{
	size_t len = file ? strlen(file) : 0;
	return len >= strlen("test_sym.c") &&
	       strcmp(file + len - strlen("test_sym.c"), "test_sym.c") == 0;
}

static void check_same_frame(const struct sym_frame *a, const struct sym_frame *b)
{
	CHECK_EQ_INT(a->pc, b->pc);
	CHECK(a->module == b->module);
	CHECK(a->function == b->function);
	CHECK_EQ_INT(a->offset, b->offset);
	CHECK(a->file == b->file);
	CHECK_EQ_INT(a->line, b->line);
	CHECK_EQ_INT(a->guess, b->guess);
	CHECK_EQ_INT(a->inlined, b->inlined);
}

static void check_inlined_frame(const struct sym_frame *f, uint64_t pc,
				const char *exe_name, const char *function,
				int line, int inlined)
{
	uint64_t host = (uint64_t)(uintptr_t)&sym_inline_host;
	CHECK_EQ_INT(f->pc, pc);
	CHECK_EQ_STR(f->module, exe_name);
	CHECK_EQ_STR(f->function, function);
	CHECK_EQ_INT(f->offset, pc - host);
	CHECK(ends_with_test_sym_c(f->file));
	CHECK(f->file[0] == '/');
	CHECK_EQ_INT(f->line, line);
	CHECK_EQ_INT(f->guess, 0);
	CHECK_EQ_INT(f->inlined, inlined);
}

/* A PC in inner_pc, inlined into middle_pc, inlined into sym_inline_host. */
static void check_inlined(struct symbolizer *s, const char *exe_name)
{
#ifdef __x86_64__
	struct inline_site site;
	struct sym_frame frames[8], again[8], single;
	sym_inline_host(&site);
	size_t n = sym_resolve_inlined(s, site.pc, 0, frames, 8);
	CHECK_EQ_INT(n, 3);
	check_inlined_frame(&frames[0], site.pc, exe_name, "inner_pc", site.lea_line, 1);
	check_inlined_frame(&frames[1], site.pc, exe_name, "middle_pc",
			    site.middle_call_line, 1);
	check_inlined_frame(&frames[2], site.pc, exe_name, "sym_inline_host",
			    site.host_call_line, 0);
	CHECK(frames[0].module == frames[2].module);

	/* The innermost frame is where the line table puts the PC, and the
	 * out-of-line function is the one sym_resolve names. */
	sym_resolve(s, site.pc, 0, &single);
	CHECK_EQ_STR(single.function, "sym_inline_host");
	CHECK_EQ_INT(single.offset, frames[0].offset);
	CHECK(single.file == frames[0].file);
	CHECK_EQ_INT(single.line, frames[0].line);
	CHECK_EQ_INT(single.inlined, 0);

	/* Cached, and cut at max. */
	CHECK_EQ_INT(sym_resolve_inlined(s, site.pc, 0, again, 8), 3);
	for (size_t i = 0; i < 3; i++)
		check_same_frame(&frames[i], &again[i]);
	CHECK_EQ_INT(sym_resolve_inlined(s, site.pc, 0, again, 2), 2);
	check_same_frame(&frames[0], &again[0]);
	check_same_frame(&frames[1], &again[1]);
	CHECK_EQ_INT(sym_resolve_inlined(s, site.pc, 0, again, 0), 0);
#else
	(void)s;
	(void)exe_name;
#endif
}

/* Where nothing is inlined, the one frame sym_resolve gives. */
static void check_not_inlined(struct symbolizer *s, uint64_t ret)
{
	const uint64_t pcs[] = { (uint64_t)(uintptr_t)&sym_test_target + 4, ret,
				 0x10, 0x1800 };
	const int return_address[] = { 0, 1, 0, 1 };
	for (size_t i = 0; i < sizeof(pcs) / sizeof(pcs[0]); i++) {
		struct sym_frame frames[4], single;
		/* Both orders: the inline answer first, then sym_resolve's. */
		uint64_t pc = pcs[i] + (i == 0 ? 1 : 0);
		CHECK_EQ_INT(sym_resolve_inlined(s, pc, return_address[i], frames, 4), 1);
		sym_resolve(s, pc, return_address[i], &single);
		check_same_frame(&frames[0], &single);
		CHECK_EQ_INT(frames[0].inlined, 0);
		sym_resolve(s, pcs[i], return_address[i], &single);
		CHECK_EQ_INT(sym_resolve_inlined(s, pcs[i], return_address[i], frames, 4), 1);
		check_same_frame(&frames[0], &single);
	}
}

static void check_many_pcs(struct symbolizer *s)
{
	struct sym_frame f;
	uint64_t base = (uint64_t)(uintptr_t)&sym_test_target;
	for (uint64_t i = 0; i < 2000; i++)
		sym_resolve(s, base + i % 8, i % 3 == 0, &f);
	sym_resolve(s, base + 4, 0, &f);
	CHECK_EQ_STR(f.function, "sym_test_target");
	CHECK_EQ_INT(f.offset, 4);
}

int main(void)
{
	struct module_list list = { .count = 0 };
	dl_iterate_phdr(add_module, &list);
	const struct sym_module *libc = find_libc(&list);
	if (list.count < 2 || !libc || list.count == MAX_MODULES)
		SKIP("could not find this program and libc with dl_iterate_phdr");
	list.mods[list.count++] = (struct sym_module){
		.start = 0x1000, .end = 0x2000, .bias = 0,
		.path = "/nonexistent/htrace/libghost.so.1",
	};

	uint64_t internal_pc = unexported_libc_address(libc);
	struct symbolizer *s = sym_open(list.mods, list.count);
	CHECK(s != NULL);
	memset(list.paths, 0, sizeof(list.paths)); /* sym_open took a copy */

	char exe[PATH_MAX];
	CHECK(main_program_path(exe) == 0);
	void *ret = sym_test_target(); const int call_line = __LINE__;

	check_function_body(s, name_of(exe));
	check_return_address(s, (uint64_t)(uintptr_t)ret, call_line);
	check_libc_export(s);
	check_libc_internal(s, internal_pc);
	check_past_symbol_end(s);
	check_unknown(s);
	check_cached(s, (uint64_t)(uintptr_t)ret);
	check_many_pcs(s);
	check_inlined(s, name_of(exe));
	check_not_inlined(s, (uint64_t)(uintptr_t)ret);
	sym_close(s);
	printf("test_sym: ok\n");
	return 0;
}
