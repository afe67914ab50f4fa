#!/usr/bin/env python3
"""Validate rendered manifests against the Kubernetes OpenAPI schemas.

Uses the schemas bundled in the kubernetes-validate package (offline), in
strict mode: unknown fields are errors, so a typo such as `readOnlyRootFileSystem`
fails instead of being silently ignored by the API server.

Custom resources have no schema in that package. They are listed in
CRD_KINDS and only checked for the fields every object needs; their own
operators (CloudNativePG, Rook, k3s helm-controller) validate them on apply.
A kind that is neither in the schemas nor in CRD_KINDS is an error.

Usage: validate_schemas.py K8S_VERSION FILE...
"""

from __future__ import annotations

import sys

import kubernetes_validate
import yaml

CRD_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
    ("ceph.rook.io/v1", "CephObjectStore"),
    ("ceph.rook.io/v1", "CephObjectStoreUser"),
    ("helm.cattle.io/v1", "HelmChart"),
}


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    version = argv[1]
    failures = 0
    checked = skipped = 0
    for path in argv[2:]:
        with open(path) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = f"{path}: {key[1]} {doc.get('metadata', {}).get('namespace', '-')}/{doc.get('metadata', {}).get('name')}"
            if key in CRD_KINDS:
                md = doc.get("metadata") or {}
                if not md.get("name") or not md.get("namespace") or not isinstance(doc.get("spec"), dict):
                    print(f"FAIL {name}: custom resource needs metadata.name, metadata.namespace and spec")
                    failures += 1
                skipped += 1
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as exc:
                path_s = ".".join(str(p) for p in exc.path)
                print(f"FAIL {name}: {path_s}: {exc.message}")
                failures += 1
            except kubernetes_validate.SchemaNotFoundError as exc:
                print(f"FAIL {name}: no schema in Kubernetes {version} ({exc}); "
                      "if this is a custom resource, add it to CRD_KINDS with a reason")
                failures += 1
    print(f"kubernetes {version}: {checked} objects valid (strict), "
          f"{skipped} custom resources not schema-checked, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
