/* htrace.h — ask the htrace agent, from inside a traced program, what it
 * believes about the program's descriptors.
 *
 * htrace records every descriptor a program opens and closes while tracing
 * is on (see htrace(1)).  A program that runs under the agent (started with
 * `htrace run`, or with libhtrace.so in LD_PRELOAD) can compare the agent's
 * view with the kernel's at moments of its choosing, for instance in a test
 * that wants to prove it leaks nothing.  The functions are declared weak:
 * a program need not link against anything, and without the agent they are
 * NULL, so check before calling:
 *
 *     if (htrace_open_fds) n = htrace_open_fds(fds, max);
 *
 * The agent's view is that of the current tracing period.  While tracing is
 * off the agent records nothing, and both functions report no descriptor.
 * A tracing period starts with the program when tracing does (`htrace run`,
 * HTRACE_TRACE=1), and then also covers the descriptors open at start, as
 * inherited; else at each `htrace -p PID -enable`, and then covers only the
 * descriptors opened since (not stdin, stdout, stderr or anything opened
 * before, nor what an earlier period recorded).
 *
 * Both functions are async-signal-safe and thread-safe, take no lock and
 * allocate nothing.  After fork() the child's agent holds the child's view.
 */
#ifndef HTRACE_H
#define HTRACE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Bits returned by htrace_fd_state(). */
#define HTRACE_FD_IS_OPEN 0x1 /* recorded open in the current tracing period */
#define HTRACE_FD_INHERITED_EXEC 0x2 /* it was open when this image started */
#define HTRACE_FD_INHERITED_FORK 0x4 /* it was opened by the parent before fork() */
#define HTRACE_FD_HAS_STACK 0x8 /* the stack that opened it is recorded */

/* Writes into fds[0..max-1], in ascending order, the descriptors the agent
 * recorded open in the current tracing period, and returns how many there
 * are (which may exceed max); 0 while tracing is off. */
int htrace_open_fds(int *fds, int max) __attribute__((weak));

/* Returns HTRACE_FD_* bits for fd: 0 when the agent has not recorded it
 * open in the current tracing period (it is closed, it was opened before
 * the period began, or tracing is off). */
int htrace_fd_state(int fd) __attribute__((weak));

#ifdef __cplusplus
}
#endif

#endif
