# htrace: build, test, demo and install.  `make demo` and `make check` are
# the two commands of the README; both first install missing Debian
# packages (scripts/install-deps.sh).
ifeq ($(origin CC),default)
CC = gcc
endif
PREFIX ?= /usr/local
BUILD ?= build
CFLAGS ?= -O2 -g
WARN = -Wall -Wextra
BASE_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(WARN) -Iinclude -Isrc
VICTIM_CFLAGS = -std=gnu11 -O2 -g -fomit-frame-pointer $(WARN) -Iinclude

AGENT_SRC = src/agent/raw.c src/agent/engine.c src/agent/stack.c src/agent/modules.c \
	src/agent/init.c src/agent/hooks.c src/agent/hooks_open.c src/agent/hooks_stdio.c \
	src/agent/hooks_msg.c src/agent/hooks_range.c src/agent/hooks_process.c \
	src/agent/hooks_syscall.c src/agent/hooks_use.c src/agent/hooks_exec.c src/agent/exec.c \
	src/agent/forksafe.c src/agent/unwind.c src/common/apis.c
AGENT_ASM = src/agent/vfork.S
CLI_SRC = src/cli/main.c src/cli/run.c src/cli/live.c src/cli/reader.c src/cli/report.c src/cli/render.c \
	src/cli/render_text.c src/cli/render_json.c src/cli/group.c src/cli/filter.c src/cli/fdinfo.c src/cli/options.c \
	src/sym/sym.c src/common/apis.c src/cli/render_html.c
HEADERS = $(wildcard include/*.h include/htrace/*.h include/htrace/*.def src/*/*.h)

