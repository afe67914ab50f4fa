"""Every check skipped in .checkov.yaml is justified in writing."""

from __future__ import annotations

import re

import yaml
from conftest import TOOLS

CONFIG = TOOLS / ".checkov.yaml"


def test_every_skipped_check_has_a_justification():
    lines = CONFIG.read_text().splitlines()
    skips = yaml.safe_load(CONFIG.read_text()).get("skip-check", [])
    assert skips, "no skips: delete this test's expectations only if that is intended"
    for check_id in skips:
        assert re.fullmatch(r"CKV2?_K8S_\d+", check_id), check_id
        idx = next(i for i, line in enumerate(lines) if line.strip() == f"- {check_id}")
        comment = []
        j = idx - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip().lstrip("#").strip())
            j -= 1
        text = " ".join(comment)
        assert text.startswith(check_id), f"{check_id}: the comment above it must start with the check id"
        assert len(text) >= 300, f"{check_id}: justification too short ({len(text)} chars)"


def test_checkov_is_not_told_to_ignore_failures():
    cfg = yaml.safe_load(CONFIG.read_text())
    for key in ("soft-fail", "soft-fail-on", "skip-framework", "hard-fail-on"):
        assert key not in cfg, key
    assert cfg["framework"] == ["kubernetes"]
