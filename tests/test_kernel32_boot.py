"""The real Linux 3.2 lguest Guest boots on lgdbg (issue 18): the later ABI.

Each boot is `python -m lgdbg run VMLINUX32 --mem 64 ...` with an initramfs or
an ext2 root filesystem on the virtio disk, both built here around the
freestanding /init programs of tests/kernel_init/ (the same i386 system
calls as on 2.6.23).  The command line carries `lpj=`: it skips the delay
loop's calibration and shortens udelay(), which the i8042 probe otherwise
spends a billion instructions in (it waits for a controller that the Host's
all-ones `in` never lets answer).

The kernel comes from LGDBG_TEST_KERNEL32 or ../shared/kernel-3.2/
(kernelboot.vmlinux32): without one these tests skip, or fail when CI=true.
"""

import subprocess
import sys

import pytest

import kernelboot
from kernelboot import check_line, page_faults
from kernelboot import vmlinux32  # noqa: F401  (the session fixture)

if kernelboot.missing_kernel("3.2") and not kernelboot.in_ci():
    pytest.skip(kernelboot.missing_kernel("3.2"), allow_module_level=True)

CMDLINE = "console=hvc0 lpj=100000"
CONSOLE_LINE = "typed at the virtio console: read back by /init on Linux 3.2"
# The 3.2 Host kills a Guest whose user code reads the Switcher (see
# test_user_read_of_the_switcher_kills_the_guest), so the selftest leaves
# that one check out.
CHECKS = [c for c in kernelboot.SELFTEST_CHECKS if c != "segv-switcher-read"]


def boot(kernel, *args, cmdline=CMDLINE, stdin="", trace=None):
    return kernelboot.boot_kernel(kernel, *args, cmdline=cmdline, stdin=stdin, trace=trace)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    return kernelboot.build_programs(tmp_path_factory.mktemp("kernel_init"))


