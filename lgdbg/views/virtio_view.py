"""What lgdbg says about lguest's virtio devices (the 3.2 ABI): the device page
and each virtqueue's rings, as data and as words.

Standard library only: gdb's embedded Python imports it, and so does the
emulated Launcher (machine/virtio/), which takes its numbers from here so that
the device and its picture cannot disagree.

The layout, from include/linux/lguest_launcher.h, virtio_ring.h and the Guest's
drivers/lguest/lguest_device.c (desc_size, lg_features, lg_config):

  device page (guest-physical mem_size, one page), descriptors back to back,
  type 0 ends the list:
    u8 type, u8 num_vq, u8 feature_len, u8 config_len, u8 status     (5 bytes)
    num_vq x {u16 num, u16 irq, u32 pfn}                    (8 bytes, unaligned)
    feature_len bytes the device offers, feature_len bytes the Guest accepted
    config_len bytes of device config
  each queue (legacy vring, LGUEST_VRING_ALIGN 4096) at pfn << 12:
    desc[num] {u64 addr, u32 len, u16 flags, u16 next}
    avail {u16 flags, u16 idx, u16 ring[num], u16 used_event}
    used, at the next 4096 boundary: {u16 flags, u16 idx, {u32 id, u32 len}[num], u16 avail_event}

decode(read, descpage) reads all of that through read(phys, length) -> bytes;
select(dict, which) keeps the devices a name, type or index picks; render(dict)
turns it into lines.  A look never changes anything, and a
garbled page or ring gives an "error" entry, never an exception.
"""

import struct

PAGE_SIZE = 4096
VRING_ALIGN = 4096                 # LGUEST_VRING_ALIGN
DESC_SIZE = 5                      # struct lguest_device_desc
VQCONFIG_SIZE = 8                  # struct lguest_vqconfig
VRING_DESC_SIZE = 16               # struct vring_desc

# virtio_ids.h
DEVICE_TYPES = {1: "net", 2: "block", 3: "console", 4: "rng", 5: "balloon",
                6: "rpmsg", 7: "scsi", 9: "9p"}
VIRTIO_ID_BLOCK = 2
VIRTIO_ID_CONSOLE = 3

# virtio_config.h: the status byte the Guest writes
STATUS_ACKNOWLEDGE = 1
STATUS_DRIVER = 2
STATUS_DRIVER_OK = 4
STATUS_FAILED = 0x80
STATUS_BITS = ((STATUS_ACKNOWLEDGE, "ACKNOWLEDGE"), (STATUS_DRIVER, "DRIVER"),
               (STATUS_DRIVER_OK, "DRIVER_OK"), (STATUS_FAILED, "FAILED"))

# virtio_ring.h
VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_USED_F_NO_NOTIFY = 1
VRING_AVAIL_F_NO_INTERRUPT = 1

# virtio_blk.h
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_SCSI_CMD = 2
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2
SECTOR_SIZE = 512

# Feature bit names: the transport's (virtio_config.h, virtio_ring.h), then
# each device type's own (virtio_blk.h, virtio_console.h, virtio_net.h).
TRANSPORT_FEATURES = {24: "NOTIFY_ON_EMPTY", 28: "RING_INDIRECT_DESC", 29: "RING_EVENT_IDX"}
DEVICE_FEATURES = {
    VIRTIO_ID_BLOCK: {0: "BARRIER", 1: "SIZE_MAX", 2: "SEG_MAX", 4: "GEOMETRY", 5: "RO",
                      6: "BLK_SIZE", 7: "SCSI", 9: "FLUSH", 10: "TOPOLOGY"},
    VIRTIO_ID_CONSOLE: {0: "SIZE", 1: "MULTIPORT"},
    1: {0: "CSUM", 1: "GUEST_CSUM", 5: "MAC", 6: "GSO", 7: "GUEST_TSO4", 8: "GUEST_TSO6",
        9: "GUEST_ECN", 10: "GUEST_UFO", 11: "HOST_TSO4", 12: "HOST_TSO6", 13: "HOST_ECN",
        14: "HOST_UFO", 15: "MRG_RXBUF", 16: "STATUS", 17: "CTRL_VQ", 18: "CTRL_RX",
        19: "CTRL_VLAN", 20: "CTRL_RX_EXTRA"},
}

MAX_CHAINS_SHOWN = 16              # in-flight chains listed per queue


