"""The lguest journey: numbered narrative fragments, strung into a tour.

lguest's sources are meant to be read in order.  A comment that begins with a
marker such as `/*G:045` opens a numbered fragment of the narrative; it runs
until a line containing `:*/` (which ends the comment and the fragment) or a
standalone `/*:*/` (which ends a fragment that went on to include code).
Documentation/lguest/extract collects the fragments and prints them by number,
with a `[ path ]` header whenever the source file changes.  This module does
the same for any text file, a unified diff included (so the seed patch reads as
a tour), and gives debuggers a way to find the fragment for a source line.

Standard library only: gdb's embedded Python imports this module too.

API for the front ends (the gdb command `lguest-journey`, the REPL `journey`):

    extract_files(paths)           -> [Fragment]   (UsageError if unreadable)
    example_tour(name)             -> [Fragment]   a bundled example's tour
    tour(fragments, part=None)     -> [Fragment]   sorted; duplicates raise
    fragment_at(fragments, path, line) -> Fragment or None
    neighbours(tour, fragment)     -> (prev, next), either may be None
    render_fragment(fragment, tour, address=None) -> str   the shared wording
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import LgdbgError, UsageError

# The seven parts, in reading order (drivers/lguest/README, "make Beer").
PARTS = "PGDLHSM"
PART_NAMES = {"P": "Preparation", "G": "Guest", "D": "Drivers", "L": "Launcher",
              "H": "Host", "S": "Switcher", "M": "Mastery"}

IMAGES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images")

_MARKER = re.compile(r"/\*([%s]):(\d{3})" % PARTS)
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Fragment:
    part: str            # one of PARTS
    number: int          # 0..999
    path: str            # source path as given (for a patch: the new file's path)
    first_line: int      # line of the marker, 1-based, in the (new) file
    last_line: int       # last line that belongs to the fragment
    text: str            # marker stripped, terminator rewritten as extract does
    code_line: int | None = None  # first code line after the opening comment

    @property
    def label(self):
        return "%s:%03d" % (self.part, self.number)

    @property
    def where(self):
        return "%s:%d" % (self.path, self.first_line)


# ---------------------------------------------------------------- extraction

def extract_text(text, path):
    """All fragments in one file's text; a unified diff is read as its new side."""
    if _looks_like_patch(text):
        return [f for p, lines in _patch_files(text) for f in _fragments(lines, p)]
    return _fragments(list(enumerate(text.splitlines(), 1)), path)


