"""The docs point at tests that exist."""

from __future__ import annotations

import re

from helpers import ROOT


def test_every_test_named_in_the_guarantees_exists() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    references = re.findall(r"(test_\w+\.py)::(\w+)", text)
    assert len(references) > 30
    missing = []
    for filename, name in references:
        source = (ROOT / "tests" / filename).read_text()
        if not re.search(rf"^(def|class) {name}\b|^def {name}\(", source, re.MULTILINE):
            missing.append(f"{filename}::{name}")
    assert missing == []
