"""Shared fixtures: repository paths and the rendered overlays.

`run` renders every overlay into $MANIFEST_CHECKS_OUT/rendered/<overlay>.yaml
before pytest starts and the tests read those files (what was validated and
scanned is what is tested). Without MANIFEST_CHECKS_OUT, for example when
pytest is run by hand, the overlays are rendered here, fresh, with the same
renderer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parent
REPO = TOOLS.parent.parent
sys.path.insert(0, str(TOOLS))

import kustomize_lite  # noqa: E402

FROM_RUN = "MANIFEST_CHECKS_OUT" in os.environ
OUT = Path(os.environ.get("MANIFEST_CHECKS_OUT", REPO / "target" / "manifest-checks"))
OVERLAYS_DIR = REPO / "k3s-manifests" / "overlays"
OVERLAYS = sorted(p.name for p in OVERLAYS_DIR.iterdir() if (p / "kustomization.yaml").is_file())

_cache: dict = {}


def rendered_objects(overlay: str) -> list:
    if overlay not in _cache:
        path = OUT / "rendered" / f"{overlay}.yaml"
        if FROM_RUN and path.is_file():
            _cache[overlay] = [d for d in yaml.safe_load_all(path.read_text()) if d]
        else:
            _cache[overlay] = kustomize_lite.sort_legacy(kustomize_lite.build(OVERLAYS_DIR / overlay))
    return _cache[overlay]


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def objects(overlay) -> list:
    return rendered_objects(overlay)


@pytest.fixture
def repo() -> Path:
    return REPO
