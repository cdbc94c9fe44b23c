"""lguest-virtio: the 3.2 Guest's virtio devices, as a virtio driver author needs them.

On lgdbg's stub the device page and the rings come from `monitor json virtio`
(the Launcher's own view, with its cursors).  On any other target (QEMU, a
core file) they are decoded from memory through gdb, which reads only
virtual addresses: the device page sits at guest-physical `mem`, after RAM,
and the Guest reaches it, and each queue's ring pages, through ioremap
(lguest_device.c lguest_map) at vmalloc addresses.  The kernel's own records
say where: `lguest_devices` points at the page, and `vmlist` (struct
vm_struct: addr, size, phys_addr) holds every ioremap'ed range.
"""

import json

import gdb

from lgdbg import abi
from lgdbg.views import virtio_view

from .common import (LguestCommand, guest_abi, host_state, need_symbols, on_lgdbg_stub,
                     read_memory, read_u32, symbol_address, write)

VMLIST_MAX = 4096                   # vm_structs walked before giving up (a loop)
# struct vm_struct of 3.2 without PAE (mm/vmalloc.c), for kernels without DWARF.
VM_STRUCT_3_2 = {"next": 0, "addr": 4, "size": 8, "phys_addr": 24}


def _hint():
    return ("connect to lgdbg's stub (`lgdbg gdb VMLINUX`, or `lgdbg serve VMLINUX --listen "
            "127.0.0.1:1234` and `target remote 127.0.0.1:1234`), which reads it from the "
            "Launcher's side")


def _vm_struct_offsets():
    try:
        t = gdb.lookup_type("struct vm_struct")
        offs = {f.name: f.bitpos // 8 for f in t.fields() if f.bitpos is not None}
        if all(k in offs for k in VM_STRUCT_3_2):
            return {k: offs[k] for k in VM_STRUCT_3_2}
    except gdb.error:
        pass
    return VM_STRUCT_3_2


class GuestPhysical:
    """Reads of guest-physical addresses through the Guest's own mappings:
    its ioremap'ed ranges (vmlist) and its direct map of RAM."""

    def __init__(self, command):
        self.command = command
        need_symbols(command)
        profile, _ = guest_abi()
        if profile != "3.2":
            raise gdb.GdbError("%s: %s" % (command, virtio_view.NO_VIRTIO_2623))
        page = symbol_address("lguest_devices")
        max_pfn = symbol_address("max_pfn")
        if page is None or max_pfn is None:
            raise gdb.GdbError(
                "%s: cannot find the device page: it lives at guest-physical mem (after RAM), "
                "which the Guest maps with ioremap at a vmalloc address, and gdb reads only "
                "virtual addresses; the image has no `lguest_devices`/`max_pfn` symbols to "
                "say where: load the 3.2 kernel's symbols (`file VMLINUX`) or %s"
                % (command, _hint()))
        try:
            self.devices_virt = read_u32(page)
            self.descpage = read_u32(max_pfn) << 12
        except (gdb.MemoryError, gdb.error) as e:
            raise gdb.GdbError(
                "%s: cannot read lguest_devices (%s): the device page lives at guest-physical "
                "mem, mapped by the Guest with ioremap at a vmalloc address, so gdb needs a "
                "running Guest (or its memory dump) to find it; %s" % (command, e, _hint()))
        if not self.devices_virt:
            raise gdb.GdbError(
                "%s: the Guest has not mapped its device page yet (lguest_devices is NULL "
                "until lguest_devices_init, a postcore initcall, ioremaps guest-physical %#x): "
                "continue past it, or %s" % (command, self.descpage, _hint()))
        self.maps = [(self.descpage, self.devices_virt, virtio_view.PAGE_SIZE)]
        self.maps += self._vmlist()
        # The direct map: RAM below the device page at page_offset (no HIGHMEM in
        # an lguest Guest), for indirect descriptor tables.
        self.maps.append((0, abi.DEFAULT_PAGE_OFFSET, self.descpage))

    def _vmlist(self):
        head = symbol_address("vmlist")
        if head is None:
            return []
        off = _vm_struct_offsets()
        out = []
        try:
            area = read_u32(head)
            for _ in range(VMLIST_MAX):
                if not area:
                    break
                addr = read_u32(area + off["addr"])
                size = read_u32(area + off["size"])
                phys = read_u32(area + off["phys_addr"])
                # size counts the guard page after the range (get_vm_area).
                if phys and size > virtio_view.PAGE_SIZE:
                    out.append((phys, addr, size - virtio_view.PAGE_SIZE))
                area = read_u32(area + off["next"])
        except (gdb.MemoryError, gdb.error):
            pass
        return out

    def read(self, phys, length):
        for base, virt, size in self.maps:
            if base <= phys and phys + length <= base + size:
                return read_memory(virt + phys - base, length)
        raise ValueError("guest-physical %#x is not mapped by the Guest (no ioremap of it "
                         "in vmlist)" % phys)

    def describe(self):
        return virtio_view.decode(self.read, self.descpage)


class LguestVirtio(LguestCommand):
    """Show the Guest's virtio devices: status, features, config, queues and rings.

Usage: lguest-virtio [DEVICE] [--memory] [--json]

For each device on lguest's device page (3.2 Guests): its type, status bits
(ACKNOWLEDGE DRIVER DRIVER_OK FAILED), the features the device offers and the
Guest accepted, its config (a disk's capacity in sectors), and per queue its
irq, pfn, size, the desc/avail/used addresses, avail.idx, used.idx, the
device's cursor last_avail and the descriptor chains in flight, each marked
taken (by the device) or waiting.  DEVICE picks one by index (0, 1...), name
or type (block, console).  On lgdbg's stub the Launcher answers (`monitor
json virtio`); on other targets, or with --memory, the page and the rings are
decoded from memory through the Guest's own mappings (lguest_devices and
vmlist: gdb cannot read guest-physical addresses), without the Launcher's
cursors.  --json prints the data as JSON.  A 2.6.23 Guest has no virtio
devices (lguest_bus DMA)."""

    NAME = "lguest-virtio"
    CLASS = gdb.COMMAND_STATUS

    def run(self, argv, from_tty):
        opts = [a for a in argv if a.startswith("--")]
        rest = [a for a in argv if not a.startswith("--")]
        unknown = [a for a in opts if a not in ("--memory", "--json")]
        if unknown:
            self.usage("unknown option %s" % unknown[0])
        if len(rest) > 1:
            self.usage("one DEVICE at most")
        if "--memory" not in opts and on_lgdbg_stub():
            info = host_state("virtio", self.NAME)
            if "error" in info:
                raise gdb.GdbError("%s: %s" % (self.NAME, info["error"]))
        else:
            info = GuestPhysical(self.NAME).describe()
        info = virtio_view.select(info, rest[0] if rest else None)
        if "--json" in opts:
            write(json.dumps(info, sort_keys=True))
        else:
            write("\n".join(virtio_view.render(info)))


def register():
    LguestVirtio()
