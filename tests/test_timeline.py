"""`lgdbg timeline`: structure of the SVG/HTML for a known trace, the window
options, bad input, a million events, and a real browser's rendering."""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zlib

import pytest

from lgdbg.cli import main
from lgdbg.timeline import page, view

SVG_NS = "{http://www.w3.org/2000/svg}"
CHROMIUM = "/usr/bin/chromium"

HANDLER0, HANDLER1, HANDLER3 = 0xC0100400, 0xC0100480, 0xC0100500
IRET, NOIRQ_START, NOIRQ_END = 0xC0100600, 0xC0100605, 0xC010060B


def known_events():
    """Every event kind, all four deferral reasons, a halt, a power-off."""
    ev = []

    def add(icount, kind, skipped=0, **fields):
        ev.append(dict({"icount": icount, "time_ns": icount + skipped, "kind": kind}, **fields))

    def hcall(icount, nr, name, args=(0, 0, 0), skipped=0, is_async=False):
        add(icount, "hcall", skipped, nr=nr, name=name, args=list(args), eip=0xC0100100,
            **{"async": is_async})

    hcall(10, 1, "LGUEST_INIT", (0xC0200000, 0, 0))
    hcall(200, 6, "LOAD_IDT_ENTRY", (0x20, 0x00600400, 0xC0108E00))
    hcall(300, 9, "SET_CLOCKEVENT", (5700, 0, 0))
    add(300, "clock", armed=6000)
    add(500, "raise", irq=3, source="schedule")
    add(500, "irq-deferred", irq=3, reason="no-handler", eip=0xC0100120)
    hcall(1500, 6, "LOAD_IDT_ENTRY", (0x23, 0x00600500, 0xC0108F00))
    add(1500, "irq-deferred", irq=3, reason="disabled", eip=0xC0100130)
    add(2500, "irq", irq=3, vector=0x23, from_eip=0xC0100140, handler=HANDLER3, gate="trap",
        esp=0xC0300FF0)
    add(2600, "raise", irq=1, source="monitor")
    add(2600, "irq-deferred", irq=1, reason="blocked", eip=0xC0100150)
    add(2900, "hcall", nr=7, name="SET_STACK", args=[0x69, 0xC0301000, 1], eip=IRET + 1,
        **{"async": False})     # irq 3's handler on its way out
    add(3000, "trap", vector=14, errcode=2, eip=0xC0100160, cr2=0x1000, delivered=True)
    add(3200, "trap", vector=13, errcode=0, eip=0xC0100170, delivered=False, emulated=True)
    hcall(3600, 10, "HALT")
    add(3600, "halt")
    add(3600, "clock", 2400, fired=True)
    add(3600, "raise", 2400, irq=0, source="clock")
    add(3600, "wake", 2400)
    add(3600, "irq", 2400, irq=0, vector=0x20, from_eip=0xC0100180, handler=HANDLER0,
        gate="interrupt", esp=0xC0300FE0)
    hcall(4800, 13, "SEND_DMA", (0, 0x1000, 0), 2400, is_async=True)
    add(4800, "console", 2400, text="hello\n")
    add(5000, "raise", 2400, irq=0, source="schedule")
    add(5000, "irq-deferred", 2400, irq=0, reason="noirq", eip=NOIRQ_START + 2)
    add(5900, "irq", 2400, irq=0, vector=0x20, from_eip=NOIRQ_END, handler=HANDLER0,
        gate="interrupt", esp=0xC0300FE0)
    add(6000, "irq-deferred", 2400, irq=1, reason="disabled", eip=0xC0100190)
    add(6500, "irq", 2400, irq=1, vector=0x21, from_eip=0xC01001A0, handler=HANDLER1,
        gate="interrupt", esp=0xC0300FE0)
    hcall(7000, 2, "CRASH", (0xC0200100, 0, 0), 2400)
    add(7000, "kill", 2400, reason="CRASH: Power down")
    return ev


