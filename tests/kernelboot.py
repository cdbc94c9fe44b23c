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
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass

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


# ---- the kernel -------------------------------------------------------------------

def kernel_source():
    """(path of the kernel, how it was chosen) — the path may not exist."""
    env = os.environ.get("LGDBG_TEST_KERNEL")
    if env:
        return env, "LGDBG_TEST_KERNEL"
    return os.path.normpath(DEFAULT_KERNEL), "the default"


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def missing_kernel():
    """None if the kernel is there, else the one line that says what to set."""
    path, how = kernel_source()
    if os.path.isfile(path):
        return None
    return ("no lguest Guest kernel at %s (%s): set LGDBG_TEST_KERNEL to a Linux 2.6.23 "
            "lguest vmlinux (or .gz) to run the kernel boot tests" % (path, how))


def unpacked_kernel(source, missing, tmp_path_factory, name):
    """The kernel of source() uncompressed (once: the fixtures are per session);
    missing() says why there is none: a skip, or a failure under CI=true."""
    msg = missing()
    if msg:
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    path, _ = source()
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        return path
    out = tmp_path_factory.mktemp(name) / "vmlinux"
    with gzip.open(path, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return str(out)


@pytest.fixture(scope="session")
def vmlinux(tmp_path_factory):
    """Path of the uncompressed Guest kernel, unpacked once per session."""
    return unpacked_kernel(kernel_source, missing_kernel, tmp_path_factory, "kernel")


def parse_patch_summary(text):
    """({state: n}, {type: {state: n}}) from the summary line of lguest-patches
    (or the REPL's patches); type names may hold dots (3.2's pv_irq_ops.save_fl)."""
    line = next(l for l in text.splitlines() if l.startswith("summary: "))
    m = re.match(r"summary: (\d+)(?: of \d+)? sites; by state: (.*); by type: (.*)$", line)
    assert m, line
    states = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", m.group(2))}
    types = {}
    for name, total, inner in re.findall(r"([\w.]+) (\d+) \(([^)]*)\)", m.group(3)):
        types[name] = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", inner)}
        assert sum(types[name].values()) == int(total)
    assert sum(states.values()) == int(m.group(1))
    return states, types


# ---- the Linux 3.2 kernel (the later lguest ABI, issue 18) -------------------------

DEFAULT_KERNEL32 = os.path.join(ROOT, "..", "shared", "kernel-3.2", "vmlinux-3.2.65-lguest.gz")
KERNEL32_SRC = os.path.normpath(os.path.join(ROOT, "..", "shared", "kernel-3.2", "src"))


def kernel32_source():
    """(path of the 3.2 kernel, how it was chosen) — the path may not exist."""
    env = os.environ.get("LGDBG_TEST_KERNEL32")
    if env:
        return env, "LGDBG_TEST_KERNEL32"
    return os.path.normpath(DEFAULT_KERNEL32), "the default"


def missing_kernel32():
    """None if the 3.2 kernel is there, else the one line that says what to set."""
    path, how = kernel32_source()
    if os.path.isfile(path):
        return None
    return ("no Linux 3.2 lguest Guest kernel at %s (%s): set LGDBG_TEST_KERNEL32 to a 3.2 "
            "lguest vmlinux (or .gz) to run the 3.2 kernel tests" % (path, how))


@pytest.fixture(scope="session")
def vmlinux32(tmp_path_factory):
    """Path of the uncompressed 3.2 Guest kernel, unpacked once per session."""
    return unpacked_kernel(kernel32_source, missing_kernel32, tmp_path_factory, "kernel32")
