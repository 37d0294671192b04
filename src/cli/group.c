/* Grouping of open handles by opening stack and opening function (see
 * group.h).  Sorting makes it O(n log n) in the number of handles. */
#include "group.h"

#include <stdlib.h>
#include <string.h>

static int groupable(const struct report *r, const struct report_handle *h)
{
	if (!h->slot || !h->details)
		return 0;
	if (r->opt && r->opt->mode == REPORT_DIFF)
		return h->state == HANDLE_OPEN; /* opened since the snapshot */
	return h->state == HANDLE_LEAKED || h->state == HANDLE_OPEN || h->state == HANDLE_INHERITED;
}

static int by_stack_then_fd(const void *a, const void *b)
{
	const struct report_handle *x = *(const struct report_handle *const *)a;
	const struct report_handle *y = *(const struct report_handle *const *)b;
	if (x->slot->open.stack != y->slot->open.stack)
		return x->slot->open.stack < y->slot->open.stack ? -1 : 1;
	return (x->fd > y->fd) - (x->fd < y->fd);
}

static int biggest_group_first(const void *a, const void *b)
{
	const struct stack_group *x = a, *y = b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return (x->stack > y->stack) - (x->stack < y->stack);
}

static int is_libc(const char *module)
{
	return !module || !strncmp(module, "libc.so", 7) || !strncmp(module, "libc-", 5) ||
	       !strncmp(module, "ld-linux", 8);
}

/* The innermost function of the stack outside libc. */
void group_opening_function(const struct report *r, struct symbolizer *sym, uint32_t stack,
			    struct function_count *out)
{
	const struct htrace_stack *s = target_stack(&r->snap->db, stack);
	for (unsigned i = 0; s && sym && i < s->depth; i++) {
		struct sym_frame f[8];
		size_t n = sym_resolve_inlined(sym, s->pc[i], 1, f, 8);
		if (n && !is_libc(f[0].module)) {
			out->function = f[0].function;
			out->module = f[0].module;
			return;
		}
	}
}

static int same_function(const struct function_count *a, const struct function_count *b)
{
	if (!a->function || !b->function)
		return a->function == b->function;
	return !strcmp(a->function, b->function) && !strcmp(a->module, b->module);
}

static int biggest_count_first(const void *a, const void *b)
{
	const struct function_count *x = a, *y = b;
	return (x->count < y->count) - (x->count > y->count);
}

static int count_functions(const struct report *r, struct symbolizer *sym, struct grouping *g)
{
	g->functions = calloc(g->ngroups ? g->ngroups : 1, sizeof(*g->functions));
	if (!g->functions)
		return -1;
	for (size_t i = 0; i < g->ngroups; i++) {
		struct function_count f = { NULL, NULL, g->groups[i].count };
		group_opening_function(r, sym, g->groups[i].stack, &f);
		size_t k = 0;
		while (k < g->nfunctions && !same_function(&g->functions[k], &f))
			k++;
		if (k == g->nfunctions)
			g->functions[g->nfunctions++] = (struct function_count){ f.function, f.module, 0 };
		g->functions[k].count += f.count;
	}
	qsort(g->functions, g->nfunctions, sizeof(*g->functions), biggest_count_first);
	return 0;
}

int group_build(const struct report *r, struct symbolizer *sym, struct grouping *g)
{
	memset(g, 0, sizeof(*g));
	const struct report_handle **open = calloc(r->nhandles ? r->nhandles : 1, sizeof(*open));
	g->groups = calloc(r->nhandles ? r->nhandles : 1, sizeof(*g->groups));
	if (!open || !g->groups) {
		free(open);
		free(g->groups);
		return -1;
	}
	size_t n = 0;
	for (size_t i = 0; i < r->nhandles; i++)
		if (groupable(r, &r->handles[i]))
			open[n++] = &r->handles[i];
	qsort(open, n, sizeof(*open), by_stack_then_fd);
	for (size_t i = 0; i < n; i++) {
		if (!g->ngroups || g->groups[g->ngroups - 1].stack != open[i]->slot->open.stack)
			g->groups[g->ngroups++] = (struct stack_group){
				open[i]->slot->open.stack, &open[i]->slot->open, &open[i], 0 };
		g->groups[g->ngroups - 1].count++;
	}
	qsort(g->groups, g->ngroups, sizeof(*g->groups), biggest_group_first);
	g->all = open;
	return count_functions(r, sym, g);
}

void group_free(struct grouping *g)
{
	free((void *)g->all);
	free(g->groups);
	free(g->functions);
	memset(g, 0, sizeof(*g));
}
