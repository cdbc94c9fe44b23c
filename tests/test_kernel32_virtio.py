"""lguest-virtio, `monitor [json] virtio` and the REPL's `virtio` on the real
Linux 3.2.65 Guest with its root filesystem on the virtio disk (issue 18).

One `lgdbg serve VMLINUX32 --disk IMAGE` with the real /usr/bin/gdb attached
through MI (tests/gdbmi.py) serves the module.  The Guest runs to
mount_block_root (every driver probed), then to the first lg_notify on the block
device's queue: a request (the root filesystem's first read) is on the avail
ring and the Launcher has not seen it yet.  Then on to blk_done, the request
completed.  The REPL's batch mode makes the same stops and must print the same.

Expectations come from elsewhere than lgdbg: the numbers of the 3.2 source's
virtio_ids.h, virtio_config.h and virtio_blk.h; the image's size; the device
page read by gdb at the address the Guest ioremap'ed it (lguest_devices) and
decoded here with the DWARF's struct sizes; the rings as the Guest's own
struct vring_virtqueue and struct lguest_vq_info say, read through gdb.

The kernel comes from LGDBG_TEST_KERNEL32 or ../shared/kernel-3.2/
(kernelboot.vmlinux32): without one these tests skip, or fail when CI=true.
"""

import json
import os
import re
import struct
import subprocess
import sys

import pytest

import kernelboot
from gdbmi import GDB, ROOT, Gdb, Serve, cli, cont, refused, value
from kernelboot import vmlinux, vmlinux32  # noqa: F401  (the session fixtures)

if kernelboot.missing_kernel("3.2") and not kernelboot.in_ci():
    pytest.skip(kernelboot.missing_kernel("3.2"), allow_module_level=True)
pytestmark = pytest.mark.skipif(not os.path.exists(GDB), reason="needs gdb (%s)" % GDB)

LOADER = os.path.join(ROOT, "gdb_scripts", "lguest.py")
SRC = kernelboot.KERNEL32_SRC
CMDLINE = "console=hvc0 lpj=100000 root=/dev/vda init=/init"
RUN_TIMEOUT = 300
NO_VIRTIO = "no virtio devices: this is a 2.6.23 guest (lguest_bus DMA)"


def header(name, prefix):
    """{NAME: value} of `#define PREFIXNAME value` in the 3.2 source's include/linux/NAME."""
    with open(os.path.join(SRC, "include", "linux", name)) as f:
        return {n: int(v, 0) for n, v in
                re.findall(r"^#define %s(\w+)\s+(0x[0-9a-fA-F]+|\d+)" % prefix, f.read(), re.M)}


IDS = header("virtio_ids.h", "VIRTIO_ID_")
STATUS = header("virtio_config.h", "VIRTIO_CONFIG_S_")
BLK_F = header("virtio_blk.h", "VIRTIO_BLK_F_")


# ---- gdb helpers --------------------------------------------------------------------------

def memory(g, addr, length):
    mem = g.mi("-data-read-memory-bytes %#x %d" % (addr, length)).payload["memory"]
    return bytes.fromhex("".join(m["contents"] for m in mem))


def page_from_gdb(g):
    """The device page as the Guest maps it (lguest_devices), decoded here with
    the DWARF's struct sizes: [(offset, type, status, offered, accepted, config, vqs)]."""
    raw = memory(g, value(g, "(unsigned long)lguest_devices"), 4096)
    desc_size = value(g, "sizeof(struct lguest_device_desc)")
    vq_size = value(g, "sizeof(struct lguest_vqconfig)")
    out, off = [], 0
    while raw[off]:
        dtype, num_vq, flen, clen, status = raw[off:off + 5]
        feats = off + desc_size + num_vq * vq_size
        vqs = [struct.unpack_from("<HHI", raw, off + desc_size + vq_size * i)
               for i in range(num_vq)]
        out.append((off, dtype, status, raw[feats:feats + flen], raw[feats + flen:feats + 2 * flen],
                    raw[feats + 2 * flen:feats + 2 * flen + clen], vqs))
        off = feats + 2 * flen + clen
    return out


def bits(raw):
    return int.from_bytes(raw[:4].ljust(4, b"\0"), "little")


