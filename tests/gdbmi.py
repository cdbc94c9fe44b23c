"""A small driver for real gdb over MI, for tests (and benchmarks).

pygdbmi's write() returns when gdb has been quiet for a while, not when the
command's answer arrives, so a result can land in the next call's output.
This driver numbers every command with an MI token and reads until the result
record carrying that token; asynchronous records (*stopped, =thread-...,
console output of a running target) are kept in order for wait_stopped() and
friends.  Nothing here waits on quiet time.

    with Gdb() as gdb:
        gdb.cli("file lgdbg/images/iret.elf")
        gdb.mi("-target-select remote 127.0.0.1:%d" % port)
        r = gdb.cli("info registers eip")       # r.console is the text
        gdb.mi("-exec-continue"); stop = gdb.wait_stopped()

Also here: Serve, which starts a `lgdbg serve` subprocess on a free port and
waits for its "listening on" line.
"""

import os
import re
import subprocess
import sys
import threading
import time

from pygdbmi.gdbcontroller import GdbController

GDB = os.environ.get("LGDBG_TEST_GDB", "/usr/bin/gdb")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GdbError(AssertionError):
    """gdb answered ^error (or never answered)."""


class Result:
    def __init__(self, record, records):
        self.message = record["message"]          # done, running, connected, error, exit
        self.payload = record.get("payload")
        self.records = records                    # everything up to the result, in order

    @property
    def console(self):
        return "".join(r["payload"] for r in self.records
                       if r["type"] == "console" and r["payload"])

    @property
    def log(self):
        return "".join(r["payload"] for r in self.records if r["type"] == "log" and r["payload"])

    @property
    def target(self):
        return "".join(r["payload"] for r in self.records
                       if r["type"] == "target" and r["payload"])

    @property
    def output(self):
        """Console and target text together: `monitor` output arrives as
        target records (the stub's O packets), CLI output as console ones."""
        return "".join(r["payload"] for r in self.records
                       if r["type"] in ("console", "target") and r["payload"])

    @property
    def error(self):
        return self.payload.get("msg") if self.message == "error" and self.payload else None

    def __repr__(self):
        return "<Result %s %r>" % (self.message, self.payload)


def quote(text):
    """A CLI command as an MI c-string argument."""
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


class Gdb:
    def __init__(self, gdb=GDB, args=(), timeout=30):
        self.timeout = timeout
        self.ctl = GdbController(command=[gdb, "--nx", "--quiet", "--interpreter=mi3", *args],
                                 time_to_check_for_additional_output_sec=0.001)
        self._token = 1000
        self.pending = []          # records read but not yet consumed, in order
        # Async MI: -exec-interrupt works while the target runs.
        self.mi("-gdb-set mi-async on")
        self.mi("-gdb-set confirm off")
        self.mi("-gdb-set pagination off")
        self.mi("-gdb-set width 0")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, timeout):
        got = self.ctl.get_gdb_response(timeout_sec=timeout, raise_error_on_timeout=False)
        self.pending.extend(got)
        return got

    def _take(self, predicate, timeout):
        """Consume records up to and including the first that matches."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        scanned = 0
        while True:
            for i in range(scanned, len(self.pending)):
                if predicate(self.pending[i]):
                    taken, self.pending = self.pending[:i + 1], self.pending[i + 1:]
                    return taken
            scanned = len(self.pending)
            left = deadline - time.monotonic()
            if left <= 0:
                raise GdbError("gdb did not answer in time; last records: %r"
                               % self.pending[-5:])
            if self.ctl.gdb_process.poll() is not None and not self._read(0):
                raise GdbError("gdb exited (status %s); last records: %r"
                               % (self.ctl.gdb_process.returncode, self.pending[-5:]))
            self._read(min(left, 0.5))

    def send(self, command):
        """Send an MI command with a fresh token; returns the token."""
        self._token += 1
        self.ctl.write("%d%s" % (self._token, command), read_response=False)
        return self._token

    def result(self, token, timeout=None, check=True):
        taken = self._take(lambda r: r["type"] == "result" and r.get("token") == token, timeout)
        res = Result(taken[-1], taken)
        if check and res.message == "error":
            raise GdbError("gdb: %s%s" % (res.error, ("\n" + res.log) if res.log else ""))
        return res

    def mi(self, command, timeout=None, check=True):
        """An MI command (starting with '-'); waits for its own result record."""
        return self.result(self.send(command), timeout, check)

    def cli(self, command, timeout=None, check=True):
        """A CLI command through -interpreter-exec console."""
        return self.mi("-interpreter-exec console %s" % quote(command), timeout, check)

    def wait_for(self, predicate, timeout=None):
        """Consume records until one matches; returns all consumed records."""
        return self._take(predicate, timeout)

    def wait_stopped(self, timeout=None):
        """The payload of the next *stopped record."""
        taken = self._take(lambda r: r["type"] == "notify" and r["message"] == "stopped",
                           timeout)
        return taken[-1]["payload"]

    def wait_running(self, timeout=None):
        self._take(lambda r: r["type"] == "notify" and r["message"] == "running", timeout)

    def register(self, name):
        """A register's value as an int (through `p/x $name`)."""
        text = self.cli("p/x $%s" % name).console
        m = re.search(r"= (0x[0-9a-f]+)", text)
        if not m:
            raise GdbError("cannot read $%s: %r" % (name, text))
        return int(m.group(1), 16)

    def close(self):
        if self.ctl.gdb_process and self.ctl.gdb_process.poll() is None:
            try:
                self.ctl.write("-gdb-exit", read_response=False, timeout_sec=1)
                self.ctl.gdb_process.wait(2)
            except Exception:
                pass
        self.ctl.exit()