# --- the layout as arithmetic (shared with the Launcher) ------------------------------
def vring_size(num, align=VRING_ALIGN):
    """virtio_ring.h vring_size: bytes of a legacy ring of num entries."""
    front = VRING_DESC_SIZE * num + 2 * (3 + num)
    return ((front + align - 1) & ~(align - 1)) + 2 * 3 + 8 * num


def vring_pages(num):
    return (vring_size(num) + PAGE_SIZE - 1) // PAGE_SIZE


def vring_layout(base, num, align=VRING_ALIGN):
    """vring_init: (desc, avail, used) addresses of a ring at base."""
    avail = base + VRING_DESC_SIZE * num
    used = (avail + 4 + 2 * num + 2 + align - 1) & ~(align - 1)
    return base, avail, used


def status_names(status):
    return [name for bit, name in STATUS_BITS if status & bit]


def feature_names(dev_type, bits):
    names = DEVICE_FEATURES.get(dev_type, {})
    out = []
    for bit in range(32):
        if bits >> bit & 1:
            out.append(TRANSPORT_FEATURES.get(bit) or names.get(bit) or "bit%d" % bit)
    return out


def feature_word(raw):
    """The first 32 feature bits, as lg_get_features reads them (byte i bit j = i*8+j)."""
    return int.from_bytes(bytes(raw[:4]).ljust(4, b"\0"), "little")


def decode_config(dev_type, raw):
    """Device config as named fields where the type is known."""
    raw = bytes(raw)
    if dev_type == VIRTIO_ID_BLOCK and len(raw) >= 16:
        capacity, size_max, seg_max = struct.unpack_from("<QII", raw)
        return {"capacity": capacity, "size_max": size_max, "seg_max": seg_max}
    if dev_type == VIRTIO_ID_CONSOLE and len(raw) >= 8:
        cols, rows, ports = struct.unpack_from("<HHI", raw)
        return {"cols": cols, "rows": rows, "max_nr_ports": ports}
    return {"raw": raw.hex()} if raw else {}


# --- decoding ---------------------------------------------------------------------------
def _u16(read, addr):
    return struct.unpack("<H", bytes(read(addr, 2)))[0]


def read_desc(read, table, index):
    addr, length, flags, nxt = struct.unpack("<QIHH", bytes(read(table + VRING_DESC_SIZE * index,
                                                                 VRING_DESC_SIZE)))
    return addr, length, flags, nxt


def desc_flag_names(flags):
    return [name for bit, name in ((VRING_DESC_F_NEXT, "NEXT"), (VRING_DESC_F_WRITE, "WRITE"),
                                   (VRING_DESC_F_INDIRECT, "INDIRECT")) if flags & bit]


def walk_chain(read, table, num, head):
    """The descriptors of one chain, following NEXT (and one INDIRECT table)
    as the device would; stops, with an error, on what the Launcher refuses."""
    chain = []
    seen = set()
    i, limit, indirect = head, num, False
    while True:
        if i >= limit:
            return chain, "descriptor index %u out of range (num %u)" % (i, limit)
        if i in seen:
            return chain, "descriptor loop at index %u" % i
        seen.add(i)
        addr, length, flags, nxt = read_desc(read, table, i)
        chain.append({"index": i, "addr": addr, "len": length, "flags": desc_flag_names(flags)})
        if flags & VRING_DESC_F_INDIRECT and len(chain) == 1 and not indirect:
            # Only the head may name a table (wait_for_vq_desc looks there only).
            if length % VRING_DESC_SIZE:
                return chain, "indirect table of %u bytes" % length
            table, limit, i, seen, indirect = addr, length // VRING_DESC_SIZE, 0, set(), True
            continue
        if not flags & VRING_DESC_F_NEXT:
            return chain, None
        i = nxt


