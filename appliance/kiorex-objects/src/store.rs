//! The S3 side (Ceph RGW through rust-s3): put, ranged get, list, delete. Objects arrive here
//! already sealed ([`crate::cipher`]); see docs/adr/0005-document-encryption.md for why the
//! encryption is done by Kiorex rather than by RGW (SSE-C).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::request::Request;
use s3::{Bucket, BucketConfiguration, Region};
use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;

/// Where the object store is and how to sign in to it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    pub quarantine_bucket: String,
}

/// Which bucket an object goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shelf {
    Documents,
    /// Infected uploads, kept for the security team, never served to clinicians.
    Quarantine,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object store cannot be reached or answered 5xx: retry later.
    #[error("the object store is unavailable: {0}")]
    Unavailable(String),
    #[error("the object does not exist")]
    NotFound,
    /// A 4xx other than 404: a configuration problem (credentials, bucket, key).
    #[error("the object store refused the request: {0}")]
    Refused(String),
    /// The TLS handshake with the object store failed, most often because its certificate is
    /// not signed by a trusted CA: a configuration problem, not an outage.
    #[error(
        "TLS to the object store failed: {0}; set objects.ca_bundle to the PEM file of the CA that signed the gateway's certificate"
    )]
    Tls(String),
}

impl From<S3Error> for ObjectError {
    fn from(e: S3Error) -> Self {
        match e {
            S3Error::HttpFailWithBody(404, _) => ObjectError::NotFound,
            S3Error::HttpFailWithBody(status, body) if (400..500).contains(&status) => {
                ObjectError::Refused(format!("HTTP {status}: {}", error_code(&body)))
            }
            S3Error::Reqwest(e) => {
                let chain = error_chain(&e);
                if is_tls_failure(&chain) {
                    ObjectError::Tls(chain)
                } else {
                    ObjectError::Unavailable(chain)
                }
            }
            other => ObjectError::Unavailable(other.to_string()),
        }
    }
}

/// An error with its causes: reqwest's own message only says "error sending request"; the
/// cause (refused connection, untrusted certificate) is further down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether the failure was the TLS handshake (rustls' certificate and alert errors).
fn is_tls_failure(chain: &str) -> bool {
    [
        "certificate",
        "UnknownIssuer",
        "handshake",
        "peer sent no certificates",
    ]
    .iter()
    .any(|needle| chain.contains(needle))
}

/// The `<Code>` of an S3 error document (the rest may echo request details).
fn error_code(body: &str) -> &str {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("no error code", |(code, _)| code)
}

/// One object as listed (for the orphan sweep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// RFC 3339, as S3 lists it.
    pub last_modified: String,
    pub size: u64,
}

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

#[derive(Clone)]
pub struct ObjectStore {
    documents: Box<Bucket>,
    quarantine: Box<Bucket>,
    region: Region,
    credentials: Credentials,
    path_style: bool,
}

impl ObjectStore {
    pub fn new(settings: &S3Settings) -> Result<ObjectStore, ObjectError> {
        let region = Region::Custom {
            region: settings.region.clone(),
            endpoint: settings.endpoint.trim_end_matches('/').to_owned(),
        };
        let credentials = Credentials::new(
            Some(&settings.access_key),
            Some(&settings.secret_key),
            None,
            None,
            None,
        )
        .map_err(|e| ObjectError::Refused(format!("credentials: {e}")))?;
        let bucket = |name: &str| -> Result<Box<Bucket>, ObjectError> {
            let bucket = Bucket::new(name, region.clone(), credentials.clone())?;
            Ok(if settings.path_style {
                bucket.with_path_style()
            } else {
                bucket
            })
        };
        Ok(ObjectStore {
            documents: bucket(&settings.bucket)?,
            quarantine: bucket(&settings.quarantine_bucket)?,
            region,
            credentials,
            path_style: settings.path_style,
        })
    }

    fn bucket(&self, shelf: Shelf) -> &Bucket {
        match shelf {
            Shelf::Documents => &self.documents,
            Shelf::Quarantine => &self.quarantine,
        }
    }

    /// The bucket names, for messages.
    pub fn bucket_name(&self, shelf: Shelf) -> String {
        self.bucket(shelf).name()
    }

