"""Hardening: broken guest images and bad option values (issue 7).

The rule (design.md, invariant 7): bad input gets one clear line on stderr and
status 2.  A corpus of broken ELF files is generated here from scratch (a tiny
ELF writer) and from the bundled images; hypothesis then mutates a real image
byte by byte and field by field: each mutant is either refused with one
ImageError line or boots and runs (to its end or to --max-insns), and never
produces a traceback.  Bad option values are tried on every sub-command that
takes them.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lgdbg import images
from lgdbg.errors import ImageError, UsageError
from lgdbg.image import parse_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEM = 32 << 20
REAL = open(images.path_of("hello"), "rb").read()
COUNT = {"corpus": 0, "mutants": 0, "mutants_ran": 0, "mutants_refused": 0,
         "cli_mutants": 0, "options": 0}


def lgdbg(*args, timeout=30, stdin=subprocess.DEVNULL, **kw):
    p = subprocess.run([sys.executable, "-m", "lgdbg", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, cwd=ROOT, stdin=stdin, **kw)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def one_line_status_2(p):
    lines = p.stderr.splitlines()
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("lgdbg"), lines
    return lines[0]


# --- a tiny ELF writer -----------------------------------------------------------------------

def make_elf(segments, e_type=2, machine=3, cls=1, data=1, phentsize=32, phnum=None,
             phoff=None, entry=0xC0100000):
    """segments: [(p_type, vaddr, paddr, bytes, memsz)]; returns the file's bytes."""
    phnum = len(segments) if phnum is None else phnum
    phoff = 52 if phoff is None else phoff
    body_at = 52 + 32 * len(segments)
    phdrs, blobs = b"", b""
    for p_type, vaddr, paddr, blob, memsz in segments:
        phdrs += struct.pack("<8I", p_type, body_at + len(blobs), vaddr & 0xFFFFFFFF, paddr, len(blob),
                             memsz, 7, 0x1000)
        blobs += blob
    ident = b"\x7fELF" + bytes([cls, data, 1]) + bytes(9)
    hdr = ident + struct.pack("<HHIIIIIHHHHHH", e_type, machine, 1, entry, phoff, 0, 0, 52,
                              phentsize, phnum, 40, 0, 0)
    return hdr + phdrs + blobs


GUEST = b"GenuineLguest" + b"\xeb\xfe"          # the magic, then "jmp ." (runs for ever)
LOW = 0xC0000000


def good(**kw):
    return make_elf([(1, LOW + 0x100000, 0x100000, GUEST, 0x1000)], **kw)


def patch(raw, offset, fmt, value):
    raw = bytearray(raw)
    struct.pack_into(fmt, raw, offset, value)
    return bytes(raw)


def phdrs_of(raw):
    phoff, = struct.unpack_from("<I", raw, 28)
    phentsize, phnum = struct.unpack_from("<HH", raw, 42)
    return [phoff + i * phentsize for i in range(phnum)]


def real_with(fn):
    return bytes(fn(bytearray(REAL)) or b"")


def _all_phdrs(raw, field_off, value):
    for at in phdrs_of(raw):
        struct.pack_into("<I", raw, at + field_off, value)
    return raw


def _load_phdrs(raw):
    return [at for at in phdrs_of(raw) if struct.unpack_from("<I", raw, at)[0] == 1]


def _first_load(raw, field_off, value):
    struct.pack_into("<I", raw, _load_phdrs(raw)[0] + field_off, value)
    return raw


def _no_magic(raw):
    at = raw.find(b"GenuineLguest")
    raw[at:at + 13] = b"GenuineLguesT"
    return raw


