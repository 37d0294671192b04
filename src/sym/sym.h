/* The symbolizer: turns program counters recorded in a target into
 * module!function+0xoff and file:line, with elfutils libdwfl, in the client
 * (never in the target).  Results are cached per PC. */
#ifndef HTRACE_SYM_H
#define HTRACE_SYM_H

#include <stddef.h>
#include <stdint.h>

/* A module as the agent recorded it (struct htrace_module). */
struct sym_module {
	uint64_t start, end; /* address range of its PT_LOAD segments */
	uint64_t bias; /* load bias */
	const char *path; /* file on disk */
};

struct sym_frame {
	uint64_t pc;
	const char *module; /* basename of the module's path; "?" when unknown */
	const char *function; /* NULL when no symbol explains the PC */
	uint64_t offset; /* pc - start of function */
	const char *file; /* source file (full path), NULL without debug info */
	int line; /* 0 without debug info */
	int guess; /* 1 when only a nearest exported symbol explains the PC */
};

struct symbolizer;

/* Takes a copy of mods.  Returns NULL (errno set) when out of memory. */
struct symbolizer *sym_open(const struct sym_module *mods, size_t n);

/* Resolves pc.  is_return_address says pc follows a call (every frame but
 * the innermost of a signal context): lookups then use pc - 1.  The strings
 * in *out stay valid until sym_close.  Never fails: unknown parts are "?" or
 * NULL. */
void sym_resolve(struct symbolizer *s, uint64_t pc, int is_return_address,
		 struct sym_frame *out);

void sym_close(struct symbolizer *s);

#endif
