#!/bin/sh
# Installs the Debian packages htrace needs to build and test, when they are
# missing.  Run by `make demo`, `make check` and `make bench`; needs root (or sudo) only
# when something is missing.
set -e

# qemu-system-x86 and busybox-static: the bench's guest (bench/guest.py)
PACKAGES="gcc make pkg-config libunwind-dev libdw-dev libelf-dev python3 gdb valgrind strace lsof chromium
qemu-system-x86 busybox-static"

missing=""
for pkg in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $pkg"
	fi
done
[ -z "$missing" ] && exit 0

echo "htrace: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "htrace: need root to install:$missing (run: apt-get install$missing)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
