"""Build what the real-kernel boot tests need: /init programs, an initramfs, the kernel.

Standard library only, plus pytest for the fixture.

- build_programs(): compiles tests/kernel_init/ (freestanding static i386 C and
  assembly, no libc: see kernel_init/lib.h) into ELF programs with gcc -m32 and ld.
  native=True builds the -DNATIVE_TEST variant that may run on the host: it
  cannot power anything off (the reboot call is not compiled in, and
  assert_no_reboot() checks the bytes before anything runs it).
- newc_archive() / read_newc(): a cpio "newc" writer (directories, regular
  files with modes, character device nodes, TRAILER!!!) and a reader to check
  it; build_initrd() lays out /init, /bin/... and /dev/console, gzip'ed or not.
- vmlinux: a session fixture giving the gunzipped Linux 2.6.23 lguest Guest
  kernel, from LGDBG_TEST_KERNEL or ../shared/kernel/ next to the repository.
  Without one, test_kernel_boot.py skips with one line naming LGDBG_TEST_KERNEL,
  except under CI=true, where a missing kernel is a failure: CI must boot it.
"""

import gzip
import json
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from functools import cached_property

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
INIT_SRC = os.path.join(TESTS, "kernel_init")
DEFAULT_KERNEL = os.path.join(ROOT, "..", "shared", "kernel", "vmlinux-2.6.23.17-lguest.gz")

# Freestanding i386 for Linux 2.6.23.  -mno-sse/-mno-mmx keep C code off the
# vector registers (fpu.S owns them); -fno-builtin and no loop-to-memset
# rewriting keep gcc from calling library functions we do not have (lib.c
# supplies memcpy/memset/memcmp for the struct copies it may still emit).
CFLAGS = ["-m32", "-march=i686", "-static", "-nostdlib", "-ffreestanding", "-fno-pic",
          "-fno-pie", "-fno-stack-protector", "-O1", "-fno-builtin",
          "-fno-tree-loop-distribute-patterns", "-mno-sse", "-mno-mmx",
          "-fno-asynchronous-unwind-tables", "-Wall"]
LDFLAGS = ["-m", "elf_i386", "-static", "--build-id=none", "-z", "noexecstack"]

COMMON = ["start.S", "lib.c"]
PROGRAMS = {
    "hello": ["hello.c"],           # boot to /init, power off
    "selftest": ["selftest.c", "fpu.S"],   # every check, one line each
    "child": ["child.c"],           # exec'd by selftest as /bin/child
    "bptest": ["bptest.c"],         # one page at two addresses, for breakpoint tests
    "spin": ["spin.c"],             # never ends: bench/gdb_speed.py --kernel
    "disk": ["disk.c"],             # 3.2: read and write files on the virtio disk, or restart
}

# The selftest's checks, in its order: each prints "ok: NAME: ..." or "FAIL: NAME: ...".
SELFTEST_CHECKS = ["init", "console", "fpu", "segv-kernel-read", "segv-kernel-write",
                   "segv-switcher-read", "exec", "cow", "fault-handler", "mmap", "nanosleep"]

