"""lguest's own virtio transport, the Launcher's half (3.2 lguest.c: new_dev_desc,
new_device, add_virtqueue, add_feature, set_config, update_device_status,
reset_device, start_device).

A device is a descriptor in the page above RAM: the 5-byte header, its
virtqueues' lguest_vqconfig, the features it offers, the features the Guest
accepted, its config.  The Launcher writes the page once before boot; after
that the Guest writes the status byte, the accepted features and (lg_set) the
config, and NOTIFYs the descriptor's address for a reset, a FAILED or
"features finalized" (lguest_device.c status_notify).
"""

import struct

from ...errors import UsageError
from ...views.virtio_view import (DESC_SIZE, PAGE_SIZE, STATUS_FAILED, VQCONFIG_SIZE,
                                  status_names, vring_pages)
from .vring import Virtqueue, errx

DEVICE_PAGES = 256          # the most pages the Launcher maps for devices
VIRTQUEUE_NUM = 256         # entries of every queue: 3 pages each


class Device:
    """struct device: where its descriptor is, and the lengths the Launcher
    trusts (its own copies: the Guest can scribble on the descriptor)."""

    def __init__(self, devices, name, dev_type):
        self.devices = devices
        self.name = name
        self.type = dev_type
        self.offset = devices.new_dev_desc(dev_type)
        self.vqs = []
        self.feature_len = 0
        self.config_len = 0
        self.running = False

    # --- where things are -------------------------------------------------------------
    @property
    def addr(self):
        """The descriptor's guest-physical address: what status_notify sends."""
        return self.devices.descpage + self.offset

    def _features_offset(self):
        return self.offset + DESC_SIZE + len(self.vqs) * VQCONFIG_SIZE

    def _config_offset(self):
        """device_config: after the queues and both halves of the features."""
        return self._features_offset() + 2 * self.feature_len

    @property
    def end(self):
        return self._config_offset() + self.config_len

    # --- set-up, before the Guest runs -----------------------------------------------
    def add_virtqueue(self, service, num=VIRTQUEUE_NUM):
        """A ring in fresh pages above the device page, the next irq, and its
        lguest_vqconfig appended to the descriptor (before any feature or
        config byte: they would be overwritten)."""
        assert self.feature_len == 0 and self.config_len == 0
        devices = self.devices
        addr = devices.get_pages(vring_pages(num))
        vq = Virtqueue(self, len(self.vqs), num, devices.next_irq, addr >> 12, service)
        devices.next_irq += 1
        page = devices.page
        struct.pack_into("<HHI", page, self._config_offset(), vq.num, vq.irq, vq.pfn)
        self.vqs.append(vq)
        page[self.offset + 1] = len(self.vqs)                 # desc->num_vq
        return vq

    def add_feature(self, bit):
        """The offered half of the bitmap grows to hold bit (before config)."""
        page = self.devices.page
        if self.feature_len <= bit // 8:
            assert self.config_len == 0
            self.feature_len = bit // 8 + 1
            page[self.offset + 2] = self.feature_len            # desc->feature_len
        page[self._features_offset() + bit // 8] |= 1 << (bit % 8)

    def set_config(self, conf):
        if self._config_offset() + len(conf) > PAGE_SIZE:
            raise UsageError("Too many devices")
        assert len(conf) < 256                  # config_len is one byte
        page = self.devices.page
        start = self._config_offset()
        page[start:start + len(conf)] = conf
        self.config_len = len(conf)
        page[self.offset + 3] = self.config_len                 # desc->config_len

    def offered(self):
        start = self._features_offset()
        return bytes(self.devices.page[start:start + self.feature_len])

    def accepted(self, bus):
        return bus.read(self.devices.descpage + self._features_offset() + self.feature_len,
                        self.feature_len)

    # --- the Guest's status NOTIFYs ----------------------------------------------------
    def update_device_status(self, bus):
        """0 is a reset; FAILED is reported (and stops a running device);
        anything else means the Guest has finalized the features."""
        status = bus.read(self.addr + 4, 1)[0]
        bus.emit("virtio", dev=self.name, op="status", status=status,
                 names=status_names(status))
        if status == 0:
            self.reset_device(bus)
        elif status & STATUS_FAILED:
            bus.emit("virtio", dev=self.name, op="warning",
                     text="Device %s configuration FAILED" % self.name)
            if self.running:
                self.reset_device(bus)
        else:
            if self.running:
                # err(), not errx(): the real message also carries errno's text.
                errx("Device %s features finalized twice", self.name)
            self.start_device(bus)

    def reset_device(self, bus):
        """Forget the accepted features, zero every ring, cursors back to 0,
        stop servicing.  A queue's eventfd stays registered with the Host
        (it cannot be removed), so its kicks still never reach handle_output."""
        bus.write(self.devices.descpage + self._features_offset() + self.feature_len,
                  bytes(self.feature_len))
        for vq in self.vqs:
            vq.reset(bus)
        self.running = False
        bus.emit("virtio", dev=self.name, op="reset")

    def start_device(self, bus):
        """create_thread for every queue with a service routine, then running.
        A fresh thread first looks for chains already available: so do we,
        for the queues the device empties on its own (not console input,
        which waits for the user)."""
        bus.emit("virtio", dev=self.name, op="start", offered=self.offered().hex(),
                 accepted=self.accepted(bus).hex())
        for vq in self.vqs:
            if vq.service is not None:
                vq.eventfd = True
        self.running = True
        for vq in self.vqs:
            self.kick(bus, vq)

    def kick(self, bus, vq):
        """The Guest's NOTIFY on a queue whose eventfd is registered: the
        queue's thread wakes.  After a reset the thread is gone and the kick
        is lost, as in the real Launcher."""
        if not self.running:
            bus.emit("virtio", dev=self.name, vq=vq.index, op="kick-lost")
            return
        if vq.service is not None:
            vq.service(bus, vq)

    # --- what the debugger shows and snapshots keep ---------------------------------
    def state(self):
        return {"name": self.name, "running": self.running,
                "queues": [{"last_avail": vq.last_avail, "eventfd": vq.eventfd}
                           for vq in self.vqs]}

    def save_state(self):
        return {"running": self.running,
                "queues": [(vq.last_avail, vq.pending_used, vq.eventfd) for vq in self.vqs]}

    def load_state(self, state):
        self.running = state["running"]
        for vq, (last, pending, eventfd) in zip(self.vqs, state["queues"]):
            vq.last_avail, vq.pending_used, vq.eventfd = last, pending, eventfd

    def close(self):
        pass
