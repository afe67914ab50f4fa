//! Receiving an upload: the body is written to a temporary file as it arrives (never held whole
//! in memory), hashed, measured against the size limit, and classified from its first bytes.
//! The scanner and the object store then read the file; it is removed when dropped.

use crate::sniff::{self, DocType, NotAllowed};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// An upload on disk, checked for size and type.
#[derive(Debug)]
pub struct Spooled {
    pub path: tempfile::TempPath,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    pub doc_type: DocType,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// The client's body broke off or could not be read.
    #[error("the upload could not be read: {0}")]
    Body(String),
    /// The spool directory failed (disk full, permissions).
    #[error("the upload could not be written to the spool directory: {0}")]
    Disk(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct Spooler {
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
}

impl Spooler {
    /// Writes `body` to a new temporary file. Refuses as soon as the size passes the limit or
    /// the first bytes show a type that is not allowed, without reading the rest.
    pub async fn spool<S, E>(&self, mut body: S) -> Result<Spooled, SpoolError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp = match &self.dir {
            Some(dir) => tempfile::NamedTempFile::new_in(dir)?,
            None => tempfile::NamedTempFile::new()?,
        };
        let (std_file, path) = temp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut head: Vec<u8> = Vec::with_capacity(sniff::HEAD_LEN);
        let mut doc_type = None;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| SpoolError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(SpoolError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            if doc_type.is_none() {
                let wanted = sniff::HEAD_LEN - head.len();
                head.extend_from_slice(&chunk[..chunk.len().min(wanted)]);
                if head.len() == sniff::HEAD_LEN {
                    doc_type = Some(sniff::detect(&head)?);
                }
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        let doc_type = match doc_type {
            Some(t) => t,
            None => sniff::detect(&head)?,
        };
        file.flush().await?;
        file.sync_data().await?;
        Ok(Spooled {
            path,
            size,
            sha256: hex::encode(hasher.finalize()),
            doc_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn body(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    #[tokio::test]
    async fn a_text_upload_is_hashed_and_measured() {
        let spooler = Spooler {
            dir: None,
            max_bytes: 100,
        };
        let spooled = spooler
            .spool(body(vec![b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(spooled.size, 11);
        assert_eq!(spooled.doc_type, DocType::Text);
        assert_eq!(
            spooled.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(&spooled.path).unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn the_limit_stops_reading() {
        let spooler = Spooler {
            dir: None,
            max_bytes: 8,
        };
        let err = spooler
            .spool(body(vec![b"12345", b"67890"]))
            .await
            .unwrap_err();
        assert!(matches!(err, SpoolError::TooLarge { limit: 8 }));
    }
}
