//! `kiorexctl support-bundle`: one archive to send to support: logs, status, preflight, the site
//! config and versions, with every secret removed. Secrets are removed by value (every secret
//! file of the data and site directories, the database password, private keys) and by shape
//! (`password=`, PEM private key blocks), so a secret that leaked into a log line is caught too.
//! Patient data is never in the logs (the audit log holds it), and the audit log is not included.

use crate::Output;
use crate::single_node::Layout;
use anyhow::Result;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SupportArgs {
    /// The single-node data directory (its logs/ are included; secrets/ never).
    #[arg(long, default_value = ".kiorex")]
    data_dir: PathBuf,
    /// The site directory from `kiorexctl init` (its kiorex-site.toml is included; pki keys and
    /// secrets never).
    #[arg(long)]
    site_dir: Option<PathBuf>,
    /// The archive to write (mode 0600).
    #[arg(long, default_value = "kiorex-support.tar.gz")]
    out: PathBuf,
    /// At most this many bytes from the end of each log.
    #[arg(long, default_value_t = 5 << 20)]
    max_log_bytes: u64,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

const REDACTED: &str = "[REDACTED]";

pub fn run(args: SupportArgs) -> Result<()> {
    let secrets = known_secrets(&args.data_dir, args.site_dir.as_deref());
    let mut files: Vec<(String, String)> = Vec::new();
    let me = std::env::current_exe()?;
    let run_self = |a: &[&str]| {
        std::process::Command::new(&me)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let data = args.data_dir.to_string_lossy().into_owned();
    let mut status_args = vec!["status", "--output", "json", "--data-dir", &data];
    let site = args
        .site_dir
        .as_ref()
        .map(|d| d.to_string_lossy().into_owned());
    if let Some(s) = &site {
        status_args.extend(["--site-dir", s]);
    }
    files.push(("status.json".into(), run_self(&status_args)));
    files.push((
        "preflight.json".into(),
        run_self(&[
            "preflight",
            "--output",
            "json",
            "--no-ports",
            "--data-dir",
            &data,
        ]),
    ));
    files.push((
        "versions.txt".into(),
        format!(
            "kiorexctl {}\nkernel {}",
            env!("CARGO_PKG_VERSION"),
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
        ),
    ));
    if let Some(dir) = &args.site_dir
        && let Ok(text) = std::fs::read_to_string(dir.join(crate::site::FILE_NAME))
    {
        files.push((format!("site/{}", crate::site::FILE_NAME), text));
    }
    for log in logs(&args.data_dir) {
        let name = format!(
            "logs/{}",
            log.file_name().unwrap_or_default().to_string_lossy()
        );
        files.push((name, tail(&log, args.max_log_bytes)?));
    }
    let mut redactions = 0;
    let files: Vec<(String, String)> = files
        .into_iter()
        .map(|(n, text)| {
            let (clean, count) = redact(&text, &secrets);
            redactions += count;
            (n, clean)
        })
        .collect();
    write_archive(&args.out, &files)?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"out": args.out, "files": files.iter().map(|f| &f.0).collect::<Vec<_>>(), "redactions": redactions})
        ),
        Output::Text => println!(
            "wrote {} ({} files, {redactions} secret values removed); check it before sending",
            args.out.display(),
            files.len()
        ),
    }
    Ok(())
}

/// The values of every secret this host holds, longest first (so a value containing another is
/// replaced whole).
fn known_secrets(data_dir: &Path, site_dir: Option<&Path>) -> Vec<String> {
    let mut dirs = vec![data_dir.join("secrets")];
    if let Some(s) = site_dir {
        dirs.push(s.join("secrets"));
        dirs.push(s.join("pki"));
    }
    let mut out = Vec::new();
    for dir in dirs {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "crt") {
                continue; // certificates are public
            }
            if let Ok(v) = std::fs::read_to_string(&p) {
                out.extend(
                    v.lines()
                        .map(str::trim)
                        .filter(|l| l.len() >= 8 && !l.starts_with("-----"))
                        .map(str::to_owned),
                );
                out.push(v.trim().to_owned());
            }
        }
    }
    if let Ok(layout) = Layout::new(data_dir)
        && let Ok(p) = layout.database_password()
    {
        out.push(p);
    }
    out.retain(|s| s.len() >= 8);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Removes known secret values and secret-shaped text; returns the text and how many were removed.
pub fn redact(text: &str, secrets: &[String]) -> (String, usize) {
    let mut out = text.to_owned();
    let mut count = 0;
    for s in secrets {
        count += out.matches(s.as_str()).count();
        out = out.replace(s.as_str(), REDACTED);
    }
    let mut lines = Vec::new();
    let mut in_key = false;
    for line in out.lines() {
        if line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") {
            in_key = true;
            count += 1;
            lines.push(REDACTED.to_owned());
            continue;
        }
        if in_key {
            in_key = !(line.contains("-----END") && line.contains("PRIVATE KEY-----"));
            continue;
        }
        let (clean, n) = redact_assignments(line);
        count += n;
        lines.push(clean);
    }
    (lines.join("\n"), count)
}

/// `password=...`, `secret: ...`, `token ...=` and `postgres://user:pass@` forms.
fn redact_assignments(line: &str) -> (String, usize) {
    let lower = line.to_ascii_lowercase();
    let mut count = 0;
    let mut out = line.to_owned();
    if let (Some(scheme), Some(at)) = (lower.find("://"), lower.find('@'))
        && let Some(colon) = lower[scheme + 3..at].find(':').map(|c| c + scheme + 3)
    {
        out = format!("{}{REDACTED}{}", &line[..=colon], &line[at..]);
        count += 1;
    }
    for key in [
        "password",
        "passwd",
        "secret",
        "token",
        "master_key",
        "access_key",
    ] {
        if let Some(i) = out.to_ascii_lowercase().find(key) {
            let rest = &out[i + key.len()..];
            let Some(sep) = rest.find(['=', ':']) else {
                continue;
            };
            if rest[..sep]
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"')
            {
                let value_start = i + key.len() + sep + 1;
                if out[value_start..].trim().is_empty() || out[value_start..].trim() == REDACTED {
                    continue;
                }
                out = format!("{} {REDACTED}", &out[..value_start]);
                count += 1;
            }
        }
    }
    (out, count)
}

fn logs(data_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(data_dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn tail(path: &Path, max: u64) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn write_archive(out: &Path, files: &[(String, String)]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(time::OffsetDateTime::now_utc().unix_timestamp() as u64);
        tar.append_data(&mut h, format!("kiorex-support/{name}"), text.as_bytes())?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_shapes_are_removed_and_other_text_kept() {
        let text = "start\nurl postgres://kiorex:hunter2hunter@localhost/kiorex\nmaster_key = \"abc\"\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\nvalue XYZSECRET99 here\nend";
        let (clean, n) = redact(text, &["XYZSECRET99".to_owned()]);
        for gone in ["hunter2hunter", "abc", "AAAA", "XYZSECRET99"] {
            assert!(!clean.contains(gone), "{gone} in {clean}");
        }
        assert!(clean.contains("start") && clean.contains("end") && clean.contains("here"));
        assert_eq!(n, 4);
    }
}
