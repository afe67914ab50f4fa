//! A CycloneDX 1.5 SBOM (JSON) of every crate in Cargo.lock, with the registry's SHA-256 of
//! each. Written directly with serde_json: the document is a flat list of components and the
//! `cyclonedx-bom` crate would add a large dependency tree for the same few fields.

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

pub fn cyclonedx(lockfile: &Path, version: &str) -> Result<String> {
    let text = std::fs::read_to_string(lockfile)
        .with_context(|| format!("cannot read {}", lockfile.display()))?;
    let lock: Lock = toml::from_str(&text)
        .with_context(|| format!("{} is not a Cargo.lock", lockfile.display()))?;
    let components: Vec<_> = lock
        .package
        .iter()
        .map(|p| {
            let purl = format!("pkg:cargo/{}@{}", p.name, p.version);
            let mut c = json!({
                "type": if p.source.is_some() { "library" } else { "application" },
                "bom-ref": purl, "name": p.name, "version": p.version, "purl": purl,
            });
            if let Some(sum) = &p.checksum {
                c["hashes"] = json!([{"alg": "SHA-256", "content": sum}]);
            }
            if p.source.is_none() {
                c["description"] = json!("part of the Kiorex workspace");
            }
            c
        })
        .collect();
    Ok(serde_json::to_string_pretty(&json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "version": 1,
        "metadata": {
            "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
            "tools": {"components": [{"type": "application", "name": "kiorexctl", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {"type": "application", "name": "kiorex", "version": version, "bom-ref": format!("pkg:cargo/kiorex@{version}")}
        },
        "components": components,
    }))?)
}