# (id, bytes, words that must appear in the message)
CORPUS = [
    ("empty", b"", "not an ELF"),
    ("text", b"hello, world\n" * 10, "not an ELF"),
    ("elf-magic-only", b"\x7fELF", "not an ELF"),
    ("truncated-header", REAL[:40], "not an ELF"),
    ("header-only", REAL[:52], "truncated"),
    ("64-bit", good(cls=2), "32-bit"),
    ("big-endian", good(data=2), "little-endian"),
    ("class-none", good(cls=0), "32-bit"),
    ("x86-64-machine", good(machine=62), "machine 62"),
    ("arm-machine", good(machine=40), "machine 40"),
    ("relocatable", good(e_type=1), "not an executable"),
    ("shared-object", good(e_type=3), "not an executable"),
    ("core-file", good(e_type=4), "not an executable"),
    ("no-program-headers", good(phnum=0), "no program headers"),
    ("tiny-phentsize", good(phentsize=8), "no program headers"),
    ("phdrs-past-eof", good(phoff=1 << 20), "truncated"),
    ("phdrs-offset-overflow", good(phoff=0xFFFFFFF0), "truncated"),
    ("phnum-65535", good(phnum=65535), "truncated"),
    ("no-pt-load", make_elf([(4, LOW, 0, GUEST, 0x1000)]), "no loadable"),
    ("only-pt-null", make_elf([(0, 0, 0, b"", 0)] * 3), "no loadable"),
    ("segment-outside-ram", make_elf([(1, LOW + 0x3fff0000, 0x3fff0000, GUEST, 0x1000)]),
     "outside guest RAM"),
    ("segment-wraps-4g", make_elf([(1, 0xFFFFF000, 0xFFFFF000, GUEST, 0x2000)]),
     "outside guest RAM"),
    ("huge-bss", make_elf([(1, LOW + 0x100000, 0x100000, GUEST, 0x7FFFFFFF)]),
     "outside guest RAM"),
    ("filesz-gt-memsz", make_elf([(1, LOW + 0x100000, 0x100000, GUEST, 4)]),
     "filesz > memsz"),
    ("segment-data-past-eof", real_with(lambda r: _first_load(r, 16, 1 << 24)), "truncated"),
    ("segment-offset-past-eof", real_with(lambda r: _first_load(r, 4, 1 << 24)), "truncated"),
    ("no-magic", real_with(_no_magic), "GenuineLguest"),
    ("no-magic-tiny", make_elf([(1, LOW + 0x100000, 0x100000, b"\xeb\xfe" * 8, 0x1000)]),
     "GenuineLguest"),
    ("magic-in-non-load", make_elf([(4, LOW + 0x100000, 0x100000, GUEST, 0x1000),
                                    (1, LOW + 0x200000, 0x200000, b"\x90" * 16, 0x1000)]),
     "GenuineLguest"),
    ("mismatched-page-offsets", make_elf([(1, LOW + 0x100000, 0x100000, GUEST, 0x1000),
                                          (1, 0x80000000 + 0x200000, 0x200000, GUEST, 0x1000)]),
     "page_offset"),
    ("unaligned-page-offset", make_elf([(1, LOW + 0x101000, 0x100000, GUEST, 0x1000)]),
     "4 MiB aligned"),
    ("real-too-big-for-1-mib", None, "outside guest RAM"),        # hello with --mem 1
    # A bzImage: the boot protocol's "HdrS" at 0x202, version 2.10 after it.
    ("bzimage", bytes(0x202) + b"HdrS\x0a\x02" + bytes(0x1000), "bzImage (boot protocol 2.10)"),
]


def write_case(tmp_path, name, raw):
    path = tmp_path / (name + ".elf")
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("name, raw, words", CORPUS, ids=[c[0] for c in CORPUS])
def test_broken_image_in_process(name, raw, words):
    COUNT["corpus"] += 1
    mem = (1 << 20) if raw is None else MEM
    raw = REAL if raw is None else raw
    with pytest.raises(ImageError) as e:
        parse_image(raw, mem, name)
    msg = str(e.value)
    assert "\n" not in msg and words in msg, msg
    assert isinstance(e.value, UsageError)


@pytest.mark.parametrize("name, raw, words", CORPUS, ids=[c[0] for c in CORPUS])
def test_broken_image_cli(tmp_path, name, raw, words):
    extra = []
    if raw is None:
        raw, extra = REAL, ["--mem", "1"]
    path = write_case(tmp_path, name, raw)
    line = one_line_status_2(lgdbg("run", path, *extra))
    assert words in line, line
    assert str(path) in line


