"""The README's example runs and does what it says."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs_and_makes_a_smoothie() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    state, smoothie = out.getvalue().splitlines()
    assert state == "completed"
    assert smoothie.startswith("sugar + ")
    assert sorted(smoothie.removeprefix("sugar + ")) == sorted("bananamango")


def pipeline_block() -> str:
    section = README.read_text().split("### Pipelines as functions", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return block.group(1)


def test_the_readme_pipeline_example_runs() -> None:
    namespace: dict[str, object] = {"__name__": "readme_pipeline"}
    exec(compile(pipeline_block(), "README.md", "exec"), namespace)  # its asserts hold
    result = namespace["result"]
    assert getattr(result, "ok", False)


def test_the_readme_pipeline_example_passes_mypy_strict(tmp_path: Path) -> None:
    source = tmp_path / "pipeline.py"
    source.write_text(pipeline_block())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
