/* Tiny assertion macros for htrace's C tests: each prints both operands and
 * the place on failure.  A test program exits 0 when it passes, 1 when it
 * fails and 77 when it cannot run here (and says why). */
#ifndef HTRACE_CHECK_H
#define HTRACE_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,   \
				__LINE__, #cond);                                \
			exit(1);                                                 \
		}                                                                \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                       \
	do {                                                                     \
		long long _a = (long long)(a), _b = (long long)(b);              \
		if (_a != _b) {                                                  \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", \
				__FILE__, __LINE__, #a, #b, _a, _b);             \
			exit(1);                                                 \
		}                                                                \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                       \
	do {                                                                     \
		const char *_a = (a), *_b = (b);                                 \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                         \
			fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, _a ? _a : "(null)",  \
				_b ? _b : "(null)");                             \
			exit(1);                                                 \
		}                                                                \
	} while (0)

#define SKIP(...)                                                                \
	do {                                                                     \
		fprintf(stderr, "SKIP: " __VA_ARGS__);                           \
		fputc('\n', stderr);                                             \
		exit(77);                                                        \
	} while (0)

#endif
