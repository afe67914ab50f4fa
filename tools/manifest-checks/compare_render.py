#!/usr/bin/env python3
"""Compare `kiorexctl render` output with kustomize_lite.py's render of the same overlay.

Usage: compare_render.py OVERLAY_DIR KIOREXCTL_OUT_DIR

The objects must be equal one by one (same identity, same content); the phase files
(01-...yaml to 06-...yaml) must together hold exactly the objects of all.yaml, each once.
Exit 0 when they agree, 1 with the differences listed otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kustomize_lite  # noqa: E402


def ident(obj: dict) -> str:
    return kustomize_lite.fmt_id(kustomize_lite.res_id(obj))


def load(path: Path) -> list[dict]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    expected = {ident(o): o for o in kustomize_lite.build(Path(argv[1]))}
    out = Path(argv[2])
    rendered = load(out / "all.yaml")
    got = {ident(o): o for o in rendered}
    problems = []
    if len(got) != len(rendered):
        problems.append("all.yaml holds an object twice")
    for key in sorted(expected.keys() - got.keys()):
        problems.append(f"missing from kiorexctl render: {key}")
    for key in sorted(got.keys() - expected.keys()):
        problems.append(f"only in kiorexctl render: {key}")
    for key in sorted(expected.keys() & got.keys()):
        if expected[key] != got[key]:
            problems.append(f"differs: {key}")
    phases = []
    for f in sorted(out.glob("0*.yaml")):
        phases += [ident(o) for o in load(f)]
    if sorted(phases) != sorted(got):
        problems.append("the phase files do not hold exactly the objects of all.yaml")
    for p in problems:
        print(p)
    print(f"{len(got)} objects compared, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