def test_the_good_tiny_elf_is_accepted(tmp_path):
    # The writer itself makes a bootable image: the corpus fails for the
    # reason named, not for something the writer got wrong.
    image = parse_image(good(), MEM)
    assert image.entry == LOW + 0x100000 + 13 and image.page_offset == LOW
    p = lgdbg("run", write_case(tmp_path, "good", good()), "--max-insns", 1000)
    assert p.returncode == 3, p.stderr


@pytest.mark.parametrize("kind", ["directory", "missing", "dev-null", "fifo", "dev-zero"])
def test_image_that_is_not_a_file(tmp_path, kind):
    if kind == "directory":
        path = tmp_path
    elif kind == "missing":
        path = tmp_path / "nope.elf"
    elif kind == "dev-null":
        path = "/dev/null"
    elif kind == "dev-zero":
        path = "/dev/zero"                 # reading it to the end would never finish
    else:
        path = tmp_path / "fifo"
        os.mkfifo(path)                    # opening it would wait for a writer for ever
    line = one_line_status_2(lgdbg("run", path, timeout=20))
    assert str(path) in line


def test_unreadable_image():
    d = tempfile.mkdtemp(prefix="lgdbg-unreadable-")
    try:
        os.chmod(d, 0o755)
        path = os.path.join(d, "secret.elf")
        with open(path, "wb") as f:
            f.write(REAL)
        os.chmod(path, 0)
        status, err = _cli_in_child(["run", path], drop_root=os.geteuid() == 0)
        assert status == 2, err
        assert len(err.splitlines()) == 1 and "Permission denied" in err and path in err, err
    finally:
        shutil.rmtree(d)


def _cli_in_child(argv, drop_root):
    """lgdbg's main() in a forked child (as nobody if asked: root reads anything)."""
    from lgdbg import cli, run_command  # noqa: F401  (imported before dropping root)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # child
        status = 99
        try:
            os.close(r)
            os.dup2(w, 2)
            sys.stderr = os.fdopen(w, "w", buffering=1)
            if drop_root:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            status = cli.main(argv)
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, wstatus = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wstatus), err


# --- hypothesis: mutants of a real image ---------------------------------------------------------

HEADER_FIELDS = [(16, "<H"), (18, "<H"), (24, "<I"), (28, "<I"), (42, "<H"), (44, "<H")]
PH_FIELDS = [(0, "<I"), (4, "<I"), (8, "<I"), (12, "<I"), (16, "<I"), (20, "<I")]
INTERESTING = [0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF, 0xFFFFFFF0, 0xC0000000, 0x100000, len(REAL), len(REAL) - 1]
CODE_AT = REAL.find(b"GenuineLguest") + 13


@st.composite
def mutants(draw):
    raw = bytearray(REAL)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["header", "phdr", "flip", "code", "truncate", "splice"]))
        if how == "header":
            off, fmt = draw(st.sampled_from(HEADER_FIELDS))
            size = struct.calcsize(fmt)
            value = draw(st.sampled_from(INTERESTING)) & ((1 << (8 * size)) - 1)
            if len(raw) >= off + size:
                struct.pack_into(fmt, raw, off, value)
        elif how == "phdr":
            try:
                ats = phdrs_of(bytes(raw))
            except struct.error:
                continue
            ats = [a for a in ats if a + 32 <= len(raw)]
            if not ats:
                continue
            at = draw(st.sampled_from(ats))
            off, fmt = draw(st.sampled_from(PH_FIELDS))
            value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 0xFFFFFFFF)))
            struct.pack_into(fmt, raw, at + off, value)
        elif how == "flip":
            if raw:
                at = draw(st.integers(0, len(raw) - 1))
                raw[at] = draw(st.integers(0, 255))
        elif how == "code":
            # random instructions right where the guest starts: the CPU's own
            # exits (faults, odd opcodes, hypercalls with junk) must all be handled
            junk = draw(st.binary(min_size=1, max_size=48))
            raw[CODE_AT:CODE_AT + len(junk)] = junk
        elif how == "truncate":
            raw = raw[:draw(st.integers(0, len(raw)))]
        else:
            at = draw(st.integers(0, len(raw)))
            raw[at:at] = draw(st.binary(max_size=64))
    return bytes(raw)


