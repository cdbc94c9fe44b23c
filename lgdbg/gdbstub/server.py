"""Transports (TCP, stdio), one connection at a time, the run thread, Ctrl-C.

The connection thread reads the client all the time; a continue runs the
machine in a worker thread, so a raw 0x03 from the client can reach
Machine.request_stop() while the Guest runs.  Single steps of the
deterministic machine are bounded and run inline (a thread hand-off per
stepi would cost more than the step).
"""

import os
import socket
import sys
import threading
import traceback

from ..core.debugger import Debugger
from . import packets
from .handlers import Resume, Session

REFUSED = b"E.lgdbg: another debugger is already attached to this machine"
ADMIT_WAIT_S = 1.0


def log(text):
    print("lgdbg serve: %s" % text, file=sys.stderr, flush=True)


class Console:
    """The Guest's console: to a local stream and, while attached, to the client."""

    def __init__(self, stream=None):
        self.stream = stream
        self.connection = None

    def __call__(self, data):
        if self.stream is not None:
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):
                self.stream = None        # nobody reads our stdout any more
        conn = self.connection
        if conn is not None:
            conn.send_packets(packets.console_packets(bytes(data)))


class SocketTransport:
    def __init__(self, sock):
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv(self):
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class StdioTransport:
    def __init__(self, infd=0, outfd=1):
        self.infd, self.outfd = infd, outfd

    def recv(self):
        try:
            return os.read(self.infd, 65536)
        except OSError:
            return b""

    def send(self, data):
        view = memoryview(data)
        while view:
            n = os.write(self.outfd, view)
            view = view[n:]

    def close(self):
        pass


class Stub:
    """The machine, its debugger core, and the one client attached to it."""

    def __init__(self, machine, console, history=True):
        self.machine = machine
        # Reverse execution needs replayable runs: on the deterministic clock
        # the stub keeps checkpoints unless told not to (--no-history).
        self.debugger = Debugger(machine, history=history and machine.clock.deterministic)
        self.console = console
        self.busy = threading.Lock()
        self.killed = False

    def serve_connection(self, transport):
        """Serve one client until it detaches, kills or goes away."""
        conn = Connection(self, transport)
        self.console.connection = conn
        try:
            end = conn.serve()
        finally:
            self.console.connection = None
            transport.close()
        if end == "kill":
            self.killed = True
        return end

    def serve_tcp(self, host, port, announce):
        lsock = socket.create_server((host, port))
        lsock.settimeout(0.2)             # to notice a kill from the connection thread
        announce("listening on %s:%d" % lsock.getsockname()[:2])
        try:
            while not self.killed:
                try:
                    sock, peer = lsock.accept()
                except socket.timeout:
                    continue
                sock.settimeout(None)
                threading.Thread(target=self._admit, args=(sock, peer), daemon=True).start()
        finally:
            lsock.close()

    def _admit(self, sock, peer):
        # A client that reconnects right after dropping may arrive before the
        # old connection has noticed: give that one a moment to finish.
        if not self.busy.acquire(timeout=ADMIT_WAIT_S):
            _refuse(sock, peer)
            return
        try:
            self.serve_connection(SocketTransport(sock))
        finally:
            self.busy.release()


def _refuse(sock, peer):
    # Answer the client's first packet with an error it prints, then hang up.
    log("refused a connection from %s:%d: a debugger is already attached" % peer[:2])
    sock.settimeout(2)
    try:
        reader = packets.Reader()
        while not any(kind == "packet" for kind, _ in reader.feed(sock.recv(4096) or b"$#00")):
            pass
        sock.sendall(b"+" + packets.frame(REFUSED))
    except OSError:
        pass
    finally:
        sock.close()


class Connection:
    def __init__(self, stub, transport):
        self.stub = stub
        self.transport = transport
        self.session = Session(stub.machine, stub.debugger)
        self.reader = packets.Reader()
        self.lock = threading.RLock()     # console output comes from the run thread
        self.worker = None
        self.queued = []
        self.last_sent = b""
        self.closed = False

    # --- sending ---------------------------------------------------------------------
    def send_packets(self, payloads, ack=False):
        data = b"".join(packets.frame(p) for p in payloads)
        if ack:
            data = b"+" + data
        if not data:
            return
        with self.lock:
            if self.closed:
                return
            if payloads:
                self.last_sent = packets.frame(payloads[-1])
            try:
                self.transport.send(data)
            except OSError:
                self.closed = True

    # --- the read loop -----------------------------------------------------------------
    def serve(self):
        try:
            while not self.closed and self.session.end is None:
                data = self.transport.recv()
                if not data:
                    break
                for kind, payload in self.reader.feed(data):
                    self._event(kind, payload)
                    if self.session.end is not None:
                        break
                if self.worker is None:
                    while self.queued and self.worker is None and self.session.end is None:
                        self._packet(self.queued.pop(0), ack=False)
        finally:
            self._stop_running()
            self.session.forget_client()
            self.closed = True
        return self.session.end or "dropped"

    def _event(self, kind, payload):
        if kind == "interrupt":
            self._stop_running()
        elif kind == "nack" and not self.session.no_ack and self.last_sent:
            with self.lock:
                self.transport.send(self.last_sent)
        elif kind == "bad" and not self.session.no_ack:
            self.transport.send(b"-")
        elif kind == "packet":
            ack = not self.session.no_ack
            if self.worker is not None:
                # Only Ctrl-C means something while the Guest runs; keep the
                # rest for when it stops.
                if ack:
                    self.transport.send(b"+")
                self.queued.append(payload)
            else:
                self._packet(payload, ack)

    def _packet(self, payload, ack):
        try:
            result = self.session.handle(payload)
        except Exception:                 # a bug in lgdbg, not in the client's input
            log("internal error on packet %r:\n%s" % (payload[:40], traceback.format_exc()))
            result = b"E01"
        if isinstance(result, Resume):
            self._resume(result, ack)
            return
        if result is None:
            if ack:
                self.send_packets([], ack=True)
            return
        self.send_packets(result if isinstance(result, list) else [result], ack=ack)

    # --- running the machine ------------------------------------------------------------
    def _resume(self, resume, ack):
        if ack:
            self.send_packets([], ack=True)
        early = self.session.resume_reply(resume)
        if early is not None:
            self.send_packets(early)
            return
        if resume.step and self.stub.machine.clock.deterministic:
            self._run(resume)
            return
        self.worker = threading.Thread(target=self._run, args=(resume,), daemon=True)
        self.worker.start()

    def _run(self, resume):
        try:
            stop = self.session.execute(resume)
            reply = self.session.stop_packets(stop)
        except Exception:
            log("internal error while running:\n%s" % traceback.format_exc())
            reply = [b"E01"]
        with self.lock:
            # No longer running before the reply leaves: the client's next
            # packet must not be taken for one sent while the Guest ran.
            self.worker = None
            self.send_packets(reply)

    def _stop_running(self):
        """Ctrl-C (or the client leaving): stop the Guest and wait for the reply.

        One request, and only while the run is still ours to stop: the machine
        keeps a request made between runs for the next one, which would turn
        the client's next continue into an instant SIGINT.
        """
        with self.lock:
            worker = self.worker
            if worker is None:
                return
            self.stub.debugger.interrupt()
        worker.join()
