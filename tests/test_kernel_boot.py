"""The real Linux 2.6.23 lguest Guest boots on lgdbg (issue 12).

Each boot is `python -m lgdbg run VMLINUX --initrd INITRD --mem 64 --max-insns N`
with an initramfs built here from tests/kernel_init/ (freestanding i386 /init
programs, see kernel_init/lib.h).  A boot costs tens of seconds, so there are
only four: the smallest /init; the selftest /init, which runs every check in a
child and prints one line per check (one test function below reads each
line, so a failure names its check); the same selftest again, for
byte-identical traces; and the kernel without an initrd, which must panic.

The kernel comes from LGDBG_TEST_KERNEL or ../shared/kernel/ (kernelboot.vmlinux):
without one these tests skip with one line, or fail when CI=true.

tests/test_kernel_init.py tests the same programs and archive without a kernel.
"""

import re

import pytest

import kernelboot
from kernelboot import check_line, page_faults
from kernelboot import vmlinux  # noqa: F401  (the session fixture)

# Without a kernel: one skip line for the whole module, naming LGDBG_TEST_KERNEL,
# except under CI=true, where the vmlinux fixture fails each test instead.
if kernelboot.missing_kernel() and not kernelboot.in_ci():
    pytest.skip(kernelboot.missing_kernel(), allow_module_level=True)

CONSOLE_LINE = "typed at the lguest console: 12 words, read back by /init"

CHECKS = kernelboot.SELFTEST_CHECKS


def boot(kernel, initrd=None, stdin="", trace=None):
    return kernelboot.boot_kernel(kernel, *(["--initrd", initrd] if initrd else []),
                                  stdin=stdin, trace=trace)


# ---- fixtures: programs, initrds, the selftest boot ------------------------------------

@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    return kernelboot.build_programs(tmp_path_factory.mktemp("kernel_init"))


@pytest.fixture(scope="module")
def selftest_initrd(programs, tmp_path_factory):
    # gzip'ed (the hello initrd is not: --initrd takes both)
    return kernelboot.build_initrd(tmp_path_factory.mktemp("initrd") / "selftest.cpio.gz",
                                   programs["selftest"], [("bin/child", programs["child"])])


@pytest.fixture(scope="module")
def selftest(vmlinux, selftest_initrd, tmp_path_factory):  # noqa: F811
    """The selftest boot, with a line on the console and a trace."""
    trace = tmp_path_factory.mktemp("trace") / "selftest.jsonl"
    return boot(vmlinux, selftest_initrd, CONSOLE_LINE + "\n", trace)


# ---- boots ----------------------------------------------------------------------------

def test_boot_to_init_and_power_off(vmlinux, programs, tmp_path):  # noqa: F811
    initrd = kernelboot.build_initrd(tmp_path / "hello.cpio", programs["hello"], compress=False)
    run = boot(vmlinux, initrd)
    assert run.status == 0, run.describe()
    assert "Linux version 2.6.23" in run.stdout, run.describe()
    assert any(line.startswith("hello: /init running as pid 1, argv[0] /init, on Linux 2.6.23")
               and line.endswith("console opened by the kernel") for line in run.lines), \
        run.describe()
    assert "FAIL: " not in run.stdout and "powered off" in run.stderr, run.describe()


def test_no_initrd_is_the_vfs_panic_status_1(vmlinux):  # noqa: F811
    run = boot(vmlinux)
    assert run.status == 1, run.describe()
    assert "VFS: Unable to mount root fs" in run.stderr, run.describe()
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in run.stdout, \
        run.describe()


def test_selftest_runs_every_check_and_powers_off(selftest):
    assert selftest.status == 0, selftest.describe()
    assert "init: %d checks, 0 failed" % len(CHECKS) in selftest.lines, selftest.describe()
    assert "init: powering off" in selftest.lines
    assert not [line for line in selftest.lines if "FAIL: " in line], selftest.describe()
    assert selftest.events[-1]["kind"] == "kill"
    assert selftest.events[-1]["reason"] == "CRASH: Power down"


def test_init_is_pid_1_with_the_console(selftest):
    check_line(selftest, "init")


def test_console_line_read_back_by_init(selftest):
    line = check_line(selftest, "console")
    assert "read back '%s'" % CONSOLE_LINE in line
    # The Launcher handed exactly our input to the Guest, and said so in the trace.
    handed = "".join(e["text"] for e in selftest.events if e["kind"] == "console-in")
    assert handed == CONSOLE_LINE + "\n"


