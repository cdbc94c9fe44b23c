"""The lguest journey: extraction, tours, lookups for debuggers, the CLI."""

import os
import textwrap

import pytest

from lgdbg.views import journey
from lgdbg.cli import main
from lgdbg.errors import UsageError

SEED_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "seed")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


# Two files whose fragments interleave across parts and numbers.
ENTRY_S = """
    #include "lguest.h"
    /*G:020 Second of the Guest part.
     * It says why. :*/
    entry:
    	movl $1, %eax
    /*H:010 The Host comes after the Guest. :*/
    	hlt
    /*G:010 First, although it comes later in the file. */
    	cli
    	sti
    /*:*/
    	nop
"""

IRQ_S = """
    /*P:100 Preparation opens the tour. :*/
    /*G:015 Between G:010 and G:020, in another file. :*/
    irq:
    	iret
"""


@pytest.fixture
def two_files(tmp_path):
    return write(tmp_path, "entry.S", ENTRY_S), write(tmp_path, "irq.S", IRQ_S)


def labels(frags):
    return [f.label for f in frags]


def test_order_is_by_part_then_number(two_files):
    frags = journey.tour(journey.extract_files(two_files))
    assert labels(frags) == ["P:100", "G:010", "G:015", "G:020", "H:010"]


def test_part_filter(two_files):
    frags = journey.tour(journey.extract_files(two_files), part="G")
    assert labels(frags) == ["G:010", "G:015", "G:020"]


def test_header_whenever_the_file_changes(two_files):
    entry, irq = two_files
    out = journey.render_tour(journey.tour(journey.extract_files(two_files)))
    headers = [line for line in out.splitlines() if line.startswith("[ ")]
    # P:100 irq, G:010 entry, G:015 irq, G:020 entry, H:010 entry (no new header)
    assert headers == ["[ %s ]" % p for p in (irq, entry, irq, entry)]


def test_marker_stripped_and_colon_terminator_rewritten(two_files):
    frag = next(f for f in journey.extract_file(two_files[0]) if f.label == "G:020")
    assert frag.text == "/* Second of the Guest part.\n * It says why. */"
    assert (frag.first_line, frag.last_line) == (2, 3)
    assert frag.code_line == 4            # "entry:", after the comment


def test_standalone_terminator_closes_and_disappears(two_files):
    frag = next(f for f in journey.extract_file(two_files[0]) if f.label == "G:010")
    # The fragment carries its code up to the bare /*:*/, which is not printed.
    assert frag.text.splitlines() == [
        "/* First, although it comes later in the file. */", "\tcli", "\tsti"]
    assert (frag.first_line, frag.last_line) == (8, 11)
    assert frag.code_line == 9
    assert "nop" not in frag.text and "/**/" not in frag.text


def test_terminator_on_its_own_line_and_trailing_code(tmp_path):
    path = write(tmp_path, "t.S", """
        /*S:010 Opening words
         * more words
        :*/
        	jmp 1f /*:*/
    """)
    (frag,) = journey.extract_file(path)
    assert frag.text == "/* Opening words\n * more words\n*/"
    assert frag.code_line == 4


def test_new_marker_and_end_of_file_close_an_open_fragment(tmp_path):
    path = write(tmp_path, "open.S", """
        /*D:001 No terminator at all. */
        	nop

        /*D:002 Nor here. */
        	ret

    """)
    one, two = journey.extract_file(path)
    assert one.text == "/* No terminator at all. */\n\tnop"
    assert (one.last_line, two.last_line) == (2, 5)


def test_duplicate_names_both_places(tmp_path):
    a = write(tmp_path, "a.S", "/*G:045 once :*/\n")
    b = write(tmp_path, "b.S", "nop\nnop\n/*G:045 twice :*/\n")
    with pytest.raises(UsageError) as e:
        journey.tour(journey.extract_files([a, b]))
    assert "G:045" in str(e.value)
    assert "%s:1" % a in str(e.value) and "%s:3" % b in str(e.value)


