"""Where the Guest's console input comes from, and when it may be handed over.

The 2.6.23 Launcher reads its standard input whenever it has some and copies
it into the buffer the Guest bound for the console.  That moment decides what
the Guest does next, so lgdbg picks it with care:

  - from a file or a pipe, one line (at most the buffer's size) is handed
    over only while the Guest waits for input (halted, nothing pending): the
    same input gives the same trace;
  - from a terminal, what was typed goes at the next such moment, and the run
    waits for typing when the Guest has nothing else to do; people do not
    type deterministically, so neither is the trace;
  - a debugger's `console send TEXT` queues text that goes first.
"""

import os
import select


class ConsoleInput:
    def __init__(self, stream=None):
        self.stream = stream                 # a binary file object, or None
        self.fd = None
        self.tty = False
        if stream is not None:
            try:
                self.fd = stream.fileno()
                self.tty = os.isatty(self.fd)
            except (OSError, ValueError, AttributeError):
                self.fd = None
        # No stream, or one with no file behind it (a closed stdin): no input.
        self.eof = stream is None or self.fd is None
        self.queued = bytearray()            # typed by a debugger

    def send(self, data):
        self.queued += data

    @property
    def live(self):
        """A terminal that may still bring input: worth waiting for."""
        return self.tty and not self.eof

    def ready(self):
        if self.queued:
            return True
        if self.eof:
            return False
        if self.tty:
            try:
                return bool(select.select([self.fd], [], [], 0)[0])
            except (OSError, ValueError):
                self.eof = True
                return False
        return True                          # a line, or the end: take() tells

    def wait(self, timeout):
        """Block up to timeout seconds for terminal input; True if some came."""
        if not self.live:
            return False
        return bool(select.select([self.fd], [], [], timeout)[0])

    def take(self, room):
        """Up to room bytes: one line of queued text, a line of the file, or
        what the terminal has."""
        if self.queued:
            end = self.queued.find(b"\n")
            n = min(room, end + 1 if end >= 0 else len(self.queued))
            piece = bytes(self.queued[:n])
            del self.queued[:n]
            return piece
        if self.eof:
            return b""
        try:
            piece = os.read(self.fd, room) if self.tty else self.stream.readline(room)
        except (OSError, ValueError):        # unreadable, or closed under us
            piece = b""
        if not piece:
            self.eof = True                  # the Launcher ignores the console from now on
        return piece