# reboot(2)'s magic numbers as little-endian immediates: a native build must not hold them.
REBOOT_MAGIC = [(0xfee1dead).to_bytes(4, "little"), (0x4321fedc).to_bytes(4, "little")]


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("%s failed:\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))


def build_programs(outdir, native=False):
    """Compile and link every program of PROGRAMS into outdir; {name: path}."""
    outdir = str(outdir)
    os.makedirs(outdir, exist_ok=True)
    flags = CFLAGS + (["-DNATIVE_TEST"] if native else [])
    objs = {}
    for src in sorted(set(COMMON).union(*PROGRAMS.values())):
        obj = os.path.join(outdir, src.replace(".", "_") + ".o")
        _run(["gcc"] + flags + ["-c", os.path.join(INIT_SRC, src), "-o", obj])
        objs[src] = obj
    out = {}
    for name, srcs in PROGRAMS.items():
        elf = os.path.join(outdir, name)
        _run(["ld"] + LDFLAGS + ["-o", elf] + [objs[s] for s in COMMON + srcs])
        out[name] = elf
    if native:
        for elf in out.values():
            assert_no_reboot(elf)
    return out


def assert_no_reboot(path):
    """Refuse a binary that could call reboot(2): never run one on the host."""
    with open(path, "rb") as f:
        data = f.read()
    for magic in REBOOT_MAGIC:
        if magic in data:
            raise AssertionError("%s holds a reboot magic number: not running it here" % path)


# ---- cpio "newc" ------------------------------------------------------------------

@dataclass
class Entry:
    """One archive member: name without a leading '/', mode with its type bits."""
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple = (0, 0)


def directory(name, perm=0o755):
    return Entry(name, stat.S_IFDIR | perm)


def regular(name, data, perm=0o644):
    return Entry(name, stat.S_IFREG | perm, data)


def chardev(name, major, minor, perm=0o600):
    return Entry(name, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad4(n):
    return (4 - n % 4) % 4


def newc_archive(entries):
    """The entries as a cpio "newc" archive (magic 070701), ending in TRAILER!!!.

    Each member: a 110-byte ASCII header of 8-digit hex fields, the name with
    its NUL, padding to 4 bytes, the data, padding to 4 bytes.  Times are 0
    and inode numbers sequential so the same entries give the same bytes.
    """
    out = bytearray()
    members = list(entries) + [Entry("TRAILER!!!", 0)]
    for ino, e in enumerate(members, start=1):
        trailer = e.name == "TRAILER!!!"
        name = e.name.encode() + b"\0"
        fields = [
            0 if trailer else ino,                      # c_ino
            e.mode,                                     # c_mode
            0, 0,                                       # c_uid, c_gid
            2 if stat.S_ISDIR(e.mode) else 1,           # c_nlink
            0,                                          # c_mtime
            len(e.data),                                # c_filesize
            0, 0,                                       # c_devmajor, c_devminor
            e.rdev[0], e.rdev[1],                       # c_rdevmajor, c_rdevminor
            len(name),                                  # c_namesize, NUL included
            0,                                          # c_check (newc: 0)
        ]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out += header + name + b"\0" * _pad4(len(header) + len(name))
        out += e.data + b"\0" * _pad4(len(e.data))
    return bytes(out)


def read_newc(data):
    """Parse a newc archive back into Entries (the trailer left out)."""
    entries, off = [], 0
    while True:
        if data[off:off + 6] != b"070701":
            raise ValueError("no newc magic at offset %d" % off)
        f = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        off += 110
        name = data[off:off + namesize - 1].decode()
        off += namesize + _pad4(110 + namesize)
        if name == "TRAILER!!!":
            return entries
        entries.append(Entry(name, mode, data[off:off + size], (rmaj, rmin)))
        off += size + _pad4(size)


def build_initrd(path, init, files=(), compress=True):
    """Write an initramfs to path: /init (the program at `init`), /dev/console
    (char 5:1, so that the kernel opens it as init's fds 0-2), /bin, and
    `files`: (name in the archive, program path) pairs, installed 0755."""
    with open(init, "rb") as f:
        entries = [directory("dev"), chardev("dev/console", 5, 1), directory("bin"),
                   regular("init", f.read(), 0o755)]
    for name, src in files:
        with open(src, "rb") as f:
            entries.append(regular(name, f.read(), 0o755))
    data = newc_archive(entries)
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# ---- the kernels -------------------------------------------------------------------
# Two real Guests: 2.6.23 (the GenuineLguest ABI) and 3.2 (the later ABI with
# virtio), each from its own variable or from ../shared beside the repository.
KERNELS = {
    "2.6.23": ("LGDBG_TEST_KERNEL", DEFAULT_KERNEL),
    "3.2": ("LGDBG_TEST_KERNEL32",
            os.path.join(ROOT, "..", "shared", "kernel-3.2", "vmlinux-3.2.65-lguest.gz")),
}


def kernel_source(version="2.6.23"):
    """(path of the kernel, how it was chosen) — the path may not exist."""
    var, default = KERNELS[version]
    env = os.environ.get(var)
    if env:
        return env, var
    return os.path.normpath(default), "the default"


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def missing_kernel(version="2.6.23"):
    """None if the kernel is there, else the one line that says what to set."""
    path, how = kernel_source(version)
    if os.path.isfile(path):
        return None
    return ("no lguest Guest kernel at %s (%s): set %s to a Linux %s "
            "lguest vmlinux (or .gz) to run the kernel boot tests"
            % (path, how, KERNELS[version][0], version))


def unpacked_kernel(tmp_path_factory, version):
    """Path of the uncompressed kernel; skip without one, or fail under CI=true."""
    msg = missing_kernel(version)
    if msg:
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    path, _ = kernel_source(version)
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        return path
    out = tmp_path_factory.mktemp("kernel") / "vmlinux"
    with gzip.open(path, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return str(out)


@pytest.fixture(scope="session")
def vmlinux(tmp_path_factory):
    """Path of the uncompressed 2.6.23 Guest kernel, unpacked once per session."""
    return unpacked_kernel(tmp_path_factory, "2.6.23")


@pytest.fixture(scope="session")
def vmlinux32(tmp_path_factory):
    """Path of the uncompressed 3.2 Guest kernel, unpacked once per session."""
    return unpacked_kernel(tmp_path_factory, "3.2")


# ---- an ext2 root filesystem for the 3.2 Guest's virtio disk --------------------------

def build_ext2(path, init, files=(), size="4M"):
    """An ext2 image with /init, /dev/console (5:1), /bin and `files`: (name, bytes)
    pairs.  mke2fs -d copies a directory in; the device node is made by
    debugfs inside the image, so no root privileges are needed."""
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "dev"))
        os.makedirs(os.path.join(root, "bin"))
        shutil.copy(init, os.path.join(root, "init"))
        os.chmod(os.path.join(root, "init"), 0o755)
        for name, data in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        _run(["mke2fs", "-q", "-F", "-t", "ext2", "-d", root, str(path), size])
    r = subprocess.run(["debugfs", "-w", "-f", "-", str(path)], capture_output=True, text=True,
                       input="cd /dev\nmknod console c 5 1\n")
    if r.returncode or "console" not in subprocess.run(
            ["debugfs", "-R", "ls -l /dev", str(path)], capture_output=True, text=True).stdout:
        raise RuntimeError("debugfs mknod /dev/console failed:\n" + r.stdout + r.stderr)
    return str(path)


def ext2_cat(path, name):
    """A file's bytes, read out of an ext2 image by debugfs (not by lgdbg)."""
    r = subprocess.run(["debugfs", "-R", "cat %s" % name, str(path)], capture_output=True)
    if r.returncode != 0:
        raise AssertionError("debugfs cat %s: %s" % (name, r.stderr.decode()))
    return r.stdout


# ---- one run of a kernel, and reading it ---------------------------------------------

@dataclass(repr=False)
class Boot:
    """One `lgdbg run` of the kernel: its command, status, streams and trace."""
    cmd: list
    status: int
    stdout: str
    stderr: str
    trace: str = None

    @cached_property
    def lines(self):
        # The tty turns "\n" into "\r\n": splitlines takes both.
        return self.stdout.splitlines()

    @cached_property
    def events(self):
        if not os.path.exists(self.trace):
            pytest.fail("no trace written\n" + self.describe())
        with open(self.trace) as f:
            return [json.loads(line) for line in f]

    def __repr__(self):             # short in pytest's "where ..." lines; describe() has it all
        return "Boot(status=%d)" % self.status

    def describe(self):
        """What a failing assertion shows: the command, status and the ends of both streams."""
        return "\n".join(
            ["$ " + " ".join(str(c) for c in self.cmd), "status %d" % self.status,
             "--- stderr (last 10 lines) ---"] + self.stderr.splitlines()[-10:]
            + ["--- console (last 25 lines) ---"] + self.lines[-25:])


def check_line(run, name):
    """The one "ok: NAME:" line of the selftest's check NAME, or a failure saying why not."""
    ok = [line for line in run.lines if "ok: %s:" % name in line]
    fail = [line for line in run.lines if "FAIL: %s:" % name in line]
    assert len(ok) == 1 and not fail, "check %s: %s\n%s" % (
        name, "\n".join(fail) or "no 'ok: %s:' line (%d of them)" % (name, len(ok)),
        run.describe())
    return ok[0]


def page_faults(run, cr2):
    """The trace's #PF events at cr2 that the Host reflected into the Guest."""
    return [e for e in run.events if e["kind"] == "trap" and e["vector"] == 14
            and e.get("cr2") == cr2 and e["delivered"]]


BOOT_MAX_INSNS = 2_000_000_000     # generous: a boot to power-off is ~70-300 M
BOOT_TIMEOUT = 1800                 # seconds; --max-insns should end a runaway first


def boot_kernel(kernel, *args, cmdline=None, stdin="", trace=None):
    """`lgdbg run KERNEL --mem 64 --max-insns N [--cmdline ...] ARGS [--trace]`."""
    import sys
    cmd = [sys.executable, "-m", "lgdbg", "run", str(kernel), "--mem", "64",
           "--max-insns", str(BOOT_MAX_INSNS)]
    if cmdline is not None:
        cmd += ["--cmdline", cmdline]
    cmd += [str(a) for a in args]
    if trace:
        cmd += ["--trace", str(trace)]
    return run_lgdbg(cmd, stdin, trace, BOOT_TIMEOUT)


def run_lgdbg(cmd, stdin="", trace=None, timeout=BOOT_TIMEOUT):
    """Run an `lgdbg` command line to its end: a Boot to read."""
    r = subprocess.run(cmd, input=stdin.encode(), capture_output=True, timeout=timeout,
                       cwd=ROOT)
    return Boot(cmd, r.returncode, r.stdout.decode("utf-8", "replace"),
                r.stderr.decode("utf-8", "replace"), str(trace) if trace else None)


def parse_patch_summary(text):
    """({state: n}, {type: {state: n}}) from the summary line of lguest-patches
    (or the REPL's patches); type names may hold dots (3.2's pv_irq_ops.save_fl)."""
    line = next(line for line in text.splitlines() if line.startswith("summary: "))
    m = re.match(r"summary: (\d+)(?: of \d+)? sites; by state: (.*); by type: (.*)$", line)
    assert m, line
    states = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", m.group(2))}
    types = {}
    for name, total, inner in re.findall(r"([\w.]+) (\d+) \(([^)]*)\)", m.group(3)):
        types[name] = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", inner)}
        assert sum(types[name].values()) == int(total)
    assert sum(states.values()) == int(m.group(1))
    return states, types


# The 3.2 kernel's sources (for gdb's substitute-path in the journey tests).
KERNEL32_SRC = os.path.normpath(os.path.join(ROOT, "..", "shared", "kernel-3.2", "src"))