def test_duplicate_in_another_part_does_not_stop_a_part(tmp_path):
    a = write(tmp_path, "a.S", "/*H:001 x :*/\n/*H:001 y :*/\n/*G:001 z :*/\n")
    assert labels(journey.tour(journey.extract_file(a), part="G")) == ["G:001"]


PATCH = """
    Subject: a small patch

    Commit text mentioning /*G:999 which is not in a hunk.

    diff --git a/guest/boot.S b/guest/boot.S
    index 1111111..2222222 100644
    --- a/guest/boot.S
    +++ b/guest/boot.S
    @@ -10,5 +10,6 @@
     	nop
    -/* the old comment, /*G:001 removed */
    -- a removed line that looks like a header
    +/*G:030 Added by the patch,
    + * across two lines. :*/
    +boot:
     	movl %esi, %eax
     	ret
    @@ -40,2 +42,5 @@
     ; context
    +/*G:031 A later hunk. */
    +	hlt
    +/*:*/
     ; end
    diff --git a/gone.S b/gone.S
    --- a/gone.S
    +++ /dev/null
    @@ -1 +0,0 @@
    -/*G:030 only in a deleted file */
"""


def test_patch_reads_as_the_new_file(tmp_path):
    path = write(tmp_path, "change.patch", PATCH)
    frags = journey.tour(journey.extract_file(path))
    assert labels(frags) == ["G:030", "G:031"]
    added, later = frags
    assert added.path == later.path == "guest/boot.S"
    assert added.text == "/* Added by the patch,\n * across two lines. */"
    assert (added.first_line, added.last_line, added.code_line) == (11, 12, 13)
    assert later.text == "/* A later hunk. */\n\thlt"
    assert (later.first_line, later.last_line, later.code_line) == (43, 45, 44)


def seed_dir():
    """../shared/seed beside the clone.  A plain clone may lack it (skip);
    CI lays shared/ beside its clone, so under CI=true its absence fails."""
    if os.path.isdir(SEED_DIR):
        return SEED_DIR
    missing = "the shared seed directory %s is absent" % os.path.normpath(SEED_DIR)
    if os.environ.get("CI") == "true":
        pytest.fail(missing + " (CI=true: CI must have shared/ beside the clone)", pytrace=False)
    pytest.skip(missing)


def test_seed_patch():
    seeds_dir = seed_dir()
    seeds = sorted(os.path.join(seeds_dir, n) for n in os.listdir(seeds_dir))
    frags = journey.tour(journey.extract_files(seeds), part="G")
    got = labels(frags)
    assert [g for g in got if g in ("G:020", "G:045", "G:055")] == ["G:020", "G:045", "G:055"]
    g045 = frags[got.index("G:045")]
    assert "lguest_noirq_start" in g045.text
    assert g045.path == "drivers/lguest/lguest_asm.S"
    assert not any(line.startswith(("+", "-")) for line in g045.text.splitlines())
    # The code the fragment explains: ENTRY(lguest_iret) in the new file.
    assert g045.code_line == 68
    assert journey.fragment_at(frags, "/build/drivers/lguest/lguest_asm.S", 71) is g045


def test_fragment_at_covers_or_precedes(two_files):
    entry, irq = two_files
    frags = journey.extract_files(two_files)
    at = lambda path, line: getattr(journey.fragment_at(frags, path, line), "label", None)
    assert at(entry, 1) is None                  # before any fragment of the file
    assert at(entry, 2) == "G:020"               # on the marker
    assert at(entry, 5) == "G:020"               # code after it: preceded
    assert at(entry, 10) == "G:010"              # inside G:010's code
    assert at(entry, 99) == "G:010"
    assert at(irq, 4) == "G:015"                 # files are kept apart
    # A line table's build path still finds the file by name.
    assert at("/elsewhere/entry.S", 7) == "H:010"
    assert at("/elsewhere/other.S", 7) is None


