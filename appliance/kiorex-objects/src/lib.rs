//! Documents on the hospital's object store (Ceph RGW, S3 API): per-object data keys wrapped by
//! the appliance's key-encryption key ([`keys`]) that seal each object in chunks before it leaves
//! Kiorex ([`cipher`], [`store`]), uploads spooled
//! to disk and classified by content ([`spool`], [`sniff`]), scanned by clamd ([`clamd`]), text
//! extracted for search ([`extract`]) and orphans swept ([`gc`]). No database here: the API
//! writes the document row once the object is stored and scanned.

pub mod cipher;
pub mod clamd;
pub mod extract;
pub mod gc;
pub mod keys;
pub mod sniff;
pub mod spool;
pub mod store;
pub mod versions;

pub use clamd::{Clamd, ScanError, Verdict};
pub use keys::{DataKey, KeyError, Keyring, WrappedKey};
pub use sniff::DocType;
pub use spool::{SpoolError, Spooled, Spooler};
pub use store::{ObjectError, ObjectStore, S3Settings, Shelf};

use std::sync::Arc;
use uuid::Uuid;

/// Everything the document service needs, built once at start-up.
#[derive(Clone)]
pub struct Objects {
    pub store: ObjectStore,
    pub keyring: Arc<Keyring>,
    pub clamd: Clamd,
    pub spooler: Spooler,
    /// How long a deleted document stays restorable before `kiorex objects purge` removes it.
    pub retention_days: u32,
    /// With clamd unreachable, keep uploads sealed in the quarantine bucket until a rescan
    /// (`scan.hold_when_unavailable`) instead of refusing them. Off by default.
    pub hold_unscanned: bool,
}

impl Objects {
    /// Seals the spooled file with `key` and stores it under `object_key`. The sealed copy is
    /// written next to the spool file and removed afterwards.
    pub async fn put_sealed(
        &self,
        shelf: Shelf,
        object_key: &str,
        spooled: &Spooled,
        key: &DataKey,
        metadata: &[(&str, String)],
    ) -> Result<(), ObjectError> {
        let dir = self.spooler.dir.clone();
        let (plain, size) = (spooled.path.to_path_buf(), spooled.size);
        let (key_copy, name) = (key.clone(), object_key.to_owned());
        let sealed = tokio::task::spawn_blocking(move || -> std::io::Result<tempfile::TempPath> {
            let mut file = match dir {
                Some(dir) => tempfile::NamedTempFile::new_in(dir)?,
                None => tempfile::NamedTempFile::new()?,
            };
            let mut writer = std::io::BufWriter::new(file.as_file_mut());
            cipher::seal_file(&key_copy, &name, &plain, size, &mut writer)?;
            drop(writer);
            Ok(file.into_temp_path())
        })
        .await
        .map_err(|e| ObjectError::Unavailable(format!("sealing task: {e}")))?
        .map_err(|e| ObjectError::Unavailable(format!("sealing the upload: {e}")))?;
        self.store
            .put_file(
                shelf,
                object_key,
                &sealed,
                "application/octet-stream",
                metadata,
            )
            .await
    }

    /// Streams the plaintext bytes `first..=last` (all of them by default) of a document of
    /// `size` bytes, fetching and opening only the chunks they lie in.
    pub async fn open(
        &self,
        object_key: &str,
        key: &DataKey,
        size: u64,
        range: Option<(u64, u64)>,
    ) -> Result<store::ByteStream, ObjectError> {
        let (first, last) = range.unwrap_or((0, size.saturating_sub(1)));
        let (start, end, _) = cipher::sealed_range(first, last, size);
        let sealed = self
            .store
            .get(Shelf::Documents, object_key, Some((start, end)))
            .await?;
        Ok(cipher::open_stream(
            sealed, key, object_key, first, last, size,
        ))
    }

    /// Opens a whole sealed object of `size` plaintext bytes from `shelf` into a new spool file,
    /// checked again for size and type like an upload (a held upload before its rescan).
    pub async fn unseal_to_spool(
        &self,
        shelf: Shelf,
        object_key: &str,
        key: &DataKey,
        size: u64,
    ) -> Result<Spooled, UnsealError> {
        let sealed = self.store.get(shelf, object_key, None).await?;
        let plain = cipher::open_stream(sealed, key, object_key, 0, size.saturating_sub(1), size);
        Ok(self.spooler.spool(plain).await?)
    }
}

/// Why a stored object could not be opened into a spool file.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Where a document version lives: `facility/patient/category/uuid`. The facility and patient
/// first let an administrator find (or remove) everything of one patient with one prefix.
pub fn object_key(facility: Uuid, patient: Uuid, category: &str, version: Uuid) -> String {
    format!("{facility}/{patient}/{category}/{version}")
}

/// Where an infected upload is kept: by facility and date, never under the patient's record.
pub fn quarantine_key(facility: Uuid, day: &str, id: Uuid) -> String {
    format!("{facility}/{day}/{id}")
}

/// Where an upload waits, unscanned, for clamd to come back: in the quarantine bucket (never
/// served), apart from the infected ones.
pub fn held_key(facility: Uuid, day: &str, id: Uuid) -> String {
    format!("held/{facility}/{day}/{id}")
}

/// A category is a short lower-case slug (`referral`, `consent`, `discharge-letter`).
pub fn valid_category(category: &str) -> bool {
    (1..=40).contains(&category.len())
        && category
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !category.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_by_facility_patient_category() {
        let (f, p, v) = (Uuid::nil(), Uuid::max(), Uuid::nil());
        assert_eq!(
            object_key(f, p, "consent", v),
            format!("{f}/{p}/consent/{v}")
        );
    }

    #[test]
    fn categories_are_slugs() {
        assert!(valid_category("discharge-letter"));
        assert!(!valid_category("../etc"));
        assert!(!valid_category(""));
        assert!(!valid_category("Consent"));
    }
}
