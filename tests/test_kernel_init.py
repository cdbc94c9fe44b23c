"""The /init programs and initramfs of test_kernel_boot.py, tested without a kernel.

The cpio archive reads back (with our reader and with GNU cpio), and the
programs, built with -DNATIVE_TEST (the reboot call is not compiled in, and
kernelboot checks the bytes before anything runs), pass every check of the
selftest on the host: an x86 Linux kernel runs i386 binaries with the same
system-call ABI, which proves the wrappers, signal handling, fork/exec/wait,
FPU/SSE and mmap code before the Guest runs it.  These run everywhere, with
or without the Guest kernel.
"""

import gzip
import os
import platform
import re
import shutil
import subprocess

import pytest

import kernelboot

CHECKS = kernelboot.SELFTEST_CHECKS


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    return kernelboot.build_programs(tmp_path_factory.mktemp("kernel_init"))


def test_initrd_archive_reads_back(programs, tmp_path):
    path = kernelboot.build_initrd(tmp_path / "i.cpio.gz", programs["selftest"],
                                   [("bin/child", programs["child"])])
    with gzip.open(path) as f:
        entries = kernelboot.read_newc(f.read())
    got = {e.name: (oct(e.mode), e.rdev) for e in entries}
    assert got == {"dev": ("0o40755", (0, 0)), "dev/console": ("0o20600", (5, 1)),
                   "bin": ("0o40755", (0, 0)), "init": ("0o100755", (0, 0)),
                   "bin/child": ("0o100755", (0, 0))}
    with open(programs["selftest"], "rb") as f:
        assert next(e for e in entries if e.name == "init").data == f.read()
    with open(programs["child"], "rb") as f:
        assert next(e for e in entries if e.name == "bin/child").data == f.read()


@pytest.mark.skipif(not shutil.which("cpio"), reason="no cpio(1) to list the archive with")
def test_initrd_archive_lists_with_cpio(programs, tmp_path):
    """An independent reader: GNU cpio lists what the kernel's unpacker will create."""
    path = kernelboot.build_initrd(tmp_path / "i.cpio", programs["hello"], compress=False)
    with open(path, "rb") as f:
        r = subprocess.run(["cpio", "-itv"], stdin=f, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    listing = r.stdout.splitlines()
    assert len(listing) == 4, listing
    assert re.match(r"drwxr-xr-x\s.*\sdev$", listing[0])
    assert re.match(r"crw-------\s+1\s+\S+\s+\S+\s+5,\s+1\s.*\sdev/console$", listing[1])
    assert re.match(r"drwxr-xr-x\s.*\sbin$", listing[2])
    size = os.path.getsize(programs["hello"])
    assert re.match(r"-rwxr-xr-x\s+1\s+\S+\s+\S+\s+%d\s.*\sinit$" % size, listing[3])


def run_native(path, cwd, stdin=""):
    try:
        return subprocess.run([path], input=stdin, capture_output=True, text=True, timeout=60,
                              cwd=cwd)
    except OSError as e:            # e.g. a 64-bit kernel built without IA32 emulation
        pytest.skip("the host cannot run i386 programs: %s" % e)


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() not in
                    ("x86_64", "i386", "i686"), reason="needs an x86 Linux host")
def test_programs_pass_their_checks_natively(tmp_path):
    """The same code on the host's kernel: proves the wrappers, signals,
    fork/exec/wait, FPU/SSE and mmap code before the Guest runs it.  The
    native build has no reboot call (build_programs checks the bytes)."""
    progs = kernelboot.build_programs(tmp_path, native=True)
    r = run_native(progs["hello"], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("hello: /init running as pid"), r.stdout
    r = run_native(progs["selftest"], tmp_path, "a line from the test\n")
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    for name in CHECKS:
        assert sum(line.startswith("ok: %s:" % name) for line in lines) == 1, (name, r.stdout)
    assert "ok: console: read back 'a line from the test'" in r.stdout
    assert not [line for line in lines if line.startswith("FAIL")], r.stdout
    assert "init: %d checks, 0 failed" % len(CHECKS) in lines


def test_the_reboot_guard_recognises_a_guest_build(programs):
    """The guard that keeps native runs from powering the host off must see
    the reboot call in the Guest's build (else it would guard nothing)."""
    for name in ("hello", "selftest"):
        with pytest.raises(AssertionError, match="reboot magic"):
            kernelboot.assert_no_reboot(programs[name])


def test_a_missing_kernel_is_named_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("LGDBG_TEST_KERNEL", str(tmp_path / "no-such-vmlinux"))
    msg = kernelboot.missing_kernel()
    assert "LGDBG_TEST_KERNEL" in msg and "\n" not in msg
    monkeypatch.setenv("LGDBG_TEST_KERNEL", kernelboot.__file__)     # any existing file
    assert kernelboot.missing_kernel() is None
