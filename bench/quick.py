"""A quick side-by-side of ours and the graphlib baseline (not part of make bench).

``python -m bench.quick [N] [REPS]``: each shape and concurrency, interleaved,
medians of µs per task. For checking a change in a minute, not for the docs.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench import engines, shapes
from bench.run import configure_typical_logging


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    configure_typical_logging()
    for shape in shapes.SHAPES:
        spec = shapes.build(shape, n)
        for conc in (2, 8):
            runners = {
                "ours": engines.ours(spec, "noop", conc),
                "graphlib": engines.ENGINES["graphlib"](spec, "noop", conc),
            }
            times: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(reps):
                for name, runner in runners.items():
                    started = time.perf_counter()
                    runner()
                    times[name].append((time.perf_counter() - started) / n * 1e6)
            ours, base = (statistics.median(times[k]) for k in ("ours", "graphlib"))
            print(
                f"{shape:6} conc={conc}: ours {ours:6.1f}  graphlib {base:6.1f}"
                f"  ratio {ours / base:.2f}"
            )


if __name__ == "__main__":
    main()
