/* Grouping open handles by the stack that opened them, biggest group
 * first, and by the function that opened them (the first frame outside
 * libc): the first question of a leak hunt, "which code leaks most?". */
#ifndef HTRACE_GROUP_H
#define HTRACE_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "report.h"
#include "sym/sym.h"

struct stack_group {
	uint32_t stack; /* depot id; 0: opened without a recorded stack */
	const struct htrace_event *open; /* one OPEN event with that stack */
	const struct report_handle **handles; /* ascending by descriptor */
	size_t count;
};

struct function_count {
	const char *function; /* NULL: no frame outside libc is known */
	const char *module;
	size_t count;
};

struct grouping {
	struct stack_group *groups; /* biggest first */
	size_t ngroups;
	struct function_count *functions; /* biggest first */
	size_t nfunctions;
	const struct report_handle **all; /* the grouped handles; groups point into it */
};

/* Groups the report's handles that are open with a known OPEN event. */
int group_build(const struct report *r, struct symbolizer *sym, struct grouping *g);
void group_free(struct grouping *g);

/* The opening function of a stack: its innermost frame outside libc and
 * the dynamic loader (an inlined function counts).  Sets out->function and
 * out->module; leaves them alone when no such frame is known. */
void group_opening_function(const struct report *r, struct symbolizer *sym, uint32_t stack,
			    struct function_count *out);

#endif
