"""QEMU as the reference peer: multiboot guests and qemu-system-i386's gdbstub.

The tests that hold lgdbg against QEMU (stepping, page-table views, the
memory-only gdb commands) and bench/gdb_speed.py share these.
"""

import os
import shutil
import socket
import subprocess
import time

QEMU = shutil.which("qemu-system-i386")

# The multiboot header QEMU's -kernel looks for in the first 8 KiB.
MULTIBOOT_HEADER = """\
	.section .text
	.align	4
	.long	0x1BADB002			/* multiboot magic */
	.long	0				/* flags */
	.long	-0x1BADB002			/* checksum */
"""


def build_multiboot(tmp, source, name="mb", cflags=()):
    """Assemble `source` (which starts with MULTIBOOT_HEADER) and link it at
    1 MiB for QEMU's -kernel; returns the ELF's path."""
    src, obj, elf = (os.path.join(str(tmp), name + ext) for ext in (".S", ".o", ".elf"))
    with open(src, "w") as f:
        f.write(source)
    subprocess.run(["gcc", "-m32", *cflags, "-c", src, "-o", obj], check=True,
                   capture_output=True)
    subprocess.run(["ld", "-m", "elf_i386", "--build-id=none", "-Ttext", "0x100000",
                    "-e", "_start", "-o", elf, obj], check=True, capture_output=True)
    return elf


class Qemu:
    """qemu-system-i386 -S -gdb on a free loopback port; ready when it accepts
    (gdb would retry a refused port for 15 s: we check first)."""

    def __init__(self, elf):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [QEMU or "qemu-system-i386", "-kernel", elf, "-S", "-gdb",
             "tcp:127.0.0.1:%d" % self.port, "-display", "none", "-vga", "none",
             "-monitor", "none", "-serial", "none", "-m", "64"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("qemu did not start: %s" % self.proc.stderr.read())
                time.sleep(0.05)
        self.address = "127.0.0.1:%d" % self.port

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.proc.kill()
        self.proc.wait()