@pytest.fixture(scope="module")
def selftest(vmlinux32, programs, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("selftest")
    initrd = kernelboot.build_initrd(d / "selftest.cpio.gz", programs["selftest"],
                                     [("bin/child", programs["child"])])
    return boot(vmlinux32, "--initrd", initrd, cmdline=CMDLINE +
                " selftest_skip=segv-switcher-read", stdin=CONSOLE_LINE + "\n",
                trace=d / "selftest.jsonl")


@pytest.fixture
def disk(programs, tmp_path):
    seed = b"seed 4242, put in the image by the test\n"
    path = kernelboot.build_ext2(tmp_path / "root.ext2", programs["disk"],
                                 [("seed.txt", seed)])
    return path, seed


# ---- boots ----------------------------------------------------------------------------

def test_boot_to_init_from_an_initrd_and_power_off(vmlinux32, programs, tmp_path):  # noqa: F811
    initrd = kernelboot.build_initrd(tmp_path / "hello.cpio", programs["hello"], compress=False)
    run = boot(vmlinux32, "--initrd", initrd, trace=tmp_path / "t.jsonl")
    assert run.status == 0, run.describe()
    assert "Linux version 3.2.65" in run.stdout, run.describe()
    assert any(line.startswith("hello: /init running as pid 1, argv[0] /init, on Linux 3.2.65")
               and line.endswith("console opened by the kernel") for line in run.lines), \
        run.describe()
    assert "powered off" in run.stderr, run.describe()
    events = run.events
    assert events[0]["kind"] == "boot" and events[0]["abi"] == "3.2"
    # The early console (NOTIFY with a string) printed the start of the log,
    # then hvc0 moved to the virtio console's transmit queue.
    names = [e["name"] for e in events if e["kind"] == "hcall"]
    assert names[0] == "LGUEST_INIT" and names[1] == "NEW_PGTABLE"
    assert "NOTIFY" in names and "LOAD_GDT_ENTRY" in names and "SET_PGD" in names
    assert {"CRASH", "BIND_DMA", "SEND_DMA", "LOAD_GDT"}.isdisjoint(names)
    assert any(e["kind"] == "virtio" and e.get("op") == "used" for e in events)
    assert events[-1] == {**events[-1], "kind": "kill", "reason": "CRASH: Power down"}


def test_no_root_is_the_vfs_panic_status_1(vmlinux32):  # noqa: F811
    run = boot(vmlinux32)
    assert run.status == 1, run.describe()
    assert "VFS: Unable to mount root fs" in run.stderr, run.describe()
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in run.stdout


def test_selftest_runs_every_check_and_powers_off(selftest):
    assert selftest.status == 0, selftest.describe()
    assert "init: %d checks, 0 failed" % len(CHECKS) in selftest.lines, \
        selftest.describe()
    assert not [line for line in selftest.lines if "FAIL: " in line], selftest.describe()


@pytest.mark.parametrize("name", ["init", "console", "fpu", "exec", "cow", "fault-handler",
                                  "mmap", "nanosleep"])
def test_selftest_check(selftest, name):
    check_line(selftest, name)


def test_console_input_reaches_init_through_the_virtio_console(selftest):
    line = check_line(selftest, "console")
    assert "read back '%s'" % CONSOLE_LINE in line
    handed = "".join(e["text"] for e in selftest.events if e["kind"] == "console-in")
    assert handed == CONSOLE_LINE + "\n"


@pytest.mark.parametrize("name, addr, write", [
    ("segv-kernel-read", 0xc0100000, False),
    ("segv-kernel-write", 0xc0001000, True),
])
def test_user_access_to_kernel_memory_is_sigsegv(selftest, name, addr, write):
    line = check_line(selftest, name)
    assert "0x%08x: the process was killed by signal 11" % addr in line
    faults = page_faults(selftest, addr)
    assert faults and all(e["errcode"] & 4 and bool(e["errcode"] & 2) == write
                          for e in faults), faults


def test_user_read_of_the_switcher_kills_the_guest(vmlinux32, programs, tmp_path):  # noqa: F811
    """The real 3.2 Host's harsh rule: head_32.S maps a fixmap page table in
    the top directory entry before lguest_init reserves the top 4 MB, so a
    user read of 0xffc00000 finds a present Guest PGD and demand_page's
    spgd_addr kills the Guest instead of reflecting a #PF."""
    initrd = kernelboot.build_initrd(tmp_path / "s.cpio", programs["selftest"],
                                     [("bin/child", programs["child"])], compress=False)
    run = boot(vmlinux32, "--initrd", initrd, stdin=CONSOLE_LINE + "\n")
    assert run.status == 1, run.describe()
    assert "attempt to access switcher pages" in run.stderr, run.describe()
    assert "ok: segv-kernel-write:" in run.stdout          # it got that far first


def test_two_runs_are_byte_identical(vmlinux32, programs, tmp_path):  # noqa: F811
    initrd = kernelboot.build_initrd(tmp_path / "hello.cpio", programs["hello"])
    a = boot(vmlinux32, "--initrd", initrd, trace=tmp_path / "a.jsonl")
    b = boot(vmlinux32, "--initrd", initrd, trace=tmp_path / "b.jsonl")
    assert a.status == b.status == 0
    assert open(a.trace, "rb").read() == open(b.trace, "rb").read()
    assert a.stdout == b.stdout


# ---- the virtio disk ---------------------------------------------------------------------

def test_root_on_the_virtio_disk_file_written_and_read_back(vmlinux32, disk):  # noqa: F811
    image, seed = disk
    run = boot(vmlinux32, "--disk", image, cmdline=CMDLINE + " root=/dev/vda init=/init")
    assert run.status == 0, run.describe()
    assert "VFS: Mounted root (ext2 filesystem)" in run.stdout, run.describe()
    assert "ok: disk: read /seed.txt: %s" % seed.decode().strip() in run.lines
    # Read back by debugfs from the image file, not by lgdbg.
    written = kernelboot.ext2_cat(image, "/from-guest.txt")
    assert written == b"written by the lguest Guest, after reading: " + seed
    # The image is still a clean filesystem.
    fsck = subprocess.run(["e2fsck", "-fn", image], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_readonly_disk_refuses_the_write(vmlinux32, disk):  # noqa: F811
    image, _ = disk
    before = open(image, "rb").read()
    run = boot(vmlinux32, "--disk", image, "--disk-readonly",
               cmdline=CMDLINE + " root=/dev/vda init=/init")
    assert run.status == 0, run.describe()
    # VIRTIO_BLK_F_RO: the kernel mounts read-only and open(O_CREAT) is EROFS.
    assert "FAIL: disk: cannot write /from-guest.txt (-30)" in run.lines, run.describe()
    assert open(image, "rb").read() == before


def test_restart_is_its_own_outcome(vmlinux32, disk):  # noqa: F811
    image, _ = disk
    run = boot(vmlinux32, "--disk", image, trace=None,
               cmdline=CMDLINE + " root=/dev/vda init=/init disk_end=restart")
    assert run.status == 5, run.describe()
    assert "asked for a restart" in run.stderr and "powered off" not in run.stderr
    assert "Restarting system." in run.stdout


@pytest.mark.parametrize("args, words", [
    (["--abi", "2.6.23"], 'no "GenuineLguest" magic'),
    (["--disk", "/nonexistent/disk.img"], "/nonexistent/disk.img"),
    (["--disk-readonly"], "--disk-readonly needs --disk"),
])
def test_bad_options_are_one_line_status_2(vmlinux32, args, words):  # noqa: F811
    run = boot(vmlinux32, *args)
    assert run.status == 2, run.describe()
    assert words in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


# ---- reverse execution across the virtio disk ----------------------------------------------

def test_reverse_execution_undoes_the_guests_disk_writes(vmlinux32, disk):  # noqa: F811
    """Back to the start of history, the disk file holds its old bytes again;
    forward again, the Guest writes the same bytes: the devices' cursors and
    the disk are part of a snapshot, like RAM and the shadow tables."""
    from lgdbg.core.debugger import Debugger
    from lgdbg.core.snapshot import ram_digest, register_state
    from lgdbg.machine import Machine
    from lgdbg.views.symbols import Symbols
    image, _ = disk
    before = open(image, "rb").read()
    power_off = Symbols(vmlinux32).lookup("lguest_power_off")
    m = Machine(vmlinux32, mem_mib=64, cmdline=CMDLINE + " root=/dev/vda init=/init",
                disk=image)
    dbg = Debugger(m, history=True)
    m.cpu.add_breakpoint(power_off)
    assert dbg.cont().kind == "breakpoint"
    after = open(image, "rb").read()
    assert after != before
    end = (register_state(m), ram_digest(m), m.icount)
    stop = dbg.reverse_cont()
    assert stop.kind == "history-begin" and m.icount == 0, stop
    assert open(image, "rb").read() == before
    assert m.pt.linear_pages                 # back before the first NEW_PGTABLE
    assert dbg.cont().kind == "breakpoint"
    assert open(image, "rb").read() == after
    assert (register_state(m), ram_digest(m), m.icount) == end


def test_restart_through_gdb_and_the_repl(vmlinux32, disk, tmp_path):  # noqa: F811
    """The restart is its own outcome for a debugger too: gdb hears an exit
    with code 5 (not 0, not a kill), the REPL says what happened."""
    from gdbmi import Gdb, Serve
    image, _ = disk
    args = [vmlinux32, "--mem", "64", "--disk", image, "--cmdline",
            CMDLINE + " root=/dev/vda init=/init disk_end=restart"]
    with Serve(*args) as stub, Gdb() as gdb:
        gdb.mi("-target-select remote %s" % stub.address)
        gdb.mi("-exec-continue")
        stop = gdb.wait_stopped(timeout=120)
        assert stop["reason"] == "exited" and stop["exit-code"] == "05", stop
    script = tmp_path / "cmds"
    script.write_text("continue\n")
    r = subprocess.run([sys.executable, "-m", "lgdbg", "repl", *args, "--batch", str(script)],
                       capture_output=True, text=True, timeout=300, cwd=kernelboot.ROOT)
    assert "The guest asked for a restart after" in r.stdout, r.stdout + r.stderr


# ---- the explorer on the 3.2 Guest -----------------------------------------------------------

@pytest.mark.parametrize("no_noirq", [False, True])
def test_explorer_on_lguest_iret_of_the_32_guest(vmlinux32, no_noirq):  # noqa: F811
    """3.2's noirq window: the clock is deferred at the window's `pop` and
    `iret`, and delivered there once the window is switched off."""
    import json
    cmd = [sys.executable, "-m", "lgdbg", "explore", vmlinux32, "--mem", "64", "--cmdline",
           CMDLINE, "--at", "lguest_iret", "--window", "lguest_iret-lguest_noirq_end",
           "--irq", "0", "--after", "30000000", "--json"] + (["--no-noirq"] if no_noirq else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=kernelboot.ROOT)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["window_symbols"]
    points = {p["insn"].split()[0]: p for p in report["points"]}
    for insn in ("pop", "iretd"):
        p = points[insn]
        if no_noirq:
            assert p["delivered"], p
        else:
            assert not p["delivered"] and p["reason"] == "noirq", p


# ---- a watchpoint on a vring the Launcher's device writes -------------------------------------

def vmalloc_mappings(m, phys):
    """The virtual addresses in vmalloc space (from 0xC4800000) where the
    Guest's current page tables map the physical address phys."""
    buf, cr3 = m.mem.buf, m.pt.cr3[m.pt.pgdidx]

    def word(at):
        return int.from_bytes(buf[at:at + 4], "little")
    found = []
    for pdi in range(0xC4800000 >> 22, 1023):
        pde = word(cr3 + 4 * pdi)
        if not pde & 1:
            continue
        for pti in range(1024):
            pte = word((pde & ~0xFFF) + 4 * pti)
            if pte & 1 and pte & ~0xFFF == phys & ~0xFFF:
                found.append((pdi << 22) | (pti << 12) | (phys & 0xFFF))
    return found


def test_watchpoint_on_a_vring_hears_the_device(vmlinux32, programs, tmp_path):  # noqa: F811
    """The console's transmit used.idx, watched at the vmalloc address the
    Guest ioremapped the ring to: the device's write (the Launcher, not the
    CPU) must stop the run there, the way a store by the Guest would."""
    from lgdbg.machine import Machine
    from lgdbg.views.symbols import Symbols
    initrd = kernelboot.build_initrd(tmp_path / "hello.cpio", programs["hello"], compress=False)
    m = Machine(vmlinux32, mem_mib=64, cmdline=CMDLINE, initrd=open(initrd, "rb").read())
    bp = Symbols(vmlinux32).lookup("kernel_power_off")   # "Power down." is still to print
    m.cpu.add_breakpoint(bp)
    assert m.run().kind == "breakpoint"
    m.cpu.remove_breakpoint(bp)
    console = [d for d in m.launcher.devices.describe()["devices"] if d["type"] == 3][0]
    used = console["queues"][1]["used"]            # guest-physical
    vaddrs = vmalloc_mappings(m, used)
    assert len(vaddrs) == 1, [hex(v) for v in vaddrs]
    idx = vaddrs[0] + 2                            # struct vring_used: flags, idx
    before = m.read_memory(idx, 2)
    m.add_watch(idx, 2, "watch")
    stop = m.run()
    assert stop.kind == "watch" and stop.watch == ("watch", idx), stop
    assert m.read_memory(idx, 2) != before