def decode_queue(read, index, num, irq, pfn, last_avail=None):
    desc, avail, used = vring_layout(pfn << 12, num)
    q = {"index": index, "irq": irq, "pfn": pfn, "num": num, "desc": desc, "avail": avail,
         "used": used, "last_avail": last_avail}
    try:
        q["avail_flags"], q["avail_idx"] = struct.unpack("<HH", bytes(read(avail, 4)))
        q["used_flags"], q["used_idx"] = struct.unpack("<HH", bytes(read(used, 4)))
        q["no_interrupt"] = bool(q["avail_flags"] & VRING_AVAIL_F_NO_INTERRUPT)
        q["no_notify"] = bool(q["used_flags"] & VRING_USED_F_NO_NOTIFY)
        count = (q["avail_idx"] - q["used_idx"]) & 0xFFFF
        q["in_flight"] = count
        chains = []
        if num and count <= num:
            for k in range(min(count, MAX_CHAINS_SHOWN)):
                slot = (q["used_idx"] + k) & 0xFFFF
                head = _u16(read, avail + 4 + 2 * (slot % num))
                entry = {"slot": slot, "head": head}
                if last_avail is not None:
                    # Taken by the device (between used.idx and its cursor) or
                    # still waiting for it.
                    entry["taken"] = ((slot - q["used_idx"]) & 0xFFFF) < \
                        ((last_avail - q["used_idx"]) & 0xFFFF)
                entry["chain"], err = walk_chain(read, desc, num, head)
                if err:
                    entry["error"] = err
                chains.append(entry)
        elif count > num:
            q["error"] = "avail.idx %u is more than %u ahead of used.idx %u" % (
                q["avail_idx"], num, q["used_idx"])
        q["chains"] = chains
    except Exception as e:          # a read that failed: say so, never raise
        q["error"] = "cannot read the ring: %s" % e
    return q


def decode(read, descpage, state=None):
    """The device page at descpage and every queue's rings, as data.

    state, from the Launcher when there is one (Devices.describe), is a list
    with a dict per device: name, running, extra fields, and "queues": a
    dict per queue with the device's cursor last_avail.
    """
    devices = []
    out = {"descpage": descpage, "devices": devices}
    try:
        page = bytes(read(descpage, PAGE_SIZE))
    except Exception as e:
        out["error"] = "cannot read the device page: %s" % e
        return out
    off = 0
    while off + DESC_SIZE <= PAGE_SIZE and page[off] != 0:
        dev_type, num_vq, feature_len, config_len, status = page[off:off + DESC_SIZE]
        size = DESC_SIZE + num_vq * VQCONFIG_SIZE + 2 * feature_len + config_len
        known = state[len(devices)] if state and len(devices) < len(state) else {}
        dev = {"offset": off, "addr": descpage + off, "type": dev_type,
               "type_name": DEVICE_TYPES.get(dev_type, "type %d" % dev_type),
               "name": known.get("name"), "running": known.get("running"),
               "status": status, "status_names": status_names(status)}
        for key, value in known.items():
            if key not in ("name", "running", "queues"):
                dev[key] = value
        devices.append(dev)
        if off + size > PAGE_SIZE:
            dev["error"] = "descriptor runs past the page end (%u bytes at %u)" % (size, off)
            break
        feats = off + DESC_SIZE + num_vq * VQCONFIG_SIZE
        offered = page[feats:feats + feature_len]
        accepted = page[feats + feature_len:feats + 2 * feature_len]
        dev["feature_len"] = feature_len
        dev["features"] = feature_word(offered)
        dev["features_names"] = feature_names(dev_type, dev["features"])
        dev["accepted"] = feature_word(accepted)
        dev["accepted_names"] = feature_names(dev_type, dev["accepted"])
        cfg = page[feats + 2 * feature_len:feats + 2 * feature_len + config_len]
        dev["config_len"] = config_len
        dev["config"] = decode_config(dev_type, cfg)
        queues = []
        qstate = known.get("queues") or []
        for i in range(num_vq):
            num, irq, pfn = struct.unpack_from("<HHI", page, off + DESC_SIZE + VQCONFIG_SIZE * i)
            last = qstate[i].get("last_avail") if i < len(qstate) else None
            queues.append(decode_queue(read, i, num, irq, pfn, last))
        dev["queues"] = queues
        off += size
    return out


# --- choosing devices --------------------------------------------------------------------
NO_VIRTIO_2623 = "no virtio devices: this is a 2.6.23 guest (lguest_bus DMA)"


def device_label(dev):
    return dev.get("name") or dev["type_name"]


