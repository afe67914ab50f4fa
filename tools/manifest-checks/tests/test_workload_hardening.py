"""Workload rules from the platform requirements, checked on every overlay.

checkov covers much of this too; these assertions are the project's own
contract, so a checkov skip can never quietly waive one of them.
"""

from __future__ import annotations

import ipaddress

import yaml
from conftest import REPO

import kustomize_lite

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
KIOREX_IMAGE = "registry.kiorex.local/kiorex/kiorex"
ROLE_PORTS = {"edge": {8443, 9090}, "core": {8080, 8443, 9090}, "worker": {9090}, "hl7": {2575, 9090}}
ROLE_PROBE_PORT = {"edge": "https", "core": "http", "worker": "health", "hl7": "health"}


def workloads(objects):
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def containers(w):
    spec = w["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_namespaces_enforce_restricted_pod_security(objects):
    for ns in (o for o in objects if o["kind"] == "Namespace"):
        labels = ns["metadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", (ns["metadata"]["name"], mode)


def test_every_pod_is_non_root_with_runtime_default_seccomp(objects):
    for w in workloads(objects):
        pod = w["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True, w["metadata"]["name"]
        assert sc["runAsUser"] >= 10000 and sc["runAsGroup"] >= 10000, w["metadata"]["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, w["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, w["metadata"]["name"]
        assert pod.get("serviceAccountName") not in (None, "default"), w["metadata"]["name"]
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(flag), (w["metadata"]["name"], flag)


def test_every_container_is_locked_down(objects):
    for w in workloads(objects):
        for c in containers(w):
            where = f'{w["metadata"]["name"]}/{c["name"]}'
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where
            assert sc["runAsNonRoot"] is True, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            res = c["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res[kind]), (where, kind)
            assert not c.get("envFrom"), f"{where}: envFrom could pull a whole Secret into the environment"
            for env in c.get("env", []):
                assert "secretKeyRef" not in (env.get("valueFrom") or {}), f"{where}: secrets only as files"


def test_service_accounts_never_mount_tokens(objects):
    for sa in (o for o in objects if o["kind"] == "ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is False, sa["metadata"]


def test_kiorex_roles_have_http_health_probes_and_their_ports(objects):
    seen = set()
    for w in workloads(objects):
        for c in containers(w):
            if not c["image"].startswith(KIOREX_IMAGE + ":"):
                continue
            if w["kind"] == "Job":
                assert c["args"] == ["migrate"], w["metadata"]["name"]
                continue
            assert c["args"][0] == "serve"
            role = c["args"][1]
            seen.add(role)
            assert {p["containerPort"] for p in c["ports"]} == ROLE_PORTS[role], role
            live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
            assert live["path"] == "/health/live" and ready["path"] == "/health/ready", role
            assert live["port"] == ready["port"] == ROLE_PROBE_PORT[role], role
    assert seen == set(ROLE_PORTS)


def test_images_come_from_the_appliance_registry_with_a_pinned_tag(objects):
    for w in workloads(objects):
        for c in containers(w):
            assert c["image"].startswith("registry.kiorex.local/"), c["image"]
            name, _, tag = c["image"].rpartition(":")
            assert tag and tag != "latest" and "/" not in tag, c["image"]
    for cl in (o for o in objects if o["kind"] == "Cluster"):
        assert cl["spec"]["imageName"].startswith("registry.kiorex.local/")


def test_dmz_pods_are_pinned_to_dmz_nodes_and_nothing_else_tolerates_them(objects):
    dmz_toleration = {"key": "kiorex.io/zone", "operator": "Equal", "value": "dmz", "effect": "NoSchedule"}
    dmz_namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"
                      and o["metadata"]["labels"].get("kiorex.io/zone") == "dmz"}
    for w in workloads(objects):
        pod = w["spec"]["template"]["spec"]
        if w["metadata"]["namespace"] in dmz_namespaces:
            assert pod.get("nodeSelector") == {"kiorex.io/zone": "dmz"}, w["metadata"]["name"]
            assert dmz_toleration in pod.get("tolerations", []), w["metadata"]["name"]
        else:
            assert not any(t.get("key") == "kiorex.io/zone" for t in pod.get("tolerations", [])), \
                f'{w["metadata"]["name"]} may land on a DMZ node'
    # The DMZ ingress controller (a Helm chart) is pinned the same way.
    for hc in (o for o in objects if o["kind"] == "HelmChart"):
        values = yaml.safe_load(hc["spec"]["valuesContent"])
        if hc["spec"]["targetNamespace"] in dmz_namespaces:
            assert values["nodeSelector"] == {"kiorex.io/zone": "dmz"}
            assert dmz_toleration in values["tolerations"]
        else:
            assert "tolerations" not in values


def test_lan_and_dmz_portals_use_separate_ingress_classes_and_hosts(objects):
    ingresses = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Ingress"}
    assert set(ingresses) == {"kiorex-dmz", "kiorex-clinical"}
    dmz, lan = ingresses["kiorex-dmz"], ingresses["kiorex-clinical"]
    assert dmz["spec"]["ingressClassName"] == "kiorex-dmz"
    assert lan["spec"]["ingressClassName"] == "kiorex-lan"
    dmz_hosts = {r["host"] for r in dmz["spec"]["rules"]}
    lan_hosts = {r["host"] for r in lan["spec"]["rules"]}
    assert dmz_hosts and lan_hosts and not dmz_hosts & lan_hosts
    assert dmz["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "kiorex-edge"
    assert lan["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "kiorex-core"
    for ing in (dmz, lan):
        assert {h for t in ing["spec"]["tls"] for h in t["hosts"]} == {r["host"] for r in ing["spec"]["rules"]}
    classes = {o["metadata"]["name"] for o in objects if o["kind"] == "IngressClass"}
    assert classes == {"kiorex-dmz", "kiorex-lan"}
    # Each controller watches only its own zone's namespace.
    charts = {o["spec"]["targetNamespace"]: yaml.safe_load(o["spec"]["valuesContent"])
              for o in objects if o["kind"] == "HelmChart"}
    ki = charts["kiorex-ingress-dmz"]["providers"]["kubernetesIngress"]
    assert ki["ingressClass"] == "kiorex-dmz" and ki["namespaces"] == ["kiorex-dmz"]
    ki = charts["kiorex-ingress-lan"]["providers"]["kubernetesIngress"]
    assert ki["ingressClass"] == "kiorex-lan" and ki["namespaces"] == ["kiorex-clinical"]
    for values in charts.values():
        assert values["rbac"]["namespaced"] is True


def test_dmz_can_only_resolve_cores_internal_listener(objects):
    svc = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "kiorex-core-internal")
    assert [p["port"] for p in svc["spec"]["ports"]] == [8443]
    edge_cfg = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kiorex-edge-config")
    toml = edge_cfg["data"]["kiorex.toml"]
    assert "kiorex-core-internal.kiorex-clinical.svc.cluster.local:8443" in toml
    for word in ("database", "ldap", "s3", "search", "smtp"):
        assert word not in toml.lower(), f"edge config mentions {word}"
    edge = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "kiorex-edge")
    secrets = {v["secret"]["secretName"] for v in edge["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert secrets == {"kiorex-edge-public-tls", "kiorex-edge-upstream-mtls"}
    config_maps = {v["configMap"]["name"] for v in edge["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
    assert config_maps == {"kiorex-edge-config", "kiorex-edge-token-key"}


def test_postgres_archives_wal_to_ceph_with_credentials_from_a_secret(overlay, objects):
    (cl,) = [o for o in objects if o["kind"] == "Cluster"]
    store = cl["spec"]["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://kiorex-backups/")
    assert store["endpointURL"].startswith("https://")
    creds = store["s3Credentials"]
    assert creds["accessKeyId"]["name"] == creds["secretAccessKey"]["name"]
    assert store["endpointCA"]["name"]
    assert store["wal"]["compression"]
    assert cl["spec"]["enableSuperuserAccess"] is False
    assert cl["spec"]["instances"] >= 3
    host = store["endpointURL"].split("/")[2].split(":")[0]
    if overlay == "rook-ceph":
        assert host == "rook-ceph-rgw-kiorex.rook-ceph.svc.cluster.local"
    else:
        assert host == "ceph-rgw.kiorex-data.svc.cluster.local"
    (sb,) = [o for o in objects if o["kind"] == "ScheduledBackup"]
    assert sb["spec"]["cluster"]["name"] == cl["metadata"]["name"]


def test_core_base_url_is_the_lan_portal_host(objects):
    core = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "kiorex-core")
    env = {e["name"]: e["value"] for e in core["spec"]["template"]["spec"]["containers"][0]["env"]}
    lan = next(o for o in objects if o["kind"] == "Ingress" and o["metadata"]["namespace"] == "kiorex-clinical")
    assert env["KIOREX_SERVER__BASE_URL"] == f'https://{lan["spec"]["rules"][0]["host"]}'


def test_meilisearch_is_a_statefulset_with_its_key_in_a_file(objects):
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "meilisearch"]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in c["env"]} == {"MEILI_CONFIG_FILE_PATH"}
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]


def test_base_holds_only_placeholder_addresses():
    """Real site addresses belong in an overlay, never in the base."""
    base = kustomize_lite.build(REPO / "k3s-manifests" / "base")
    docs = [ipaddress.ip_network(c) for c in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    for p in (o for o in base if o["kind"] == "NetworkPolicy"):
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in p["spec"].get(direction) or []:
                for peer in rule.get(key) or []:
                    if "ipBlock" in peer:
                        cidr = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                        assert cidr.prefixlen == 0 or any(cidr.subnet_of(d) for d in docs), \
                            (p["metadata"]["name"], str(cidr))
