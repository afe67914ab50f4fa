//! Object versions (the documents bucket keeps every version): the `ListObjectVersions` answer,
//! which rust-s3 does not parse, read with quick-xml. Versions and delete markers are listed
//! interleaved, so they are read as one sequence of elements.

use serde::Deserialize;

/// One stored version of an object, or a delete marker (both must go for the key to be gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: String,
    pub delete_marker: bool,
}

/// One page of a version listing, and where the next one starts when it was cut off.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VersionPage {
    pub versions: Vec<ObjectVersion>,
    /// `(key-marker, version-id-marker)` for the next page.
    pub next: Option<(String, String)>,
}

#[derive(Deserialize)]
struct ListVersionsResult {
    #[serde(rename = "$value", default)]
    elements: Vec<Element>,
}

#[derive(Deserialize)]
enum Element {
    Version(Entry),
    DeleteMarker(Entry),
    IsTruncated(String),
    NextKeyMarker(String),
    NextVersionIdMarker(String),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "VersionId")]
    version_id: String,
}

/// Reads a `ListVersionsResult` document.
pub fn parse_version_page(xml: &str) -> Result<VersionPage, String> {
    let result: ListVersionsResult =
        quick_xml::de::from_str(xml).map_err(|e| format!("unreadable version listing: {e}"))?;
    let mut page = VersionPage::default();
    let (mut truncated, mut key_marker, mut version_marker) = (false, None, None);
    for element in result.elements {
        match element {
            Element::Version(e) => page.versions.push(version(e, false)),
            Element::DeleteMarker(e) => page.versions.push(version(e, true)),
            Element::IsTruncated(t) => truncated = t.trim() == "true",
            Element::NextKeyMarker(k) => key_marker = Some(k),
            Element::NextVersionIdMarker(v) => version_marker = Some(v),
            Element::Other => {}
        }
    }
    if truncated {
        page.next = Some((
            key_marker.unwrap_or_default(),
            version_marker.unwrap_or_default(),
        ));
    }
    Ok(page)
}

fn version(e: Entry, delete_marker: bool) -> ObjectVersion {
    ObjectVersion {
        key: e.key,
        version_id: e.version_id,
        delete_marker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_delete_markers_are_read_in_order() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>kiorex-documents</Name><Prefix>f/p/consent/v</Prefix><KeyMarker></KeyMarker>
  <VersionIdMarker></VersionIdMarker><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
  <NextKeyMarker>f/p/consent/v</NextKeyMarker><NextVersionIdMarker>3</NextVersionIdMarker>
  <DeleteMarker><Key>f/p/consent/v</Key><VersionId>3</VersionId><IsLatest>true</IsLatest>
    <LastModified>2026-11-22T10:00:00.000Z</LastModified><Owner><ID>kiorex</ID></Owner></DeleteMarker>
  <Version><Key>f/p/consent/v</Key><VersionId>2</VersionId><IsLatest>false</IsLatest>
    <ETag>"abc"</ETag><Size>10</Size><Owner><ID>kiorex</ID><DisplayName>K</DisplayName></Owner>
    <StorageClass>STANDARD</StorageClass></Version>
  <Version><Key>f/p/consent/v&amp;x</Key><VersionId>null</VersionId><IsLatest>false</IsLatest></Version>
</ListVersionsResult>"#;
        let page = parse_version_page(xml).unwrap();
        let found: Vec<(&str, &str, bool)> = page
            .versions
            .iter()
            .map(|v| (v.key.as_str(), v.version_id.as_str(), v.delete_marker))
            .collect();
        assert_eq!(
            found,
            [
                ("f/p/consent/v", "3", true),
                ("f/p/consent/v", "2", false),
                ("f/p/consent/v&x", "null", false)
            ]
        );
        assert_eq!(page.next, Some(("f/p/consent/v".into(), "3".into())));
    }

    #[test]
    fn an_empty_listing_has_no_versions_and_no_next_page() {
        let xml = "<ListVersionsResult><Name>b</Name><IsTruncated>false</IsTruncated></ListVersionsResult>";
        assert_eq!(parse_version_page(xml).unwrap(), VersionPage::default());
    }
}