def write_trace(path, events):
    with open(path, "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    return str(path)


def elf_with_symbols(path, symbols):
    """A minimal ELF32 i386 file whose .symtab names `symbols` (name -> address)."""
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in symbols)
    syms, off = [b"\0" * 16], 1
    for name, addr in symbols.items():
        syms.append(struct.pack("<IIIBBH", off, addr, 0, 0x10, 0, 1))  # GLOBAL NOTYPE, .text
        off += len(name) + 1
    symtab = b"".join(syms)
    shstr = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    text = b"\x90" * 16
    body = [text, symtab, strtab, shstr]
    offsets, pos = [], 52
    for blob in body:
        offsets.append(pos)
        pos += len(blob)
    shoff = pos
    sh = [b"\0" * 40,
          struct.pack("<10I", 1, 1, 6, 0xC0100000, offsets[0], len(text), 0, 0, 16, 0),
          struct.pack("<10I", 7, 2, 0, 0, offsets[1], len(symtab), 3, 1, 4, 16),
          struct.pack("<10I", 15, 3, 0, 0, offsets[2], len(strtab), 0, 0, 1, 0),
          struct.pack("<10I", 23, 3, 0, 0, offsets[3], len(shstr), 0, 0, 1, 0)]
    ident = b"\x7fELF\x01\x01\x01" + b"\0" * 9
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0xC0100000, 0, shoff, 0,
                                 52, 32, 0, 40, len(sh), 4)
    with open(path, "wb") as f:
        f.write(header + b"".join(body) + b"".join(sh))
    return str(path)


def svg_of(text):
    """The <svg> element of an SVG file or of the HTML page that inlines it."""
    m = re.search(r"<svg\b.*?</svg>", text, re.S)
    assert m, "no <svg> element"
    return ET.fromstring(m.group(0))


def lane(root, lane_id):
    found = [g for g in root.iter(SVG_NS + "g") if g.get("id") == lane_id]
    assert found, "no lane %s" % lane_id
    return found[0]


def tracks(lane_el, name):
    return [g for g in lane_el.iter(SVG_NS + "g") if name in (g.get("class") or "").split()]


def texts(el):
    return [t.text for t in el.iter(SVG_NS + "text")]


def titles(el):
    return [t.text for t in el.iter(SVG_NS + "title")]


def render(tmp_path, events, *options, name="trace.jsonl", out="out.html"):
    trace = write_trace(tmp_path / name, events)
    target = str(tmp_path / out)
    status = main(["timeline", trace, "-o", target] + list(options))
    assert status == 0
    with open(target, encoding="utf-8") as f:
        return f.read()


@pytest.fixture
def image(tmp_path):
    return elf_with_symbols(tmp_path / "guest.elf", {
        "start": 0xC0100000, "timer_handler": HANDLER0, "kbd_handler": HANDLER1,
        "trap3_handler": HANDLER3, "lguest_iret": IRET, "lguest_noirq_start": NOIRQ_START,
        "lguest_noirq_end": NOIRQ_END})


# --- structure -------------------------------------------------------------------

def test_svg_lanes_spans_and_labels(tmp_path, image):
    root = svg_of(render(tmp_path, known_events(), "--image", image, out="t.svg"))
    guest = lane(root, "lane-guest")
    assert "lane-guest" in guest.get("class").split()
    for n in (0, 1, 3):
        el = lane(root, "lane-irq-%d" % n)
        assert el.get("class") == "lane lane-irq" and el.get("data-irq") == str(n)
    assert not [g for g in root.iter(SVG_NS + "g") if g.get("id") == "lane-irq-2"]

    # Every deferral reason is a span in its irq's lane, in the reason's colour.
    expected = {"no-handler": 3, "disabled": 3, "blocked": 1, "noirq": 0}
    for reason, irq in expected.items():
        groups = tracks(lane(root, "lane-irq-%d" % irq), "defer-" + reason)
        assert groups, reason
        assert groups[0].get("fill") == view.DEFER_COLOURS[reason]
        rects = list(groups[0].iter(SVG_NS + "rect"))
        assert rects and all(float(r.get("width")) > 10 for r in rects), reason
    # irq 1 was blocked and then disabled: two spans, one per reason.
    assert tracks(lane(root, "lane-irq-1"), "defer-disabled")

    # Deliveries are labelled with the handler's symbol and the gate.
    assert "trap3_handler (trap)" in texts(lane(root, "lane-irq-3"))
    irq0 = texts(lane(root, "lane-irq-0"))
    assert "timer_handler (interrupt)" in irq0
    assert "kbd_handler (interrupt)" in texts(lane(root, "lane-irq-1"))
    # The handler's return through lguest_iret shows on irq 3's lane.
    assert tracks(lane(root, "lane-irq-3"), "iret")

    # The guest lane: hypercall names (hover and label), traps, the halt with
    # the time it skipped, the clock, the console.
    hover = " ".join(titles(guest))
    for name in ("LGUEST_INIT", "LOAD_IDT_ENTRY", "SET_STACK", "HALT", "SEND_DMA", "CRASH"):
        assert name in hover
    assert "(async ring)" in hover and "'hello\\n'" in hover
    labels = texts(guest)
    assert "SET_CLOCKEVENT" in labels and "#PF" in labels and "#GP" in labels
    assert "halt 2.4 us" in labels
    for name in ("hcall", "trap", "trap-emulated", "halt", "clock-armed", "clock-fired",
                 "clock-deadline", "clock-pending", "console"):
        assert tracks(guest, name), name
    # The power-off marker crosses all lanes.
    over = lane(root, "lane-overlay")
    assert "power off" in texts(over)

    # A legend names every deferral reason with its colour.
    legend = [g for g in root.iter(SVG_NS + "g") if g.get("id") == "legend"][0]
    for reason, colour in view.DEFER_COLOURS.items():
        if reason == "other":
            continue
        item = tracks(legend, "defer-" + reason)[0]
        assert item.find(SVG_NS + "rect").get("fill") == colour
        assert "deferred: " + reason in texts(item)


