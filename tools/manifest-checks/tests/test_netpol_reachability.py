"""The zone table, proved on the rendered NetworkPolicies of every overlay.

EXPECTED below *is* the zone table in docs/ops/zones.md, written as the exact
set of connections each of our pods may open (destination, port, protocol).
The model in netpol.py evaluates the rendered policies; any difference, one
path more or one path less, fails. On top of the exact table, FORBIDDEN
checks every port (not only the listening ones) for the paths that must never
exist: DMZ to the data zone, the directory, the IdP, SMTP, management or the
internet; clinical or data to the internet; data to anything outside itself.
The mutation tests at the end show that these checks do catch a bad policy.
"""

from __future__ import annotations

import copy

import pytest
from conftest import OUT, OVERLAYS_DIR

from netpol import Block, Model, Pod, load_site

DNS = {("kube-system/coredns", 53, "UDP"), ("kube-system/coredns", 53, "TCP")}
CORE = "kiorex-clinical/kiorex-core"
PG = "kiorex-data/kiorex-pg"
MEILI = "kiorex-data/meilisearch"
EDGE = "kiorex-dmz/kiorex-edge"
DMZ_TRAEFIK = "kiorex-ingress-dmz/traefik"
LAN_TRAEFIK = "kiorex-ingress-lan/traefik"
HL7 = "kiorex-clinical/kiorex-hl7"
WORKER = "kiorex-clinical/kiorex-worker"
OPERATOR = "cnpg-system/cnpg-controller-manager"


def rgw(overlay: str) -> tuple:
    """Where object storage lives in this overlay."""
    if overlay == "rook-ceph":
        return ("rook-ceph/rook-ceph-rgw-kiorex", 443, "TCP")
    return ("[ceph_rgw]", 443, "TCP")


def expected_outbound(overlay: str) -> dict:
    r = rgw(overlay)
    api = ("[control_plane]", 6443, "TCP")
    return {
        EDGE: DNS | {(CORE, 8443, "TCP")},
        DMZ_TRAEFIK: DNS | {(EDGE, 8443, "TCP"), api},
        LAN_TRAEFIK: DNS | {(CORE, 8080, "TCP"), api},
        CORE: DNS | {(PG, 5432, "TCP"), (MEILI, 7700, "TCP"), r,
                     ("[directory]", 636, "TCP"), ("[directory]", 389, "TCP"), ("[idp]", 443, "TCP"),
                     ("[smtp]", 587, "TCP"), ("[smtp]", 25, "TCP")},
        WORKER: DNS | {(PG, 5432, "TCP"), (MEILI, 7700, "TCP"), r, ("[smtp]", 587, "TCP"), ("[smtp]", 25, "TCP")},
        HL7: DNS | {(PG, 5432, "TCP")},
        "kiorex-clinical/kiorex-migrate": DNS | {(PG, 5432, "TCP")},
        PG: DNS | {(PG, 5432, "TCP"), r, api},
        MEILI: DNS,
    }


ANY_ADDRESS = {(DMZ_TRAEFIK, 8443, "TCP")}  # the public portal accepts any client address
EXPECTED_INBOUND = {
    "internet": ANY_ADDRESS,
    "lan_clients": ANY_ADDRESS | {(LAN_TRAEFIK, 8443, "TCP"), (HL7, 2575, "TCP")},
    "hl7_senders": ANY_ADDRESS | {(LAN_TRAEFIK, 8443, "TCP"), (HL7, 2575, "TCP")},
    "management": ANY_ADDRESS | {(EDGE, 8443, "TCP"), (EDGE, 9090, "TCP"), (CORE, 8080, "TCP"), (CORE, 9090, "TCP"),
                                 (WORKER, 9090, "TCP"), (HL7, 9090, "TCP")},
    "control_plane": ANY_ADDRESS,
    "directory": ANY_ADDRESS,
    "idp": ANY_ADDRESS,
    "smtp": ANY_ADDRESS,
    "ceph_rgw": ANY_ADDRESS,
}

# Zones a source zone must never reach, on any port.
FORBIDDEN = {
    "dmz": {"data", "directory", "smtp", "management", "internet", "operator", "lan"},
    "clinical": {"internet", "dmz", "management", "operator"},
    "data": {"dmz", "clinical", "directory", "smtp", "management", "internet", "lan"},
}


def build_model(overlay: str, objects: list) -> Model:
    return Model.from_rendered(objects, load_site(OVERLAYS_DIR / overlay))


def forbidden_violations(model: Model) -> list:
    """Every (source, destination, port) that breaks FORBIDDEN, checking all ports."""
    bad = []
    for src in model.governed_pods():
        banned = FORBIDDEN.get(src.zone)
        if not banned:
            continue
        for dst in model.pods + model.blocks:
            if dst.zone not in banned:
                continue
            for port, proto in model.candidate_ports(dst, listening_only=False):
                if model.can_connect(src, dst, port, proto):
                    bad.append(f"{src.id} ({src.zone}) -> {dst.id} ({dst.zone}) {port}/{proto}")
    # The DMZ edge must not reach the control plane either; only the DMZ
    # ingress controller may (it watches Ingress objects).
    edge = model.endpoint(EDGE)
    for dst in model.blocks:
        if dst.zone == "control-plane":
            for port, proto in model.candidate_ports(dst, listening_only=False):
                if model.can_connect(edge, dst, port, proto):
                    bad.append(f"{EDGE} -> {dst.id} {port}/{proto}")
    return bad


@pytest.fixture
def model(overlay, objects) -> Model:
    m = build_model(overlay, objects)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"reachability-{overlay}.txt").write_text(m.zone_matrix())
    return m


