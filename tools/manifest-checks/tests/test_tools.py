"""The checking tools themselves: the kustomize subset renderer and the
schema validator. If these were wrong, every other check would be too."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import OVERLAYS, OVERLAYS_DIR, TOOLS

import kustomize_lite


def write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(textwrap.dedent(text))


@pytest.fixture
def kdir(tmp_path):
    write(tmp_path, "kustomization.yaml", """\
        resources: [d.yaml]
        patches:
          - path: p.yaml
        """)
    write(tmp_path, "d.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: x}
        spec:
          template:
            spec:
              containers:
                - name: a
                  image: registry.example/app:1.0
                  env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: C, value: "3"}]
                  volumeMounts: [{name: v1, mountPath: /a}, {name: v2, mountPath: /b}]
              volumes: [{name: v1, emptyDir: {}}, {name: v2, emptyDir: {}}]
        """)
    write(tmp_path, "p.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: x}
        spec:
          template:
            spec:
              containers:
                - name: b
                  image: j
                - name: a
                  env: [{name: C, value: "33"}, {name: D, value: "4"}, {name: A, $patch: delete}]
              volumes: [{name: v3, emptyDir: {}}]
        """)
    return tmp_path


# What `kubectl kustomize` (kustomize v5.5) prints for kdir, recorded once.
KDIR_EXPECTED = {"template": {"spec": {
    "containers": [
        {"image": "j", "name": "b"},
        {"env": [{"name": "C", "value": "33"}, {"name": "D", "value": "4"}, {"name": "B", "value": "2"}],
         "image": "registry.example/app:1.0", "name": "a",
         "volumeMounts": [{"mountPath": "/a", "name": "v1"}, {"mountPath": "/b", "name": "v2"}]}],
    "volumes": [{"emptyDir": {}, "name": "v3"}, {"emptyDir": {}, "name": "v1"}, {"emptyDir": {}, "name": "v2"}],
}}}


def test_strategic_merge_matches_kustomize_list_order(kdir):
    (obj,) = kustomize_lite.build(kdir)
    assert obj["spec"] == KDIR_EXPECTED


def test_namespace_and_images(kdir):
    write(kdir, "kustomization.yaml", """\
        resources: [d.yaml]
        namespace: ns1
        images:
          - name: registry.example/app
            newTag: "2.0"
        """)
    (obj,) = kustomize_lite.build(kdir)
    assert obj["metadata"]["namespace"] == "ns1"
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/app:2.0"


def test_delete_patch_removes_object(kdir):
    write(kdir, "p.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: x}
        $patch: delete
        """)
    assert kustomize_lite.build(kdir) == []


@pytest.mark.parametrize("kust,message", [
    ("resources: [d.yaml]\ncommonLabels: {a: b}\n", "unsupported kustomize fields"),
    ("resources: [d.yaml]\npatches:\n  - path: p.yaml\n    target: {kind: Deployment}\n", "only `patches"),
    ("resources: [d.yaml, d.yaml]\n", "duplicate object"),
    ("resources: [missing.yaml]\n", "not found"),
])
def test_unsupported_or_wrong_input_fails_loudly(kdir, kust, message):
    (kdir / "kustomization.yaml").write_text(kust)
    with pytest.raises(kustomize_lite.RenderError, match=message):
        kustomize_lite.build(kdir)


def test_patch_that_matches_nothing_fails(kdir):
    write(kdir, "p.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: y}
        spec: {replicas: 2}
        """)
    with pytest.raises(kustomize_lite.RenderError, match="matches 0 objects"):
        kustomize_lite.build(kdir)


def _by_id(docs):
    return {(d["apiVersion"], d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
            for d in docs if d}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (embedded kustomize) not installed")
@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_renderer_agrees_with_kubectl_kustomize(overlay_name):
    out = subprocess.run(["kubectl", "kustomize", str(OVERLAYS_DIR / overlay_name)],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    theirs = _by_id(yaml.safe_load_all(out))
    ours = _by_id(kustomize_lite.build(OVERLAYS_DIR / overlay_name))
    assert set(ours) == set(theirs)
    for key in ours:
        assert ours[key] == theirs[key], key


def test_schema_validator_rejects_a_misspelt_field(tmp_path):
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
           "spec": {"containers": [{"name": "c", "image": "i",
                                    "securityContext": {"readOnlyRootFileSystem": True}}]}}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = subprocess.run([sys.executable, str(TOOLS / "validate_schemas.py"), "1.33.0", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "readOnlyRootFileSystem" in r.stdout


def test_schema_validator_rejects_an_unknown_kind(tmp_path):
    f = tmp_path / "crd.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "example.com/v1", "kind": "Widget",
                                 "metadata": {"name": "w", "namespace": "n"}, "spec": {}}))
    r = subprocess.run([sys.executable, str(TOOLS / "validate_schemas.py"), "1.33.0", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no schema" in r.stdout
