"""Structural rules for the rendered NetworkPolicies of every overlay."""

from __future__ import annotations

import ipaddress

from conftest import OVERLAYS_DIR

from netpol import load_site

PLACEHOLDERS = [ipaddress.ip_network(c) for c in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def _ns_objects(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def _kiorex_namespaces(objects):
    return [o["metadata"]["name"] for o in _ns_objects(objects, "Namespace")
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "kiorex"]


def test_every_namespace_has_default_deny_both_ways(objects):
    namespaces = _kiorex_namespaces(objects)
    assert set(namespaces) >= {"kiorex-dmz", "kiorex-clinical", "kiorex-data"}
    for ns in namespaces:
        denies = [p for p in _ns_objects(objects, "NetworkPolicy")
                  if p["metadata"]["namespace"] == ns and p["spec"].get("podSelector") == {}
                  and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
                  and not p["spec"].get("ingress") and not p["spec"].get("egress")]
        assert denies, f"{ns} has no default-deny-all NetworkPolicy"


def test_every_namespace_allows_dns_only_to_coredns(objects):
    for ns in _kiorex_namespaces(objects):
        dns = [p for p in _ns_objects(objects, "NetworkPolicy")
               if p["metadata"]["namespace"] == ns and p["metadata"]["name"] == "allow-dns-egress"]
        assert len(dns) == 1, ns
        (rule,) = dns[0]["spec"]["egress"]
        assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
        assert sorted((p["port"], p["protocol"]) for p in rule["ports"]) == [(53, "TCP"), (53, "UDP")]


def test_every_egress_rule_names_peers_and_ports(objects):
    """No 'to anywhere' and no 'any port' egress rule in any of our namespaces."""
    for p in _ns_objects(objects, "NetworkPolicy"):
        for rule in p["spec"].get("egress") or []:
            where = f'{p["metadata"]["namespace"]}/{p["metadata"]["name"]}'
            assert rule.get("to"), f"{where}: egress rule without `to` allows every destination"
            assert rule.get("ports"), f"{where}: egress rule without `ports` allows every port"


def _ipblocks(objects):
    for p in _ns_objects(objects, "NetworkPolicy"):
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in p["spec"].get(direction) or []:
                for peer in rule.get(peers_key) or []:
                    if "ipBlock" in peer:
                        yield p, direction, ipaddress.ip_network(peer["ipBlock"]["cidr"])


def test_every_ipblock_is_a_declared_site_network(overlay, objects):
    site = load_site(OVERLAYS_DIR / overlay)
    declared = {name: [ipaddress.ip_network(c) for c in net["cidrs"]]
                for name, net in site["networks"].items() if net["zone"] != "internet"}
    for policy, direction, cidr in _ipblocks(objects):
        where = f'{policy["metadata"]["namespace"]}/{policy["metadata"]["name"]} {direction} {cidr}'
        if cidr.prefixlen == 0:
            # Only the public portal's ingress controller accepts any address.
            assert (policy["metadata"]["namespace"], policy["metadata"]["name"], direction) == \
                ("kiorex-ingress-dmz", "traefik-ingress", "ingress"), where
            continue
        assert any(cidr.subnet_of(n) for nets in declared.values() for n in nets), \
            f"{where}: not inside any network of site-network.yaml"


def test_no_placeholder_address_survives_the_overlay(objects):
    for policy, direction, cidr in _ipblocks(objects):
        assert not any(cidr.subnet_of(p) for p in PLACEHOLDERS), \
            f'{policy["metadata"]["namespace"]}/{policy["metadata"]["name"]}: placeholder {cidr}'
    for es in _ns_objects(objects, "EndpointSlice"):
        for ep in es["endpoints"]:
            for addr in ep["addresses"]:
                assert not any(ipaddress.ip_address(addr) in p for p in PLACEHOLDERS), addr


def test_site_network_declares_the_cluster_ranges(overlay):
    site = load_site(OVERLAYS_DIR / overlay)
    pod = ipaddress.ip_network(site["cluster"]["pod_cidr"])
    svc = ipaddress.ip_network(site["cluster"]["service_cidr"])
    assert not pod.overlaps(svc)
    for name, net in site["networks"].items():
        if net["zone"] == "internet":
            continue
        for c in net["cidrs"]:
            n = ipaddress.ip_network(c)
            assert not n.overlaps(pod) and not n.overlaps(svc), f"{name} {c} overlaps the cluster ranges"


def test_ceph_rgw_endpoints_are_on_the_storage_network(overlay, objects):
    slices = _ns_objects(objects, "EndpointSlice")
    if overlay == "rook-ceph":
        assert slices == []
        return
    site = load_site(OVERLAYS_DIR / overlay)
    rgw = [ipaddress.ip_network(c) for c in site["networks"]["ceph_rgw"]["cidrs"]]
    (es,) = slices
    assert es["metadata"]["labels"]["kubernetes.io/service-name"] == "ceph-rgw"
    for ep in es["endpoints"]:
        for addr in ep["addresses"]:
            assert any(ipaddress.ip_address(addr) in n for n in rgw), addr
