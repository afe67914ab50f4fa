//! A throwaway clamd on a TCP port of 127.0.0.1, with a one-signature database: the EICAR test
//! pattern as an `.ndb` body signature, which matches anywhere in a file (inside a PDF too).
//! One per test process; ready in well under a second.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The EICAR anti-virus test file: harmless, and detected as a virus by design.
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub struct ClamAv {
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

static SCANNER: OnceLock<ClamAv> = OnceLock::new();

/// The process's clamd, started on first use.
pub fn clamav() -> &'static ClamAv {
    SCANNER.get_or_init(|| {
        let clamav =
            ClamAv::start().unwrap_or_else(|e| panic!("cannot start clamd for the tests: {e}"));
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(stop_scanner) };
        clamav
    })
}

extern "C" fn stop_scanner() {
    if let Some(clamav) = SCANNER.get() {
        clamav.stop();
    }
}

impl ClamAv {
    fn start() -> Result<ClamAv, String> {
        ClamAv::start_on(crate::free_port())
    }

    /// A clamd of the test's own on `port` (for a test that starts the scanner late, where
    /// uploads were sent while nothing listened there); stopped when dropped.
    pub fn start_on(port: u16) -> Result<ClamAv, String> {
        let dir =
            std::env::temp_dir().join(format!("kiorex-clamd-{}", uuid::Uuid::new_v4().simple()));
        let db = dir.join("db");
        std::fs::create_dir_all(&db).map_err(|e| e.to_string())?;
        let signature = format!("Kiorex.Test.EICAR:0:*:{}\n", hex(EICAR.as_bytes()));
        std::fs::write(db.join("kiorex-test.ndb"), signature).map_err(|e| e.to_string())?;
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "DatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nForeground yes\n\
                 LogFile {}\nStreamMaxLength 300M\nMaxFileSize 300M\nMaxScanSize 300M\n",
                db.display(),
                dir.join("clamd.log").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new("clamd")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("clamd: {e} (apt-get install clamav-daemon)"))?;
        let clamav = ClamAv {
            port,
            dir,
            child: Mutex::new(Some(child)),
        };
        if !crate::wait_until(Duration::from_secs(60), || clamav.pong()) {
            let log = std::fs::read_to_string(clamav.dir.join("clamd.log")).unwrap_or_default();
            clamav.stop();
            return Err(format!("clamd did not answer PING:\n{log}"));
        }
        Ok(clamav)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pong(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = Vec::new();
        stream.write_all(b"zPING\0").is_ok()
            && stream.read_to_end(&mut reply).is_ok()
            && reply.starts_with(b"PONG")
    }

    fn stop(&self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ClamAv {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
