//! The zone table enforced by the generated nftables ruleset, proved by trying: four network
//! namespaces (internet client, edge, clinical, data) on one bridge, listeners on the real
//! ports, a real PostgreSQL in the data namespace, and the ruleset loaded in each namespace.
//! Every namespace, link and address is created here, named after this process, and removed on
//! drop.

mod single_node;

use kiorex_zones::{Keying, Plan, Zone};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates stay there.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }

    fn listen(&self, addr: SocketAddr) -> TcpListener {
        self.run(move || TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
    }

    fn nft(&self, ruleset: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), ruleset).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f"])
            .arg(file.path())
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "nft -f in {}: {}\n{ruleset}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The zones wired to one bridge in a fabric namespace: zone `i` has 10.77.i.2/16 and its
/// networks are 10.77.i.0/24.
struct Zones {
    internet: Netns,
    edge: Netns,
    clinical: Netns,
    data: Netns,
    _fabric: Netns,
}

const ZONES: [(&str, u8); 4] = [("i", 1), ("e", 2), ("c", 3), ("d", 4)];

fn address(index: u8) -> std::net::IpAddr {
    [10, 77, index, 2].into()
}

impl Zones {
    fn build() -> Zones {
        let tag = std::process::id();
        let fabric = Netns::new(format!("kxz{tag}f"));
        ip(&["-n", &fabric.name, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &fabric.name, "link", "set", "br0", "up"]);
        let mut made = ZONES.map(|(short, index)| {
            let ns = Netns::new(format!("kxz{tag}{short}"));
            let port = format!("p{short}");
            ip(&[
                "-n",
                &fabric.name,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns.name,
            ]);
            ip(&[
                "-n",
                &fabric.name,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ]);
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("10.77.{index}.2/16"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
            Some(ns)
        });
        let mut take = |i: usize| made[i].take().unwrap();
        Zones {
            internet: take(0),
            edge: take(1),
            clinical: take(2),
            data: take(3),
            _fabric: fabric,
        }
    }
}

/// Whether a TCP connection from `ns` to `addr` completes within a second.
fn reaches(ns: &Netns, addr: SocketAddr) -> bool {
    ns.run(move || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Tries every (namespace, address) at once and returns what connected.
fn try_all(probes: Vec<(&Netns, SocketAddr)>) -> Vec<bool> {
    std::thread::scope(|s| {
        let handles: Vec<_> = probes
            .into_iter()
            .map(|(ns, addr)| s.spawn(move || reaches(ns, addr)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn the_generated_ruleset_enforces_the_zone_table() {
    let zones = Zones::build();
    let (edge_ip, clinical_ip, data_ip) = (address(2), address(3), address(4));
    let plan = Plan {
        listeners: Plan::standard_listeners(),
        keying: Keying::Address(vec![
            (Zone::Dmz, vec!["10.77.2.0/24".into()]),
            (Zone::Clinical, vec!["10.77.3.0/24".into()]),
            (Zone::Data, vec!["10.77.4.0/24".into()]),
            // The directory and identity provider listen in the data namespace in this test.
            (Zone::Directory, vec!["10.77.4.0/24".into()]),
        ]),
    };
    let port =
        |s: kiorex_zones::Service| plan.listeners.iter().find(|l| l.service == s).unwrap().port;
    use kiorex_zones::Service::*;
    let at = |ip: std::net::IpAddr, p: u16| SocketAddr::new(ip, p);
    let _listeners = [
        zones.edge.listen(at(edge_ip, port(EdgeTls))),
        zones.clinical.listen(at(clinical_ip, port(CoreInternal))),
        zones.clinical.listen(at(clinical_ip, port(CoreLan))),
        zones.data.listen(at(data_ip, port(Rgw))),
        zones.data.listen(at(data_ip, port(Meilisearch))),
        zones.data.listen(at(data_ip, port(Ldap))),
        zones.data.listen(at(data_ip, port(Ldaps))),
        zones.data.listen(at(data_ip, port(Oidc))),
    ];
    let pg_port = port(Postgres);
    let postgres = zones.data.run(move || {
        kiorex_testkit::Postgres::start_on(pg_port, &format!("127.0.0.1,{data_ip}"))
            .expect("PostgreSQL in the data namespace")
    });
    let database = at(data_ip, pg_port);

    // Before the ruleset, everything is reachable: what fails later fails because of it.
    assert_eq!(
        try_all(vec![
            (&zones.edge, database),
            (&zones.internet, at(clinical_ip, port(CoreLan)))
        ]),
        [true, true]
    );

    let ruleset = kiorex_zones::render(&plan);
    for ns in [&zones.internet, &zones.edge, &zones.clinical, &zones.data] {
        ns.nft(&ruleset);
    }

    let expectations = [
        (
            &zones.internet,
            at(edge_ip, port(EdgeTls)),
            true,
            "internet -> edge TLS",
        ),
        (
            &zones.internet,
            at(clinical_ip, port(CoreInternal)),
            false,
            "internet -> core internal",
        ),
        (
            &zones.internet,
            at(clinical_ip, port(CoreLan)),
            false,
            "internet -> core LAN",
        ),
        (&zones.internet, database, false, "internet -> PostgreSQL"),
        (
            &zones.edge,
            at(clinical_ip, port(CoreInternal)),
            true,
            "edge -> core internal",
        ),
        (
            &zones.edge,
            at(clinical_ip, port(CoreLan)),
            false,
            "edge -> core LAN",
        ),
        (&zones.edge, database, false, "edge -> PostgreSQL"),
        (&zones.edge, at(data_ip, port(Rgw)), false, "edge -> RGW"),
        (
            &zones.edge,
            at(data_ip, port(Meilisearch)),
            false,
            "edge -> Meilisearch",
        ),
        (&zones.edge, at(data_ip, port(Ldap)), false, "edge -> LDAP"),
        (
            &zones.edge,
            at(data_ip, port(Ldaps)),
            false,
            "edge -> LDAPS",
        ),
        (&zones.edge, at(data_ip, port(Oidc)), false, "edge -> OIDC"),
        (&zones.clinical, database, true, "core -> PostgreSQL"),
        (&zones.clinical, at(data_ip, port(Rgw)), true, "core -> RGW"),
        (
            &zones.clinical,
            at(data_ip, port(Ldap)),
            true,
            "core -> LDAP",
        ),
        (
            &zones.clinical,
            at(data_ip, port(Oidc)),
            true,
            "core -> OIDC",
        ),
        (
            &zones.clinical,
            at(edge_ip, port(EdgeTls)),
            false,
            "core -> DMZ",
        ),
        (
            &zones.data,
            at(clinical_ip, port(CoreLan)),
            false,
            "data -> core",
        ),
    ];
    let results = try_all(
        expectations
            .iter()
            .map(|(ns, addr, _, _)| (*ns, *addr))
            .collect(),
    );
    let wrong: Vec<String> = expectations
        .iter()
        .zip(&results)
        .filter(|((_, _, expected, _), got)| *expected != **got)
        .map(|((_, _, expected, what), _)| {
            format!(
                "{what}: expected {}",
                if *expected { "reachable" } else { "blocked" }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{ruleset}");

    // Core speaks the PostgreSQL protocol with the real server through the ruleset: the server
    // itself answers (the test cluster trusts only loopback, so it answers with its pg_hba
    // refusal, a message only PostgreSQL sends).
    let url = format!("postgres://kiorex@{data_ip}:{pg_port}/postgres");
    let answer = zones.clinical.run(move || {
        kiorex_store::connect_once(&url)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    assert!(
        answer.as_ref().is_ok_and(|()| true)
            || answer.as_ref().is_err_and(|e| e.contains("pg_hba.conf")),
        "PostgreSQL did not answer core: {answer:?}"
    );
    drop(postgres);

    // The single-node form (keyed by socket owner, what `kiorexctl up` writes) loads too.
    let single_node = kiorex_zones::render(&Plan {
        listeners: Plan::standard_listeners(),
        keying: Keying::SocketOwner {
            owners: vec![(Zone::Dmz, 65_533), (Zone::Clinical, 65_532)],
            lan: vec!["192.168.0.0/16".into()],
        },
    });
    zones.internet.nft(&single_node);
}
