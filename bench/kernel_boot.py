"""How fast do the real lguest Guests boot, against the loop guest, in one run?

Both real kernels, each where it is found: Linux 2.6.23 (../shared/kernel or
LGDBG_TEST_KERNEL) and Linux 3.2 (../shared/kernel-3.2 or LGDBG_TEST_KERNEL32,
the later ABI, with its virtio console; command line "lpj=100000" so that the
i8042 probe's udelay loops do not dominate).  Each boots with a fixed initrd
(tests/kernel_init's hello /init, which prints one line and powers off) from
its first instruction to power-off.  Against it, on the same clock
in the same process, bench/run_speed.py's loop guest: a `dec ecx; jnz` loop
with the clock event ticking every 1 ms, on the icount clock.

    kernel instructions/s  vs  loop instructions/s      goal >= 0.5x

It also counts the shadow fills (demand faults the Host resolved) and their
share of the boot's time, measured by timing Host.handle_trap for vector 14.
Each figure is the median of REPEAT runs; quote ratios (the machine is noisy).
"""

import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import kernelboot  # noqa: E402
import run_speed  # noqa: E402  (bench/ is on sys.path: the loop guest and its timing)
from guestbuild import build_guest  # noqa: E402

REPEAT = 3


# What each kernel needs besides the initrd.
BOOT_OPTIONS = {"2.6.23": {}, "3.2": {"cmdline": "console=hvc0 lpj=100000"}}


def boot_once(vmlinux, initrd, version):
    from lgdbg.machine import Machine
    m = Machine(vmlinux, mem_mib=64, initrd=initrd, **BOOT_OPTIONS[version])
    spent = [0.0]
    handle = m.host.handle_trap

    def timed(vector, *args, **kw):
        if vector != 14:
            return handle(vector, *args, **kw)
        t = time.perf_counter()
        try:
            return handle(vector, *args, **kw)
        finally:
            spent[0] += time.perf_counter() - t
    m.host.handle_trap = timed
    t0 = time.perf_counter()
    stop = m.run()
    dt = time.perf_counter() - t0
    assert stop.kind == "poweroff", stop
    return dt, m.icount, m.pt.fills, spent[0]


def loop_once(elf):
    from lgdbg.machine import Machine
    m = Machine(elf)
    t0 = time.perf_counter()
    stop = m.run()
    dt = time.perf_counter() - t0
    assert stop.kind == "poweroff", stop
    return dt, m.icount


def unpack(path, tmp, name):
    if not path.endswith(".gz"):
        return path
    out = os.path.join(tmp, name)
    with gzip.open(path) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def main():
    kernels = {}
    for version in ("2.6.23", "3.2"):
        path, how = kernelboot.kernel_source(version)
        if os.path.exists(path):
            kernels[version] = path
        else:
            print("kernel_boot: no %s kernel at %s (%s); set %s"
                  % (version, path, how, kernelboot.KERNELS[version][0]))
    if not kernels:
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        vmlinux = {v: unpack(p, tmp, "vmlinux-" + v) for v, p in kernels.items()}
        progs = kernelboot.build_programs(tmp)
        initrd_path = os.path.join(tmp, "hello.cpio")
        kernelboot.build_initrd(initrd_path, progs["hello"], compress=False)
        with open(initrd_path, "rb") as f:
            initrd = f.read()
        loop = build_guest(tmp, run_speed.BODY, text=run_speed.TEXT, data=run_speed.DATA)
        boots = {v: [] for v in vmlinux}
        loops = []
        for _ in range(REPEAT):            # interleaved: all see the same machine load
            for v in vmlinux:
                boots[v].append(boot_once(vmlinux[v], initrd, v))
            loops.append(loop_once(loop))
    loop_dt = statistics.median(lp[0] for lp in loops)
    loop_rate = loops[0][1] / loop_dt
    print("kernel_boot: real Guests, hello /init, entry to power-off, median of %d" % REPEAT)
    print("  loop guest (icount) %6.1f M insns in %5.2f s  %6.1f M insn/s" % (
        loops[0][1] / 1e6, loop_dt, loop_rate / 1e6))
    for v, runs in boots.items():
        dt = statistics.median(b[0] for b in runs)
        insns, fills = runs[0][1], runs[0][2]
        fill_s = statistics.median(b[3] for b in runs)
        rate = insns / dt
        print("  %-6s kernel boot  %6.1f M insns in %5.2f s  %6.1f M insn/s  ratio %.2fx the "
              "loop (goal >= 0.5x)" % (v, insns / 1e6, dt, rate / 1e6, rate / loop_rate))
        print("         shadow fills  %d, %.1f%% of the boot's time (%.1f us each)" % (
            fills, 100 * fill_s / dt, 1e6 * fill_s / max(fills, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
