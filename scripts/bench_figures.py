"""The headline figures of each bench, gathered for one side-by-side table.

Each bench script calls :func:`record` for its headline figures; when ``make bench`` sets
``HES_BENCH_FIGURES`` to a file, they are appended there as JSON lines, and
``scripts/bench_summary.py`` prints them side by side with the targets at the end of the
run. Run alone, a script records nothing and prints its own tables as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "HES_BENCH_FIGURES"


def record(figure: str, value: float, unit: str, *, target: str = "", note: str = "") -> None:
    """One figure: what it is, its value and unit, the target it answers, how it was got."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"figure": figure, "value": value, "unit": unit, "target": target, "note": note}
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
