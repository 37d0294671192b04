/* Names and descriptions of the rows of apis.def, and the hash that ties a
 * database to the table it was written with.  Linked into both the agent and
 * the client. */
#include "htrace/apis.h"

#include <stddef.h>

static const char *const api_names[HTRACE_API_COUNT] = {
	[HTRACE_API_NONE] = "(inherited)",
#define HOOK(name, shape, ret, params, args, what) [HTRACE_API_##name] = #name,
#define SYSCALL(name, effect, what) [HTRACE_API_SYS_##name] = "syscall(" #name ")",
#include "htrace/apis.def"
#undef HOOK
#undef SYSCALL
};

static const char *const api_whats[HTRACE_API_COUNT] = {
	[HTRACE_API_NONE] = "descriptor open before the agent saw it",
#define HOOK(name, shape, ret, params, args, what) [HTRACE_API_##name] = what,
#define SYSCALL(name, effect, what) [HTRACE_API_SYS_##name] = what,
#include "htrace/apis.def"
#undef HOOK
#undef SYSCALL
};

const char *htrace_api_name(unsigned id)
{
	return id < HTRACE_API_COUNT ? api_names[id] : NULL;
}

const char *htrace_api_what(unsigned id)
{
	return id < HTRACE_API_COUNT ? api_whats[id] : NULL;
}

uint64_t htrace_api_hash(void)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (unsigned id = 0; id < HTRACE_API_COUNT; id++) {
		for (const char *p = api_names[id]; *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
	}
	return h;
}
