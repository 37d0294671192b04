"""A virtual machine for the bench's client check, where this one cannot
hold 100,000 descriptors in one process: its hard RLIMIT_NOFILE is lower
and only CAP_SYS_RESOURCE raises it.  bench/run.py then asks this module
to run the same check in a qemu guest, where the check runs as root with
every capability.

The guest boots Debian's own kernel (linux-image-amd64, downloaded into
build/guest/ and unpacked there, its image and a few modules kept, not
installed) from an initramfs of
busybox and the virtio and 9p modules.  Its root is this machine's root,
shared read-only over 9p, with the guest's own /proc, /sys, /dev and a
tmpfs /run (its TMPDIR) mounted over it: the guest runs this build's very
binaries (even bench/run.py's copies of them in /tmp) and bench/run.py
with this machine's Python.  It runs under software
emulation (qemu's TCG): every instruction, and a kernel entry even more,
costs many times what it does here, so only ratios measured inside the
guest compare with each other.  KVM is not used: /dev/kvm may exist
where the CPU does not offer virtualization to us, and a guest then
hangs instead of failing.

The packages it needs (qemu-system-x86, busybox-static) are installed by
scripts/install-deps.sh.  What keeps a guest from running here (a tool
missing, Debian's kernel package out of reach) gives a reason, which
run.py reports as the check's SKIP; a guest that breaks once it could
run gives a reason starting "ERROR", which run.py counts as an error."""

import gzip
import lzma
import os
import re
import shlex
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "build", "guest")
APT_SECONDS = 600
KERNEL_META = "linux-image-amd64"
# the modules that mount a 9p root over virtio, with what they depend on
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
BUSYBOX = "/bin/busybox"  # busybox-static's: the initramfs has no libc
BEGIN, END = "=== htrace guest begin", "=== htrace guest end"

INIT = """#!/bin/busybox sh
# The guest's init: mounts this machine's root read-only over 9p, runs
# the command between the markers, and powers off.
b=/bin/busybox
$b mount -t proc proc /proc
for m in $($b cat /modules); do $b insmod /modules.d/$m.ko || echo "guest: insmod $m failed"; done
if $b mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /mnt; then
	$b mount -t proc proc /mnt/proc
	$b mount -t sysfs sys /mnt/sys
	$b mount -t devtmpfs dev /mnt/dev
	$b mount -t tmpfs run /mnt/run
	echo "{begin}"
	$b chroot /mnt /bin/sh {command} 2>&1
	echo "{end} $?"
else
	echo "guest: cannot mount the host's root over 9p"
fi
$b poweroff -f
"""


def run_quiet(argv, **kw):
    try:
        return subprocess.run(argv, capture_output=True, text=True, **kw)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -1, "", f"{argv[0]} timed out")


def kernel_package():
    """The versioned kernel package linux-image-amd64 depends on, or None."""
    for attempt in range(2):
        p = run_quiet(["apt-cache", "depends", KERNEL_META], timeout=APT_SECONDS)
        m = re.search(r"Depends: (linux-image-[\w.+-]+)", p.stdout)
        if m:
            return m.group(1)
        if attempt == 0:
            run_quiet(["apt-get", "update", "-qq"], timeout=APT_SECONDS)
    return None


def unpacked_kernel(work):
    """build/guest/<package>/ with the kernel image and the modules that
    mount the root, downloading the package the first time; (dir, None)
    or (None, reason)."""
    package = kernel_package()
    if not package:
        return None, f"apt knows no package for {KERNEL_META}"
    tree = os.path.join(work, package)
    if os.path.isdir(os.path.join(tree, "boot")):
        return tree, None
    with tempfile.TemporaryDirectory(dir=work, prefix="download-") as part:
        p = run_quiet(["apt-get", "download", package], cwd=part, timeout=APT_SECONDS)
        debs = [f for f in os.listdir(part) if f.startswith(package + "_") and f.endswith(".deb")]
        if not debs:
            return None, f"apt-get download {package} failed: {(p.stderr or p.stdout).strip()[-200:]}"
        full, kept = os.path.join(part, "full"), os.path.join(part, "kept")
        p = run_quiet(["dpkg-deb", "-x", os.path.join(part, debs[0]), full])
        if p.returncode != 0:
            return None, f"ERROR: dpkg-deb -x {debs[0]}: {p.stderr.strip()[-200:]}"
        if not keep_what_boots(full, kept):
            return None, f"ERROR: no kernel image in {debs[0]}"
        try:
            os.rename(kept, tree)
        except OSError as e:
            if not os.path.isdir(os.path.join(tree, "boot")):  # else another run unpacked it meanwhile
                return None, f"ERROR: cannot move the kernel to {tree}: {e}"
    return tree, None


def keep_what_boots(full, kept):
    """Of the unpacked package full, the kernel image and the modules
    ROOT_MODULES need, into kept (a few MiB of its 400); whether it had
    an image."""
    os.makedirs(os.path.join(kept, "boot"))
    os.makedirs(os.path.join(kept, "modules"))
    boot = os.path.join(full, "boot")
    for f in os.listdir(boot):
        if f.startswith("vmlinuz-"):
            shutil.copy(os.path.join(boot, f), os.path.join(kept, "boot", f))
    index = module_index(full)
    for name in module_order(index, ROOT_MODULES):
        shutil.copy(index[name], os.path.join(kept, "modules", os.path.basename(index[name])))
    return kernel_image(kept) is not None


