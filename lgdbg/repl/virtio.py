"""The 3.2 Guest's virtio devices: virtio (gdb: lguest-virtio)."""

from ..errors import UsageError
from ..views import inspect, virtio_view
from .session import CommandError


class VirtioCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_virtio(self, args):
        """virtio [DEVICE]: the virtio devices on lguest's device page (3.2 Guests).

        Each device's type, status bits (ACKNOWLEDGE, DRIVER, DRIVER_OK, FAILED),
        the features the device offers and the Guest accepted, its config (a
        disk's capacity in sectors), and each queue's irq, pfn, size, ring
        addresses, avail.idx, used.idx, the device's cursor last_avail and the
        descriptor chains in flight (taken by the device or still waiting).
        DEVICE picks one: its index (0, 1...), name or type (block, console).
        A 2.6.23 Guest has no virtio devices (lguest_bus DMA instead)."""
        words = args.split()
        if len(words) > 1:
            raise CommandError("usage: virtio [DEVICE]")
        try:
            info = virtio_view.select(inspect.virtio(self.m), words[0] if words else None)
        except (UsageError, ValueError) as e:
            raise CommandError(str(e))
        self.say("\n".join(virtio_view.render(info)))