    /// Uploads a file, with `metadata` as `x-amz-meta-*`. Files past 8 MiB go up as a multipart
    /// upload of 8 MiB parts, two at a time, so memory stays bounded whatever the file's size.
    pub async fn put_file(
        &self,
        shelf: Shelf,
        object_key: &str,
        file: &Path,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), ObjectError> {
        let mut headers = HeaderMap::new();
        for (name, value) in metadata {
            let name = http::HeaderName::from_bytes(format!("x-amz-meta-{name}").as_bytes())
                .map_err(|e| ObjectError::Refused(format!("metadata name {name}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ObjectError::Refused(format!("metadata value: {e}")))?;
            headers.insert(name, value);
        }
        let mut reader = tokio::fs::File::open(file)
            .await
            .map_err(|e| ObjectError::Unavailable(format!("spooled file: {e}")))?;
        self.bucket(shelf)
            .put_object_stream_builder(object_key)
            .with_content_type(content_type)
            .with_headers(headers)
            .with_max_concurrent_chunks(2)
            .execute_stream(&mut reader)
            .await?;
        Ok(())
    }

    /// Streams an object's stored bytes, or the inclusive byte range `first..=last` of them.
    pub async fn get(
        &self,
        shelf: Shelf,
        object_key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream, ObjectError> {
        let command = match range {
            Some((start, end)) => s3::command::Command::GetObjectRange {
                start,
                end: Some(end),
            },
            None => s3::command::Command::GetObject,
        };
        let bucket = self.bucket(shelf);
        let request =
            s3::request::tokio_backend::ReqwestRequest::new(bucket, object_key, command).await?;
        let response = request.response_data_to_stream().await?;
        if !(200..300).contains(&response.status_code) {
            return Err(match response.status_code {
                404 => ObjectError::NotFound,
                s if (400..500).contains(&s) => ObjectError::Refused(format!("HTTP {s}")),
                s => ObjectError::Unavailable(format!("HTTP {s}")),
            });
        }
        let stream = response
            .bytes
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
        Ok(Box::pin(stream))
    }

    /// The stored bytes of a small object, as they are at rest (tests, the quarantine team).
    pub async fn get_stored(&self, shelf: Shelf, object_key: &str) -> Result<Vec<u8>, ObjectError> {
        Ok(self.bucket(shelf).get_object(object_key).await?.to_vec())
    }

    pub async fn delete(&self, shelf: Shelf, object_key: &str) -> Result<(), ObjectError> {
        self.bucket(shelf).delete_object(object_key).await?;
        Ok(())
    }

    /// Every stored version and delete marker of objects whose key starts with `prefix`.
    pub async fn versions(
        &self,
        shelf: Shelf,
        prefix: &str,
    ) -> Result<Vec<crate::versions::ObjectVersion>, ObjectError> {
        let mut all = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = HashMap::from([
                ("versions".to_owned(), String::new()),
                ("prefix".to_owned(), prefix.to_owned()),
            ]);
            if let Some((key, version)) = marker.take() {
                query.insert("key-marker".into(), key);
                query.insert("version-id-marker".into(), version);
            }
            // A GET on the bucket itself with `?versions`: rust-s3 signs the extra query.
            let listing = self
                .bucket(shelf)
                .with_extra_query(query)?
                .get_object("/")
                .await?;
            let page =
                crate::versions::parse_version_page(&String::from_utf8_lossy(listing.as_slice()))
                    .map_err(ObjectError::Unavailable)?;
            all.extend(page.versions);
            match page.next {
                Some(next) => marker = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Removes one version (or delete marker) for good: no delete marker is left behind.
    pub async fn delete_version(
        &self,
        shelf: Shelf,
        object_key: &str,
        version_id: &str,
    ) -> Result<(), ObjectError> {
        let query = HashMap::from([("versionId".to_owned(), version_id.to_owned())]);
        self.bucket(shelf)
            .with_extra_query(query)?
            .delete_object(object_key)
            .await?;
        Ok(())
    }

    /// Turns bucket versioning on (the installer does it with `ceph-config/apply.sh`; tests here).
    pub async fn enable_versioning(&self, shelf: Shelf) -> Result<(), ObjectError> {
        let body = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
        let query = HashMap::from([("versioning".to_owned(), String::new())]);
        self.bucket(shelf)
            .with_extra_query(query)?
            .put_object_with_content_type("/", body.as_bytes(), "application/xml")
            .await?;
        Ok(())
    }

    /// Every object in the documents bucket under `prefix`.
    pub async fn list(&self, shelf: Shelf, prefix: &str) -> Result<Vec<Listed>, ObjectError> {
        let pages = self.bucket(shelf).list(prefix.to_owned(), None).await?;
        Ok(pages
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|o| Listed {
                key: o.key,
                last_modified: o.last_modified,
                size: o.size,
            })
            .collect())
    }

    /// Checks that both buckets exist and the credentials may list them (a one-key listing:
    /// the bucket policy grants ListBucket, not ListAllMyBuckets).
    pub async fn check(&self) -> Result<(), ObjectError> {
        for shelf in [Shelf::Documents, Shelf::Quarantine] {
            let bucket = self.bucket(shelf);
            match bucket
                .list_page(String::new(), None, None, None, Some(1))
                .await
            {
                Ok(_) => {}
                Err(S3Error::HttpFailWithBody(404, _)) => {
                    return Err(ObjectError::Refused(format!(
                        "the bucket {:?} does not exist (create it: see docs/ops/documents.md)",
                        bucket.name()
                    )));
                }
                Err(e) => {
                    return Err(match ObjectError::from(e) {
                        ObjectError::Refused(why) => {
                            ObjectError::Refused(format!("bucket {:?}: {why}", bucket.name()))
                        }
                        other => other,
                    });
                }
            }
        }
        Ok(())
    }

    /// Creates the buckets that do not exist yet (first install, tests).
    pub async fn create_missing_buckets(&self) -> Result<(), ObjectError> {
        for shelf in [Shelf::Documents, Shelf::Quarantine] {
            let name = self.bucket(shelf).name();
            if self.bucket(shelf).exists().await? {
                continue;
            }
            let config = BucketConfiguration::default();
            let created = if self.path_style {
                Bucket::create_with_path_style(
                    &name,
                    self.region.clone(),
                    self.credentials.clone(),
                    config,
                )
                .await?
            } else {
                Bucket::create(&name, self.region.clone(), self.credentials.clone(), config).await?
            };
            if !created.success() {
                return Err(ObjectError::Refused(format!(
                    "creating bucket {name:?}: HTTP {} {}",
                    created.response_code,
                    error_code(&created.response_text)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_untrusted_certificate_is_told_apart_from_an_outage() {
        let tls = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "invalid peer certificate: UnknownIssuer",
                None,
            ))),
        );
        let chain = error_chain(&tls);
        assert_eq!(
            chain,
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
        assert!(is_tls_failure(&chain));
        let refused = Layer(
            "error sending request",
            Some(Box::new(Layer("Connection refused (os error 111)", None))),
        );
        assert!(!is_tls_failure(&error_chain(&refused)));
    }
}
