/* `htrace run` (see run.h).  The supervisor is a ptrace loop: every thread
 * of PROG (and, with -f, of every process it forks) stops at
 * PTRACE_EVENT_EXIT, when its memory and descriptors are still there; the
 * client then reads the agent's database and /proc/PID/fd, and lets the
 * thread go.  The report of a process is printed when it has ended.
 * Signals are passed on untouched; group-stops are honoured. */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "render.h"
#include "report.h"

extern char **environ;

/* One process being followed, with its last snapshot. */
struct traced_process {
	pid_t pid;
	int have_snapshot;
	struct snapshot snap;
};

struct supervisor {
	const struct run_options *opt;
	FILE *out;
	FILE *html; /* --html FILE, for PROG's own report; FILE.PID for the others */
	pid_t child;
	struct process_status child_status;
	struct traced_process *procs;
	size_t nprocs, cap;
	int leaks_found;
	int database_unreadable; /* a process's report could not be made */
	int agent_failed; /* a process's agent stopped tracing: its report says nothing */
};

static volatile sig_atomic_t forward_to;

static void forward_signal(int sig)
{
	if (forward_to > 0)
		kill(forward_to, sig);
}

static void setup_signals(pid_t child)
{
	forward_to = child;
	struct sigaction sa = { .sa_handler = forward_signal };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGINT, SIG_IGN); /* the terminal sends them to PROG too */
	signal(SIGQUIT, SIG_IGN);
}

/* --- the environment of PROG --------------------------------------------- */

static char *env_entry(const char *name, const char *value)
{
	char *entry;
	if (asprintf(&entry, "%s=%s", name, value) < 0)
		return NULL;
	return entry;
}

static int is_var(const char *entry, const char *name)
{
	size_t len = strlen(name);
	return strncmp(entry, name, len) == 0 && entry[len] == '=';
}

static char **child_environment(const struct run_options *opt, const char *agent)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 7, sizeof(char *));
	if (!env)
		return NULL;
	const char *preload = getenv("LD_PRELOAD");
	char *value, number[32];
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!is_var(environ[i], "LD_PRELOAD") && !is_var(environ[i], "HTRACE_TRACE") &&
		    !is_var(environ[i], "HTRACE_MAX_TRACES") && !is_var(environ[i], "HTRACE_STACK_DEPTH") &&
		    !is_var(environ[i], "HTRACE_ON_ERROR") && !is_var(environ[i], "HTRACE_SUPERVISOR"))
			env[k++] = environ[i];
	if (preload && *preload) {
		if (asprintf(&value, "%s:%s", agent, preload) < 0)
			return NULL;
	} else if (!(value = strdup(agent)))
		return NULL;
	env[k++] = env_entry("LD_PRELOAD", value);
	env[k++] = env_entry("HTRACE_TRACE", "1");
	snprintf(number, sizeof(number), "%u", opt->max_traces);
	env[k++] = env_entry("HTRACE_MAX_TRACES", number);
	snprintf(number, sizeof(number), "%u", opt->stack_depth);
	env[k++] = env_entry("HTRACE_STACK_DEPTH", number);
	env[k++] = env_entry("HTRACE_ON_ERROR", opt->on_error_abort ? "abort" : "report");
	snprintf(number, sizeof(number), "%d", (int)getpid()); /* stops before each exec */
	env[k++] = env_entry("HTRACE_SUPERVISOR", number);
	free(value);
	return env;
}

/* Frees what child_environment allocated: the variables it set. */
static void free_environment(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		if (is_var(env[i], "LD_PRELOAD") || is_var(env[i], "HTRACE_TRACE") ||
		    is_var(env[i], "HTRACE_MAX_TRACES") || is_var(env[i], "HTRACE_STACK_DEPTH") ||
		    is_var(env[i], "HTRACE_ON_ERROR") || is_var(env[i], "HTRACE_SUPERVISOR"))
			free(env[i]);
	free(env);
}

/* --- starting PROG --------------------------------------------------------- */

static _Noreturn void exec_child(char **argv, char **env, int sync_fd, int error_fd)
{
	char go;
	if (read(sync_fd, &go, 1) != 1)
		_exit(127);
	close(sync_fd);
	execvpe(argv[0], argv, env);
	int err = errno;
	if (write(error_fd, &err, sizeof(err)) < 0)
		_exit(127);
	_exit(127);
}

static long trace_options(const struct run_options *opt)
{
	long o = PTRACE_O_TRACEEXIT | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;
	if (opt->follow_forks)
		o |= PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK;
	return o;
}