def test_every_source_pod_reaches_exactly_the_zone_table(overlay, model):
    expected = expected_outbound(overlay)
    ours = model.governed_pods()
    assert {p.id for p in ours} == set(expected), "pods in kiorex namespaces changed; update EXPECTED"
    problems = []
    for pod in ours:
        got = model.reachable(pod)
        for extra in sorted(got - expected[pod.id]):
            problems.append(f"UNEXPECTED {pod.id} -> {extra}")
        for missing in sorted(expected[pod.id] - got):
            problems.append(f"MISSING    {pod.id} -> {missing}")
    assert not problems, "\n".join(problems)


def test_inbound_from_outside_the_cluster_is_exactly_the_zone_table(overlay, model):
    problems = []
    for block in model.blocks:
        # Pods in namespaces we do not manage (kube-system, cnpg-system,
        # rook-ceph) are outside this table.
        got = {t for t in model.reachable(block) if t[0].split("/")[0] in model.governed}
        want = EXPECTED_INBOUND[block.name]
        problems += [f"UNEXPECTED {block.id} -> {t}" for t in sorted(got - want)]
        problems += [f"MISSING    {block.id} -> {t}" for t in sorted(want - got)]
    assert not problems, "\n".join(problems)


def test_no_forbidden_path_on_any_port(model):
    bad = forbidden_violations(model)
    assert not bad, "forbidden connections allowed:\n" + "\n".join(bad)


def test_dmz_cannot_reach_data_zone_even_if_one_side_fails(model):
    """Defense in depth: DMZ egress alone blocks the data zone, and data
    ingress alone blocks the DMZ. Either layer could be deleted by mistake."""
    dmz = [p for p in model.pods if p.zone == "dmz"]
    data = [p for p in model.pods if p.namespace == "kiorex-data"]
    assert dmz and data
    for src in dmz:
        for dst in data:
            for port, proto in model.candidate_ports(dst, listening_only=False):
                assert not model.egress_allows(src, dst, port, proto), (src.id, dst.id, port)
                assert not model.ingress_allows(dst, src, port, proto), (src.id, dst.id, port)


def test_dmz_cannot_reach_directory_or_idp(model):
    edge = [p for p in model.pods if p.zone == "dmz"]
    directory = [b for b in model.blocks if b.zone == "directory"]
    assert {b.name for b in directory} == {"directory", "idp"}
    for src in edge:
        for dst in directory:
            for port, proto in model.candidate_ports(dst, listening_only=False):
                assert not model.can_connect(src, dst, port, proto), (src.id, dst.id, port)


@pytest.mark.parametrize("src,dst,port", [
    (EDGE, CORE, 8443),
    (CORE, PG, 5432),
    (WORKER, PG, 5432),
    (HL7, PG, 5432),
    ("kiorex-clinical/kiorex-migrate", PG, 5432),
    (OPERATOR, PG, 5432),
    (OPERATOR, PG, 8000),
    (CORE, MEILI, 7700),
    (CORE, "[directory]", 636),
    (CORE, "[idp]", 443),
    (CORE, "[smtp]", 587),
    (DMZ_TRAEFIK, EDGE, 8443),
    (LAN_TRAEFIK, CORE, 8080),
    ("[internet]", DMZ_TRAEFIK, 8443),
    ("[hl7_senders]", HL7, 2575),
])
def test_required_path_is_open(model, src, dst, port):
    assert model.can_connect(model.endpoint(src), model.endpoint(dst), port, "TCP")


def test_edge_reaches_core_only_on_8443(model):
    edge, core = model.endpoint(EDGE), model.endpoint(CORE)
    open_ports = [p for p, pr in model.candidate_ports(core, listening_only=False)
                  if model.can_connect(edge, core, p, pr)]
    assert open_ports == [8443]


# --- the checks have teeth -----------------------------------------------------

def _netpol(ns, name, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_mutation_dmz_egress_anywhere_is_caught(overlay, objects):
    mutated = copy.deepcopy(objects) + [_netpol("kiorex-dmz", "oops", {
        "podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})]
    bad = forbidden_violations(build_model(overlay, mutated))
    assert any("[directory]" in b for b in bad)
    assert any("[idp]" in b for b in bad)
    assert any("[internet]" in b for b in bad)


def test_mutation_dmz_to_postgres_on_both_sides_is_caught(overlay, objects):
    mutated = copy.deepcopy(objects) + [
        _netpol("kiorex-dmz", "oops-egress", {
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kiorex.io/zone": "data"}}}],
                        "ports": [{"port": 5432}]}]}),
        _netpol("kiorex-data", "oops-ingress", {
            "podSelector": {}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 5432}]}]}),
    ]
    bad = forbidden_violations(build_model(overlay, mutated))
    assert any(b.startswith(f"{EDGE} (dmz) -> {PG}") for b in bad), bad


def test_mutation_one_side_only_is_still_blocked(overlay, objects):
    """Opening only the data side (ingress) leaves the DMZ egress deny in place."""
    mutated = copy.deepcopy(objects) + [_netpol("kiorex-data", "oops-ingress", {
        "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]})]
    assert forbidden_violations(build_model(overlay, mutated)) == []


def test_mutation_removed_default_deny_is_caught(overlay, objects):
    mutated = [o for o in copy.deepcopy(objects)
               if not (o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == "kiorex-dmz")]
    bad = forbidden_violations(build_model(overlay, mutated))
    assert any("[internet]" in b for b in bad)


def test_model_types():
    assert Pod and Block  # imported for readers of this file: the two endpoint kinds
