"""`lgdbg timeline TRACE [-o FILE.html|FILE.svg] [--from N] [--to N] [--image ELF]
[--explore JSON]`: draw a trace's interrupt timing."""

import os
import sys
import time

from ..errors import UsageError


def configure(parser):
    parser.add_argument("trace", metavar="TRACE",
                        help="JSON Lines trace from `lgdbg run --trace`")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="FILE.html (self-contained page, default TRACE.html) "
                             "or FILE.svg (the picture alone)")
    parser.add_argument("--from", dest="lo", type=int, metavar="ICOUNT",
                        help="start of the window (instructions retired; time_ns for "
                             "--clock realtime traces)")
    parser.add_argument("--to", dest="hi", type=int, metavar="ICOUNT",
                        help="end of the window")
    parser.add_argument("--image", metavar="ELF",
                        help="guest image: name handlers and mark returns through lguest_iret")
    parser.add_argument("--explore", metavar="JSON",
                        help="explorer report to show as a table beside the timeline (HTML)")


def output_path(args):
    out = args.output
    if out is None:
        out = os.path.splitext(args.trace)[0] + ".html"
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".html", ".htm", ".svg"):
        raise UsageError("-o %s: the name must end in .html or .svg" % out)
    if os.path.abspath(out) == os.path.abspath(args.trace):
        raise UsageError("-o %s would overwrite the trace" % out)
    if ext == ".svg" and args.explore:
        raise UsageError("--explore needs HTML output (the table goes beside the picture)")
    return out, ext


def run(args):
    from .trace import read_trace
    from .svg import render_svg

    if args.lo is not None and args.hi is not None and args.hi <= args.lo:
        raise UsageError("--to %d is not after --from %d" % (args.hi, args.lo))
    out, ext = output_path(args)
    started = time.perf_counter()
    symbols = None
    if args.image:
        from .symbols import load_symbols
        symbols = load_symbols(args.image)
    points = None
    if args.explore:
        from .explorer import load_points
        points = load_points(args.explore)
    tl = read_trace(args.trace, args.lo, args.hi, symbols)
    if ext == ".svg":
        text = render_svg(tl)
    else:
        from .page import render_page
        text = render_page(tl, title=os.path.basename(args.trace), points=points)
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError("cannot write %s: %s" % (out, e.strerror or e))
    print("lgdbg timeline: %s events, %s %s..%s -> %s (%.1f kB, %.2f s)"
          % ("{:,}".format(tl.events), tl.axis, "{:,}".format(tl.lo), "{:,}".format(tl.hi),
             out, len(text.encode("utf-8")) / 1024, time.perf_counter() - started),
          file=sys.stderr)
    return 0
