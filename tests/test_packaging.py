"""The package as installed: metadata a user's tools read."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import daguerreo_actors

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_a_pep_639_expression() -> None:
    metadata = importlib.metadata.metadata("daguerreo-actors")
    assert metadata["License-Expression"] == "MIT"


def test_the_package_is_typed_and_installed_from_this_checkout() -> None:
    package = Path(daguerreo_actors.__file__).parent
    assert (package / "py.typed").exists()
    assert package == ROOT / "daguerreo_actors"
    dist = importlib.metadata.distribution("daguerreo-actors")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    assert direct.get("dir_info", {}).get("editable") is True  # make installs it editable