def module_index(tree):
    """Every module of the kernel tree, plain or xz-compressed: name -> path."""
    index = {}
    for base, _, files in os.walk(tree):
        for f in files:
            m = re.fullmatch(r"(.+)\.ko(\.xz)?", f)
            if m:
                index[m.group(1).replace("-", "_")] = os.path.join(base, f)
    return index


def module_bytes(path):
    """A module as insmod loads it: uncompressed."""
    with (lzma.open if path.endswith(".xz") else open)(path, "rb") as f:
        return f.read()


def module_depends(path):
    """The modules a module needs loaded first (its .modinfo's depends=)."""
    m = re.search(rb"depends=([\w,-]*)\0", module_bytes(path))
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d] if m else []


def module_order(index, wanted):
    """wanted and what they depend on, each after its dependencies; the
    ones the kernel has built in (no .ko) are left out."""
    order = []

    def visit(name):
        if name in order or name not in index:
            return
        for dep in module_depends(index[name]):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def write_initramfs(tree, work, command):
    """The initramfs (gzip'd newc cpio, made by busybox) that runs command,
    a script's path on this machine's root; its path, or None."""
    staging = os.path.join(work, "initramfs")
    for d in ("bin", "proc", "mnt", "modules.d"):
        os.makedirs(os.path.join(staging, d))
    shutil.copy(BUSYBOX, os.path.join(staging, "bin", "busybox"))
    index = module_index(tree)
    order = module_order(index, ROOT_MODULES)
    for name in order:
        with open(os.path.join(staging, "modules.d", name + ".ko"), "wb") as f:
            f.write(module_bytes(index[name]))
    with open(os.path.join(staging, "modules"), "w") as f:
        f.write(" ".join(order) + "\n")
    init = os.path.join(staging, "init")
    with open(init, "w") as f:
        f.write(INIT.format(begin=BEGIN, end=END, command=shlex.quote(command)))
    os.chmod(init, 0o755)
    names = sorted(os.path.relpath(os.path.join(b, n), staging)
                   for b, dirs, files in os.walk(staging) for n in dirs + files)
    p = subprocess.run([BUSYBOX, "cpio", "-o", "-H", "newc"], cwd=staging, input="\n".join(names).encode(),
                       capture_output=True)
    if p.returncode != 0:
        return None
    image = os.path.join(work, "initramfs.gz")
    with gzip.open(image, "wb", compresslevel=1) as f:
        f.write(p.stdout)
    return image


def kernel_image(tree):
    boot = os.path.join(tree, "boot")
    images = [f for f in os.listdir(boot) if f.startswith("vmlinuz-")]
    return os.path.join(boot, images[0]) if images else None


def missing_tools():
    """Why no guest can run here, or None."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed (Debian's qemu-system-x86)"
    if not os.access(BUSYBOX, os.X_OK):
        return f"{BUSYBOX} is missing (Debian's busybox-static)"
    with open(BUSYBOX, "rb") as f:
        if b"/ld-linux" in f.read(4096):
            return f"{BUSYBOX} is not static (Debian's busybox-static)"
    if not all(shutil.which(tool) for tool in ("apt-get", "apt-cache", "dpkg-deb")):
        return "no apt-get, apt-cache and dpkg-deb to fetch Debian's kernel"
    return None


def guest_memory_mib():
    """4 GiB, or half of what this machine has free, if less."""
    with open("/proc/meminfo") as f:
        free = re.search(r"MemAvailable:\s+(\d+) kB", f.read())
    return min(4096, int(free.group(1)) // 2048) if free else 2048


def boot(kernel, initramfs, timeout):
    """Boots the guest: (its console output, qemu's complaints), or raises
    TimeoutExpired (qemu killed)."""
    argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max",
            "-smp", str(min(os.cpu_count() or 1, 4)), "-m", str(guest_memory_mib()),
            "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initramfs,
            "-append", "console=ttyS0 quiet loglevel=1 panic=-1",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    complaints = f"qemu exit {p.returncode}: {p.stderr.decode(errors='replace').strip()[-300:]}"
    return p.stdout.decode(errors="replace").replace("\r", ""), complaints


def kernel_tree(work=WORK):
    """Debian's kernel unpacked in work, once the tools are there too:
    (its tree, None), or (None, why no guest can run here)."""
    reason = missing_tools()
    if reason:
        return None, reason
    os.makedirs(work, exist_ok=True)
    return unpacked_kernel(work)


def run(script, timeout=1800):
    """Runs the shell script (its text) as root in a fresh guest; returns
    (what it printed, its exit status, None) or (None, None, reason)."""
    tree, reason = kernel_tree()
    if not tree:
        return None, None, reason
    kernel = kernel_image(tree)
    if not kernel:
        return None, None, f"ERROR: no kernel image in {tree}"
    with tempfile.TemporaryDirectory(dir=WORK, prefix="run-") as here:
        command = os.path.join(here, "command.sh")
        with open(command, "w") as f:
            f.write("export TMPDIR=/run\n" + script)
        initramfs = write_initramfs(tree, here, command)
        if not initramfs:
            return None, None, "ERROR: busybox cpio failed"
        try:
            console, complaints = boot(kernel, initramfs, timeout)
        except subprocess.TimeoutExpired:
            return None, None, f"ERROR: the guest did not finish within {timeout} s"
    m = re.search(re.escape(BEGIN) + r"\n(.*)" + re.escape(END) + r" (\d+)", console, re.S)
    if not m:
        return None, None, f"ERROR: the guest ran nothing: {console.strip()[-300:]!r}; {complaints}"
    return m.group(1), int(m.group(2)), None

