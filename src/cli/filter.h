/* The filters that apply to every report (--type, --path, --stack,
 * --older-than): show me only the handles and traces that matter. */
#ifndef HTRACE_FILTER_H
#define HTRACE_FILTER_H

#include <regex.h>
#include <stdint.h>

#include "fdinfo.h"
#include "sym/sym.h"

#define FILTER_MAX_TYPES 16

struct report_filter {
	const char *types[FILTER_MAX_TYPES]; /* --type=a,b: fdinfo type names */
	int ntypes;
	char *type_list; /* storage for types[] */
	const char *path_glob; /* --path=GLOB against the target */
	int have_stack_re;
	regex_t stack_re; /* --stack=REGEX against module!function and file */
	uint64_t older_than_ns; /* --older-than=DURATION, 0: no limit */
};

/* If arg is a filter option (with its value in arg or the next word,
 * advancing *i), applies it to f and returns 1; 0 when arg is no filter;
 * -1 after one line on stderr when its value is bad. */
int filter_option(int argc, char **argv, int *i, struct report_filter *f);

int filter_active(const struct report_filter *f);
/* Whether a handle of this kind, with this target, opened at open_ns
 * (0: unknown) passes --type, --path and --older-than at now_ns. */
int filter_handle(const struct report_filter *f, const struct fd_details *d, uint64_t open_ns,
		  uint64_t now_ns);
/* Whether one of the frames matches --stack. */
int filter_frames(const struct report_filter *f, const struct sym_frame *frames, size_t n);

void filter_free(struct report_filter *f);

#endif
