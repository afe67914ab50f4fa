//! `kiorexctl preflight`: is this host ready for a Kiorex node? Every check reads the machine
//! directly (/proc, /sys, statvfs, sockets), needs no extra tools, changes nothing, and says what
//! to do when it does not pass.

use crate::Output;
use crate::failure::{exit, fail};
use crate::site::SiteConfig;
use anyhow::Result;
use serde::Serialize;
use std::io::Write;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct PreflightArgs {
    /// The site config written by `kiorexctl init`; with it, preflight also checks DNS of the
    /// portal names and reaches the directory, IdP, Ceph RGW and SMTP relay.
    #[arg(long)]
    site: Option<PathBuf>,
    /// The disk that will hold Kubernetes, PostgreSQL and Ceph data (free space and fsync latency
    /// are measured here).
    #[arg(long, default_value = "/var/lib")]
    data_dir: PathBuf,
    /// Check the ports of a k3s server node (6443, 10250, 2379, 2380, 80, 443). Pass
    /// --no-ports on a host that already runs k3s.
    #[arg(long)]
    no_ports: bool,
    /// Seconds to wait for each network service.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    /// Stable identifier for scripts, e.g. `memory`, `module.br_netfilter`.
    pub id: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do; empty when the check passed.
    pub fix: String,
}

fn check(id: impl Into<String>, status: Status, detail: impl Into<String>, fix: &str) -> Check {
    Check {
        id: id.into(),
        status,
        detail: detail.into(),
        fix: if status == Status::Pass {
            String::new()
        } else {
            fix.to_owned()
        },
    }
}

pub fn run(args: PreflightArgs) -> Result<()> {
    let site = args.site.as_deref().map(SiteConfig::load).transpose()?;
    let checks = all_checks(&args, site.as_ref());
    let worst = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Pass);
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"result": worst, "checks": checks}))?
        ),
        Output::Text => print_table(&checks),
    }
    if worst == Status::Fail {
        let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
        return Err(fail(
            "KX-CTL-020",
            exit::CHECK_FAILED,
            format!("{failed} preflight check(s) failed; fix them and run preflight again"),
        ));
    }
    Ok(())
}