def test_page_table_work_has_a_lane_of_its_own(tmp_path, image):
    events = known_events()
    extra = [
        {"icount": 3100, "time_ns": 3100, "kind": "trap", "vector": 14, "errcode": 0,
         "eip": 0xC0100160, "cr2": 0x8049000, "delivered": False, "demand": True},
        {"icount": 3150, "time_ns": 3150, "kind": "hcall", "nr": 14, "name": "SET_PTE",
         "args": [0x1ed000, 0xffbea000, 0], "eip": 0xC0100164, "async": False},
        {"icount": 3170, "time_ns": 3170, "kind": "hcall", "nr": 4, "name": "NEW_PGTABLE",
         "args": [0x1e68000, 0, 0], "eip": 0xC0100168, "async": True},
    ]
    events = sorted(events + extra, key=lambda e: e["icount"])
    root = svg_of(render(tmp_path, events, "--image", image, out="t.svg"))
    pt = lane(root, "lane-pagetables")
    assert "SET_PTE" in " ".join(titles(pt)) and "NEW_PGTABLE" in " ".join(titles(pt))
    assert "cr2 0x8049000" in " ".join(titles(pt)) or "0x8049000" in " ".join(titles(pt))
    assert tracks(pt, "demand") and tracks(pt, "hcall-pt")
    guest = lane(root, "lane-guest")
    assert "SET_PTE" not in " ".join(titles(guest))      # not drawn twice
    assert "demand" not in " ".join(titles(guest))
    # Without page-table work there is no such lane.
    plain = svg_of(render(tmp_path, known_events(), "--image", image, out="p.svg"))
    assert not [g for g in plain.iter(SVG_NS + "g") if g.get("id") == "lane-pagetables"]


def test_without_image_addresses_are_hex(tmp_path):
    root = svg_of(render(tmp_path, known_events(), out="t.svg"))
    assert "%#x (interrupt)" % HANDLER0 in texts(lane(root, "lane-irq-0"))
    assert not tracks(root, "iret")


def test_html_is_self_contained_and_carries_the_data(tmp_path, image):
    html = render(tmp_path, known_events(), "--image", image)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)
    root = svg_of(html)
    assert lane(root, "lane-irq-0") is not None
    blob = re.search(r'<script id="tl-data" type="application/json">(.*?)</script>', html, re.S)
    data = json.loads(blob.group(1))
    assert data["axis"] == "icount" and data["lo"] == 10 and data["hi"] == 7000
    assert [ln["id"] for ln in data["lanes"]] == [
        "lane-guest", "lane-irq-0", "lane-irq-1", "lane-irq-3", "lane-overlay"]
    assert not data["reduced"]


def test_default_output_name_and_realtime_axis(tmp_path):
    events = known_events()
    for e in events:
        e.pop("icount")
    trace = write_trace(tmp_path / "rt.jsonl", events)
    assert main(["timeline", trace]) == 0
    html = open(tmp_path / "rt.html", encoding="utf-8").read()
    assert svg_of(html).get("data-axis") == "time_ns"
    # On a time axis the halt has a width: the 2,400 ns it skipped.
    root = svg_of(html)
    halt = tracks(lane(root, "lane-guest"), "halt")[0].find(SVG_NS + "rect")
    assert float(halt.get("width")) > 100


def test_from_to_window(tmp_path):
    root = svg_of(render(tmp_path, known_events(), "--from", "2000", "--to", "4000",
                         out="w.svg"))
    guest = " ".join(titles(lane(root, "lane-guest")))
    assert "SET_STACK" in guest and "HALT" in guest
    assert "LGUEST_INIT" not in guest and "CRASH" not in guest
    assert not tracks(root, "poweroff")
    # irq 3's disabled deferral (1,500 to 2,500) is clipped to the window, not dropped.
    span = tracks(lane(root, "lane-irq-3"), "defer-disabled")[0].find(SVG_NS + "rect")
    assert float(span.get("x")) == 0.0
    assert 250 < float(span.get("width")) < 350    # 500 of 2,000 icounts of 1,200 px
    # irq 1's blocked deferral continues past the window's end.
    span = tracks(lane(root, "lane-irq-1"), "defer-blocked")[0].find(SVG_NS + "rect")
    assert float(span.get("x")) + float(span.get("width")) == pytest.approx(view.PLOT_W, abs=1)
    assert not tracks(lane(root, "lane-irq-0"), "defer-noirq")