def test_neighbours_and_render(two_files):
    frags = journey.tour(journey.extract_files(two_files))
    first, g015, last = frags[0], frags[2], frags[-1]
    assert labels(journey.neighbours(frags, g015)) == ["G:010", "G:020"]
    assert journey.neighbours(frags, first)[0] is None
    assert journey.neighbours(frags, last)[1] is None

    text = journey.render_fragment(g015, frags, address=0xC0100010)
    assert text.splitlines() == [
        "G:015 %s:2" % two_files[1],
        "/* Between G:010 and G:020, in another file. */",
        "code at 0xc0100010 (line 3): break *0xc0100010 to go there",
        "prev: G:010  next: G:020",
    ]
    ends = journey.render_fragment(first, frags).splitlines()[-1]
    assert ends == "prev: (start of tour)  next: G:010"
    assert "break" not in journey.render_fragment(last, frags)


# ---------------------------------------------------------------- CLI

def test_cli_files(two_files, capsys):
    assert main(["journey", "--part", "g", *two_files]) == 0
    out = capsys.readouterr().out
    assert out.index("First, although") < out.index("Between G:010") < out.index("Second of")
    assert "Preparation opens" not in out and "/*G:" not in out


def test_cli_bad_part(two_files, capsys):
    assert main(["journey", "--part", "X", *two_files]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--part" in err


def test_cli_missing_file(tmp_path, capsys):
    missing = str(tmp_path / "nope.S")
    assert main(["journey", missing]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.S" in err and "Traceback" not in err


def test_cli_duplicate_is_one_line(tmp_path, capsys):
    a = write(tmp_path, "a.S", "/*G:001 x :*/\n/*G:001 y :*/\n")
    assert main(["journey", a]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_default_is_one_tour_per_bundled_example(tmp_path, monkeypatch, capsys):
    images = tmp_path / "lgdbg" / "images"
    images.mkdir(parents=True)
    write(images, "hello.S", '#include "lguest.h"\n/*G:010 hello says hi :*/\n')
    write(images, "iret.S", "/*G:010 iret has its own G:010 :*/\n")
    write(images, "lguest.h", "/*P:010 shared header, included by hello :*/\n")
    write(images, "notes.txt", "/*G:500 not a source :*/\n")
    monkeypatch.setattr(journey, "IMAGES_DIR", str(images))

    assert main(["journey"]) == 0
    out = capsys.readouterr().out
    hello, iret = out.split("=== The iret example ===")
    assert "=== The hello example ===" in hello
    assert hello.index("[ lgdbg/images/lguest.h ]") < hello.index("[ lgdbg/images/hello.S ]")
    assert "iret has its own" in iret and "shared header" not in iret
    assert "not a source" not in out


def test_bundled_examples_if_shipped(capsys):
    # Whatever example sources ship must extract cleanly (no duplicates).
    if not journey.example_sources():
        pytest.skip("no example sources in lgdbg/images/ yet")
    assert main(["journey"]) == 0
    assert "=== The " in capsys.readouterr().out


# ---- a source tree: `lgdbg journey DIR`, and labels without line information

def tree(tmp_path):
    """A small kernel-like tree: two lguest.c (as a real one has), an assembler
    file with a label, and a file whose path does not mention lguest."""
    root = tmp_path / "linux"
    for rel, text in (
            ("drivers/lguest/lguest.c", "/*G:010 Guest C. :*/\nint x;\n"),
            ("drivers/lguest/lguest_asm.S", "/*G:020 The asm.\n */\nENTRY(lguest_iret)\n"
                                            "\tiret\nother_label:\n\tret\n"),
            ("Documentation/lguest/lguest.c", "/*L:010 The Launcher. :*/\n"
                                              "int main(void)\n{\n}\n"),
            ("arch/i386/kernel/paravirt.c", "/*G:999 not read: no lguest in its path :*/\n"),
            ("drivers/lguest/README", "/*G:998 not a source file :*/\n")):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def test_tree_files_are_the_makefiles_lguest_sources(tmp_path):
    root = tree(tmp_path)
    rel = [os.path.relpath(p, root) for p in journey.tree_files(root)]
    assert rel == ["Documentation/lguest/lguest.c", "drivers/lguest/lguest.c",
                   "drivers/lguest/lguest_asm.S"]


def test_cli_tree_prints_the_parts_in_order(tmp_path, capsys):
    assert main(["journey", tree(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    heads = [line for line in out if line.startswith(("{==", "[ "))]
    assert heads == ["{==- Preparation -==}", "{==- Guest -==}", "[ drivers/lguest/lguest.c ]",
                     "[ drivers/lguest/lguest_asm.S ]", "{==- Drivers -==}",
                     "{==- Launcher -==}", "[ Documentation/lguest/lguest.c ]",
                     "{==- Host -==}", "{==- Switcher -==}", "{==- Mastery -==}", "{==-==}"]
    assert "G:999" not in "\n".join(out) and "not read" not in "\n".join(out)
    assert main(["journey", "--part", "L", tree(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "{==- Launcher -==}"


def test_cli_tree_without_a_journey_is_one_line(tmp_path, capsys):
    assert main(["journey", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no journey in" in err and len(err.strip().splitlines()) == 1


def test_find_definition_of_a_label_and_a_function(tmp_path):
    root = tree(tmp_path)
    files = journey.tree_files(root)
    path, line = journey.find_definition("lguest_iret", files)
    assert path.endswith("drivers/lguest/lguest_asm.S") and line == 3
    assert journey.find_definition("other_label", files)[1] == 5
    path, line = journey.find_definition("main", files)
    assert path.endswith("Documentation/lguest/lguest.c") and line == 2
    assert journey.find_definition("nowhere", files) is None


def test_fragment_at_tells_two_files_of_one_name_apart(tmp_path):
    frags = journey.tree_fragments(tree(tmp_path))
    here = journey.fragment_at(frags, "/usr/src/linux/Documentation/lguest/lguest.c", 3)
    assert here.label == "L:010"
    here = journey.fragment_at(frags, "drivers/lguest/lguest.c", 2)
    assert here.label == "G:010"


KERNEL_SRC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "kernel", "src")


def test_real_kernel_tree_reads_as_make_beer(capsys, tmp_path):
    """`lgdbg journey --part G SRC` over the 2.6.23 tree: the same text as
    Documentation/lguest/extract run the way its Makefile's Guest target runs
    it (blank lines aside: extract keeps a fragment's trailing blank lines).
    One part only: the shell script takes ~13 s a part."""
    import subprocess
    import kernelboot
    extract = os.path.join(KERNEL_SRC, "Documentation", "lguest", "extract")
    if not os.path.isfile(extract):
        msg = "no kernel sources at %s (they come with ../shared/kernel)" % KERNEL_SRC
        if kernelboot.in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    here = os.path.dirname(extract)
    files = subprocess.run("find ../../* -name '*.[chS]' -wholename '*lguest*'", shell=True,
                           cwd=here, capture_output=True, text=True, check=True).stdout.split()
    real = ["{==- Guest -==}"] + subprocess.run(
        ["sh", "./extract", "G"] + files, cwd=here, capture_output=True, text=True,
        check=True).stdout.splitlines() + ["{==-==}"]
    assert main(["journey", "--part", "G", KERNEL_SRC]) == 0
    ours = capsys.readouterr().out.splitlines()
    assert [line for line in ours if line.strip()] == [line for line in real if line.strip()]
    assert "[ drivers/lguest/lguest_asm.S ]" in ours and "G:045" not in "\n".join(ours)
    # and all seven parts, in the Makefile's order
    assert main(["journey", KERNEL_SRC]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{==")]
    assert heads == ["{==- %s -==}" % journey.PART_NAMES[p] for p in journey.PARTS] + ["{==-==}"]
