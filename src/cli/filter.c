/* Report filters (see filter.h). */
#include "filter.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *value_of(int argc, char **argv, int *i, const char *name)
{
	const char *arg = argv[*i];
	size_t len = strlen(name);
	if (arg[len] == '=')
		return arg + len + 1;
	return *i + 1 < argc ? argv[++*i] : NULL;
}

static int is_option(const char *arg, const char *name)
{
	size_t len = strlen(name);
	return !strncmp(arg, name, len) && (arg[len] == '\0' || arg[len] == '=');
}

static int bad(const char *what, const char *value)
{
	fprintf(stderr, "htrace: bad value '%s' for %s (see htrace --help)\n", value ? value : "",
		what);
	return -1;
}

/* The type names fdinfo gives (fdinfo.h). */
static int known_type(const char *name)
{
	static const char *const types[] = {
		"file",	   "directory", "socket",      "pipe",	     "fifo",	 "chardev", "blockdev",
		"eventfd", "timerfd",	"signalfd",    "epoll",	     "inotify",	 "fanotify", "memfd",
		"pidfd",   "userfaultfd", "perf_event", "io_uring", "anon_inode", "unknown",
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(types[i], name))
			return 1;
	return 0;
}

static int parse_types(struct report_filter *f, const char *value)
{
	free(f->type_list);
	f->type_list = strdup(value);
	f->ntypes = 0;
	for (char *save = NULL, *t = f->type_list ? strtok_r(f->type_list, ",", &save) : NULL; t;
	     t = strtok_r(NULL, ",", &save)) {
		if (!known_type(t) || f->ntypes == FILTER_MAX_TYPES)
			return bad("--type", t);
		f->types[f->ntypes++] = t;
	}
	return f->ntypes ? 1 : bad("--type", value);
}

/* "90", "90s", "15m", "2h", "1d", "250ms" */
static int parse_duration(const char *text, uint64_t *ns)
{
	char *end;
	double value = strtod(text, &end);
	static const struct {
		const char *unit;
		double ns;
	} units[] = { { "", 1e9 }, { "s", 1e9 }, { "ms", 1e6 }, { "m", 60e9 },
		      { "h", 3600e9 }, { "d", 86400e9 } };
	if (end == text || !(value > 0) || value > 1e7 || (*text < '0' || *text > '9'))
		return -1; /* also refuses inf, nan, hex and leading blanks */
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++)
		if (!strcmp(end, units[u].unit)) {
			double total = value * units[u].ns;
			if (!(total < 1.8e19)) /* past what uint64_t holds (584 years) */
				return -1;
			*ns = (uint64_t)total;
			return 0;
		}
	return -1;
}

int filter_option(int argc, char **argv, int *i, struct report_filter *f)
{
	const char *arg = argv[*i], *value;
	if (is_option(arg, "--type"))
		return (value = value_of(argc, argv, i, "--type")) ? parse_types(f, value)
								  : bad("--type", NULL);
	if (is_option(arg, "--path")) {
		f->path_glob = value_of(argc, argv, i, "--path");
		return f->path_glob && *f->path_glob ? 1 : bad("--path", f->path_glob);
	}
	if (is_option(arg, "--stack")) {
		value = value_of(argc, argv, i, "--stack");
		if (value && f->have_stack_re) {
			fprintf(stderr, "htrace: --stack given twice (one regular expression: "
					"join them with '|')\n");
			return -1;
		}
		if (!value || regcomp(&f->stack_re, value, REG_EXTENDED | REG_NOSUB))
			return bad("--stack", value);
		f->have_stack_re = 1;
		return 1;
	}
	if (is_option(arg, "--older-than")) {
		value = value_of(argc, argv, i, "--older-than");
		if (!value || parse_duration(value, &f->older_than_ns) < 0 || !f->older_than_ns)
			return bad("--older-than", value);
		return 1;
	}
	return 0;
}

int filter_active(const struct report_filter *f)
{
	return f->ntypes || f->path_glob || f->have_stack_re || f->older_than_ns;
}

static int type_listed(const struct report_filter *f, const char *type)
{
	for (int i = 0; i < f->ntypes; i++)
		if (!strcmp(f->types[i], type))
			return 1;
	return 0;
}

int filter_handle(const struct report_filter *f, const struct fd_details *d, uint64_t open_ns,
		  uint64_t now_ns)
{
	if (f->ntypes && (!d || !type_listed(f, d->type)))
		return 0;
	if (f->path_glob && (!d || fnmatch(f->path_glob, d->target, 0) != 0))
		return 0;
	if (f->older_than_ns && (!open_ns || now_ns < open_ns || now_ns - open_ns < f->older_than_ns))
		return 0;
	return 1;
}

int filter_frames(const struct report_filter *f, const struct sym_frame *frames, size_t n)
{
	char text[1024];
	for (size_t i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "%s!%s %s", frames[i].module ? frames[i].module : "?",
			 frames[i].function ? frames[i].function : "?",
			 frames[i].file ? frames[i].file : "");
		if (regexec(&f->stack_re, text, 0, NULL, 0) == 0)
			return 1;
	}
	return 0;
}

void filter_free(struct report_filter *f)
{
	free(f->type_list);
	if (f->have_stack_re)
		regfree(&f->stack_re);
	f->type_list = NULL;
	f->have_stack_re = 0;
}
