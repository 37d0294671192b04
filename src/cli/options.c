/* Parsing of htrace's command-line options.  PROG's own arguments start at
 * the first word that is not an option (or after "--") and are passed on
 * untouched. */
#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int options_number(const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (!text || !*text || *text == '-' || *text == '+' || *text == ' ')
		return -1;
	char *end;
	errno = 0;
	int hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
	unsigned long long value = strtoull(text, &end, hex ? 16 : 10);
	if (errno || *end || value < lo || value > hi)
		return -1;
	*out = value;
	return 0;
}

int options_usage(const char *fmt, const char *arg)
{
	fputs("htrace: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs(" (see htrace --help)\n", stderr);
	return EXIT_USAGE;
}

/* "--name=value" or "--name value": the value, advancing *i when it is the
 * next word; NULL when missing. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
	size_t len = strlen(name);
	const char *arg = argv[*i];
	if (arg[len] == '=')
		return arg + len + 1;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

const char *options_file(int argc, char **argv, int *i, const char *name)
{
	const char *file = option_value(argc, argv, i, name);
	if (file && *file && !(file[0] == '-' && file[1]))
		return file;
	char message[256];
	snprintf(message, sizeof(message), "%s needs a file name, not '%s'", name, file ? file : "");
	options_usage("%s", message);
	return NULL;
}

static int matches(const char *arg, const char *name)
{
	size_t len = strlen(name);
	return strncmp(arg, name, len) == 0 && (arg[len] == '\0' || arg[len] == '=');
}

static int number_option(int argc, char **argv, int *i, const char *name, uint64_t lo,
			 uint64_t hi, uint64_t *out)
{
	const char *value = option_value(argc, argv, i, name);
	if (!value)
		return options_usage("%s needs a value", name);
	if (options_number(value, lo, hi, out) < 0) {
		fprintf(stderr, "htrace: bad value '%s' for %s: expected a number from %llu to %llu\n",
			value, name, (unsigned long long)lo, (unsigned long long)hi);
		return EXIT_USAGE;
	}
	return 0;
}

int options_output(int argc, char **argv, int *i, const char **output, const char **html)
{
	const char *arg = argv[*i];
	const char **into = matches(arg, "--html") ? html
			    : !strcmp(arg, "-o") || matches(arg, "--output") ? output : NULL;
	if (!into)
		return 0;
	const char *name = into == html ? "--html" : arg[1] == 'o' ? "-o" : "--output";
	*into = options_file(argc, argv, i, name);
	return *into ? 1 : -EXIT_USAGE;
}

static int parse_one(int argc, char **argv, int *i, struct run_options *o)
{
	const char *arg = argv[*i];
	uint64_t n;
	int rc = filter_option(argc, argv, i, &o->filter);
	if (rc)
		return rc < 0 ? EXIT_USAGE : 0;
	if ((rc = options_output(argc, argv, i, &o->output, &o->html)))
		return rc < 0 ? EXIT_USAGE : 0;
	if (!strcmp(arg, "--json"))
		o->json = 1;
	else if (matches(arg, "--format")) {
		const char *format = option_value(argc, argv, i, "--format");
		if (!format || (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "folded")))
			return options_usage("%s needs text, json or folded", "--format");
		o->json = !strcmp(format, "json");
		o->folded = !strcmp(format, "folded");
	}
	else if (!strcmp(arg, "-v") || !strcmp(arg, "--verbose"))
		o->verbose = 1;
	else if (!strcmp(arg, "--history"))
		o->history = 1;
	else if (!strcmp(arg, "--group"))
		o->group = 1;
	else if (!strcmp(arg, "-f") || !strcmp(arg, "--follow-forks"))
		o->follow_forks = 1;
	else if (matches(arg, "--error-exitcode")) {
		if (!(rc = number_option(argc, argv, i, "--error-exitcode", 0, 255, &n)))
			o->error_exitcode = (int)n;
	} else if (matches(arg, "--on-error")) {
		const char *mode = option_value(argc, argv, i, "--on-error");
		if (!mode || (strcmp(mode, "report") && strcmp(mode, "abort")))
			return options_usage("%s needs report or abort", "--on-error");
		o->on_error_abort = !strcmp(mode, "abort");
	} else if (matches(arg, "--max-traces")) {
		if (!(rc = number_option(argc, argv, i, "--max-traces", 0, MAX_MAX_TRACES, &n)))
			o->max_traces = (uint32_t)n;
	} else if (matches(arg, "--stack-depth")) {
		if (!(rc = number_option(argc, argv, i, "--stack-depth", 1, 64, &n)))
			o->stack_depth = (uint32_t)n;
	} else
		return options_usage("unknown option '%s'", arg);
	return rc;
}

int options_parse_run(int argc, char **argv, struct run_options *o)
{
	memset(o, 0, sizeof(*o));
	o->error_exitcode = -1;
	o->max_traces = DEFAULT_MAX_TRACES;
	o->stack_depth = DEFAULT_STACK_DEPTH;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (argv[i][0] != '-' || !argv[i][1])
			break;
		int rc = parse_one(argc, argv, &i, o);
		if (rc)
			return rc;
	}
	if (i >= argc)
		return options_usage("%s", "run: no program given");
	o->argv = &argv[i];
	return 0;
}
