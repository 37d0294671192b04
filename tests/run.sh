#!/bin/sh
# Runs every htrace test: the unit tests built into $HTRACE_BUILD/tests/unit
# and the end-to-end scripts tests/test_*.py.  Exit status 77 means skipped
# (and says why).  Prints one line per test and a final count; exits 1 when
# any test failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${HTRACE_BUILD:-build}
passed=0 failed=0 skipped=0 failures=""

run_one() {
	name=$1
	shift
	log=$(mktemp)
	"$@" >"$log" 2>&1
	status=$?
	case $status in
	0) passed=$((passed + 1)); echo "PASS $name" ;;
	77) skipped=$((skipped + 1)); echo "SKIP $name: $(grep -i skip "$log" | head -1)" ;;
	*) failed=$((failed + 1)); failures="$failures $name"
	   echo "FAIL $name (exit $status)"; sed 's/^/    /' "$log" | tail -40 ;;
	esac
	rm -f "$log"
}

for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] && run_one "unit/$(basename "$t")" "$t"
done
for t in tests/test_*.py; do
	run_one "$(basename "$t" .py)" python3 "$t"
done

echo "$passed passed, $failed failed, $skipped skipped"
[ -n "$failures" ] && echo "failed:$failures"
[ "$failed" -eq 0 ]
