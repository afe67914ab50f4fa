//! The zones of the appliance and which connections between them are allowed, as data; and a
//! pure function that renders the nftables ruleset enforcing them.
//!
//! The table follows the architecture: the internet reaches only the edge's TLS port; the DMZ
//! (edge) reaches only core's internal mutual-TLS port; the clinical zone (core, worker) reaches
//! the data zone (PostgreSQL, RGW, Meilisearch) and the directory (LDAP, OIDC); the data zone
//! reaches only itself; the management network reaches health and metrics ports.
//!
//! How rules are keyed (see `docs/ops/zones.md`):
//! - [`Keying::Address`]: every zone has its own addresses (VLANs, hosts, or network namespaces
//!   in tests). Each rule names the source zone's networks, the destination service's zone
//!   networks and its port. The same ruleset is loaded on every host: the `input` chain protects
//!   what listens there, the `output` chain limits what may leave it, both default-deny.
//! - [`Keying::SocketOwner`]: one host, every role on loopback, each run as its own system
//!   user. Addresses say nothing there (a loopback connection's source is its destination), so
//!   the `output` chain keys on the socket's owner (`meta skuid`): each role's user may open
//!   connections only to the ports its zone may reach.

use std::fmt::Write;

/// A zone of the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// Anyone outside: partners, patients.
    Internet,
    /// The edge.
    Dmz,
    /// Core, worker, hl7.
    Clinical,
    /// PostgreSQL, RGW, Meilisearch.
    Data,
    /// The hospital's directory and identity provider.
    Directory,
    /// kiorexctl, metrics collection.
    Management,
}

impl Zone {
    pub fn name(self) -> &'static str {
        match self {
            Zone::Internet => "internet",
            Zone::Dmz => "dmz",
            Zone::Clinical => "clinical",
            Zone::Data => "data",
            Zone::Directory => "directory",
            Zone::Management => "management",
        }
    }
}

/// A kind of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    EdgeTls,
    CoreInternal,
    CoreLan,
    Postgres,
    Rgw,
    Meilisearch,
    Ldap,
    Ldaps,
    Oidc,
    Metrics,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::EdgeTls => "edge-tls",
            Service::CoreInternal => "core-internal",
            Service::CoreLan => "core-lan",
            Service::Postgres => "postgresql",
            Service::Rgw => "rgw",
            Service::Meilisearch => "meilisearch",
            Service::Ldap => "ldap",
            Service::Ldaps => "ldaps",
            Service::Oidc => "oidc",
            Service::Metrics => "metrics",
        }
    }
}

/// Who may open connections to which service: the zone table, nothing else.
pub const ALLOWED: &[(Zone, Service)] = &[
    (Zone::Internet, Service::EdgeTls),
    (Zone::Dmz, Service::CoreInternal),
    (Zone::Clinical, Service::Postgres),
    (Zone::Clinical, Service::Rgw),
    (Zone::Clinical, Service::Meilisearch),
    (Zone::Clinical, Service::Ldap),
    (Zone::Clinical, Service::Ldaps),
    (Zone::Clinical, Service::Oidc),
    (Zone::Data, Service::Postgres),
    (Zone::Data, Service::Rgw),
    (Zone::Data, Service::Meilisearch),
    (Zone::Management, Service::CoreLan),
    (Zone::Management, Service::Metrics),
    (Zone::Management, Service::EdgeTls),
];

/// Where a service listens: its zone and TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub service: Service,
    pub zone: Zone,
    pub port: u16,
}

/// How rules recognise a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keying {
    /// Each zone's networks (CIDR), e.g. `10.20.1.0/24`. The internet has none: "anywhere".
    Address(Vec<(Zone, Vec<String>)>),
    /// One host: the system user id each zone's processes run as (zones that share a user
    /// cannot be told apart and must not be listed), and the LAN networks allowed to reach
    /// core's LAN port from outside the host.
    SocketOwner {
        owners: Vec<(Zone, u32)>,
        lan: Vec<String>,
    },
}

/// The deployment: where services listen and how zones are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub listeners: Vec<Listener>,
    pub keying: Keying,
}

