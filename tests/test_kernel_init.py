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


# ---- fpu.S on the CPU emulator lgdbg runs the Guest on ------------------------------------

FPU_DRIVER = """
	.text
	.globl	_start
_start:				/* at 0x10000: fpu_sse_run(0x20000), then hlt */
	movl	$0x80000, %esp
	pushl	$0x20000
	call	fpu_sse_run
	hlt
	.org	0x10
yield_stub:			/* at 0x10010: the "other processes" run here */
	ret
	.section .note.GNU-stack, "", @progbits
"""
JOBS = {  # cw, mxcsr, a, b (doubles), sa, sb (floats): the selftest's two settings
    "A": (0x037f, 0x1f80, 0x3ff199999999999a, 0x3fe6666666666666, 0x3f8ccccd, 0x3f333333),
    "B": (0x0c7f, 0x7f80, 0x3feccccccccccccd, 0x4002666666666666, 0x3f666666, 0x40133333),
}


@pytest.fixture(scope="module")
def fpu_blob(tmp_path_factory):
    d = tmp_path_factory.mktemp("fpu")
    (d / "drv.S").write_text(FPU_DRIVER)
    for src, obj in ((d / "drv.S", d / "drv.o"), (kernelboot.INIT_SRC + "/fpu.S", d / "fpu.o")):
        subprocess.run(["gcc", "-m32", "-c", str(src), "-o", str(obj)], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x10000", "--build-id=none", "-o",
                    str(d / "drv.elf"), str(d / "drv.o"), str(d / "fpu.o")], check=True)
    subprocess.run(["objcopy", "-O", "binary", str(d / "drv.elf"), str(d / "drv.bin")],
                   check=True)
    return (d / "drv.bin").read_bytes()


def run_fpu_job(blob, name, at_yield=None):
    """fpu_sse_run on unicorn for job `name`; at_yield(uc, i) plays the other
    processes at each yield.  Returns (x87 sum hex, sse sum hex, bad count)."""
    import struct
    from unicorn import Uc, UC_ARCH_X86, UC_MODE_32, UC_HOOK_CODE
    from unicorn import x86_const as X
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x100000)
    uc.mem_write(0x10000, blob)
    yield_fn = 0x10010 if at_yield else 0
    uc.mem_write(0x20000, struct.pack("<IIQQIIII", *JOBS[name], 200, yield_fn) + bytes(32))
    if at_yield:
        def hook(uc, addr, size, _):
            esp = uc.reg_read(X.UC_X86_REG_ESP)
            at_yield(uc, struct.unpack("<I", uc.mem_read(esp + 4, 4))[0])
        uc.hook_add(UC_HOOK_CODE, hook, begin=0x10010, end=0x10010)
    uc.emu_start(0x10000, 0xff000, count=100000)      # ends at the hlt (the count stops it)
    out = bytes(uc.mem_read(0x20000, 68))
    return out[40:50][::-1].hex(), out[52:56][::-1].hex(), struct.unpack_from("<I", out, 56)[0]


def test_fpu_check_sees_a_shared_fpu_on_the_emulator(fpu_blob):
    """The selftest's fpu check on unicorn (the Guest's CPU): the two settings
    give different sums, and another process's control word, x87 register or
    SSE register showing up at a yield (what a shared FPU does) changes the
    result or is caught by the read-back, while a yield that leaves the FPU
    alone changes nothing."""
    from unicorn import x86_const as X
    alone = {n: run_fpu_job(fpu_blob, n) for n in JOBS}
    assert alone["A"][:2] != alone["B"][:2] and alone["A"][2] == alone["B"][2] == 0
    assert run_fpu_job(fpu_blob, "A", lambda uc, i: None) == alone["A"]

    def cw_of_b(uc, i):
        if i == 50:
            uc.reg_write(X.UC_X86_REG_FPCW, JOBS["B"][0])
    x87, sse, bad = run_fpu_job(fpu_blob, "A", cw_of_b)
    assert bad > 0 and x87 != alone["A"][0]

    def mxcsr_of_b(uc, i):
        if i == 50:
            uc.reg_write(X.UC_X86_REG_MXCSR, JOBS["B"][1])
    assert run_fpu_job(fpu_blob, "A", mxcsr_of_b)[2] > 0

    def xmm0_lost(uc, i):
        if i == 50:
            uc.reg_write(X.UC_X86_REG_XMM0, 0)
    assert run_fpu_job(fpu_blob, "A", xmm0_lost)[1] != alone["A"][1]

    def st0_lost(uc, i):             # the sum, st(0): physical register TOP
        if i == 50:
            top = (uc.reg_read(X.UC_X86_REG_FPSW) >> 11) & 7
            uc.reg_write(getattr(X, "UC_X86_REG_FP%d" % top), (0, 0))
    assert run_fpu_job(fpu_blob, "A", st0_lost)[0] != alone["A"][0]
