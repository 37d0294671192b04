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
	int inlined; /* 1: this function was inlined into the next frame's */
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

/* Resolves pc into up to max frames that share it: the innermost inlined
 * function first, then each function it was inlined into, out to the real
 * (out-of-line) function.  Every frame's offset is pc minus the start of
 * that real function.  Returns the number of frames written (at least 1
 * when max >= 1); without DWARF inline information, the same single frame
 * as sym_resolve.  Strings stay valid until sym_close. */
size_t sym_resolve_inlined(struct symbolizer *s, uint64_t pc, int is_return_address,
			   struct sym_frame *frames, size_t max);

void sym_close(struct symbolizer *s);

/* Opens the ELF file at path for reading: a descriptor (O_CLOEXEC), or -1
 * (errno set) when it cannot be opened or is not a regular file.  Never
 * blocks, whatever the path names (a FIFO, a device): the paths come from
 * the traced process's memory. */
int sym_open_elf_file(const char *path);

#endif
