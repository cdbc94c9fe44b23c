"""`lgdbg timeline`: a picture of a trace's interrupt timing.

One job per module:

    trace.py     read the JSON Lines trace into lanes of marks and spans
    describe.py  the hover text of a mark or span
    symbols.py   name addresses from the guest image (pyelftools, only with --image)
    view.py      what to draw for a window of the x axis, aggregated per pixel column
    svg.py       the drawing itself (also the whole output for papers)
    page.py      the self-contained HTML page: inline SVG, explorer table, zoom script
    script.py    the page's JavaScript (the same aggregation as view.py, for zooming)
    explorer.py  reading the explorer's JSON report
    command.py   the command line
"""

from .command import configure, run

__all__ = ["configure", "run"]