def test_fpu_and_sse_in_two_processes_keep_their_own_state(selftest):
    check_line(selftest, "fpu")
    # Cross-check the Guest's comparison: each worker's sums, computed while
    # interleaved with the other, equal the same job's sums computed alone,
    # and the two jobs' sums differ (else a mix-up could not show).
    sums = {}
    for line in selftest.lines:
        m = re.search(r"fpu: (alone|worker) ([AB]) .*x87 sum ([0-9a-f]{20}), sse sum ([0-9a-f]{8})",
                      line)
        if m:
            sums[m.group(1), m.group(2)] = m.group(3, 4)
    assert len(sums) == 4, sums
    assert sums["worker", "A"] == sums["alone", "A"] != sums["alone", "B"] == sums["worker", "B"]
    # The lazy FPU switch happened the lguest way: the Guest set TS through the
    # Host and took device-not-available traps (7) to restore its processes' state.
    assert any(e["kind"] == "hcall" and e["name"] == "TS" for e in selftest.events)
    assert any(e["kind"] == "trap" and e["vector"] == 7 and e["delivered"]
               for e in selftest.events)


@pytest.mark.parametrize("name, addr, write", [
    ("segv-kernel-read", 0xc0100000, False),     # kernel text
    ("segv-kernel-write", 0xc0001000, True),     # the kernel's RAM mapping
    ("segv-switcher-read", 0xffc00000, False),   # the Switcher's 4 MB at the top
])
def test_user_access_to_kernel_memory_is_sigsegv(selftest, name, addr, write):
    line = check_line(selftest, name)
    assert "0x%08x: the process was killed by signal 11" % addr in line
    # The #PF came from ring 3 (user bit) and the Host reflected it with cr2.
    faults = page_faults(selftest, addr)
    assert faults, "no delivered #PF at cr2 %#x in the trace" % addr
    assert all(e["errcode"] & 4 and bool(e["errcode"] & 2) == write for e in faults), faults


def test_fork_exec_wait4_exit_status(selftest):
    line = check_line(selftest, "exec")
    assert "execve(/bin/child) + wait4" in line
    assert any(line.startswith("child: pid ") and "argc 4, argv[1] exec-test, "
               "envp[0] LGDBG_TEST=kernel-boot" in line for line in selftest.lines)


def test_copy_on_write_seen_from_both_sides(selftest):
    check_line(selftest, "cow")


def test_page_fault_handled_by_a_sigsegv_handler(selftest):
    line = check_line(selftest, "fault-handler")
    addr = int(re.search(r"read-only 0x([0-9a-f]{8})", line).group(1), 16)
    # The write's fault reached the Guest with that cr2, as a user write (the
    # read before it, which mapped the zero page, faulted there as a user read).
    faults = page_faults(selftest, addr)
    assert any(e["errcode"] & 6 == 6 for e in faults), faults


def test_mmap_and_munmap(selftest):
    line = check_line(selftest, "mmap")
    base = int(re.search(r"mmap2 of 3 pages at 0x([0-9a-f]{8})", line).group(1), 16)
    # The read of the munmap'd middle page (word 7) faulted in the Guest: the
    # Host dropped its shadow entry instead of answering from a stale one.
    # Only that read is a user *read* fault there: the page's first touch was
    # a write, and reads while it was mapped do not reach the Guest.
    faults = page_faults(selftest, base + 0x1000 + 7 * 4)
    assert any(e["errcode"] & 6 == 4 for e in faults), faults


def test_nanosleep_advances_time(selftest):
    line = check_line(selftest, "nanosleep")
    m = re.search(r"CLOCK_MONOTONIC (\d+) us and gettimeofday (\d+) us", line)
    assert int(m.group(1)) >= 50000 and int(m.group(2)) >= 49999, line


def test_same_kernel_initrd_and_input_give_the_same_trace(vmlinux, selftest_initrd,  # noqa: F811
                                                          selftest, tmp_path):
    again = boot(vmlinux, selftest_initrd, CONSOLE_LINE + "\n", tmp_path / "again.jsonl")
    assert again.status == selftest.status, again.describe()
    assert selftest.events and again.events     # both written (else: a failure saying so)
    with open(selftest.trace, "rb") as f:
        first = f.read()
    with open(again.trace, "rb") as f:
        second = f.read()
    if first != second:
        a, b = first.splitlines(), second.splitlines()
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        pytest.fail("traces differ (%d and %d events) first at event %d:\n%s\n%s" % (
            len(a), len(b), i, a[i] if i < len(a) else "(end)", b[i] if i < len(b) else "(end)"))
    assert again.stdout == selftest.stdout
