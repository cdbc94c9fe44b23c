"""gdb against lgdbg's stub and against QEMU's gdbstub, in the same run.

    .venv/bin/python bench/gdb_speed.py [--steps N] [--reps N]

Both targets run the same guest loop (`dec %ecx; jnz`): an lguest guest on
`lgdbg serve`, a multiboot guest on `qemu-system-i386 -S -gdb ...` (install
with `apt-get install --no-install-recommends qemu-system-x86`).  Through real
gdb (driven by tests/gdbmi.py, which waits on MI tokens, not on quiet time)
it measures:

  - Ctrl-C delay: -exec-interrupt on the running loop until *stopped (median)
  - stepi round trips per second, timed inside gdb's own Python; with
    --breakpoints N, N breakpoints (never hit) stay set while stepping: gdb
    inserts and removes every one around each step (Z0/z0), and each of
    those changes drops lgdbg's translated code (Cpu.hook_add, issue 14)
  - `dump binary memory` of 1 MiB, timed inside gdb's own Python

and prints each figure with the ratio lgdbg / QEMU (>= 1.0x: lgdbg as good).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from gdbmi import Gdb, Serve  # noqa: E402
from qemu import MULTIBOOT_HEADER, Qemu, build_multiboot  # noqa: E402

IMAGES = os.path.join(ROOT, "lgdbg", "images")
MIB = 1 << 20

LGUEST_SRC = """\
#include "lguest.h"
	.section .init.text, "ax", @progbits
	.ascii	"GenuineLguest"
	.globl	guest_entry
guest_entry:
	.globl	spin
spin:
	decl	%ecx
	jnz	spin
	jmp	spin
	.section .note.GNU-stack, "", @progbits
"""

MULTIBOOT_SRC = MULTIBOOT_HEADER + """\
	.globl	_start
_start:
	.globl	spin
spin:
	decl	%ecx
	jnz	spin
	jmp	spin
	.section .note.GNU-stack, "", @progbits
