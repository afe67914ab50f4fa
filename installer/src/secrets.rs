//! `kiorexctl secrets`: the Kubernetes Secrets and the trust-bundle ConfigMap of a site, made
//! from its pki/ and secrets/ (the table "What kiorexctl creates" in k3s-manifests/README.md).
//! Written to a file with mode 0600 that `install` applies; never committed anywhere.

use crate::Output;
use crate::render::to_yaml;
use anyhow::{Context, Result};
use serde_norway::{Mapping, Value};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SecretsArgs {
    /// The site directory from `kiorexctl init`.
    #[arg(long, default_value = ".")]
    site_dir: PathBuf,
    /// The manifest file to write (mode 0600).
    #[arg(long)]
    out: PathBuf,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

pub fn run(args: SecretsArgs) -> Result<()> {
    let objects = objects(&args.site_dir)?;
    let refs: Vec<&Value> = objects.iter().collect();
    crate::files::write_secret(&args.out, to_yaml(&refs)?.as_bytes())?;
    let names: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                crate::kustomize::namespace(o),
                crate::kustomize::name(o)
            )
        })
        .collect();
    match args.output {
        Output::Json => println!("{}", serde_json::json!({"out": args.out, "objects": names})),
        Output::Text => println!(
            "wrote {} objects to {} (mode 0600)",
            names.len(),
            args.out.display()
        ),
    }
    Ok(())
}

/// The SPKI PEM public key of the site's Ed25519 token signing key (PKCS#8 PEM).
fn token_public_key(signing_pem: &str) -> Result<String> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(signing_pem)
        .map_err(|e| anyhow::anyhow!("secrets/token-signing-key.pem: not an Ed25519 key: {e}"))?;
    key.verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode the token public key: {e}"))
}

fn read(dir: &Path, name: &str) -> Result<String> {
    let p = dir.join(name);
    std::fs::read_to_string(&p)
        .with_context(|| format!("cannot read {} (run kiorexctl init)", p.display()))
}

fn object(
    kind: &str,
    namespace: &str,
    name: &str,
    secret_type: Option<&str>,
    data: &[(&str, String)],
) -> Value {
    let mut md = Mapping::new();
    md.insert("name".into(), name.into());
    md.insert("namespace".into(), namespace.into());
    let mut labels = Mapping::new();
    labels.insert("app.kubernetes.io/part-of".into(), "kiorex".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "kiorexctl".into());
    md.insert("labels".into(), Value::Mapping(labels));
    let mut o = Mapping::new();
    o.insert("apiVersion".into(), "v1".into());
    o.insert("kind".into(), kind.into());
    o.insert("metadata".into(), Value::Mapping(md));
    if let Some(t) = secret_type {
        o.insert("type".into(), t.into());
    }
    let mut d = Mapping::new();
    for (k, v) in data {
        d.insert((*k).into(), v.clone().into());
    }
    // stringData / data: Secrets take plain text in stringData; the API server encodes it.
    o.insert(
        if kind == "Secret" {
            "stringData"
        } else {
            "data"
        }
        .into(),
        Value::Mapping(d),
    );
    Value::Mapping(o)
}

pub fn objects(site_dir: &Path) -> Result<Vec<Value>> {
    let pki = site_dir.join("pki");
    let sec = site_dir.join("secrets");
    let site = crate::site::SiteConfig::load(&site_dir.join(crate::site::FILE_NAME))?;
    let ca = read(&pki, "ca.crt")?;
    let tls = |ns: &str, name: &str, cert: &str| -> Result<Value> {
        Ok(object(
            "Secret",
            ns,
            name,
            Some("kubernetes.io/tls"),
            &[
                ("tls.crt", read(&pki, &format!("{cert}.crt"))?),
                ("tls.key", read(&pki, &format!("{cert}.key"))?),
            ],
        ))
    };
    let db_password = read(&sec, "database-password")?.trim().to_owned();
    let directory_ca = match site.directory.as_ref().and_then(|d| d.ca_file.as_ref()) {
        Some(f) => std::fs::read_to_string(site_dir.join(f))
            .with_context(|| format!("directory.ca_file {f}"))?,
        None => ca.clone(),
    };
    let meili_key = read(&sec, "meilisearch-master-key")?.trim().to_owned();
    let meili_config = format!(
        "env = \"production\"\nmaster_key = \"{meili_key}\"\nhttp_addr = \"0.0.0.0:7700\"\ndb_path = \"/meili_data/data.ms\"\n\
         dump_dir = \"/meili_data/dumps\"\nsnapshot_dir = \"/meili_data/snapshots\"\nssl_cert_path = \"/etc/meilisearch-tls/tls.crt\"\n\
         ssl_key_path = \"/etc/meilisearch-tls/tls.key\"\nno_analytics = true\n"
    );
    let mut upstream = tls("kiorex-dmz", "kiorex-edge-upstream-mtls", "edge-upstream")?;
    upstream["stringData"]["ca.crt"] = ca.clone().into();
    // Core's internal listener accepts only client certificates from the site CA (the edge's).
    let mut internal = tls(
        "kiorex-clinical",
        "kiorex-core-internal-tls",
        "core-internal",
    )?;
    internal["stringData"]["ca.crt"] = ca.clone().into();
    let token_key = read(&sec, "token-signing-key.pem")?;
    Ok(vec![
        tls("kiorex-dmz", "kiorex-edge-public-tls", "edge-public")?,
        upstream,
        // The edge checks partners' tokens with the public half only; the signing key stays in
        // the clinical zone.
        object(
            "ConfigMap",
            "kiorex-dmz",
            "kiorex-edge-token-key",
            None,
            &[("token-public-key.pem", token_public_key(&token_key)?)],
        ),
        tls("kiorex-dmz", "kiorex-patient-portal-tls", "patient-portal")?,
        object(
            "Secret",
            "kiorex-clinical",
            "kiorex-database",
            None,
            &[(
                "url",
                format!(
                    "postgres://kiorex:{db_password}@kiorex-pg-rw.kiorex-data.svc:5432/kiorex?sslmode=verify-full&sslrootcert=/etc/kiorex/trust/postgres-ca.crt"
                ),
            )],
        ),
        object(
            "Secret",
            "kiorex-clinical",
            "kiorex-auth",
            None,
            &[("token-signing-key.pem", token_key)],
        ),
        internal,
        tls("kiorex-clinical", "kiorex-staff-portal-tls", "staff-portal")?,
        object(
            "ConfigMap",
            "kiorex-clinical",
            "kiorex-trust-bundle",
            None,
            &[
                ("directory-ca.crt", directory_ca),
                ("rgw-ca.crt", ca.clone()),
                ("meilisearch-ca.crt", ca.clone()),
                ("postgres-ca.crt", ca.clone()),
            ],
        ),
        object(
            "Secret",
            "kiorex-data",
            "kiorex-pg-app-credentials",
            Some("kubernetes.io/basic-auth"),
            &[("username", "kiorex".into()), ("password", db_password)],
        ),
        tls("kiorex-data", "kiorex-pg-server-tls", "postgres")?,
        object(
            "Secret",
            "kiorex-data",
            "kiorex-pg-server-ca",
            None,
            &[("ca.crt", ca.clone())],
        ),
        object(
            "Secret",
            "kiorex-data",
            "ceph-rgw-ca",
            None,
            &[("ca.crt", ca.clone())],
        ),
        object(
            "Secret",
            "kiorex-data",
            "meilisearch-config",
            None,
            &[("config.toml", meili_config)],
        ),
        tls("kiorex-data", "meilisearch-tls", "meilisearch")?,
    ])
}