def extract_file(path, shown_as=None):
    """Fragments of one file; a file we cannot read is the user's error."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e.strerror or e))
    return extract_text(text, shown_as or path)


def extract_files(paths):
    return [frag for p in paths for frag in extract_file(p)]


def _fragments(lines, path):
    """Run the extract script's state machine over [(lineno, text)] of one file.

    As in extract, a new marker also ends an open fragment and so does the end
    of the file: a fragment's code runs on until something says otherwise.
    """
    found, current, body = [], None, []

    def close(terminator=None):
        # Trailing blank lines belong to no one: without a terminator line a
        # fragment ends at its last words.
        while body and not body[-1][1].strip():
            body.pop()
        current.last_line = terminator or body[-1][0]
        current.text = "\n".join(t for _, t in body)
        found.append(current)

    for lineno, line in lines:
        m = _MARKER.search(line)
        if m:
            if current:
                close()
            current = Fragment(m.group(1), int(m.group(2)), path, lineno, lineno, "")
            body = []
            line = line[:m.start() + 2] + line[m.end():]   # keep the "/*"
        elif current is None:
            continue
        if ":*/" in line:
            # The end of the narrative: ":*/" becomes "*/", and a bare "/*:*/"
            # (now "/**/") disappears with its line if nothing else is on it.
            line = line.replace(":*/", "*/").replace("/**/", "").rstrip()
            if line.strip():
                body.append((lineno, line))
            close(lineno)
            current = None
            continue
        body.append((lineno, line.rstrip()))
    if current:
        close()

    # So a debugger can find the code a fragment talks about: the first code
    # line after the fragment's opening comment (inside the fragment if it
    # goes on to include code, otherwise after it).
    code = _code_lines(lines)
    for frag in found:
        end = _comment_end(lines, frag.first_line)
        frag.code_line = next((n for n in code if n > end), None)
    return found


def _comment_end(lines, start):
    """Line on which the comment opened at line `start` closes."""
    for lineno, line in lines:
        if lineno < start:
            continue
        if "*/" in (line[_MARKER.search(line).end():] if lineno == start else line):
            return lineno
    return lines[-1][0]


def _code_lines(lines):
    """Line numbers that hold code: not blank, not comment, not preprocessor.

    Preprocessor lines (and their backslash continuations) never have an
    address, so a debugger looking for "where does this code start" skips them.
    """
    code, in_comment, continued = [], False, False
    for lineno, line in lines:
        was_continued, continued = continued, line.rstrip().endswith("\\")
        rest = ""
        while line:
            if in_comment:
                end = line.find("*/")
                if end < 0:
                    break
                line, in_comment = line[end + 2:], False
            else:
                start = line.find("/*")
                if start < 0:
                    rest += line
                    break
                rest, line, in_comment = rest + line[:start], line[start + 2:], True
        rest = rest.split("//")[0].strip()
        if rest and not rest.startswith("#") and not was_continued:
            code.append(lineno)
    return code


# ---------------------------------------------------------------- patches

def _looks_like_patch(text):
    return bool(re.search(r"^\+\+\+ ", text, re.M) and re.search(_HUNK.pattern, text, re.M))


def _patch_files(text):
    """Split a unified diff into (new path, [(new lineno, text)]) per file.

    Only hunk bodies count: a leading "+" or " " is stripped, "-" lines belong
    to the old file and are skipped.  Hunk lengths are tracked so a removed
    line that happens to start with "--" is not taken for a header; a line
    that cannot be in a hunk ends it early (hand-edited counts).
    """
    files, lines = [], None
    old_left = new_left = 0
    lineno = 0
    for raw in text.splitlines():
        tag, body = raw[:1], raw[1:]
        if (old_left > 0 or new_left > 0) and tag in ("-", "+", " ", "", "\\"):
            if tag == "-":
                old_left -= 1
            elif tag in ("+", " ", ""):      # some mailers drop a context line's space
                if lines is not None:
                    lines.append((lineno, body))
                lineno += 1
                new_left -= 1
                if tag != "+":
                    old_left -= 1
            # "\ No newline at end of file" takes no room in either side
            continue
        if raw.startswith("+++ "):
            name = raw[4:].split("\t")[0].strip()
            # A deleted file has no new side to read.
            lines = None if name == "/dev/null" else []
            path = name[2:] if name.startswith("b/") else name
            if lines is not None:
                files.append((path, lines))
            continue
        m = _HUNK.match(raw)
        if m:
            old_left = int(m.group(1) or 1)
            lineno = int(m.group(2))
            new_left = int(m.group(3) or 1)
    return files


# ---------------------------------------------------------------- tours

def tour(fragments, part=None):
    """Fragments in reading order, optionally one part; duplicates are errors."""
    if part is not None:
        fragments = [f for f in fragments if f.part == part]
    seen = {}
    for f in fragments:
        other = seen.setdefault((f.part, f.number), f)
        if other is not f:
            raise UsageError("duplicate %s: %s and %s" % (f.label, other.where, f.where))
    return sorted(fragments, key=lambda f: (PARTS.index(f.part), f.number))


def render_tour(fragments):
    """The extract script's output: a [ path ] header whenever the file changes."""
    out, last = [], None
    for f in fragments:
        if f.path != last:
            out.append("[ %s ]" % f.path)
            last = f.path
        out.append(f.text)
        out.append("")
    return "\n".join(out)