AGENT = $(BUILD)/lib/htrace/libhtrace.so
HTRACE = $(BUILD)/bin/htrace
ASAN_HTRACE = $(BUILD)/tests/asan/htrace
GDB_COMMAND = $(BUILD)/share/htrace/htrace-gdb.py
UNIT_TESTS = $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/test_*.c))
VICTIMS = $(patsubst tests/victims/%.c,$(BUILD)/tests/victims/%,$(wildcard tests/victims/*.c))
DEMO = $(BUILD)/examples/leaky
PLUGINS = $(BUILD)/tests/plugins/libplugin_fp.so $(BUILD)/tests/plugins/libplugin_nofp.so
FAKE_AGENTS = $(foreach v,bad_version bad_sizes not_ready odd_module torn few_torn huge_reserve mailbox_end bad_event,$(BUILD)/tests/fakes/$(v)/libhtrace.so)
BENCH = $(BUILD)/bench/bench

.PHONY: all deps demo check test sanitize bench install clean

all: $(HTRACE) $(AGENT) $(GDB_COMMAND)

$(GDB_COMMAND): src/gdb/htrace-gdb.py
	@mkdir -p $(dir $@)
	cp $< $@

deps:
	@scripts/install-deps.sh

$(AGENT): $(AGENT_SRC) $(AGENT_ASM) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -fPIC -shared -fvisibility=hidden -ftls-model=initial-exec -flto=auto -fno-partial-inlining -fno-omit-frame-pointer \
		-Wl,-z,now -Wl,--no-undefined -o $@ $(AGENT_SRC) $(AGENT_ASM) -ldl

$(HTRACE): $(CLI_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $(CLI_SRC) -ldw -lelf

$(BUILD)/tests/unit/test_sym: tests/unit/test_sym.c src/sym/sym.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -g -O0 -o $@ tests/unit/test_sym.c src/sym/sym.c -ldw -lelf -ldl

$(BUILD)/tests/unit/test_fdinfo: tests/unit/test_fdinfo.c src/cli/fdinfo.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -g -O0 -o $@ tests/unit/test_fdinfo.c src/cli/fdinfo.c

$(BUILD)/tests/unit/%: tests/unit/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -g -O0 -o $@ $< src/common/apis.c

# (some victims read the agent's database in their own memory)
$(BUILD)/tests/victims/%: tests/victims/%.c include/htrace.h include/htrace/db.h
	@mkdir -p $(dir $@)
	$(CC) $(VICTIM_CFLAGS) -o $@ $< -lpthread -lutil

# the client again with AddressSanitizer, for tests/test_corrupt_db.py:
# a read past what it copied from a corrupt database stops it there
$(ASAN_HTRACE): $(CLI_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
		-fno-sanitize-recover=all -o $@ $(CLI_SRC) -ldw -lelf

# the same plugin built twice, with and without frame pointers
$(BUILD)/tests/plugins/libplugin_fp.so: PLUGIN_CFLAGS = -fno-omit-frame-pointer
$(BUILD)/tests/plugins/libplugin_nofp.so: PLUGIN_CFLAGS = -fomit-frame-pointer
$(BUILD)/tests/plugins/libplugin_%.so: tests/plugins/plugin.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g $(PLUGIN_CFLAGS) $(WARN) -fPIC -shared -o $@ $<

$(BUILD)/tests/fakes/%/libhtrace.so: tests/fakes/fakeagent.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -fPIC -shared -D$(shell echo $* | tr a-z A-Z) -o $@ $< src/common/apis.c

# the benchmark program: -O2 without frame pointers, as most distribution code
$(BENCH): bench/bench.c bench/deep.c bench/deep.h include/htrace.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -g -fomit-frame-pointer $(WARN) -Iinclude -o $@ bench/bench.c bench/deep.c -lpthread

$(DEMO): examples/leaky.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -fomit-frame-pointer $(WARN) -o $@ $<

demo: deps
	@$(MAKE) --no-print-directory $(HTRACE) $(AGENT) $(DEMO)
	@echo '$$ htrace run -- $(DEMO)'
	@$(HTRACE) run -- $(DEMO); status=$$?; [ $$status -eq 0 ] || exit $$status

check: deps
	@$(MAKE) --no-print-directory $(HTRACE) $(AGENT) $(GDB_COMMAND) $(UNIT_TESTS) $(VICTIMS) $(PLUGINS) $(DEMO) $(FAKE_AGENTS) $(BENCH) $(ASAN_HTRACE)
	@HTRACE=$(abspath $(HTRACE)) HTRACE_VICTIMS=$(abspath $(BUILD)/tests/victims) \
		HTRACE_BUILD=$(abspath $(BUILD)) tests/run.sh

test: check

# the tests again with the agent, the client and the unit tests built with
# UBSan (in $(BUILD)/ubsan), stopping at the first undefined behaviour
sanitize: deps
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/ubsan HTRACE_SANITIZED=1 \
		CFLAGS="-O1 -g -fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=all" check

# the benchmark suite (bench/run.py): one table and the overhead budget;
# QUICK=1 for a short run.  Never fails on a timing.
bench: deps
	@$(MAKE) --no-print-directory all $(BENCH)
	@HTRACE=$(abspath $(HTRACE)) HTRACE_AGENT=$(abspath $(AGENT)) HTRACE_BENCH=$(abspath $(BENCH)) \
		python3 bench/run.py $(if $(QUICK),--quick)

install: $(HTRACE) $(AGENT) $(GDB_COMMAND)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/htrace \
		$(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/htrace
	install -m 755 $(HTRACE) $(DESTDIR)$(PREFIX)/bin/htrace
	install -m 755 $(AGENT) $(DESTDIR)$(PREFIX)/lib/htrace/libhtrace.so
	install -m 644 include/htrace.h $(DESTDIR)$(PREFIX)/include/htrace.h
	install -m 644 man/htrace.1 $(DESTDIR)$(PREFIX)/share/man/man1/htrace.1
	install -m 644 $(GDB_COMMAND) $(DESTDIR)$(PREFIX)/share/htrace/htrace-gdb.py

clean:
	rm -rf $(BUILD)