def select(info, which=None):
    """info with only the devices `which` names: an index (0, 1...), a device
    name or a type name (console, block, net...).  ValueError, saying which
    devices there are, when none matches."""
    devs = info.get("devices", [])
    indexed = [dict(dev, index=dev.get("index", n)) for n, dev in enumerate(devs)]
    out = dict(info, devices=indexed, total=info.get("total", len(devs)))
    if which is None or which == "":
        return out
    text = str(which).strip().lower()
    if text.isdigit():
        chosen = [d for d in indexed if d["index"] == int(text)]
    else:
        chosen = [d for d in indexed if text in ((d.get("name") or "").lower(),
                                                 d["type_name"].lower())]
    if not chosen:
        have = ", ".join("%d %s" % (d["index"], device_label(d)) for d in indexed) or "none"
        raise ValueError("no virtio device %r (devices: %s)" % (which, have))
    out["devices"] = chosen
    return out


# --- words ------------------------------------------------------------------------------
def _chain_text(chain):
    parts = []
    for d in chain:
        rw = "W" if "WRITE" in d["flags"] else "R"
        extra = " indirect" if "INDIRECT" in d["flags"] else ""
        parts.append("[%u] %#x+%u %s%s" % (d["index"], d["addr"], d["len"], rw, extra))
    return " -> ".join(parts)


def render(info):
    """Text lines for gdb's lguest-virtio and the REPL's virtio."""
    lines = []
    devs = info.get("devices", [])
    total = info.get("total", len(devs))
    lines.append("virtio device page at %#x: %d device%s%s" % (
        info.get("descpage", 0), total, "" if total == 1 else "s",
        "" if len(devs) == total else ", showing %s" % ", ".join(
            "%d" % dev.get("index", n) for n, dev in enumerate(devs))))
    if info.get("error"):
        lines.append("  " + info["error"])
    for n, dev in enumerate(devs):
        name = device_label(dev)
        run = {True: ", running", False: ", stopped", None: ""}[dev.get("running")]
        lines.append("device %d: %s (type %d %s) at %#x, status %#04x %s%s" % (
            dev.get("index", n), name, dev["type"], dev["type_name"], dev["addr"], dev["status"],
            "|".join(dev["status_names"]) or "(reset)", run))
        if dev.get("error"):
            lines.append("  " + dev["error"])
            continue
        if dev.get("disk"):
            size = dev.get("disk_bytes")
            lines.append("  disk: %s%s%s" % (dev["disk"],
                                              "" if size is None else ", %d bytes" % size,
                                              " (read-only)" if dev.get("readonly") else ""))
        lines.append("  features: offered %#010x %s; accepted %#010x %s" % (
            dev["features"], " ".join(dev["features_names"]) or "-",
            dev["accepted"], " ".join(dev["accepted_names"]) or "-"))
        cfg = dev.get("config") or {}
        if "capacity" in cfg:
            lines.append("  config: capacity %d sectors (%d bytes), size_max %d, seg_max %d" % (
                cfg["capacity"], cfg["capacity"] * SECTOR_SIZE, cfg["size_max"], cfg["seg_max"]))
        elif cfg:
            lines.append("  config: " + ", ".join("%s %s" % kv for kv in cfg.items()))
        for q in dev.get("queues", []):
            lines.append("  vq%d: irq %d, pfn %#x, num %d: desc %#x avail %#x used %#x" % (
                q["index"], q["irq"], q["pfn"], q["num"], q["desc"], q["avail"], q["used"]))
            if "avail_idx" not in q:
                lines.append("    " + q.get("error", "unreadable"))
                continue
            cursor = "" if q.get("last_avail") is None else ", last_avail %d" % q["last_avail"]
            flags = []
            if q["no_interrupt"]:
                flags.append("NO_INTERRUPT")
            if q["no_notify"]:
                flags.append("NO_NOTIFY")
            lines.append("    avail.idx %d, used.idx %d%s, in flight %d%s" % (
                q["avail_idx"], q["used_idx"], cursor, q["in_flight"],
                " (" + " ".join(flags) + ")" if flags else ""))
            if q.get("error"):
                lines.append("    " + q["error"])
            for c in q.get("chains", []):
                state = {True: " taken", False: " waiting", None: ""}[c.get("taken")]
                lines.append("    avail[%d] head %d%s: %s%s" % (
                    c["slot"] % max(q["num"], 1), c["head"], state, _chain_text(c["chain"]),
                    "  !! " + c["error"] if c.get("error") else ""))
            more = q["in_flight"] - len(q.get("chains", []))
            if more > 0 and not q.get("error"):
                lines.append("    ... %d more" % more)
    return lines