impl Plan {
    /// The usual ports: edge 8443, core internal 9443, core LAN 8080, PostgreSQL 5432,
    /// RGW 7480, Meilisearch 7700, LDAP 389/636, OIDC 443, metrics 9464.
    pub fn standard_listeners() -> Vec<Listener> {
        use Service::*;
        [
            (EdgeTls, Zone::Dmz, 8443),
            (CoreInternal, Zone::Clinical, 9443),
            (CoreLan, Zone::Clinical, 8080),
            (Postgres, Zone::Data, 5432),
            (Rgw, Zone::Data, 7480),
            (Meilisearch, Zone::Data, 7700),
            (Ldap, Zone::Directory, 389),
            (Ldaps, Zone::Directory, 636),
            (Oidc, Zone::Directory, 443),
            (Metrics, Zone::Dmz, 9464),
        ]
        .into_iter()
        .map(|(service, zone, port)| Listener {
            service,
            zone,
            port,
        })
        .collect()
    }
}

/// The name of the nftables table the ruleset owns (and replaces as a whole).
pub const TABLE: &str = "kiorex_zones";

/// The nftables ruleset for `plan`, loadable with `nft -f`. It replaces only its own table.
pub fn render(plan: &Plan) -> String {
    let rules = match &plan.keying {
        Keying::Address(networks) => address_rules(plan, networks),
        Keying::SocketOwner { owners, lan } => return owner_ruleset(plan, owners, lan),
    };
    let mut out = header();
    for chain in ["input", "output"] {
        let _ = writeln!(
            out,
            "  chain {chain} {{\n    type filter hook {chain} priority filter; policy drop;\n    \
             ct state established,related accept\n    ct state invalid drop\n    \
             {} \"lo\" accept",
            if chain == "input" {
                "iifname"
            } else {
                "oifname"
            }
        );
        for rule in &rules {
            let _ = writeln!(out, "    {rule}");
        }
        let _ = writeln!(out, "  }}");
    }
    out.push_str("}\n");
    out
}

fn header() -> String {
    format!(
        "# Kiorex zones: generated by kiorexctl from the zone table; do not edit.\n\
         table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n"
    )
}

fn networks_of(networks: &[(Zone, Vec<String>)], zone: Zone) -> Option<&[String]> {
    networks
        .iter()
        .find(|(z, _)| *z == zone)
        .map(|(_, n)| n.as_slice())
}