def boot_or_refuse(raw):
    """Refused with one ImageError line, or boots and runs without an exception."""
    from lgdbg.machine import Machine
    COUNT["mutants"] += 1
    try:
        image = parse_image(raw, 4 << 20, "mutant")
    except ImageError as e:
        assert "\n" not in str(e)
        COUNT["mutants_refused"] += 1
        return "refused"
    m = Machine(image, mem_mib=4, max_insns=20_000)
    stop = m.run()
    COUNT["mutants_ran"] += 1
    assert stop.kind in ("poweroff", "killed", "max-insns", "halted-forever"), stop
    # the machine stays inspectable afterwards
    m.cpu.regs()
    assert m.run().kind == stop.kind
    return stop.kind


@settings(max_examples=int(os.environ.get("LGDBG_FUZZ_EXAMPLES", 400)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(mutants())
def test_mutated_image_is_refused_or_runs(raw):
    boot_or_refuse(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=64), st.integers(0, 6))
def test_random_code_after_the_magic_is_handled(code, pad):
    # A valid image whose first instructions are junk: every kind of CPU
    # exit unicorn can produce must become a Host decision, not an exception.
    blob = b"GenuineLguest" + b"\x90" * pad + code + b"\xeb\xfe"
    raw = make_elf([(1, LOW + 0x100000, 0x100000, blob, 0x4000)])
    assert boot_or_refuse(raw) != "refused"


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(mutants())
def test_mutated_image_cli(tmp_path_factory, raw):
    # The same through `lgdbg run`: status 2 with one line, or a run.
    COUNT["cli_mutants"] += 1
    path = tmp_path_factory.mktemp("mut") / "m.elf"
    path.write_bytes(raw)
    p = lgdbg("run", path, "--mem", "4", "--max-insns", "20000")
    if p.returncode == 2:
        assert len(p.stderr.splitlines()) == 1, p.stderr
    else:
        assert p.returncode in (0, 1, 3), p.stderr


# --- bad option values ----------------------------------------------------------------------

MACHINE_BAD = [
    (["--mem", "-1"], "--mem"),
    (["--mem", "0"], "--mem"),
    (["--mem", "99999"], "--mem"),
    (["--mem", "1024"], "--mem 1024"),             # would overlap the Switcher
    (["--mem", "lots"], "--mem"),
    (["--mem", ""], "--mem"),
    (["--irq", "garbage"], "--irq"),
    (["--irq", "99@1"], "irq 99"),
    (["--irq", "-1@5"], "--irq"),
    (["--irq", "1@-5"], "--irq"),
    (["--irq", "1@"], "--irq"),
    (["--irq", "@100"], "--irq"),
    (["--irq", "1@2@3"], "--irq"),
    (["--irq", "0x20@0x10"], "irq 32"),
    (["--host-tick", "0"], "--host-tick"),
    (["--host-tick", "-5"], "--host-tick"),
    (["--host-tick", "1e6"], "--host-tick"),
    (["--clock", "bogus"], "--clock"),
    (["--clock", "realtime", "--irq", "1@100"], "icount"),
    (["--clock", "realtime", "--host-tick", "1000"], "icount"),
    (["--cmdline"], "--cmdline"),
]
RUN_BAD = MACHINE_BAD + [
    (["--max-insns", "-1"], "--max-insns"),
    (["--max-insns", "ten"], "--max-insns"),
    (["--max-insns", "10", "--clock", "realtime"], "icount"),
    (["--trace", "/nonexistent/dir/t.jsonl"], "trace"),
    (["--trace", "/"], "trace"),
    (["--bogus-option"], "unrecognized"),
    (["hello", "extra-arg"], "unrecognized"),
]
SERVE_BAD = MACHINE_BAD + [
    (["--listen", "nonsense"], "--listen"),
    (["--listen", "127.0.0.1:99999"], "99999"),
    (["--listen", "127.0.0.1:-1"], "--listen"),
    (["--listen", "256.1.1.1:1234"], "256.1.1.1"),
    (["--listen", "127.0.0.1:http"], "--listen"),
]
REPL_BAD = MACHINE_BAD + [
    (["--batch", "/nonexistent/cmds"], "/nonexistent/cmds"),
]
EXPLORE_REQ = ["--at", "main_loop", "--window", "lguest_iret", "--irq", "0"]
EXPLORE_BAD = [
    (["--mem", "0"] + EXPLORE_REQ, "--mem"),
    (["--mem", "-1"] + EXPLORE_REQ, "--mem"),
    (["--host-tick", "0"] + EXPLORE_REQ, "--host-tick"),
    (["--at", "main_loop", "--window", "lguest_iret", "--irq", "99"], "99"),
    (["--at", "main_loop", "--window", "lguest_iret", "--irq", "x"], "--irq"),
    (["--at", "no_such_symbol", "--window", "lguest_iret", "--irq", "0"], "no_such_symbol"),
    (["--at", "main_loop", "--window", "no_such_symbol", "--irq", "0"], "no_such_symbol"),
    (["--at", "main_loop", "--window", "lguest_iret", "--irq", "0", "--budget", "-1"],
     "--budget"),
    (["--at", "main_loop", "--window", "lguest_iret", "--irq", "0", "--budget", "0"],
     "--budget"),
    (["--window", "lguest_iret", "--irq", "0"], "--at"),
    (EXPLORE_REQ + ["/nonexistent.elf"], "/nonexistent.elf"),
]
TIMELINE_BAD = [
    (["/nonexistent/trace.jsonl"], "/nonexistent/trace.jsonl"),
    ([], "TRACE"),
    (["{trace}", "--from", "x"], "--from"),
    (["{trace}", "--from", "100", "--to", "50"], "--to"),
    (["{trace}", "--image", "/nonexistent.elf"], "/nonexistent.elf"),
    (["{trace}", "--explore", "/nonexistent.json"], "/nonexistent.json"),
    (["{trace}", "-o", "/nonexistent/dir/out.html"], "/nonexistent/dir/out.html"),
    (["{junk}"], "{junk}"),
    (["{empty}"], "{empty}"),
    (["{dir}"], "{dir}"),
]
JOURNEY_BAD = [
    (["--part", "Z"], "--part"),
    (["/nonexistent/file.S"], "/nonexistent/file.S"),
    (["{dir}"], "{dir}"),
]
GDB_BAD = [
    (["--mem", "0"], "--mem"),
    (["--irq", "garbage"], "--irq"),
    (["--clock", "bogus"], "--clock"),
    (["--gdb", "/nonexistent/gdb"], "/nonexistent/gdb"),
]

OPTION_CASES = ([("run", a, w) for a, w in RUN_BAD] + [("serve", a, w) for a, w in SERVE_BAD]
                + [("repl", a, w) for a, w in REPL_BAD]
                + [("explore", a, w) for a, w in EXPLORE_BAD]
                + [("timeline", a, w) for a, w in TIMELINE_BAD]
                + [("journey", a, w) for a, w in JOURNEY_BAD]
                + [("gdb", a, w) for a, w in GDB_BAD])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    junk = d / "junk.jsonl"
    junk.write_text("this is not json\n{\"half\": \n")
    empty = d / "empty.jsonl"
    empty.write_text("")
    trace = d / "trace.jsonl"
    p = subprocess.run([sys.executable, "-m", "lgdbg", "run", "hello", "--trace", str(trace)],
                       cwd=ROOT, capture_output=True, timeout=30)
    assert p.returncode == 0
    return {"junk": str(junk), "empty": str(empty), "trace": str(trace), "dir": str(d)}


@pytest.mark.parametrize("command, args, words", OPTION_CASES,
                         ids=["%s %s" % (c, " ".join(a)) for c, a, _ in OPTION_CASES])
def test_bad_option_value(files, command, args, words):
    COUNT["options"] += 1
    args = [a.format(**files) for a in args]
    words = words.format(**files)
    env = dict(os.environ, LGDBG_GDB="/bin/false")
    p = lgdbg(command, *args, timeout=30, env=env)
    line = one_line_status_2(p)
    assert words in line, line
