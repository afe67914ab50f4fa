//! A throwaway Ceph cluster: one monitor, one OSD on memstore (memory, so nothing touches the
//! disk), no manager, no authentication, and a RADOS gateway (beast) on 127.0.0.1. One cluster
//! per test process, started on first use in about a second; extra gateways can be started on
//! the same cluster for tests that stop one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// S3 credentials of the test user every gateway accepts.
pub const ACCESS_KEY: &str = "KIOREXTESTACCESSKEY1";
pub const SECRET_KEY: &str = "kiorex-test-secret-key-0123456789abcdef";

pub struct Ceph {
    dir: PathBuf,
    conf: PathBuf,
    /// The shared gateway.
    pub gateway: Gateway,
    daemons: Mutex<Vec<Child>>,
}

/// A running radosgw; stopped when dropped.
pub struct Gateway {
    pub port: u16,
    /// Whether it speaks HTTPS (started by [`Ceph::start_tls_gateway`]).
    pub tls: bool,
    child: Mutex<Option<Child>>,
}

static CLUSTER: OnceLock<Ceph> = OnceLock::new();

/// The process's Ceph cluster, started on first use.
pub fn ceph() -> &'static Ceph {
    CLUSTER.get_or_init(|| {
        let ceph = Ceph::start().unwrap_or_else(|e| panic!("cannot start Ceph for the tests: {e}"));
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(stop_cluster) };
        ceph
    })
}

extern "C" fn stop_cluster() {
    if let Some(ceph) = CLUSTER.get() {
        ceph.stop();
    }
}

fn config(dir: &Path, fsid: &str, mon_port: u16) -> String {
    let d = dir.display();
    format!(
        "[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 4294967296
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail warn = 1
mon data avail crit = 0
run dir = {d}/run
log file = {d}/$name.log
admin socket = {d}/run/$name.$pid.asok
mon data = {d}/mon
osd data = {d}/osd
[client]
ms mon client mode = crc secure
rgw crypt require ssl = false
rgw dns name = localhost
rgw data = {d}/rgw
"
    )
}

impl Ceph {
    fn start() -> Result<Ceph, String> {
        let dir =
            std::env::temp_dir().join(format!("kiorex-ceph-{}", uuid::Uuid::new_v4().simple()));
        for sub in ["run", "mon", "osd", "rgw"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        let fsid = uuid::Uuid::new_v4().to_string();
        let mon_port = crate::free_port();
        let conf = dir.join("ceph.conf");
        std::fs::write(&conf, config(&dir, &fsid, mon_port)).map_err(|e| e.to_string())?;
        let monmap = dir.join("monmap");
        run(Command::new("monmaptool")
            .args(["--create", "--fsid", &fsid, "--addv", "a"])
            .arg(format!("[v2:127.0.0.1:{mon_port}]"))
            .arg(&monmap))?;
        run(Command::new("ceph-mon")
            .arg("-c")
            .arg(&conf)
            .args(["--mkfs", "-i", "a", "--monmap"])
            .arg(&monmap))?;
        let mut ceph = Ceph {
            dir: dir.clone(),
            conf: conf.clone(),
            gateway: Gateway {
                port: 0,
                tls: false,
                child: Mutex::new(None),
            },
            daemons: Mutex::new(Vec::new()),
        };
        ceph.spawn(Command::new("ceph-mon").args(["-f", "-i", "a"]))?;
        ceph.admin(&["osd", "create"])?;
        run(Command::new("ceph-osd")
            .arg("-c")
            .arg(&conf)
            .args(["-i", "0", "--mkfs"]))?;
        ceph.spawn(Command::new("ceph-osd").args(["-f", "-i", "0"]))?;
        ceph.gateway = ceph.start_gateway()?;
        run(Command::new("radosgw-admin")
            .arg("-c")
            .arg(&conf)
            .args([
                "-n",
                "client.admin",
                "user",
                "create",
                "--uid",
                "kiorex-test",
            ])
            .args(["--display-name", "Kiorex tests", "--access-key", ACCESS_KEY])
            .args(["--secret-key", SECRET_KEY]))
        .map_err(|e| format!("creating the S3 user: {e}"))?;
        Ok(ceph)
    }

    /// The S3 endpoint of the shared gateway.
    pub fn endpoint(&self) -> String {
        self.gateway.endpoint()
    }

    /// Starts another gateway on the same cluster, for a test that stops it.
    pub fn start_gateway(&self) -> Result<Gateway, String> {
        let port = crate::free_port();
        self.spawn_gateway(port, format!("beast endpoint=127.0.0.1:{port}"), false)
    }

    /// Starts a gateway that speaks only HTTPS, with `certificate` (e.g. from [`crate::pki::Pki`]
    /// for 127.0.0.1), as RGW runs in the data zone.
    pub fn start_tls_gateway(
        &self,
        certificate: &crate::pki::CertFiles,
    ) -> Result<Gateway, String> {
        let port = crate::free_port();
        let frontend = format!(
            "beast ssl_endpoint=127.0.0.1:{port} ssl_certificate={} ssl_private_key={}",
            certificate.cert.display(),
            certificate.key.display()
        );
        self.spawn_gateway(port, frontend, true)
    }

    fn spawn_gateway(&self, port: u16, frontend: String, tls: bool) -> Result<Gateway, String> {
        let child = self
            .command("radosgw")
            .args(["-f", "-n", "client.admin"])
            .arg(format!("--rgw-frontends={frontend}"))
            .spawn()
            .map_err(|e| format!("radosgw: {e} (apt-get install radosgw)"))?;
        let gateway = Gateway {
            port,
            tls,
            child: Mutex::new(Some(child)),
        };
        let ready = || {
            if tls {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                http_ok(port)
            }
        };
        if !crate::wait_until(Duration::from_secs(60), ready) {
            let log =
                std::fs::read_to_string(self.dir.join("client.admin.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            return Err(format!("radosgw on port {port} did not answer:\n{tail}"));
        }
        Ok(gateway)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    fn spawn(&self, command: &mut Command) -> Result<(), String> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut full = self.command(&program);
        full.args(command.get_args());
        let child = full
            .spawn()
            .map_err(|e| format!("{program}: {e} (apt-get install ceph-mon ceph-osd)"))?;
        self.daemons.lock().expect("daemons").push(child);
        Ok(())
    }

    fn admin(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("ceph")
            .arg("-c")
            .arg(&self.conf)
            .args(["--connect-timeout", "30"])
            .args(args)
            .output()
            .map_err(|e| format!("ceph: {e} (apt-get install ceph-common)"))?;
        if !output.status.success() {
            return Err(format!(
                "ceph {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn stop(&self) {
        self.gateway.stop();
        if let Ok(mut daemons) = self.daemons.lock() {
            for child in daemons.iter_mut().rev() {
                stop_child(child);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Gateway {
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the gateway (idempotent).
    pub fn stop(&self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            stop_child(&mut child);
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stop_child(child: &mut Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{:?}: {e}", command.get_program()))?;
    if !output.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// Whether `GET /` on the port answers 200 (anonymous bucket listing).
fn http_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