# ---- the session --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("virtio")
    programs = kernelboot.build_programs(d / "progs")
    return kernelboot.build_ext2(d / "root.ext2", programs["disk"],
                                 [("seed.txt", b"read by the Guest\n")])


@pytest.fixture(scope="module")
def session(vmlinux32, image):  # noqa: F811
    stub = Serve(vmlinux32, "--mem", "64", "--cmdline", CMDLINE, "--disk", image)
    g = Gdb(timeout=60)
    try:
        g.cli("source %s" % LOADER)
        g.cli("file %s" % vmlinux32, timeout=120)
        g.mi("-target-select remote %s" % stub.address, timeout=60)
        g.stops = {}                 # what the REPL must print the same at the same stops
        yield g
    finally:
        g.close()
        stub.close()


VQ = "((struct vring_virtqueue *)vq)"
LVQ = "((struct lguest_vq_info *)vq->priv)"


def test_before_the_drivers_the_page_is_there_unclaimed(session):
    g = session
    info = json.loads(cli(g, "monitor json virtio"))
    assert [d["type"] for d in info["devices"]] and \
        all(d["status"] == 0 and d["accepted"] == 0 for d in info["devices"])
    # At the first instruction (virtual == physical) the kernel's variables are not
    # even mapped: from memory, gdb cannot find the page, and says what to do
    err = refused(g, "lguest-virtio --memory")
    assert "cannot read lguest_devices" in err and "ioremap" in err and "lgdbg's stub" in err