class Serve:
    """`lgdbg serve IMAGE --listen 127.0.0.1:0 ...` as a subprocess.

    Waits for the "listening on HOST:PORT" line on stderr (never a sleep) and
    exposes .port.  Guest console output is collected from stdout.
    """

    def __init__(self, *args, timeout=30):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lgdbg", "serve", "--listen", "127.0.0.1:0", *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr_lines = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                raise RuntimeError("lgdbg serve exited: %s" % "".join(self.stderr_lines))
            self.stderr_lines.append(line)
            m = re.search(r"listening on ([\d.]+):(\d+)", line)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
            if time.monotonic() > deadline:
                raise RuntimeError("lgdbg serve did not start listening")
        # Keep both pipes drained so a chatty guest never blocks the stub.
        self.stdout = bytearray()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout.extend),
                         daemon=True).start()
        threading.Thread(target=self._drain, args=(
            self.proc.stderr, lambda b: self.stderr_lines.append(b.decode(errors="replace"))),
            daemon=True).start()

    @staticmethod
    def _drain(f, sink):
        for chunk in iter(lambda: f.read1(4096), b""):
            sink(chunk)

    @property
    def stderr(self):
        return "".join(self.stderr_lines)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait(self, timeout=10):
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- what the real-kernel gdb tests share ---------------------------------------------
# A command may run the Guest for a while (a kernel's boot to a breakpoint).
KERNEL_TIMEOUT = 300


def no_traceback(res):
    text = res.console + res.log + (res.error or "")
    assert "Traceback" not in text and "Error occurred in Python" not in text, text


def cli(g, command):
    """A CLI command that must succeed without a Python traceback: its output."""
    res = g.cli(command, timeout=KERNEL_TIMEOUT)
    no_traceback(res)
    return res.output


def refused(g, command):
    """The one-line error of a command that must fail."""
    res = g.cli(command, check=False, timeout=60)
    no_traceback(res)
    assert res.message == "error", (command, res.output)
    assert "\n" not in res.error.strip(), res.error
    return res.error


def value(g, expr):
    """An expression's value as gdb prints it unsigned."""
    return int(re.search(r"= (\d+)", cli(g, "print/u %s" % expr)).group(1))


def cont(g):
    """-exec-continue; the payload of the next stop."""
    g.mi("-exec-continue")
    return g.wait_stopped(timeout=KERNEL_TIMEOUT)