def test_explorer_table(tmp_path, image):
    report = tmp_path / "explore.json"
    report.write_text(json.dumps({"points": [
        {"offset": 0, "address": IRET, "insn": "push %eax", "outcome": "ok",
         "delivered": True, "reason": None, "differs": False},
        {"offset": 1, "address": NOIRQ_START, "insn": "mov %eax, ...", "outcome": "deferred",
         "delivered": False, "reason": "noirq", "differs": True}]}))
    html = render(tmp_path, known_events(), "--image", image, "--explore", str(report))
    table = ET.fromstring(re.search(r'<table id="explore-table">.*?</table>', html, re.S)
                          .group(0).replace("&nbsp;", " "))
    rows = table.findall("./tbody/tr")
    assert len(rows) == 2 and rows[1].get("class") == "differs"
    cells = ["".join(td.itertext()) for td in rows[1]]
    assert cells[1] == "%#x lguest_noirq_start" % NOIRQ_START and cells[5] == "noirq"


# --- bad input --------------------------------------------------------------------

def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_bad_input_is_one_line(tmp_path, capsys):
    err = one_line_error(capsys, ["timeline", str(tmp_path / "missing.jsonl")])
    assert "missing.jsonl" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"icount": 1, "time_ns": 1, "kind": "halt"}\n\n{"icount": 2, oops\n')
    assert "line 3" in one_line_error(capsys, ["timeline", str(bad)])
    bad.write_text('{"time_ns": 1, "kind": "halt", "icount": 1}\n{"kind": "wake"}\n')
    assert "line 2" in one_line_error(capsys, ["timeline", str(bad)])
    bad.write_text("")
    assert "no events" in one_line_error(capsys, ["timeline", str(bad)])
    good = write_trace(tmp_path / "good.jsonl", known_events())
    assert ".svg" in one_line_error(capsys, ["timeline", good, "-o", str(tmp_path / "x.png")])
    assert "image" in one_line_error(capsys, ["timeline", good, "--image", good])
    bad.write_text('{"rows": 1}')
    assert "points" in one_line_error(capsys, ["timeline", good, "--explore", str(bad)])
    assert "--to" in one_line_error(capsys, ["timeline", good, "--from", "9", "--to", "3"])


# --- a million events ----------------------------------------------------------------

def million_event_trace(path, n=1000000):
    """Hypercalls, irqs raised, deferred and delivered, halts: n lines in all."""
    lines, t, i = [], 0, 0
    reasons = ("blocked", "noirq", "disabled", "no-handler")
    hc = '{"icount":%d,"time_ns":%d,"kind":"hcall","nr":7,"name":"SET_STACK",' \
         '"args":[105,3224375296,1],"eip":3222274304,"async":false}'
    with open(path, "w") as f:
        while i < n:
            ic = i * 50
            k = i % 10
            irq = (i // 10) % 4
            if k < 5:
                f.write(hc % (ic, ic + t) + "\n")
            elif k == 5:
                f.write('{"icount":%d,"time_ns":%d,"kind":"raise","irq":%d,"source":"schedule"}\n'
                        % (ic, ic + t, irq))
            elif k == 6:
                f.write('{"icount":%d,"time_ns":%d,"kind":"irq-deferred","irq":%d,"reason":"%s",'
                        '"eip":3222274400}\n' % (ic, ic + t, irq, reasons[(i // 10) % 4]))
            elif k == 7:
                f.write('{"icount":%d,"time_ns":%d,"kind":"irq","irq":%d,"vector":%d,'
                        '"from_eip":3222274500,"handler":3222274600,"gate":"interrupt",'
                        '"esp":3224375200}\n' % (ic, ic + t, irq, 32 + irq))
            elif k == 8:
                f.write('{"icount":%d,"time_ns":%d,"kind":"halt"}\n' % (ic, ic + t))
                t += 1000
            else:
                f.write('{"icount":%d,"time_ns":%d,"kind":"wake"}\n' % (ic - 50, ic - 50 + t))
            i += 1
    return str(path)


def test_a_million_events(tmp_path, capsys):
    trace = million_event_trace(tmp_path / "big.jsonl")
    for out in ("big.html", "big.svg"):
        started = time.perf_counter()
        assert main(["timeline", trace, "-o", str(tmp_path / out)]) == 0
        seconds = time.perf_counter() - started
        size = os.path.getsize(tmp_path / out)
        with capsys.disabled():
            print("\n1,000,000 events -> %s: %.2f s, %.2f MB" % (out, seconds, size / 1e6))
        assert size < 5e6
    root = svg_of(open(tmp_path / "big.html", encoding="utf-8").read())
    for n in range(4):
        assert lane(root, "lane-irq-%d" % n) is not None
    root = svg_of(open(tmp_path / "big.svg", encoding="utf-8").read())
    # Aggregated: at most one mark per pixel column per track.
    hcalls = tracks(lane(root, "lane-guest"), "hcall")[0]
    assert len(list(hcalls.iter(SVG_NS + "rect"))) <= view.PLOT_W
    assert re.search(r"\d+ hypercalls, icount", " ".join(titles(hcalls)))


def test_pack_aggregates_big_tracks():
    from lgdbg.timeline.trace import Lane, Timeline
    ln = Lane("lane-guest", "guest", "guest")
    t = ln.track("hcall")
    for x in range(100000):
        t.mark(x * 3, "HALT")
    tl = Timeline("icount", 0, 300000, [ln], {"hcall": 100000}, [], hex)
    packed = page.pack(tl)
    track = packed["lanes"][0]["tracks"][0]
    assert packed["reduced"] and len(track["dx"]) <= page.GRID
    assert sum(track["counts"]) == 100000


# --- a real browser -----------------------------------------------------------------

def chromium(tmp_path, url, *extra):
    profile = tmp_path / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", "--force-color-profile=srgb",
           "--user-data-dir=%s" % profile] + list(extra) + [url]
    return subprocess.run(cmd, capture_output=True, timeout=120)


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = ihdr
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev, p = [], bytearray(stride), 0
    for _ in range(height):
        ftype, line = raw[p], bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return width, height, rows


def colour_counts(rows, colours, tolerance=4):
    want = {c: tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in colours}
    counts = dict.fromkeys(colours, 0)
    for row in rows:
        for px in set(row):
            for c, rgb in want.items():
                if all(abs(px[k] - rgb[k]) <= tolerance for k in range(3)):
                    counts[c] += row.count(px)
    return counts


def drawn_per_lane(html):
    """lane id -> (rects, labels) drawn in its plot, from an HTML text."""
    out = {}
    for m in re.finditer(r'<g id="(lane-[\w-]+)".*?(?=<g id="lane-|<g id="legend")', html, re.S):
        plot = m.group(0).split('class="lane-plot"', 1)[1]
        out[m.group(1)] = (plot.count("<rect"), plot.count('<text class="label"'))
    assert set(out) >= {"lane-guest", "lane-irq-0", "lane-irq-1", "lane-irq-3"}
    return out


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="/usr/bin/chromium is absent: apt-get install chromium to run "
                           "the browser rendering test")
def test_chromium_renders_every_deferral_colour(tmp_path, image):
    render(tmp_path, known_events(), "--image", image, out="page.html")
    url = "file://%s" % (tmp_path / "page.html")
    # The script ran and redrew every lane from the embedded data.
    dom = chromium(tmp_path, url, "--dump-dom").stdout.decode()
    assert 'data-rendered="js"' in dom
    # ... and drew what Python drew: the same marks, spans and labels per lane.
    python = open(tmp_path / "page.html", encoding="utf-8").read()
    assert drawn_per_lane(dom) == drawn_per_lane(python)
    assert "timer_handler (interrupt)" in dom
    png = tmp_path / "page.png"
    result = chromium(tmp_path, url, "--screenshot=%s" % png, "--window-size=1400,900")
    assert png.exists(), result.stderr.decode()[-2000:]
    keep = os.environ.get("LGDBG_TIMELINE_SCREENSHOT")
    if keep:
        shutil.copy(png, keep)
    width, height, rows = read_png(png)
    assert (width, height) == (1400, 900)
    colours = [view.DEFER_COLOURS[r] for r in ("blocked", "noirq", "disabled", "no-handler")]
    counts = colour_counts(rows, colours)
    print("deferral colour pixels:", counts, file=sys.stderr)
    for colour, n in counts.items():
        assert n > 600, "too few pixels of %s: %s" % (colour, counts)
    # The deliveries' green is there too: the lanes were drawn, not just the legend.
    assert colour_counts(rows, ["#2ca02c"])["#2ca02c"] > 50
