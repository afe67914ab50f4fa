"""Evaluate rendered Kubernetes NetworkPolicies as a reachability matrix.

The model follows the NetworkPolicy API semantics (networking.k8s.io/v1):

* A pod is isolated for ingress (egress) when at least one policy in its
  namespace selects it and lists Ingress (Egress) in policyTypes; policyTypes
  defaults to [Ingress] plus Egress when the policy has an egress section.
* A connection needs both sides: the source pod's egress must allow it
  (unless the source is not isolated for egress, or is outside the cluster),
  and the destination pod's ingress must allow it (unless the destination is
  not isolated for ingress, or is outside the cluster).
* Peers: podSelector (same namespace), namespaceSelector, both together,
  ipBlock (cidr minus except). ipBlock peers are also matched against pod
  addresses: whether a CNI applies ipBlocks to pod traffic varies, so for the
  "must never connect" questions we assume it does (the cautious choice).
* Ports: number or name (resolved on the destination pod), protocol
  (default TCP) and endPort.

Pods come from the rendered workloads (Deployment, StatefulSet, DaemonSet,
Job, CloudNativePG Cluster) plus a few pods that exist on a real appliance but
are not in our manifests (CoreDNS, the CloudNativePG operator, the Traefik
controllers, Rook's RGW), declared in EXTERNAL_PODS. Addresses outside the
cluster are "blocks" from the overlay's site-network.yaml; the internet is
every public address, i.e. everything outside the private ranges and the
declared networks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

Net = ipaddress.IPv4Network

PRIVATE_RANGES = [ipaddress.ip_network(c) for c in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
)]

# Pods that run on an appliance but are not defined in k3s-manifests/.
# The last field names a kind that must be rendered for the pod to exist
# (None: always there).
EXTERNAL_PODS = [
    # namespace, name, labels, ports [(port, proto, name)], zone, requires kind
    ("kube-system", "coredns", {"k8s-app": "kube-dns"}, [(53, "UDP", "dns"), (53, "TCP", "dns-tcp")],
     "kube-system", None),
    ("cnpg-system", "cnpg-controller-manager", {"app.kubernetes.io/name": "cloudnative-pg"},
     [(9443, "TCP", "webhook-server")], "operator", "Cluster"),
    ("kiorex-ingress-dmz", "traefik", {"app.kubernetes.io/name": "traefik"}, [(8443, "TCP", "websecure")],
     None, "HelmChart"),
    ("kiorex-ingress-lan", "traefik", {"app.kubernetes.io/name": "traefik"}, [(8443, "TCP", "websecure")],
     None, "HelmChart"),
    ("rook-ceph", "rook-ceph-rgw-kiorex", {"app": "rook-ceph-rgw", "rook_object_store": "kiorex"},
     [(443, "TCP", "https")], "data", "CephObjectStore"),
]
EXTERNAL_NAMESPACES = {"kube-system": "kube-system", "cnpg-system": "operator", "rook-ceph": "data"}

PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: tuple
    ports: tuple  # ((port, proto, name), ...)
    ip: Net
    zone: str

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def label_dict(self) -> dict:
        return dict(self.labels)


@dataclass(frozen=True)
class Block:
    """A set of addresses outside the cluster: cidrs minus exclusions."""
    name: str
    zone: str
    cidrs: tuple
    exclusions: tuple = ()

    @property
    def id(self) -> str:
        return f"[{self.name}]"


def _covered(net: Net, excl: list) -> bool:
    """True when every address of net lies in some network of excl."""
    relevant = [e for e in excl if e.overlaps(net)]
    if not relevant:
        return False
    if any(e.supernet_of(net) for e in relevant):
        return True
    if net.prefixlen >= net.max_prefixlen:
        return False
    return all(_covered(sub, relevant) for sub in net.subnets(prefixlen_diff=1))


def ipblock_matches(cidr: Net, excepts: list, target) -> bool:
    """Does ipBlock (cidr minus excepts) contain at least one address of target?"""
    if isinstance(target, Pod):
        nets, excl = [target.ip], []
    else:
        nets, excl = list(target.cidrs), list(target.exclusions)
    for n in nets:
        if not n.overlaps(cidr):
            continue
        inter = n if cidr.supernet_of(n) else cidr
        if not _covered(inter, list(excepts) + excl):
            return True
    return False


def selector_matches(sel, labels: dict) -> bool:
    if sel is None:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in sel.get("matchExpressions") or []:
        key, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op}")
    return True


@dataclass
class Policy:
    namespace: str
    name: str
    pod_selector: dict
    types: tuple
    ingress: list
    egress: list

    @classmethod
    def from_obj(cls, obj: dict) -> "Policy":
        spec = obj.get("spec") or {}
        types = spec.get("policyTypes")
        if not types:
            types = ["Ingress"] + (["Egress"] if "egress" in spec else [])
        return cls(obj["metadata"]["namespace"], obj["metadata"]["name"], spec.get("podSelector") or {},
                   tuple(types), spec.get("ingress") or [], spec.get("egress") or [])


@dataclass
class Model:
    pods: list
    blocks: list
    policies: list
    namespaces: dict  # name -> labels
    mentioned_ports: set = field(default_factory=set)
    governed: set = field(default_factory=set)  # namespaces rendered from our manifests

    def governed_pods(self) -> list:
        return [p for p in self.pods if p.namespace in self.governed]

    # -- construction -------------------------------------------------------
    @classmethod
    def from_rendered(cls, objects: list, site: dict) -> "Model":
        pod_cidr = ipaddress.ip_network(site["cluster"]["pod_cidr"])
        hosts = pod_cidr.hosts()
        next(hosts)
        namespaces: dict = {}
        ns_zone: dict = {}
        for o in objects:
            if o["kind"] == "Namespace":
                labels = dict(o["metadata"].get("labels") or {})
                labels["kubernetes.io/metadata.name"] = o["metadata"]["name"]
                namespaces[o["metadata"]["name"]] = labels
                ns_zone[o["metadata"]["name"]] = labels.get("kiorex.io/zone", "unzoned")
        governed = set(namespaces)
        for ns, zone in EXTERNAL_NAMESPACES.items():
            namespaces.setdefault(ns, {"kubernetes.io/metadata.name": ns})
            ns_zone.setdefault(ns, zone)

        pods = []

        def add(ns, name, labels, ports, zone=None):
            if ns not in namespaces:
                raise ValueError(f"pod {ns}/{name} in a namespace that is not rendered")
            pods.append(Pod(ns, name, tuple(sorted(labels.items())), tuple(ports),
                            ipaddress.ip_network(f"{next(hosts)}/32"), zone or ns_zone[ns]))

        for o in objects:
            kind, md = o["kind"], o["metadata"]
            if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                tmpl = o["spec"]["template"]
                ports = []
                for c in tmpl["spec"].get("containers", []):
                    for p in c.get("ports") or []:
                        ports.append((p["containerPort"], p.get("protocol", "TCP"), p.get("name")))
                add(md["namespace"], md["name"], tmpl["metadata"].get("labels") or {}, ports)
            elif kind == "Cluster" and o["apiVersion"].startswith("postgresql.cnpg.io/"):
                add(md["namespace"], md["name"],
                    {"cnpg.io/cluster": md["name"], "cnpg.io/podRole": "instance"},
                    [(5432, "TCP", "postgresql"), (8000, "TCP", "status"), (9187, "TCP", "metrics")])
        kinds = {o["kind"] for o in objects}
        for ns, name, labels, ports, zone, needs in EXTERNAL_PODS:
            if needs is None or needs in kinds:
                add(ns, name, labels, ports, zone)

        excluded = [ipaddress.ip_network(site["cluster"]["pod_cidr"]),
                    ipaddress.ip_network(site["cluster"]["service_cidr"])]
        blocks = []
        declared = []
        for name, net in site["networks"].items():
            cidrs = tuple(ipaddress.ip_network(c) for c in net["cidrs"])
            if net["zone"] == "internet":
                continue
            declared += cidrs
            blocks.append(Block(name, net["zone"], cidrs))
        for name, net in site["networks"].items():
            if net["zone"] == "internet":
                blocks.append(Block(name, "internet", tuple(ipaddress.ip_network(c) for c in net["cidrs"]),
                                    tuple(PRIVATE_RANGES + declared + excluded)))

        policies = [Policy.from_obj(o) for o in objects if o["kind"] == "NetworkPolicy"]
        mentioned = set()
        for p in policies:
            for rule in p.ingress + p.egress:
                for port in rule.get("ports") or []:
                    if isinstance(port.get("port"), int):
                        mentioned.add(port["port"])
                        if port.get("endPort"):
                            mentioned.add(port["endPort"])
        return cls(pods, blocks, policies, namespaces, mentioned, governed)

    # -- evaluation -----------------------------------------------------------
    def _selecting(self, pod: Pod, ptype: str) -> list:
        return [p for p in self.policies
                if p.namespace == pod.namespace and ptype in p.types
                and selector_matches(p.pod_selector, pod.label_dict())]

    def _peer_matches(self, peer: dict, policy_ns: str, other) -> bool:
        if "ipBlock" in peer:
            ib = peer["ipBlock"]
            return ipblock_matches(ipaddress.ip_network(ib["cidr"]),
                                   [ipaddress.ip_network(e) for e in ib.get("except") or []], other)
        if not isinstance(other, Pod):
            return False
        ns_sel = peer.get("namespaceSelector")
        pod_sel = peer.get("podSelector")
        if ns_sel is not None:
            if not selector_matches(ns_sel, self.namespaces.get(other.namespace, {})):
                return False
        elif other.namespace != policy_ns:
            return False
        if pod_sel is not None and not selector_matches(pod_sel, other.label_dict()):
            return False
        return True

    @staticmethod
    def _port_matches(rule_ports, port: int, proto: str, dst) -> bool:
        if not rule_ports:
            return True
        for rp in rule_ports:
            if rp.get("protocol", "TCP") != proto:
                continue
            want = rp.get("port")
            if want is None:
                return True
            if isinstance(want, str):
                if isinstance(dst, Pod) and any(n == want and p == port and pr == proto
                                                for p, pr, n in dst.ports):
                    return True
                continue
            end = rp.get("endPort") or want
            if want <= port <= end:
                return True
        return False

    def egress_allows(self, src: Pod, dst, port: int, proto: str) -> bool:
        pols = self._selecting(src, "Egress")
        if not pols:
            return True
        for p in pols:
            for rule in p.egress:
                peers = rule.get("to")
                if (not peers or any(self._peer_matches(peer, p.namespace, dst) for peer in peers)) \
                        and self._port_matches(rule.get("ports"), port, proto, dst):
                    return True
        return False

    def ingress_allows(self, dst: Pod, src, port: int, proto: str) -> bool:
        pols = self._selecting(dst, "Ingress")
        if not pols:
            return True
        for p in pols:
            for rule in p.ingress:
                peers = rule.get("from")
                if (not peers or any(self._peer_matches(peer, p.namespace, src) for peer in peers)) \
                        and self._port_matches(rule.get("ports"), port, proto, dst):
                    return True
        return False

    def can_connect(self, src, dst, port: int, proto: str) -> bool:
        if isinstance(src, Block) and isinstance(dst, Block):
            return False  # outside the cluster: not ours to judge
        if isinstance(src, Pod) and not self.egress_allows(src, dst, port, proto):
            return False
        if isinstance(dst, Pod) and not self.ingress_allows(dst, src, port, proto):
            return False
        return True

    def candidate_ports(self, dst, listening_only: bool) -> list:
        """(port, proto) pairs worth testing against dst.

        listening_only: only the ports the destination pod declares (what a
        connection can actually reach). Otherwise every port any policy names
        plus the pod's ports plus common service ports: enough to find any
        allowed port, since a rule either allows all ports or names one.
        """
        if listening_only and isinstance(dst, Pod):
            return sorted({(p, pr) for p, pr, _ in dst.ports})
        ports = set(self.mentioned_ports) | {22, 25, 53, 80, 389, 443, 636, 2575, 5432, 6443, 7700,
                                             8000, 8080, 8443, 9090, 10250}
        if isinstance(dst, Pod):
            ports |= {p for p, _, _ in dst.ports}
        return sorted((p, pr) for p in ports for pr in PROTOCOLS)

    def reachable(self, src, listening_only: bool = True) -> set:
        """Every (destination id, port, proto) src can open a connection to."""
        out = set()
        for dst in self.pods + self.blocks:
            for port, proto in self.candidate_ports(dst, listening_only):
                if self.can_connect(src, dst, port, proto):
                    out.add((dst.id, port, proto))
        return out

    def endpoint(self, ident: str):
        for e in self.pods + self.blocks:
            if e.id == ident:
                return e
        raise KeyError(ident)

    def zone_matrix(self) -> str:
        """A readable zone-to-zone table of every allowed connection."""
        rows = []
        for src in self.governed_pods() + self.blocks:
            for dst_id, port, proto in sorted(self.reachable(src)):
                dst = self.endpoint(dst_id)
                if isinstance(src, Block) and not (isinstance(dst, Pod) and dst.namespace in self.governed):
                    continue
                rows.append((src.zone, src.id, dst.zone, dst_id, f"{port}/{proto}"))
        rows.sort()
        width = [max(len(r[i]) for r in rows) for i in range(5)] if rows else [0] * 5
        head = ("FROM ZONE", "FROM", "TO ZONE", "TO", "PORT")
        width = [max(w, len(h)) for w, h in zip(width, head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, width))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, width)) for r in rows]
        return "\n".join(lines) + "\n"


def load_rendered(path: Path) -> list:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def load_site(overlay_dir: Path) -> dict:
    return yaml.safe_load((overlay_dir / "site-network.yaml").read_text())
