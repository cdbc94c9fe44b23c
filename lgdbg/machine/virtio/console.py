"""The virtio console (3.2 lguest.c setup_console, console_input, console_output;
the Guest's drivers/char/virtio_console.c without MULTIPORT: one port, hvc0).

Two queues, input first: vq 0 holds the Guest's empty receive buffers
(PAGE_SIZE each), vq 1 its output.  No features, no config.

Output: every device-readable buffer of a chain goes to the console sink,
then add_used(head, 0); the Guest spins on virtqueue_get_buf until it sees
it, which here is already true when its NOTIFY returns.

Input follows the 2.6.23 console's determinism rule (console_input.py): one
line, handed over only when the Guest idles in HALT (feed), never at the
moment the Guest posts a buffer.  The real Launcher's thread takes a buffer as
soon as one is posted and blocks in readv; here the buffer stays in the
avail ring until input comes, so the display shows it as waiting.  Its
"three ^C within a second exit" hack is left out: it depends on wall time.
"""

from ...views.virtio_view import VIRTIO_ID_CONSOLE
from .transport import Device
from .vring import errx


class Console(Device):
    def __init__(self, devices, console_input):
        super().__init__(devices, "console", VIRTIO_ID_CONSOLE)
        self.input = console_input
        # console_input's thread naps forever after a failed read: the
        # Launcher ignores the console's input from then on.
        self.input_dead = False
        self.add_virtqueue(self.console_input)
        self.add_virtqueue(self.console_output)

    # vq 0: the kick only says buffers were posted; feed() fills them.
    def console_input(self, bus, vq):
        pass

    def console_output(self, bus, vq):
        vq.drain(bus, lambda head, iov, out_num, in_num: self._output(bus, vq, head, iov, in_num))

    def _output(self, bus, vq, head, iov, in_num):
        if in_num:
            errx("Input buffers in console output queue?")
        self.devices.console(b"".join(bus.read(addr, length) for addr, length, _ in iov))
        vq.add_used(bus, head, 0)

    # --- input ---------------------------------------------------------------------------
    def waiting(self, bus):
        """Has the Guest a receive buffer posted, and have we input for it?"""
        vq = self.vqs[0]
        return (self.running and not self.input_dead and vq.available(bus)
                and self.input.ready())

    def feed(self, bus):
        """One line into the next receive buffer, add_used, the irq."""
        if not self.waiting(bus):
            return False
        vq = self.vqs[0]
        head, iov, out_num, _ = vq.get_vq_desc(bus)
        if out_num:
            errx("Output buffers in console in queue?")
        data = self.input.take(sum(length for _, length, _ in iov))
        if not data:
            # readv gave nothing: the Launcher warns and its input thread
            # naps for good, still holding that buffer.
            self.input_dead = True
            bus.emit("virtio", dev=self.name, vq=0, op="warning",
                     text="Failed to get console input, ignoring console.")
            return False
        bus.scatter(iov, data)
        bus.emit("console-in", text=data.decode("latin-1"))
        vq.add_used(bus, head, len(data))
        vq.trigger_irq(bus)
        return True

    def save_state(self):
        state = super().save_state()
        state["input_dead"] = self.input_dead
        return state

    def load_state(self, state):
        super().load_state(state)
        self.input_dead = state["input_dead"]
