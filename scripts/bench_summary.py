"""Print the figures the bench scripts recorded (``HES_BENCH_FIGURES``) side by side."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil
from bench_figures import ENV  # scripts/, beside this file


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get(ENV, ""))
    if not path.is_file():
        print(f"no figures recorded at {path}", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    memory_gib = psutil.virtual_memory().total / 2**30
    print(
        f"\n== side by side: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores,"
        f" {memory_gib:.0f} GiB, Python {platform.python_version()} =="
    )
    width = max(len(row["figure"]) for row in rows)
    print(f"  {'figure':<{width}} {'value':>12}  {'unit':<10} {'target':<20} how")
    for row in rows:
        value = row["value"]
        shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
        print(
            f"  {row['figure']:<{width}} {shown:>12}  {row['unit']:<10}"
            f" {row['target']:<20} {row['note']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
