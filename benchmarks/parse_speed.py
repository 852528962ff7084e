"""Parsing time of hostile 1 MB model replies (the issue's target: all of them in < 0.5 s together).

    python benchmarks/parse_speed.py

The replies are the ones tests/hostile/test_parsing_linear.py checks for termination: long runs of spaces
after an "n" (which made the old N/A regular expression backtrack quadratically), unclosed tags, long digit
and sign runs, quotes. Each is parsed in both modes, 5 times; the median total is printed.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hostile"))

from test_parsing_linear import ADVERSARIAL  # noqa: E402

from progresslm.parsing import parse_direct, parse_two_stage  # noqa: E402


def main() -> None:
    totals = []
    for _ in range(5):
        start = time.perf_counter()
        for reply in ADVERSARIAL.values():
            parse_two_stage(reply)
            parse_direct(reply)
        totals.append(time.perf_counter() - start)
    size = sum(len(r) for r in ADVERSARIAL.values()) / 1e6
    print(f"{len(ADVERSARIAL)} hostile replies ({size:.1f} MB), both modes: {statistics.median(totals):.3f} s "
          f"(median of 5; target < 0.5 s)")


if __name__ == "__main__":
    main()