def render_parts(fragments, parts=PARTS):
    """The whole journey as Documentation/lguest's `make Beer` prints it: each
    part under a {==- Name -==} line (its [ path ] headers start afresh, as
    each part is a separate run of extract), and {==-==} at the end."""
    out = []
    for part in parts:
        mine = [f for f in fragments if f.part == part]
        out.append("{==- %s -==}" % PART_NAMES[part])
        if mine:
            out.append(render_tour(mine))
    out.append("{==-==}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- a source tree

SOURCE_SUFFIXES = (".c", ".h", ".S")


def tree_files(root):
    """The files the journey is read from in a kernel tree, in a stable order:
    as the Makefile's `find -name '*.[chS]' -wholename '*lguest*'`, every C,
    header and assembler file whose path below root mentions lguest."""
    found = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(d, name)
            if name.endswith(SOURCE_SUFFIXES) and "lguest" in os.path.relpath(path, root):
                found.append(path)
    return found


def tree_fragments(root):
    """Fragments of a tree's journey files, paths shown relative to root."""
    return [f for p in tree_files(root) for f in extract_file(p, os.path.relpath(p, root))]


_C_DEF = r"^[A-Za-z_][^;=]*\b%s\s*\([^;]*$"


def find_definition(name, paths):
    """(path, line) where label or function NAME is defined in one of paths, or None.

    For code without line information (2.6.23's assembler files): an
    assembler label `NAME:` or `ENTRY(NAME)` first, then a C definition (a
    line starting with its type and naming NAME( without ending in `;`).
    """
    name = re.escape(name)
    asm = re.compile(r"^\s*(?:%s:|ENTRY\(%s\))" % (name, name))
    c_def = re.compile(_C_DEF % name)
    for pattern, suffixes in ((asm, (".S", ".s")), (c_def, (".c", ".h"))):
        for path in paths:
            if not path.endswith(suffixes):
                continue
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        if pattern.search(line):
                            return path, lineno
            except OSError:
                continue
    return None


# ---------------------------------------------------------------- debuggers

def _same_file(a, b):
    """Line tables name sources by build path; fragments by the path we read.

    Equal paths match; otherwise fall back on the file name, since within one
    example's tour the file names are distinct.
    """
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a == b or os.path.basename(a) == os.path.basename(b)


def _tail_match(a, b):
    """One path is the other's tail (drivers/lguest/lguest.c and
    /usr/src/linux/drivers/lguest/lguest.c): a kernel has two lguest.c."""
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a.endswith(os.sep + b) or b.endswith(os.sep + a)


def fragment_at(fragments, path, line):
    """The fragment that covers `line` of `path`, or precedes it most closely."""
    exact = [f for f in fragments if os.path.normpath(f.path) == os.path.normpath(path)]
    candidates = exact or [f for f in fragments if _tail_match(f.path, path)] or \
        [f for f in fragments if _same_file(f.path, path)]
    before = [f for f in candidates if f.first_line <= line]
    return max(before, key=lambda f: f.first_line, default=None)


def neighbours(tour_list, fragment):
    """(previous, next) fragment in tour order; None at either end."""
    i = next(i for i, f in enumerate(tour_list) if f is fragment or f == fragment)
    prev = tour_list[i - 1] if i > 0 else None
    nxt = tour_list[i + 1] if i + 1 < len(tour_list) else None
    return prev, nxt


def render_fragment(fragment, tour_list, address=None):
    """One fragment as every front end prints it (gdb and the REPL alike).

        G:045 drivers/lguest/lguest_asm.S:41
        /* There is one final paravirt_op ...
        code at 0xc0100123 (line 68): break *0xc0100123 to go there
        prev: G:020  next: G:055

    `address` is the caller's: the first line-table address at or after
    fragment.code_line, or None when that code has no address.
    """
    prev, nxt = neighbours(tour_list, fragment)
    out = ["%s %s" % (fragment.label, fragment.where), fragment.text]
    if address is not None:
        out.append("code at %#x (line %d): break *%#x to go there"
                   % (address, fragment.code_line, address))
    out.append("prev: %s  next: %s" % (prev.label if prev else "(start of tour)",
                                       nxt.label if nxt else "(end of tour)"))
    return "\n".join(out)


# ---------------------------------------------------------------- examples

def example_sources(images_dir=None):
    """{example name: [source paths]}: each *.S plus the headers it includes."""
    images_dir = images_dir or IMAGES_DIR
    try:
        names = sorted(os.listdir(images_dir))
    except OSError:
        return {}
    examples = {}
    for name in names:
        if name.endswith(".S"):
            main = os.path.join(images_dir, name)
            examples[name[:-2]] = [main] + _local_includes(main, images_dir)
    return examples


def _local_includes(source, images_dir):
    # Only `#include "x.h"` that ship beside the source: the <...> ones are the
    # toolchain's and carry no narrative of ours.
    try:
        with open(source, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    found = []
    for name in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
        path = os.path.join(images_dir, name)
        if os.path.isfile(path) and path not in found:
            found.append(path)
    return found


def example_tour(name, part=None):
    """A bundled example's tour, paths shown relative to the package."""
    sources = example_sources().get(name)
    if sources is None:
        raise UsageError("no bundled example named %r" % name)
    base = os.path.dirname(os.path.dirname(IMAGES_DIR))
    frags = [f for p in sources for f in extract_file(p, os.path.relpath(p, base))]
    return tour(frags, part)


# ---------------------------------------------------------------- command

def configure(parser):
    parser.add_argument("--part", metavar="LETTER",
                        help="only this part: one of %s (%s)" % (
                            " ".join(PARTS), ", ".join(PART_NAMES[p] for p in PARTS)))
    parser.add_argument("files", nargs="*", metavar="FILES",
                        help="sources or patches to read, or one kernel tree DIR (its "
                             "lguest files, part by part); default: each bundled example")


def run(args):
    part = None
    if args.part is not None:
        part = args.part.upper()
        if len(part) != 1 or part not in PARTS:
            raise UsageError("--part must be one of %s, not %r" % (" ".join(PARTS), args.part))
    if len(args.files) == 1 and not os.path.exists(args.files[0]) \
            and args.files[0] in example_sources():
        # A bundled example by name: `lgdbg journey iret`.
        print(render_tour(example_tour(args.files[0], part)), end="")
        return 0
    if len(args.files) == 1 and os.path.isdir(args.files[0]):
        # A kernel tree: the whole journey, part by part, as `make Beer` reads it.
        frags = tour(tree_fragments(args.files[0]), part)
        if not frags:
            raise UsageError("no journey in %s: no /*X:NNN fragments in its lguest "
                             "sources (%d files)" % (args.files[0],
                                                     len(tree_files(args.files[0]))))
        print(render_parts(frags, (part,) if part else PARTS), end="")
        return 0
    if args.files:
        print(render_tour(tour(extract_files(args.files), part)), end="")
        return 0
    examples = example_sources()
    if not examples:
        raise LgdbgError("no bundled example sources in %s; name FILES to read" % IMAGES_DIR)
    first = True
    for name in examples:
        if not first:
            print()
        first = False
        print("=== The %s example ===" % name)
        print()
        print(render_tour(example_tour(name, part)), end="")
    return 0
