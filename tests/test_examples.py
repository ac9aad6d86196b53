"""The examples run, as `make demo` runs them, and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_the_smoothie_prints_transitions_and_the_final_ctx(tmp_path: Path) -> None:
    timeline = tmp_path / "timeline.png"
    done = run_example("smoothie.py", str(timeline))
    out = done.stdout
    lines = out.splitlines()
    assert lines[0] == "JOB > idle -> running"
    assert "blend > ready -> running" in lines
    assert "garnish > running -> completed" in lines
    assert "JOB > running -> completed" in lines
    assert "state: completed" in out
    assert "smoothie: 'sugar + " in out
    assert "fruit:" in out
    assert "liquids:" in out
    page = tmp_path / "smoothie-report.html"
    assert f"report page written to {page}" in out
    text = page.read_text(encoding="utf-8")
    assert "<title>Job " in text
    for task in ("dice-banana", "dice-mango", "blend", "garnish"):
        assert f"<title>{task}</title>" in text


def test_the_smoothie_writes_its_timeline_picture(tmp_path: Path) -> None:
    # Only the picture needs matplotlib (the [plot] extra); without it the
    # example prints "no timeline: ..." and the test above still runs.
    pytest.importorskip("matplotlib", reason="the [plot] extra is not installed")
    timeline = tmp_path / "timeline.png"
    out = run_example("smoothie.py", str(timeline)).stdout
    assert f"timeline written to {timeline}" in out
    assert timeline.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_etl_example_retries_the_flaky_fetch_and_completes() -> None:
    out = run_example("etl.py").stdout
    assert "fetch-users > running -> exception #1" in out
    assert "fetch-users > running -> completed #2" in out
    assert "fetch_orders[2] > running -> completed #1" in out  # one child per page
    assert "state: completed" in out
    assert "totals: {'ada': 35, 'grace': 12}" in out


def test_the_dask_example_makes_the_smoothie_on_a_local_cluster() -> None:
    out = run_example("dask_cluster.py").stdout
    assert "2 workers" in out
    assert "JOB > running -> completed" in out
    assert "smoothie: 'sugar + " in out


def test_the_durable_example_resumes_after_a_kill_without_fetching_everything_again(
    tmp_path: Path,
) -> None:
    done = run_example("durable.py", str(tmp_path / "pipe.db"))
    out = done.stdout
    assert "--- killed; resuming ---" in out
    assert "state: completed, total: 900" in out
    restored = int(out.split("restored: ")[1].split()[0])
    assert 1 <= restored <= 10
    # What the journal restored is not fetched again; everything else is, once.
    after = out.split("--- killed; resuming ---")[1]
    fetched_after = [line for line in after.splitlines() if line.startswith("fetched ")]
    assert len(fetched_after) == len(set(fetched_after)) == 10 - restored
