"""The README's example runs and does what it says."""

from __future__ import annotations

import contextlib
import io
import re
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
