"""Read the explorer's report: the injection points shown beside the timeline.

The report is a JSON object whose "points" list holds one row per
instruction of the explored window:
    {"offset", "address", "insn", "outcome", "delivered", "reason", "differs"}
(a bare list of rows is accepted too).  Missing fields show as blanks.
"""

import json

from ..errors import UsageError

COLUMNS = ("offset", "address", "insn", "outcome", "delivered", "reason", "differs")


def load_points(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError("cannot read explorer report %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise UsageError("explorer report %s is not JSON (%s)" % (path, e))
    points = data.get("points") if isinstance(data, dict) else data
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise UsageError('explorer report %s has no "points" list of objects' % path)
    return points