fn print_table(checks: &[Check]) {
    for c in checks {
        let mark = match c.status {
            Status::Pass => "pass",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("{mark:<5} {:<28} {}", c.id, c.detail);
        if !c.fix.is_empty() {
            println!("      {:<28} → {}", "", c.fix);
        }
    }
}

fn all_checks(args: &PreflightArgs, site: Option<&SiteConfig>) -> Vec<Check> {
    let bar = crate::progress::spinner(args.output == Output::Text, "checking this host");
    let mut checks = vec![cpu(), memory()];
    checks.extend(disk(&args.data_dir));
    bar.set_message("measuring fsync latency of the data disk");
    checks.push(fsync_latency(&args.data_dir));
    checks.push(kernel());
    checks.extend(modules());
    checks.extend(sysctls());
    checks.push(time_sync());
    checks.push(default_route());
    if !args.no_ports {
        checks.extend(free_ports());
    }
    bar.set_message("reaching the site's services");
    checks.extend(site_checks(site, Duration::from_secs(args.timeout)));
    bar.finish_and_clear();
    checks
}

/// `kiorex-site` in a k3s cluster of one server needs 4 cores; 2 run a demo.
fn cpu() -> Check {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let status = grade(cores as f64, 4.0, 2.0);
    check(
        "cpu",
        status,
        format!("{cores} cores (4 recommended, 2 minimum)"),
        "give the node more CPU cores; below 2 k3s, PostgreSQL and Kiorex starve each other",
    )
}

fn memory() -> Check {
    let kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let gib = kib as f64 / 1024.0 / 1024.0;
    check(
        "memory",
        grade(gib, 15.5, 7.5),
        format!("{gib:.1} GiB (16 GiB recommended, 8 GiB minimum)"),
        "add memory: PostgreSQL, Meilisearch and the Kiorex roles need 8 GiB at least",
    )
}

/// Pass at `good` or more, warn at `minimum` or more, fail below.
fn grade(value: f64, good: f64, minimum: f64) -> Status {
    if value >= good {
        Status::Pass
    } else if value >= minimum {
        Status::Warn
    } else {
        Status::Fail
    }
}

fn disk(dir: &Path) -> Vec<Check> {
    let Some((size, free)) = statvfs(existing_ancestor(dir)) else {
        return vec![check(
            "disk",
            Status::Fail,
            format!("cannot read the file system of {}", dir.display()),
            "pass --data-dir with the mount point of the data disk",
        )];
    };
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let free_share = if size == 0 {
        0.0
    } else {
        free as f64 / size as f64
    };
    vec![
        check(
            "disk.size",
            grade(gib(size), 200.0, 50.0),
            format!(
                "{:.0} GiB at {} (200 GiB recommended, 50 GiB minimum)",
                gib(size),
                dir.display()
            ),
            "put the data directory on a larger disk (records, WAL and images grow)",
        ),
        check(
            "disk.free",
            if free_share < 0.10 || gib(free) < 20.0 {
                Status::Fail
            } else if free_share < 0.25 {
                Status::Warn
            } else {
                Status::Pass
            },
            format!("{:.0} GiB free ({:.0} %)", gib(free), free_share * 100.0),
            "free space: k3s evicts pods below 10 % free (see docs/ops/runbooks.md, disk full)",
        ),
    ]
}

fn existing_ancestor(dir: &Path) -> &Path {
    dir.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
}

/// (size, available to unprivileged users) in bytes.
pub fn statvfs(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// etcd (k3s's datastore) and PostgreSQL commit with fdatasync; the etcd project asks for a 99th
/// percentile under 10 ms. 50 small writes measure it in well under a second on a good disk.
fn fsync_latency(dir: &Path) -> Check {
    let fix = "move the data directory to an SSD or a controller with a battery-backed cache; \
               slow fsync makes k3s lose leadership and PostgreSQL commits slow";
    match measure_fsync(existing_ancestor(dir), 50) {
        Ok(mut samples) => {
            samples.sort();
            let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
            let ms = p99.as_secs_f64() * 1000.0;
            check(
                "disk.fsync",
                if ms < 10.0 {
                    Status::Pass
                } else if ms < 50.0 {
                    Status::Warn
                } else {
                    Status::Fail
                },
                format!(
                    "fdatasync p99 {ms:.2} ms over {} writes (under 10 ms needed)",
                    samples.len()
                ),
                fix,
            )
        }
        Err(e) => check(
            "disk.fsync",
            Status::Fail,
            format!("cannot write a test file in {}: {e}", dir.display()),
            "run preflight as a user who may write the data directory",
        ),
    }
}

fn measure_fsync(dir: &Path, writes: usize) -> std::io::Result<Vec<Duration>> {
    let file = tempfile_in(dir)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(&file.0)?;
    let block = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(writes);
    for _ in 0..writes {
        f.write_all(&block)?;
        let t = Instant::now();
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<TempFile> {
    let path = dir.join(format!(".kiorexctl-preflight-{}", std::process::id()));
    std::fs::File::create(&path)?;
    Ok(TempFile(path))
}

fn kernel() -> Check {
    let release = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    check(
        "kernel",
        if version >= (5, 4) {
            Status::Pass
        } else {
            Status::Fail
        },
        format!("Linux {release} (5.4 or newer needed)"),
        "upgrade the kernel: k3s and Ceph's rbd need 5.4 or newer",
    )
}

fn modules() -> Vec<Check> {
    let release = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let loaded = read("/proc/modules");
    let builtin = read(&format!("/lib/modules/{release}/modules.builtin"));
    let available = read(&format!("/lib/modules/{release}/modules.dep"));
    [
        ("br_netfilter", "k3s NetworkPolicies on bridged pod traffic"),
        ("overlay", "the containerd overlay snapshotter"),
        ("rbd", "Ceph block devices"),
    ]
    .into_iter()
    .map(|(name, why)| {
        let status = module_status(name, &loaded, &builtin, &available);
        check(
            format!("module.{name}"),
            status.0,
            format!("{name}: {} (needed for {why})", status.1),
            &format!(
                "run `modprobe {name}` and add it to /etc/modules-load.d/kiorex.conf \
                 (the Ansible hardening role does this)"
            ),
        )
    })
    .collect()
}

/// A module can be loaded (pass), exists on disk but is not loaded (warn), or is missing (fail).
fn module_status(
    name: &str,
    loaded: &str,
    builtin: &str,
    available: &str,
) -> (Status, &'static str) {
    let file = format!("/{name}.ko");
    if loaded
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
        || Path::new(&format!("/sys/module/{name}")).exists()
    {
        (Status::Pass, "loaded")
    } else if builtin.lines().any(|l| l.ends_with(&file)) {
        (Status::Pass, "built into the kernel")
    } else if available.lines().any(|l| {
        l.split(':')
            .next()
            .is_some_and(|m| m.ends_with(&file) || m.contains(&format!("{file}.")))
    }) {
        (Status::Warn, "available but not loaded")
    } else {
        (Status::Fail, "not available in this kernel")
    }
}

/// The values k3s's `protect-kernel-defaults: true` (CIS) requires: the kubelet refuses to start
/// when they differ, so a mismatch fails.
pub const KUBELET_SYSCTLS: &[(&str, &str)] = &[
    ("vm.overcommit_memory", "1"),
    ("vm.panic_on_oom", "0"),
    ("kernel.panic", "10"),
    ("kernel.panic_on_oops", "1"),
    ("kernel.keys.root_maxkeys", "1000000"),
    ("kernel.keys.root_maxbytes", "25000000"),
];

fn sysctls() -> Vec<Check> {
    let mut out: Vec<Check> = KUBELET_SYSCTLS
        .iter()
        .map(|(key, want)| {
            let have = sysctl(key);
            check(
                format!("sysctl.{key}"),
                if have.as_deref() == Some(want) {
                    Status::Pass
                } else {
                    Status::Fail
                },
                format!(
                    "{key} = {} (k3s with protect-kernel-defaults needs {want})",
                    have.as_deref().unwrap_or("unreadable")
                ),
                &format!(
                    "set `{key} = {want}` in /etc/sysctl.d/90-kiorex.conf and run `sysctl --system`"
                ),
            )
        })
        .collect();
    for (key, want, why) in [
        (
            "net.ipv4.ip_forward",
            "1",
            "pods reach each other through the node",
        ),
        (
            "net.bridge.bridge-nf-call-iptables",
            "1",
            "NetworkPolicies see bridged traffic",
        ),
    ] {
        let have = sysctl(key);
        out.push(check(
            format!("sysctl.{key}"),
            if have.as_deref() == Some(want) { Status::Pass } else { Status::Warn },
            format!("{key} = {} ({why}; k3s sets it when it starts)", have.as_deref().unwrap_or("absent")),
            &format!("set `{key} = {want}` in /etc/sysctl.d/90-kiorex.conf (needs br_netfilter for the bridge key)"),
        ));
    }
    out
}

fn sysctl(key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
        .ok()
        .map(|v| v.trim().to_owned())
}

/// Asks the kernel (adjtimex) whether the clock is synchronised; no dependency on which NTP
/// daemon the site uses. Certificates, tokens and the audit chain all need a correct clock.
fn time_sync() -> Check {
    // SAFETY: a zeroed timex with modes = 0 only reads the kernel's state.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: tx is a valid, writable timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    let unsynced = state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0;
    check(
        "time.sync",
        if unsynced { Status::Fail } else { Status::Pass },
        if unsynced {
            "the kernel reports the clock as not synchronised".to_owned()
        } else {
            format!("clock synchronised (estimated error {} µs)", tx.esterror)
        },
        "configure chrony or systemd-timesyncd with the hospital's NTP servers (air-gapped: a local NTP server)",
    )
}

/// k3s needs a default route even on an air-gapped network: it picks the node address from it.
fn default_route() -> Check {
    let v4 = read("/proc/net/route")
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some("00000000"));
    let v6 = read("/proc/net/ipv6_route")
        .lines()
        .any(|l| l.starts_with("00000000000000000000000000000000 00"));
    check(
        "network.default_route",
        if v4 || v6 { Status::Pass } else { Status::Fail },
        if v4 || v6 {
            format!(
                "default route present ({})",
                if v4 { "IPv4" } else { "IPv6" }
            )
        } else {
            "no default route".to_owned()
        },
        "add a default route (a blackhole route is enough when air-gapped): \
         `ip route add blackhole default` or your gateway",
    )
}

/// Ports a k3s server node listens on (TCP).
pub const NODE_PORTS: &[(u16, &str)] = &[
    (6443, "Kubernetes API"),
    (10250, "kubelet"),
    (2379, "etcd client"),
    (2380, "etcd peer"),
    (80, "ingress HTTP"),
    (443, "ingress HTTPS"),
];

fn free_ports() -> Vec<Check> {
    NODE_PORTS
        .iter()
        .map(|(port, what)| {
            let result = TcpListener::bind(("0.0.0.0", *port));
            let (status, detail) = match result {
                Ok(_) => (Status::Pass, format!("{port} ({what}) is free")),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    (Status::Fail, format!("{port} ({what}) is in use"))
                }
                // Not root: cannot bind below 1024, which says nothing about the port.
                Err(e) => (Status::Warn, format!("{port} ({what}) not checked: {e}")),
            };
            check(
                format!("port.{port}"),
                status,
                detail,
                "stop the program listening there (`ss -ltnp 'sport = :PORT'`) or run preflight as root",
            )
        })
        .collect()
}

fn site_checks(site: Option<&SiteConfig>, timeout: Duration) -> Vec<Check> {
    let Some(site) = site else {
        return vec![check(
            "site",
            Status::Warn,
            "no --site given: DNS names and the directory, IdP, Ceph and SMTP were not checked",
            "run `kiorexctl init`, then `kiorexctl preflight --site kiorex-site.toml`",
        )];
    };
    let mut out = Vec::new();
    for (key, host) in [("lan", &site.portals.lan), ("dmz", &site.portals.dmz)] {
        out.push(dns(&format!("dns.portal_{key}"), host, 443));
    }
    for e in site.endpoints() {
        out.push(reach(&e, timeout));
    }
    out
}

fn dns(id: &str, host: &str, port: u16) -> Check {
    let resolved: Vec<String> = (host, port)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip().to_string()).collect())
        .unwrap_or_default();
    check(
        id,
        if resolved.is_empty() {
            Status::Fail
        } else {
            Status::Pass
        },
        if resolved.is_empty() {
            format!("{host} does not resolve")
        } else {
            format!("{host} → {}", resolved.join(", "))
        },
        "add the name to the hospital DNS (or /etc/hosts on every node) before installing",
    )
}