def test_a_block_request_in_flight(session, image):
    g = session
    cli(g, "tbreak mount_block_root")
    assert cont(g)["frame"]["func"] == "mount_block_root"
    cli(g, "break lg_notify")
    hits = 0
    while True:
        stop = cont(g)
        assert stop["frame"]["func"] == "lg_notify", stop
        hits += 1
        if value(g, "vq->vdev->id.device") == IDS["BLOCK"]:
            break
        assert hits < 200, "no block request after mount_block_root"
    g.hits = hits
    info = json.loads(cli(g, "monitor json virtio"))
    text = cli(g, "lguest-virtio")
    g.stops["request"] = text
    assert text == cli(g, "monitor virtio")
    devs = info["devices"]

    # -- the device page, as the Guest's mapping of it reads in gdb
    page = page_from_gdb(g)
    assert [(d["offset"], d["type"], d["status"]) for d in devs] == \
        [(p[0], p[1], p[2]) for p in page]
    assert sorted(d["type"] for d in devs) == sorted([IDS["BLOCK"], IDS["CONSOLE"]])
    by_type = {d["type"]: d for d in devs}
    blk, con = by_type[IDS["BLOCK"]], by_type[IDS["CONSOLE"]]
    assert (blk["type_name"], con["type_name"]) == ("block", "console")
    ok = STATUS["ACKNOWLEDGE"] | STATUS["DRIVER"] | STATUS["DRIVER_OK"]
    for d in (blk, con):
        assert d["status"] == ok and d["status_names"] == ["ACKNOWLEDGE", "DRIVER", "DRIVER_OK"]
        assert re.search(r"^device %d: %s \(type %d %s\) at %#x, status %#04x "
                         r"ACKNOWLEDGE\|DRIVER\|DRIVER_OK" % (
                             devs.index(d), d["type_name"], d["type"], d["type_name"],
                             value(g, "max_pfn") * 4096 + d["offset"], ok), text, re.M), text
        p = page[devs.index(d)]
        assert (d["features"], d["accepted"]) == (bits(p[3]), bits(p[4]))
        assert [(q["num"], q["irq"], q["pfn"]) for q in d["queues"]] == p[6]

    # -- features: the block device's, by the source's bit numbers
    want = 1 << BLK_F["SEG_MAX"] | 1 << BLK_F["FLUSH"]
    assert blk["features"] & want == want and blk["accepted"] & want == want
    assert not blk["features"] & 1 << BLK_F["RO"] and not blk["accepted"] & 1 << BLK_F["RO"]
    assert {"SEG_MAX", "FLUSH"} <= set(blk["features_names"]) & set(blk["accepted_names"])
    # what the Guest's driver core recorded as accepted is what the page says
    assert value(g, "vq->vdev->features[0]") == blk["accepted"]
    assert re.search(r"features: offered %#010x .*SEG_MAX FLUSH.*; accepted %#010x" % (
        blk["features"], blk["accepted"]), text)

    # -- config: capacity in sectors
    assert blk["config"]["capacity"] == os.path.getsize(image) // 512
    assert struct.unpack_from("<Q", page[devs.index(blk)][5])[0] == blk["config"]["capacity"]
    assert "capacity %d sectors" % (os.path.getsize(image) // 512) in text

    # -- the block queue against the Guest's own vring_virtqueue
    q = blk["queues"][0]
    assert value(g, "%s->vring.num" % VQ) == q["num"]
    assert value(g, "%s->config.pfn" % LVQ) == q["pfn"] and \
        value(g, "%s->config.irq" % LVQ) == q["irq"]
    # the Guest's ring is at the virtual address it ioremap'ed (lvq->pages)
    assert value(g, "(unsigned long)%s->vring.desc" % VQ) == \
        value(g, "(unsigned long)%s->pages" % LVQ)
    assert value(g, "(char *)%s->vring.used - (char *)%s->vring.desc" % (VQ, VQ)) == \
        q["used"] - q["desc"]
    assert value(g, "(char *)%s->vring.avail - (char *)%s->vring.desc" % (VQ, VQ)) == \
        q["avail"] - q["desc"]
    avail_idx = value(g, "%s->vring.avail->idx" % VQ)
    used_idx = value(g, "%s->vring.used->idx" % VQ)
    assert (q["avail_idx"], q["used_idx"]) == (avail_idx, used_idx)
    assert value(g, "%s->last_used_idx" % VQ) == used_idx
    assert q["in_flight"] == (avail_idx - used_idx) & 0xFFFF >= 1
    # not yet seen by the Launcher: lg_notify's NOTIFY has not run
    assert q["last_avail"] == used_idx
    assert len(q["chains"]) == q["in_flight"]
    outhdr = value(g, "sizeof(struct virtio_blk_outhdr)")
    for c in q["chains"]:
        assert c["taken"] is False and "error" not in c
        assert c["head"] == value(g, "%s->vring.avail->ring[%d]" % (VQ, c["slot"] % q["num"]))
        for d in c["chain"]:
            assert d["addr"] == value(g, "%s->vring.desc[%d].addr" % (VQ, d["index"]))
            assert d["len"] == value(g, "%s->vring.desc[%d].len" % (VQ, d["index"]))
        # virtio_blk's request: out header first, the status byte the device writes last
        assert c["chain"][0]["len"] == outhdr and "WRITE" not in c["chain"][0]["flags"]
        assert c["chain"][-1]["len"] == 1 and "WRITE" in c["chain"][-1]["flags"]
        assert "avail[%d] head %d waiting: [%d] %#x+%d R" % (
            c["slot"] % q["num"], c["head"], c["head"], c["chain"][0]["addr"], outhdr) in text
    assert "avail.idx %d, used.idx %d, last_avail %d, in flight %d" % (
        avail_idx, used_idx, used_idx, avail_idx - used_idx) in text

    # -- the console's queues, as virtio_console's ports_device holds them
    portdev = "((struct ports_device *)pdrvdata.portdevs.next)"
    seen = {}
    for vq in ("%s->in_vqs[0]" % portdev, "%s->out_vqs[0]" % portdev):
        pfn = value(g, "((struct lguest_vq_info *)%s->priv)->config.pfn" % vq)
        ring = "((struct vring_virtqueue *)%s)->vring" % vq
        seen[pfn] = tuple(value(g, "%s.%s" % (ring, f)) for f in
                          ("num", "avail->idx", "used->idx"))
    assert seen == {cq["pfn"]: (cq["num"], cq["avail_idx"], cq["used_idx"])
                    for cq in con["queues"]}
    g.info = info


def test_decoded_from_memory_the_same(session):
    """--memory decodes what the Guest mapped (lguest_devices, vmlist) without
    the Launcher: every number it can know agrees with the stub's."""
    g = session
    mine = json.loads(cli(g, "lguest-virtio --memory --json"))
    theirs = g.info
    assert mine["descpage"] == theirs["descpage"] == value(g, "max_pfn") * 4096
    keys = ("offset", "type", "status", "features", "accepted", "config")
    qkeys = ("index", "irq", "pfn", "num", "desc", "avail", "used", "avail_idx", "used_idx",
             "in_flight")
    assert len(mine["devices"]) == len(theirs["devices"])
    for a, b in zip(mine["devices"], theirs["devices"]):
        assert [a[k] for k in keys] == [b[k] for k in keys]
        for qa, qb in zip(a["queues"], b["queues"]):
            assert "error" not in qa, qa
            assert [qa[k] for k in qkeys] == [qb[k] for k in qkeys]
            assert [(c["head"], c["chain"]) for c in qa["chains"]] == \
                [(c["head"], c["chain"]) for c in qb["chains"]]
            assert qa["last_avail"] is None
    text = cli(g, "lguest-virtio --memory")
    assert "last_avail" not in text and ", running" not in text and "waiting" not in text
    q = next(d for d in theirs["devices"] if d["type"] == IDS["BLOCK"])["queues"][0]
    assert "avail.idx %d, used.idx %d, in flight %d" % (
        q["avail_idx"], q["used_idx"], q["in_flight"]) in text


def test_choosing_a_device(session):
    g = session
    devs = g.info["devices"]
    blk = next(i for i, d in enumerate(devs) if d["type"] == IDS["BLOCK"])
    con = next(i for i, d in enumerate(devs) if d["type"] == IDS["CONSOLE"])
    for which, index in (("block", blk), ("console", con), (str(con), con)):
        text = cli(g, "lguest-virtio %s" % which)
        assert re.findall(r"^device (\d+):", text, re.M) == [str(index)], text
        assert text.startswith("virtio device page at %#x: 2 devices, showing %d\n"
                               % (g.info["descpage"], index)), text
        assert text == cli(g, "monitor virtio %s" % which)
    g.stops["block"] = cli(g, "lguest-virtio block")
    err = refused(g, "lguest-virtio net")
    assert "no virtio device 'net'" in err and "%d block" % blk in err
    assert "one DEVICE at most" in refused(g, "lguest-virtio block console")
    assert json.loads(cli(g, "monitor json virtio 7"))["error"].startswith(
        "no virtio device '7'")


def test_the_request_completed(session):
    g = session
    before = next(d for d in g.info["devices"] if d["type"] == IDS["BLOCK"])["queues"][0]
    cli(g, "delete")
    cli(g, "break blk_done")
    assert cont(g)["frame"]["func"] == "blk_done"
    info = json.loads(cli(g, "monitor json virtio"))
    g.stops["done"] = cli(g, "lguest-virtio")
    q = next(d for d in info["devices"] if d["type"] == IDS["BLOCK"])["queues"][0]
    used_idx = value(g, "%s->vring.used->idx" % VQ)
    avail_idx = value(g, "%s->vring.avail->idx" % VQ)
    assert (q["used_idx"], q["avail_idx"]) == (used_idx, avail_idx)
    # the Guest has not taken the completions yet: used.idx ran ahead of it
    assert used_idx > value(g, "%s->last_used_idx" % VQ) == before["used_idx"]
    assert used_idx >= before["avail_idx"]
    assert q["last_avail"] == avail_idx and q["in_flight"] == (avail_idx - used_idx) & 0xFFFF
    assert "avail.idx %d, used.idx %d, last_avail %d, in flight %d" % (
        avail_idx, used_idx, avail_idx, q["in_flight"]) in g.stops["done"]


# ---- the REPL: the same stops, the same words ---------------------------------------------

def repl_run(vmlinux32, image, script, tmp_path, *extra):  # noqa: F811
    path = tmp_path / "virtio.lgdbg"
    path.write_text(script)
    r = subprocess.run([sys.executable, "-m", "lgdbg", "repl", "--batch", str(path),
                        "--mem", "64", "--cmdline", CMDLINE, "--disk", image, *extra,
                        vmlinux32], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                       cwd=ROOT)
    assert "Traceback" not in r.stdout + r.stderr
    outputs, current = [], None
    for line in r.stdout.splitlines():
        m = re.match(r"^\S+> (.*)$", line)
        if m:
            current = [m.group(1)]
            outputs.append(current)
        elif current is not None:
            current.append(line)
    return {i: (o[0], "\n".join(o[1:])) for i, o in enumerate(outputs)}, r


def test_the_repl_says_the_same(session, vmlinux32, image, tmp_path):  # noqa: F811
    g = session
    assert {"request", "block", "done"} <= set(g.stops), "the gdb tests did not run first"
    script = ("tbreak mount_block_root\ncontinue\nbreak lg_notify\n" + "continue\n" * g.hits
              + "virtio\nvirtio block\ndelete\nbreak blk_done\ncontinue\nvirtio\n")
    out, r = repl_run(vmlinux32, image, script, tmp_path)
    assert r.returncode == 0, r.stderr
    virtio = [text for cmd, text in out.values() if cmd.startswith("virtio")]
    assert len(virtio) == 3, out
    want = [g.stops["request"], g.stops["block"], g.stops["done"]]
    assert [v.strip("\n") for v in virtio] == [w.strip("\n") for w in want]


def test_readonly_disk_offers_and_the_guest_accepts_ro(vmlinux32, image, tmp_path):  # noqa: F811
    out, r = repl_run(vmlinux32, image, "tbreak mount_block_root\ncontinue\nvirtio block\n",
                      tmp_path, "--disk-readonly")
    assert r.returncode == 0, r.stderr
    text = next(t for cmd, t in out.values() if cmd == "virtio block")
    m = re.search(r"features: offered (0x[0-9a-f]+) .*; accepted (0x[0-9a-f]+)", text)
    assert m, text
    ro = 1 << BLK_F["RO"]
    assert int(m.group(1), 16) & ro and int(m.group(2), 16) & ro, text
    assert "RO" in text.split("accepted")[1].split() and "(read-only)" in text


def test_repl_help_and_usage(vmlinux32, image, tmp_path):  # noqa: F811
    out, r = repl_run(vmlinux32, image, "help virtio\nvirtio 9\nvirtio a b\n", tmp_path)
    assert r.returncode == 1
    assert next(t for cmd, t in out.values() if cmd == "help virtio").startswith(
        "virtio [DEVICE]: the virtio devices"), out
    assert r.stderr.strip().splitlines() == [
        "no virtio device '9' (devices: 0 block, 1 console)", "usage: virtio [DEVICE]"]


# ---- the 2.6.23 ABI, and gdb without lgdbg's stub ---------------------------------------

def test_no_virtio_on_2_6_23_example_guests(tmp_path):
    image = os.path.join(ROOT, "lgdbg", "images", "hello.elf")
    with Serve(image) as stub, Gdb(timeout=60) as g:
        g.cli("source %s" % LOADER)
        g.cli("file %s" % image)
        g.mi("-target-select remote %s" % stub.address)
        assert json.loads(cli(g, "monitor json virtio")) == {"error": NO_VIRTIO}
        # the stub's line, which gdb completes with its only word for a refused qRcmd
        res = g.cli("monitor virtio", check=False)
        assert res.message == "error" and res.error == "Protocol error with Rcmd"
        assert res.output == "lgdbg: %s; gdb reports the refusal as: " % NO_VIRTIO
        assert refused(g, "lguest-virtio") == "lguest-virtio: " + NO_VIRTIO
        assert refused(g, "lguest-virtio --memory") == "lguest-virtio: " + NO_VIRTIO
    script = tmp_path / "v.lgdbg"
    script.write_text("virtio\n")
    r = subprocess.run([sys.executable, "-m", "lgdbg", "repl", "--batch", str(script), "iret"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.strip() == NO_VIRTIO, r.stderr


def test_no_virtio_on_the_2_6_23_kernel(vmlinux):  # noqa: F811
    with Serve(vmlinux, "--mem", "64") as stub, Gdb(timeout=60) as g:
        g.cli("source %s" % LOADER)
        g.cli("file %s" % vmlinux, timeout=120)
        assert refused(g, "lguest-virtio") == "lguest-virtio: " + NO_VIRTIO   # no target
        g.mi("-target-select remote %s" % stub.address, timeout=60)
        assert refused(g, "lguest-virtio") == "lguest-virtio: " + NO_VIRTIO


def test_without_a_target_gdb_says_what_to_do(vmlinux32):  # noqa: F811
    with Gdb(timeout=60) as g:
        g.cli("source %s" % LOADER)
        assert "no guest image loaded" in refused(g, "lguest-virtio")
        g.cli("file %s" % vmlinux32, timeout=120)
        err = refused(g, "lguest-virtio")
        assert "ioremap" in err and "lgdbg's stub" in err, err