"""


def build(tmp):
    lg_src = os.path.join(tmp, "spin.S")
    with open(lg_src, "w") as f:
        f.write(LGUEST_SRC)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("gcc", "-m32", "-I", IMAGES, "-c", lg_src, "-o", lg_src + ".o")
    run("ld", "-m", "elf_i386", "--build-id=none", "--no-warn-rwx-segments",
        "-T", os.path.join(IMAGES, "guest.lds"), "-o", os.path.join(tmp, "spin.elf"),
        lg_src + ".o")
    return os.path.join(tmp, "spin.elf"), build_multiboot(tmp, MULTIBOOT_SRC)


def measure(address, image, ram_start, steps, reps, breakpoints=0, spin="spin"):
    # Ctrl-C through MI (async, so -exec-interrupt reaches the running target).
    gdb = Gdb(timeout=120)
    try:
        gdb.cli("file %s" % image)
        gdb.mi("-target-select remote %s" % address)
        gdb.mi("-break-insert %s" % spin)
        gdb.mi("-exec-continue")
        assert gdb.wait_stopped(60)["reason"] == "breakpoint-hit"
        gdb.mi("-break-delete")
        delays = []
        for _ in range(reps):
            gdb.mi("-exec-continue")
            gdb.wait_running()
            time.sleep(0.2)
            t0 = time.perf_counter()
            gdb.mi("-exec-interrupt")
            stop = gdb.wait_stopped(30)
            delays.append(time.perf_counter() - t0)
            assert stop.get("signal-name") == "SIGINT", stop
        gdb.cli("detach")
    finally:
        gdb.close()

    # stepi round trips and the memory dump, timed inside a batch gdb's Python
    # (synchronous commands, no MI in the loop).
    out = os.path.join(tempfile.gettempdir(), "lgdbg-bench-%d.bin" % os.getpid())
    script = out + ".py"
    with open(script, "w") as f:
        f.write("import time\n"
                "t = time.perf_counter()\n"
                "for _ in range(%d): gdb.execute('stepi', to_string=True)\n"
                "s = time.perf_counter() - t\n"
                "t = time.perf_counter()\n"
                "gdb.execute('dump binary memory %s %#x %#x')\n"
                "d = time.perf_counter() - t\n"
                "print('RESULT %%f %%f' %% (s, d))\n" % (steps, out, ram_start, ram_start + MIB))
    try:
        proc = subprocess.run(["gdb", "-batch", "-nx", "-ex", "file %s" % image,
                               "-ex", "target remote %s" % address, "-ex", "interrupt",
                               *[a for i in range(breakpoints) for a in
                                 ("-ex", "break *%#x" % (ram_start + 0x110000 + 16 * i))],
                               "-ex", "source %s" % script, "-ex", "kill"],
                              capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        if "RESULT" not in proc.stdout:
            raise RuntimeError("gdb batch run failed:\n%s\n%s" % (proc.stdout, proc.stderr))
        step_s, dump_s = map(float, proc.stdout.split("RESULT")[1].split()[:2])
        assert os.path.getsize(out) == MIB
    finally:
        for path in (out, script):
            if os.path.exists(path):
                os.unlink(path)
    return {"ctrl_c_s": statistics.median(delays), "stepi_per_s": steps / step_s,
            "dump_mib_per_s": 1 / dump_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--breakpoints", type=int, default=0,
                    help="breakpoints (never hit) set while stepping")
    ap.add_argument("--kernel", action="store_true",
                    help="also measure lgdbg on the real 2.6.23 kernel (../shared/kernel or "
                         "LGDBG_TEST_KERNEL) running a spinning /init, against the spin guest")
    args = ap.parse_args()
    if args.kernel:
        return kernel_figures(args)
    for tool in ("gdb", "gcc", "ld", "qemu-system-i386"):
        if not shutil.which(tool):
            sys.exit("bench/gdb_speed.py needs %s" % tool)
    with tempfile.TemporaryDirectory() as tmp:
        lg_image, mb_image = build(tmp)
        with Serve(lg_image) as serve:
            lg = measure(serve.address, lg_image, 0xC0000000, args.steps, args.reps,
                         args.breakpoints)
        qemu = Qemu(mb_image)
        try:
            qm = measure(qemu.address, mb_image, 0x100000, args.steps, args.reps,
                         args.breakpoints)
        finally:
            qemu.close()
    rows = [
        ("Ctrl-C delay (ms, median of %d)" % args.reps, lg["ctrl_c_s"] * 1e3,
         qm["ctrl_c_s"] * 1e3, qm["ctrl_c_s"] / lg["ctrl_c_s"]),
        ("stepi round trips per second%s" % (" (%d bps)" % args.breakpoints
                                             if args.breakpoints else ""),
         lg["stepi_per_s"], qm["stepi_per_s"],
         lg["stepi_per_s"] / qm["stepi_per_s"]),
        ("dump binary memory 1 MiB (MiB/s)", lg["dump_mib_per_s"], qm["dump_mib_per_s"],
         lg["dump_mib_per_s"] / qm["dump_mib_per_s"]),
    ]
    print("%-36s %12s %12s %10s" % ("gdb 13 against", "lgdbg", "QEMU", "ratio"))
    for name, a, b, ratio in rows:
        print("%-36s %12.1f %12.1f %9.2fx" % (name, a, b, ratio))
    print("(ratio: how many times better lgdbg is; >= 1.0x meets the goal)")


def kernel_figures(args):
    """The same measurements on the real kernel, its /init spinning in user
    mode under the clock, beside the bundled spin guest in the same run."""
    import gzip
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import kernelboot
    path, how = kernelboot.kernel_source()
    if not os.path.exists(path):
        sys.exit("no kernel at %s (%s); set LGDBG_TEST_KERNEL" % (path, how))
    with tempfile.TemporaryDirectory() as tmp:
        vmlinux = os.path.join(tmp, "vmlinux")
        with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as src, \
                open(vmlinux, "wb") as dst:
            shutil.copyfileobj(src, dst)
        progs = kernelboot.build_programs(tmp)
        initrd = kernelboot.build_initrd(os.path.join(tmp, "spin.cpio"), progs["spin"],
                                         compress=False)
        lg_image, _ = build(tmp)
        with Serve(lg_image) as serve:
            ex = measure(serve.address, lg_image, 0xC0000000, args.steps, args.reps)
        # Stop in the kernel's timer handler, once /init spins: every later
        # stop lands in a live kernel with user space running.
        with Serve(vmlinux, "--initrd", initrd) as serve:
            kn = measure(serve.address, vmlinux, 0xC0000000, args.steps, args.reps,
                         spin="*%#x" % kernelboot_symbol(progs["spin"], "main"))
    print("%-36s %12s %12s %10s" % ("gdb 13 against lgdbg on", "2.6.23", "spin guest",
                                    "ratio"))
    for name, key, scale in (("Ctrl-C delay (ms, median of %d)" % args.reps, "ctrl_c_s", 1e3),
                             ("stepi round trips per second", "stepi_per_s", 1),
                             ("dump binary memory 1 MiB (MiB/s)", "dump_mib_per_s", 1)):
        print("%-36s %12.1f %12.1f %9.2fx" % (name, kn[key] * scale, ex[key] * scale,
                                             kn[key] / ex[key]))
    print("(ratio: the kernel's figure over the spin guest's)")


def kernelboot_symbol(elf, name):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise RuntimeError("no symbol %s in %s" % (name, elf))


if __name__ == "__main__":
    main()