/// TCP reachability, and for TLS services that something answers a TLS ClientHello.
fn reach(e: &crate::site::Endpoint, timeout: Duration) -> Check {
    let id = format!("reach.{}", e.what);
    let fix = format!(
        "check the firewall between this node and {}:{} (see docs/ops/zones.md) and that the service runs",
        e.host, e.port
    );
    let addrs: Vec<_> = (e.host.as_str(), e.port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    if addrs.is_empty() {
        return check(
            id,
            Status::Fail,
            format!("{} does not resolve", e.host),
            &fix,
        );
    }
    let started = Instant::now();
    // A name may resolve to several addresses (IPv6 and IPv4): the first that answers counts.
    let mut connected = Err(std::io::Error::other("no address"));
    for addr in &addrs {
        connected = TcpStream::connect_timeout(addr, timeout);
        if connected.is_ok() {
            break;
        }
    }
    match connected {
        Err(err) => check(
            id,
            Status::Fail,
            format!("{}:{} unreachable: {err}", e.host, e.port),
            &fix,
        ),
        Ok(stream) => {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if !e.tls {
                return check(
                    id,
                    Status::Pass,
                    format!("{}:{} reachable in {ms:.1} ms", e.host, e.port),
                    &fix,
                );
            }
            match crate::tlsprobe::handshake(stream, &e.host, timeout) {
                Ok(summary) => check(
                    id,
                    Status::Pass,
                    format!(
                        "{}:{} reachable in {ms:.1} ms, TLS: {summary}",
                        e.host, e.port
                    ),
                    &fix,
                ),
                Err(err) => check(
                    id,
                    Status::Fail,
                    format!("{}:{} reachable but TLS failed: {err}", e.host, e.port),
                    "check that the service speaks TLS on this port and its certificate is valid",
                ),
            }
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grading_has_three_bands() {
        assert_eq!(grade(4.0, 4.0, 2.0), Status::Pass);
        assert_eq!(grade(3.0, 4.0, 2.0), Status::Warn);
        assert_eq!(grade(1.0, 4.0, 2.0), Status::Fail);
    }

    #[test]
    fn modules_are_found_loaded_builtin_or_on_disk() {
        let loaded = "overlay 151552 0 - Live 0x0\n";
        let builtin = "kernel/net/bridge/br_netfilter.ko\n";
        let dep = "kernel/drivers/block/rbd.ko.zst: kernel/net/ceph/libceph.ko.zst\n";
        assert_eq!(
            module_status("overlay", loaded, builtin, dep).0,
            Status::Pass
        );
        assert_eq!(
            module_status("br_netfilter", "", builtin, dep).0,
            Status::Pass
        );
        assert_eq!(module_status("rbd", "", "", dep).0, Status::Warn);
        assert_eq!(module_status("zzz_missing", "", "", dep).0, Status::Fail);
    }

    #[test]
    fn a_passing_check_has_no_fix() {
        assert!(check("x", Status::Pass, "ok", "do this").fix.is_empty());
        assert_eq!(check("x", Status::Warn, "hm", "do this").fix, "do this");
    }
}
