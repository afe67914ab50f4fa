#!/usr/bin/env python3
"""A small, strict renderer for the subset of kustomize that k3s-manifests/ uses.

kustomize itself cannot be installed on the build machines (no binary in the
package registries we may use), so the checks render the overlays with this
file. It implements only:

  * ``resources``  - files (multi-document YAML) and directories holding a
                     kustomization.yaml, recursively;
  * ``namespace``  - sets metadata.namespace on every namespaced object;
  * ``patches``    - strategic-merge patches given by ``path`` (no ``target``,
                     no JSON6902), matched by apiVersion group, kind, name and
                     namespace, with ``$patch: delete`` for whole objects and
                     for keyed list items, and ``$patch: replace`` for maps;
  * ``images``     - ``name`` with ``newName`` / ``newTag`` / ``digest``.

Anything else in a kustomization.yaml is an error, so a manifest that needs a
feature this renderer lacks fails loudly instead of rendering wrongly. When
``kubectl`` (which embeds kustomize) is on the machine, the checks also render
with ``kubectl kustomize`` and require identical objects.

Usage: kustomize_lite.py build DIR   (prints the rendered YAML stream)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "patches", "images"}

CLUSTER_SCOPED = {
    "Namespace", "IngressClass", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService", "RuntimeClass", "CSIDriver", "Node",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}

# API groups whose objects follow the Kubernetes strategic-merge schema. Other
# groups (CRDs) get plain recursive map merge with lists replaced, which is
# what kustomize does for types it has no OpenAPI schema for.
BUILTIN_GROUPS = {
    "", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "discovery.k8s.io",
    "rbac.authorization.k8s.io", "storage.k8s.io", "scheduling.k8s.io", "node.k8s.io",
    "coordination.k8s.io", "admissionregistration.k8s.io",
}

# Lists merged by key in the Kubernetes strategic-merge schema (only the ones
# that can appear in the objects we write). Every other list is replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}

# kustomize's "legacy" output order.
ORDER_FIRST = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition", "ServiceAccount",
    "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap",
    "Secret", "Endpoints", "Service", "LimitRange", "PriorityClass", "PersistentVolume",
    "PersistentVolumeClaim", "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class RenderError(Exception):
    pass


def group_of(obj: dict) -> str:
    api = obj.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def res_id(obj: dict) -> tuple[str, str, str, str]:
    md = obj.get("metadata") or {}
    return (group_of(obj), obj.get("kind", ""), md.get("namespace") or "", md.get("name", ""))


def fmt_id(rid: tuple[str, str, str, str]) -> str:
    g, k, ns, n = rid
    return f"{k}.{g or 'core'}/{ns + '/' if ns else ''}{n}"


def load_docs(path: Path) -> list[dict]:
    with path.open() as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise RenderError(f"{path}: every document must be an object with apiVersion and kind")
        if not (d.get("metadata") or {}).get("name"):
            raise RenderError(f"{path}: {d.get('kind')} without metadata.name")
    return docs


# --- strategic merge -------------------------------------------------------

def _merge_map(base: dict, patch: dict, builtin: bool, path: tuple[str, ...]) -> dict:
    if patch.get("$patch") == "replace":
        out = copy.deepcopy(patch)
        out.pop("$patch")
        return out
    if "$patch" in patch:
        raise RenderError(f"unsupported $patch directive {patch['$patch']!r} at {'.'.join(path)}")
    out = copy.deepcopy(base)
    for key, pval in patch.items():
        if key.startswith("$"):
            raise RenderError(f"unsupported directive {key} at {'.'.join(path)}")
        if pval is None:
            out.pop(key, None)
            continue
        bval = out.get(key)
        if isinstance(pval, dict) and isinstance(bval, dict):
            out[key] = _merge_map(bval, pval, builtin, path + (key,))
        elif isinstance(pval, list) and isinstance(bval, list):
            out[key] = _merge_list(bval, pval, builtin, path + (key,))
        else:
            if isinstance(pval, dict):
                pval = {k: v for k, v in pval.items() if v is not None}
            out[key] = copy.deepcopy(pval)
    return out


def _list_merge_key(builtin: bool, path: tuple[str, ...]) -> str | None:
    if not builtin:
        return None
    field = path[-1]
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports" and len(path) >= 2 and path[-2] in ("containers", "initContainers"):
        return "containerPort"
    if field == "ports" and path[:2] == ("spec", "ports"):
        return "port"
    return None


def _merge_list(base: list, patch: list, builtin: bool, path: tuple[str, ...]) -> list:
    key = _list_merge_key(builtin, path)
    if key is None or not all(isinstance(i, dict) for i in base + patch):
        if any(isinstance(i, dict) and "$patch" in i for i in patch):
            raise RenderError(f"$patch inside a replaced list at {'.'.join(path)}")
        return copy.deepcopy(patch)
    # kustomize (kyaml) order: the patch's items first, in patch order and
    # merged with the matching base item, then the base items the patch does
    # not mention, in base order.
    out = []
    for item in patch:
        if key not in item:
            raise RenderError(f"list item without merge key {key!r} at {'.'.join(path)}")
        match = next((b for b in base if b.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            continue
        if match is None:
            out.append(copy.deepcopy(item))
        else:
            out.append(_merge_map(match, item, builtin, path))
    mentioned = {item[key] for item in patch}
    out += [copy.deepcopy(b) for b in base if b.get(key) not in mentioned]
    return out


def apply_patch(resources: list[dict], patch: dict, source: str) -> list[dict]:
    pid = res_id(patch)
    matches = [i for i, r in enumerate(resources) if res_id(r) == pid]
    if len(matches) != 1:
        raise RenderError(f"{source}: patch for {fmt_id(pid)} matches {len(matches)} objects (need 1)")
    i = matches[0]
    if patch.get("$patch") == "delete":
        return resources[:i] + resources[i + 1:]
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
    merged = _merge_map(resources[i], body, group_of(patch) in BUILTIN_GROUPS, ())
    return resources[:i] + [merged] + resources[i + 1:]


# --- transformers ------------------------------------------------------------

def set_namespace(resources: list[dict], ns: str) -> None:
    for r in resources:
        if r["kind"] in CLUSTER_SCOPED:
            continue
        r.setdefault("metadata", {})["namespace"] = ns


def _split_image(image: str) -> tuple[str, str, str]:
    name, digest = (image.split("@", 1) + [""])[:2]
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def _walk_containers(node, fn) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("containers", "initContainers") and isinstance(v, list):
                for c in v:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        fn(c)
            _walk_containers(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk_containers(v, fn)


def set_images(resources: list[dict], images: list[dict]) -> None:
    for spec in images:
        unknown = set(spec) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"images: unsupported keys {sorted(unknown)}")

        def fix(c: dict, spec=spec) -> None:
            name, tag, digest = _split_image(c["image"])
            if name != spec["name"]:
                return
            name = spec.get("newName", name)
            if "digest" in spec:
                c["image"] = f"{name}@{spec['digest']}"
            elif "newTag" in spec:
                c["image"] = f"{name}:{spec['newTag']}"
            else:
                c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")

        for r in resources:
            _walk_containers(r, fix)


# --- build ---------------------------------------------------------------------

def build(directory: Path, _stack: tuple[Path, ...] = ()) -> list[dict]:
    directory = directory.resolve()
    if directory in _stack:
        raise RenderError(f"kustomization cycle at {directory}")
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    kust = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(kust) - SUPPORTED_KEYS
    if unknown:
        raise RenderError(f"{kfile}: unsupported kustomize fields {sorted(unknown)} "
                          "(see tools/manifest-checks/kustomize_lite.py)")
    if kust.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{kfile}: kind must be Kustomization")

    resources: list[dict] = []
    for entry in kust.get("resources") or []:
        p = (directory / entry)
        if p.is_dir():
            resources += build(p, _stack + (directory,))
        elif p.is_file():
            resources += load_docs(p)
        else:
            raise RenderError(f"{kfile}: resource {entry!r} not found")

    seen: dict = {}
    for r in resources:
        rid = res_id(r)
        if rid in seen:
            raise RenderError(f"{kfile}: duplicate object {fmt_id(rid)}")
        seen[rid] = True

    for entry in kust.get("patches") or []:
        if set(entry) != {"path"}:
            raise RenderError(f"{kfile}: only `patches: - path: FILE` is supported, got {sorted(entry)}")
        ppath = directory / entry["path"]
        for patch in load_docs(ppath):
            resources = apply_patch(resources, patch, str(ppath))

    if kust.get("namespace"):
        set_namespace(resources, kust["namespace"])
    if kust.get("images"):
        set_images(resources, kust["images"])
    return resources


def sort_legacy(resources: list[dict]) -> list[dict]:
    def rank(r: dict):
        k = r["kind"]
        if k in ORDER_FIRST:
            pos = ORDER_FIRST.index(k)
        elif k in ORDER_LAST:
            pos = 1000 + ORDER_LAST.index(k)
        else:
            pos = 500
        md = r.get("metadata", {})
        return (pos, k, md.get("namespace", ""), md.get("name", ""))
    return sorted(resources, key=rank)


def render(directory: Path) -> str:
    return yaml.safe_dump_all(sort_legacy(build(directory)), sort_keys=True, default_flow_style=False)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "build":
        print(__doc__, file=sys.stderr)
        return 2
    try:
        sys.stdout.write(render(Path(argv[2])))
    except (RenderError, yaml.YAMLError, OSError) as exc:
        print(f"kustomize_lite: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
