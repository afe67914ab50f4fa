//! A client for clamd's `INSTREAM` command over TCP: the file is sent in chunks, each prefixed
//! with its length as a 32-bit big-endian number, ended by a zero length; clamd answers
//! `stream: OK` or `stream: <signature> FOUND`. Written here rather than taken from a crate: the
//! protocol is a dozen lines, and the crates for it either block or buffer whole files.

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The name of the signature that matched.
    Infected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// clamd cannot be reached or stopped answering: retry later.
    #[error("the virus scanner is unreachable: {0}")]
    Unavailable(String),
    /// clamd answered with an error (file over its StreamMaxLength, unreadable file).
    #[error("the virus scanner could not scan the file: {0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Clamd {
    address: String,
    timeout: Duration,
}

impl Clamd {
    /// `address` is `host:port` of clamd's TCP socket.
    pub fn new(address: impl Into<String>, timeout: Duration) -> Clamd {
        Clamd {
            address: address.into(),
            timeout,
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether clamd answers `PING` (configtest, readiness).
    pub async fn ping(&self) -> Result<(), ScanError> {
        let reply = self
            .bounded(async {
                let mut stream = self.connect().await?;
                stream.write_all(b"zPING\0").await?;
                read_reply(&mut stream).await
            })
            .await?;
        match reply.as_str() {
            "PONG" => Ok(()),
            other => Err(ScanError::Failed(format!(
                "unexpected answer to PING: {other}"
            ))),
        }
    }

    /// Scans a file, streaming it to clamd.
    pub async fn scan_file(&self, path: &Path) -> Result<Verdict, ScanError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ScanError::Failed(format!("cannot open the spooled upload: {e}")))?;
        let reply = self
            .bounded(async {
                let mut stream = self.connect().await?;
                stream.write_all(b"zINSTREAM\0").await?;
                let mut buffer = vec![0u8; CHUNK];
                loop {
                    let n = file.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&(n as u32).to_be_bytes()).await?;
                    stream.write_all(&buffer[..n]).await?;
                }
                stream.write_all(&0u32.to_be_bytes()).await?;
                read_reply(&mut stream).await
            })
            .await?;
        parse_reply(&reply)
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        TcpStream::connect(&self.address).await
    }

    async fn bounded(
        &self,
        work: impl Future<Output = std::io::Result<String>>,
    ) -> Result<String, ScanError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(ScanError::Unavailable(format!("{}: {e}", self.address))),
            Err(_) => Err(ScanError::Unavailable(format!(
                "{}: no answer within {:?}",
                self.address, self.timeout
            ))),
        }
    }
}

async fn read_reply(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let text = String::from_utf8_lossy(&reply);
    Ok(text.trim_end_matches(['\0', '\n']).to_owned())
}

/// Reads clamd's answer to INSTREAM.
fn parse_reply(reply: &str) -> Result<Verdict, ScanError> {
    let body = reply.strip_prefix("stream: ").unwrap_or(reply);
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = body.strip_suffix(" FOUND") {
        return Ok(Verdict::Infected(signature.to_owned()));
    }
    if reply.is_empty() {
        return Err(ScanError::Unavailable(
            "clamd closed the connection without an answer".into(),
        ));
    }
    Err(ScanError::Failed(reply.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_verdicts() {
        assert_eq!(parse_reply("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_reply("stream: Kiorex.Test.EICAR.UNOFFICIAL FOUND").unwrap(),
            Verdict::Infected("Kiorex.Test.EICAR.UNOFFICIAL".into())
        );
        assert!(matches!(
            parse_reply("INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::Failed(_))
        ));
        assert!(matches!(parse_reply(""), Err(ScanError::Unavailable(_))));
    }
}