fn all_networks(networks: &[(Zone, Vec<String>)]) -> Vec<String> {
    let mut all: Vec<String> = networks
        .iter()
        .flat_map(|(_, n)| n.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}

fn set(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// One accept rule per allowed (source zone, listener): `ip saddr <from> ip daddr <to> tcp dport
/// <port> accept`. A zone without networks cannot be matched and gets no rule, except the
/// internet, which is any source outside the zones' networks.
fn address_rules(plan: &Plan, networks: &[(Zone, Vec<String>)]) -> Vec<String> {
    let mut rules = Vec::new();
    for (from, service) in ALLOWED {
        for listener in plan.listeners.iter().filter(|l| l.service == *service) {
            let Some(to) = networks_of(networks, listener.zone).filter(|n| !n.is_empty()) else {
                continue;
            };
            let source = match (from, networks_of(networks, *from)) {
                // "The internet" is every address that is not one of the zones: a zone reaches
                // the edge only if the table says so.
                (Zone::Internet, _) => format!("ip saddr != {} ", set(&all_networks(networks))),
                (_, Some(n)) if !n.is_empty() => format!("ip saddr {} ", set(n)),
                _ => continue,
            };
            rules.push(format!(
                "{source}ip daddr {} tcp dport {} accept comment \"{} -> {}\"",
                set(to),
                listener.port,
                from.name(),
                service.name()
            ));
        }
    }
    rules
}

/// One host: the input chain accepts from outside only the edge's TLS port (and nothing else
/// of Kiorex's); the output chain lets each role's user connect only to what its zone may reach.
fn owner_ruleset(plan: &Plan, owners: &[(Zone, u32)], lan: &[String]) -> String {
    let port_of = |s: Service| {
        plan.listeners
            .iter()
            .find(|l| l.service == s)
            .map(|l| l.port)
    };
    let kiorex_ports: Vec<String> = plan.listeners.iter().map(|l| l.port.to_string()).collect();
    let mut out = header();
    let _ = writeln!(
        out,
        "  chain input {{\n    type filter hook input priority filter; policy accept;"
    );
    if let Some(edge) = port_of(Service::EdgeTls) {
        let _ = writeln!(
            out,
            "    tcp dport {edge} accept comment \"internet -> edge-tls\""
        );
    }
    if let Some(core) = port_of(Service::CoreLan).filter(|_| !lan.is_empty()) {
        let _ = writeln!(
            out,
            "    ip saddr {} tcp dport {core} accept comment \"LAN -> core-lan\"",
            set(lan)
        );
    }
    let _ = writeln!(
        out,
        "    iifname != \"lo\" tcp dport {} drop comment \"no other Kiorex port from outside\"\n  }}",
        set(&kiorex_ports)
    );
    let _ = writeln!(
        out,
        "  chain output {{\n    type filter hook output priority filter; policy accept;\n    ct state established,related accept"
    );
    for (zone, uid) in owners {
        let ports: Vec<String> = ALLOWED
            .iter()
            .filter(|(from, _)| from == zone)
            .filter_map(|(_, s)| port_of(*s))
            .map(|p| p.to_string())
            .collect();
        if !ports.is_empty() {
            let _ = writeln!(
                out,
                "    meta skuid {uid} tcp dport {} accept comment \"{} may reach\"",
                set(&ports),
                zone.name()
            );
        }
        let _ = writeln!(
            out,
            "    meta skuid {uid} drop comment \"{} reaches nothing else\"",
            zone.name()
        );
    }
    out.push_str("  }\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            listeners: Plan::standard_listeners(),
            keying: Keying::Address(vec![
                (Zone::Dmz, vec!["10.1.2.0/24".into()]),
                (Zone::Clinical, vec!["10.1.3.0/24".into()]),
                (Zone::Data, vec!["10.1.4.0/24".into()]),
                (Zone::Directory, vec!["10.1.5.0/24".into()]),
            ]),
        }
    }

    #[test]
    fn the_dmz_may_reach_only_cores_internal_port() {
        let ruleset = render(&plan());
        let from_dmz: Vec<&str> = ruleset
            .lines()
            .filter(|l| l.contains("ip saddr 10.1.2.0/24"))
            .collect();
        assert_eq!(
            from_dmz.len(),
            2,
            "one rule in input, one in output: {from_dmz:?}"
        );
        assert!(
            from_dmz
                .iter()
                .all(|l| l.contains("ip daddr 10.1.3.0/24 tcp dport 9443 accept"))
        );
    }

    #[test]
    fn the_internet_reaches_only_the_edge_and_everything_else_is_dropped() {
        let ruleset = render(&plan());
        let from_outside: Vec<&str> = ruleset
            .lines()
            .filter(|l| l.contains("ip saddr != {"))
            .collect();
        assert_eq!(from_outside.len(), 2);
        assert!(from_outside[0].contains(
            "ip saddr != { 10.1.2.0/24, 10.1.3.0/24, 10.1.4.0/24, 10.1.5.0/24 } ip daddr 10.1.2.0/24 tcp dport 8443 accept"
        ));
        assert_eq!(ruleset.matches("policy drop;").count(), 2);
        assert!(!ruleset.contains("10.1.2.0/24 tcp dport 5432"));
    }

    #[test]
    fn the_management_network_without_addresses_gets_no_rule() {
        assert!(!render(&plan()).contains("management ->"));
    }

    #[test]
    fn one_host_keys_on_the_socket_owner() {
        let ruleset = render(&Plan {
            listeners: Plan::standard_listeners(),
            keying: Keying::SocketOwner {
                owners: vec![(Zone::Dmz, 990), (Zone::Clinical, 991)],
                lan: vec!["192.168.0.0/16".into()],
            },
        });
        assert!(
            ruleset.contains("meta skuid 990 tcp dport 9443 accept"),
            "{ruleset}"
        );
        assert!(ruleset.contains("meta skuid 990 drop"));
        assert!(
            ruleset.contains("meta skuid 991 tcp dport { 5432, 7480, 7700, 389, 636, 443 } accept")
        );
        assert!(ruleset.contains("tcp dport 8443 accept"));
        assert!(ruleset.contains("ip saddr 192.168.0.0/16 tcp dport 8080 accept"));
        assert!(ruleset.contains("iifname != \"lo\" tcp dport { 8443, 9443, 8080, 5432"));
    }
}
