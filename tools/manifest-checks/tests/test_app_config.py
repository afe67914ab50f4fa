"""The configuration the manifests give the kiorex binary is one it accepts.

appliance/kiorex/src/config.rs reads kiorex.toml into structs that refuse
unknown keys, then applies KIOREX_<SECTION>__<KEY> variables the same way. A
key it does not know stops the process at start. This test reads the key set
from those structs (Raw -> RawServer, RawDatabase, ...) and checks the
rendered ConfigMaps and Deployment env against it, so a rename on either side
fails here rather than on a hospital's cluster.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from conftest import REPO

CONFIG_RS = REPO / "appliance" / "kiorex" / "src" / "config.rs"


def known_keys() -> dict:
    # The sections live in config.rs and its sibling modules (identity_config.rs, edge_config.rs,
    # search_config.rs …); `Raw` names each section's struct, possibly by module path.
    text = "\n".join(p.read_text() for p in sorted(CONFIG_RS.parent.glob("*.rs")))
    structs = {m.group(1): m.group(2) for m in re.finditer(r"struct (Raw\w*) \{(.*?)\n\}", text, re.S)}
    nested = re.compile(r"^\s+(?:pub )?(\w+): Option<(Raw\w+)>,", re.M)
    fields = lambda body: re.findall(r"^\s+(?:pub )?(\w+): ", body, re.M)  # noqa: E731

    def keys_of(struct: str) -> set:
        # A table inside a section ([core.internal]) gives dotted keys: "internal.listen".
        body = structs[struct]
        tables = {name: inner for name, inner in nested.findall(body) if inner in structs}
        keys = {f for f in fields(body) if f not in tables}
        for name, inner in tables.items():
            keys |= {f"{name}.{k}" for k in keys_of(inner)}
        return keys

    sections = {}
    for line in structs["Raw"].splitlines():
        m = re.match(r"\s+(\w+): (?:crate::\w+::)?(Raw\w+),", line)
        if m:
            sections[m.group(1)] = keys_of(m.group(2))
    return sections


def flat(values: dict, prefix: str = "") -> dict:
    """A kiorex.toml section with its inner tables as dotted keys; arrays of tables stay whole."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


pytestmark = pytest.mark.skipif(not CONFIG_RS.is_file(), reason="kiorex config source not present")


def test_key_set_is_read_from_the_source():
    keys = known_keys()
    assert {"server", "database", "auth"} <= set(keys)
    assert "url_file" in keys["database"] and "listen" in keys["server"]
    assert "internal.client_ca_file" in keys["core"] and "token_public_key_file" in keys["edge"]


def test_config_maps_use_only_known_keys(objects):
    keys = known_keys()
    for cm in (o for o in objects if o["kind"] == "ConfigMap" and "kiorex.toml" in o.get("data", {})):
        doc = tomllib.loads(cm["data"]["kiorex.toml"])
        for section, values in doc.items():
            assert section in keys, f'{cm["metadata"]["name"]}: unknown section [{section}]'
            unknown = set(flat(values)) - keys[section]
            assert not unknown, f'{cm["metadata"]["name"]}: [{section}] unknown keys {sorted(unknown)}'


def test_env_overrides_use_only_known_keys(objects):
    keys = known_keys()
    for w in (o for o in objects if o["kind"] in ("Deployment", "Job") and o["metadata"]["name"].startswith("kiorex")):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for env in c.get("env", []):
                m = re.fullmatch(r"KIOREX_([A-Z0-9]+)__([A-Z0-9_]+)", env["name"])
                if not m:
                    continue
                section, key = m.group(1).lower(), m.group(2).lower().replace("__", ".")
                assert section in keys and key in keys[section], f'{w["metadata"]["name"]}: {env["name"]}'


def test_files_named_in_config_are_mounted(objects):
    """Every *_file path a workload is given (its kiorex.toml, its KIOREX_*_FILE variables) lies
    under a volume that workload mounts."""
    tomls = {(o["metadata"]["namespace"], o["metadata"]["name"]): tomllib.loads(o["data"]["kiorex.toml"])
             for o in objects if o["kind"] == "ConfigMap" and "kiorex.toml" in o.get("data", {})}
    for w in (o for o in objects if o["kind"] in ("Deployment", "Job") and o["metadata"]["name"].startswith("kiorex")):
        pod = w["spec"]["template"]["spec"]
        container = pod["containers"][0]
        configs = [tomls[(w["metadata"]["namespace"], v["configMap"]["name"])] for v in pod["volumes"]
                   if "configMap" in v and (w["metadata"]["namespace"], v["configMap"]["name"]) in tomls]
        paths = [v for doc in configs for sec in doc.values() for k, v in flat(sec).items() if k.endswith("_file")]
        paths += [e["value"] for e in container.get("env", []) if e["name"].endswith("_FILE") and "value" in e]
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        for p in paths:
            assert any(p.startswith(m.rstrip("/") + "/") for m in mounts), (w["metadata"]["name"], p)


def test_binary_accepts_kubernetes_secret_file_mode(objects):
    m = re.search(r"permissions\(\)\.mode\(\) & (0o[0-7]+) != 0", CONFIG_RS.read_text())
    assert m, "permission check not found"
    rejected = int(m.group(1), 8)
    for w in (o for o in objects if o["kind"] in ("Deployment", "Job") and o["metadata"]["name"].startswith("kiorex")):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"].get("fsGroup"), w["metadata"]["name"]
        for v in pod["volumes"]:
            if "secret" in v:
                effective = v["secret"]["defaultMode"] | 0o440  # what the kubelet makes of it with fsGroup
                assert effective & rejected == 0, (w["metadata"]["name"], v["name"], oct(effective))


def binary_roles() -> set:
    """The roles of `kiorex serve`, from the `Role_` enum in appliance/kiorex/src/main.rs."""
    text = (CONFIG_RS.parent / "main.rs").read_text()
    body = re.search(r"enum Role_ \{(.*?)\n\}", text, re.S).group(1)
    return {name.lower() for name in re.findall(r"^\s+(\w+),", body, re.M)}


def test_deployments_run_roles_the_binary_has(objects):
    """A Deployment that runs `kiorex serve <role>` names a role the binary has, or runs no
    pods: a missing role would crash-loop and hold `kiorexctl install` at its rollout wait."""
    roles = binary_roles()
    assert {"core", "edge", "worker"} <= roles, roles
    for d in (o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("kiorex")):
        args = d["spec"]["template"]["spec"]["containers"][0].get("args", [])
        if args[:1] == ["serve"] and args[1] not in roles:
            assert d["spec"]["replicas"] == 0, f'{d["metadata"]["name"]}: kiorex has no role {args[1]!r}'