/* Starts PROG stopped-at-birth under ptrace; returns its pid, or -1. */
static pid_t start_child(const struct run_options *opt, char **env, int *error_fd)
{
	int sync[2], error[2];
	if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(error, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(sync[1]);
		close(error[0]);
		exec_child(opt->argv, env, sync[0], error[1]);
	}
	close(sync[0]);
	close(error[1]);
	if (pid > 0 && ptrace(PTRACE_SEIZE, pid, 0, trace_options(opt)) < 0) {
		fprintf(stderr, "htrace: cannot trace the program: %s\n", strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		pid = -1;
	}
	if (pid > 0 && write(sync[1], "g", 1) != 1)
		pid = -1;
	close(sync[1]);
	*error_fd = error[0];
	return pid;
}

/* 0 when PROG was executed; else its errno. */
static int exec_error(int error_fd)
{
	int err = 0;
	ssize_t n;
	do
		n = read(error_fd, &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(error_fd);
	return n == (ssize_t)sizeof(err) ? err : 0;
}

static int report_exec_error(const char *prog, int err)
{
	fprintf(stderr, "htrace: cannot run %s: %s\n", prog, strerror(err));
	return err == ENOENT ? 127 : 126;
}

/* --- processes ------------------------------------------------------------ */

static struct traced_process *process_find(struct supervisor *s, pid_t pid)
{
	for (size_t i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid == pid)
			return &s->procs[i];
	return NULL;
}

static void process_add(struct supervisor *s, pid_t pid)
{
	if (process_find(s, pid))
		return;
	if (s->nprocs == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct traced_process *grown = realloc(s->procs, cap * sizeof(*grown));
		if (!grown)
			return;
		s->procs = grown;
		s->cap = cap;
	}
	memset(&s->procs[s->nprocs], 0, sizeof(s->procs[0]));
	s->procs[s->nprocs++].pid = pid;
}

static void process_forget_snapshot(struct traced_process *p)
{
	if (p->have_snapshot)
		snapshot_free(&p->snap);
	p->have_snapshot = 0;
}

static pid_t thread_group_of(pid_t tid)
{
	return (pid_t)proc_status_last(tid, "Tgid", tid);
}

/* A thread of p is exiting: its process's memory and descriptors are still
 * there.  The database is read again only when something was recorded since
 * the last snapshot; the kernel's view always (raw system calls change it
 * without an event). */
static void on_thread_exit(struct traced_process *p, pid_t tid)
{
	if (p->have_snapshot && p->snap.have_db) {
		struct htrace_db header;
		if (reader_header(tid, p->snap.db.db_addr, &header) == READER_OK &&
		    header.next_seq != 0 && memcmp(&header, &p->snap.db.db, sizeof(header)) == 0) {
			snapshot_refresh_kernel(tid, &p->snap);
			return;
		}
	}
	struct snapshot fresh;
	if (snapshot_take(tid, p->pid, &fresh) < 0 && p->have_snapshot) {
		snapshot_free(&fresh);
		return; /* keep the older, complete one */
	}
	process_forget_snapshot(p);
	p->snap = fresh;
	p->have_snapshot = 1;
}

static void print_report(struct supervisor *s, struct traced_process *p,
			 struct process_status status)
{
	if (!p->have_snapshot) {
		fprintf(s->out, "htrace: process %d ended before htrace could read it\n", (int)p->pid);
		s->database_unreadable = 1;
		return;
	}
	if (p->snap.db_error)
		s->database_unreadable = 1;
	if (p->snap.have_db && (p->snap.db.db.state & HTRACE_STATE_FAILED))
		s->agent_failed = 1; /* nothing recorded since: every handle untracked */
	struct report_options ro = { .mode = REPORT_EXIT, .verbose = s->opt->verbose,
				     .history = s->opt->history, .only_fd = -1,
				     .filter = &s->opt->filter };
	struct render_options rend = { .history = s->opt->history, .group = s->opt->group };
	struct report r;
	if (report_build(&p->snap, &ro, status, &r) < 0) {
		fprintf(stderr, "htrace: out of memory building the report of %d\n", (int)p->pid);
		return;
	}
	if (r.leaked || r.bad_references)
		s->leaks_found = 1; /* --error-exitcode fires on both */
	render_report(s->out, &r, &rend, s->opt->json, s->opt->folded);
	fflush(s->out);
	if (s->opt->html) {
		FILE *html = p->pid == s->child ? s->html : render_html_open(s->opt->html, p->pid);
		if (html)
			render_html(html, &r, &rend);
		if (html && html != s->html)
			fclose(html);
	}
	report_free(&r);
}

static void on_process_end(struct supervisor *s, pid_t pid, int wstatus)
{
	struct process_status st = { 1, WIFSIGNALED(wstatus),
				     WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus) };
	if (pid == s->child)
		s->child_status = st;
	struct traced_process *p = process_find(s, pid);
	if (!p)
		return;
	print_report(s, p, st);
	process_forget_snapshot(p);
	*p = s->procs[--s->nprocs];
}

/* --- the ptrace loop ------------------------------------------------------ */

static int is_group_stop_signal(int sig)
{
	return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

static void on_event(struct supervisor *s, pid_t tid, int event, int sig)
{
	unsigned long msg = 0;
	switch (event) {
	case PTRACE_EVENT_EXIT: {
		struct traced_process *p = process_find(s, thread_group_of(tid));
		if (p)
			on_thread_exit(p, tid);
		break;
	}
	case PTRACE_EVENT_EXEC: {
		struct traced_process *p = process_find(s, tid);
		if (p)
			process_forget_snapshot(p); /* a new image, a new database */
		break;
	}
	case PTRACE_EVENT_FORK:
	case PTRACE_EVENT_VFORK:
		if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &msg) == 0)
			process_add(s, (pid_t)msg);
		break;
	case PTRACE_EVENT_STOP:
		if (is_group_stop_signal(sig)) {
			ptrace(PTRACE_LISTEN, tid, 0, 0);
			return;
		}
		break;
	default:
		break;
	}
	ptrace(PTRACE_CONT, tid, 0, 0);
}

/* The agent's stop before an exec (db.h), not a signal someone sent. */
static int is_exec_stop(pid_t tid, int sig)
{
	siginfo_t info;
	if (sig != HTRACE_EXEC_STOP_SIGNAL || ptrace(PTRACE_GETSIGINFO, tid, 0, &info) < 0)
		return 0;
	return info.si_code == SI_QUEUE && info.si_value.sival_int == HTRACE_EXEC_STOP_VALUE &&
	       info.si_pid == thread_group_of(tid);
}

/* Reports the descriptors about to pass into the program being executed,
 * when there are any. */
static void report_exec(struct supervisor *s, pid_t tid)
{
	pid_t pid = thread_group_of(tid);
	if (!process_find(s, pid))
		return;
	struct snapshot snap;
	if (snapshot_take(tid, pid, &snap) < 0 || !snap.have_db || !snap.db.db.exec_pending) {
		snapshot_free(&snap);
		return;
	}
	struct report_options ro = { .mode = REPORT_EXEC, .only_fd = -1, .filter = &s->opt->filter };
	struct render_options rend = { 0 };
	struct process_status running = { 0, 0, 0 };
	struct report r;
	if (report_build(&snap, &ro, running, &r) == 0) {
		if (r.passing)
			s->leaks_found = 1;
		if (r.passing && !s->opt->folded) { /* folded output holds the exit's stacks only */
			render_report(s->out, &r, &rend, s->opt->json, 0);
			fflush(s->out);
		}
		report_free(&r);
	}
	snapshot_free(&snap);
}

static void on_stop(struct supervisor *s, pid_t tid, int wstatus)
{
	int sig = WSTOPSIG(wstatus), event = wstatus >> 16;
	if (event)
		on_event(s, tid, event, sig);
	else if (is_exec_stop(tid, sig)) {
		report_exec(s, tid);
		ptrace(PTRACE_CONT, tid, 0, 0); /* swallowed: the program never sees it */
	} else
		ptrace(PTRACE_CONT, tid, 0, sig); /* signal-delivery-stop: pass it on */
}

static void supervise(struct supervisor *s)
{
	for (;;) {
		int wstatus;
		pid_t pid = waitpid(-1, &wstatus, __WALL);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break; /* ECHILD: everything has ended */
		}
		if (WIFSTOPPED(wstatus))
			on_stop(s, pid, wstatus);
		else if (WIFEXITED(wstatus) || WIFSIGNALED(wstatus))
			on_process_end(s, pid, wstatus);
	}
}

static FILE *open_output(const char *path)
{
	if (!path)
		return stderr;
	FILE *f = fopen(path, "we");
	if (!f)
		fprintf(stderr, "htrace: cannot write the report to %s: %s\n", path, strerror(errno));
	return f;
}

static int exit_status(const struct supervisor *s)
{
	if (s->database_unreadable || s->agent_failed)
		return 1;
	if (s->opt->error_exitcode >= 0 && s->leaks_found)
		return s->opt->error_exitcode;
	if (s->child_status.signaled)
		return 128 + s->child_status.value;
	return s->child_status.value;
}

/* Closes the --html page of PROG, saying why when no report went into it. */
static void close_html(FILE *html, const char *why)
{
	if (html && ftell(html) == 0)
		render_html_no_report(html, why);
	if (html)
		fclose(html);
}

int run_command(const struct run_options *opt, const char *agent_path)
{
	struct supervisor s = { .opt = opt };
	if (!(s.out = open_output(opt->output)))
		return EXIT_USAGE;
	if (opt->html && !(s.html = render_html_open(opt->html, 0))) {
		if (s.out != stderr)
			fclose(s.out);
		return EXIT_USAGE;
	}
	char **env = child_environment(opt, agent_path);
	int error_fd = -1;
	if (!env || (s.child = start_child(opt, env, &error_fd)) < 0) {
		fprintf(stderr, "htrace: cannot start %s: %s\n", opt->argv[0], strerror(errno));
		free_environment(env);
		close_html(s.html, "the program could not be started");
		return 1;
	}
	free_environment(env);
	setup_signals(s.child);
	process_add(&s, s.child);
	int err = exec_error(error_fd);
	if (err) {
		s.nprocs = 0; /* nothing ran: no report */
		supervise(&s);
		free(s.procs);
		close_html(s.html, "the program could not be started");
		return report_exec_error(opt->argv[0], err);
	}
	supervise(&s);
	free(s.procs);
	if (s.out != stderr)
		fclose(s.out);
	close_html(s.html, "the program ended before htrace could read it");
	return exit_status(&s);
}
