//! `kiorexctl render`: the site's Kubernetes objects, from the overlay the site config names and
//! the site's own values (portal host names, release version), into a directory an admin can
//! read and diff before `install` applies it. The files are numbered in apply order.

use crate::Output;
use crate::failure::{exit, fail};
use crate::kustomize::{self, kind, name, namespace};
use crate::site::SiteConfig;
use anyhow::Result;
use serde_norway::{Mapping, Value};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RenderArgs {
    /// The site config (kiorex-site.toml).
    #[arg(long, default_value = crate::site::FILE_NAME)]
    site: PathBuf,
    /// The k3s-manifests directory (from the bundle: manifests/).
    #[arg(long, default_value = "k3s-manifests")]
    manifests: PathBuf,
    /// Where to write the rendered files; files from an earlier render there are replaced.
    #[arg(long, default_value = "rendered")]
    out: PathBuf,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

/// The apply phases, in order. Namespaces and NetworkPolicies go first so that no pod ever runs
/// without its zone's default-deny; the migrate Job runs before any Deployment.
pub const PHASES: &[(&str, &str)] = &[
    ("01-namespaces.yaml", "namespaces (Pod Security restricted)"),
    (
        "02-network-policies.yaml",
        "default-deny and allow rules of every zone",
    ),
    (
        "03-config.yaml",
        "service accounts, config, services, ingress classes and controllers",
    ),
    (
        "04-data.yaml",
        "PostgreSQL (CloudNativePG), Meilisearch, Ceph RGW endpoint",
    ),
    (
        "05-migrate.yaml",
        "the kiorex migrate Job (wait for it to complete)",
    ),
    (
        "06-workloads.yaml",
        "edge, core, worker, hl7, disruption budgets, ingresses",
    ),
];

pub const PRE_UPGRADE_BACKUP: &str = "backup-pre-upgrade.yaml";
const PRE_UPGRADE_BACKUP_YAML: &str =
    "# On-demand CloudNativePG backup taken by `kiorexctl upgrade` before it changes anything.
apiVersion: postgresql.cnpg.io/v1
kind: Backup
metadata:
  name: pre-upgrade
  namespace: kiorex-data
spec:
  cluster:
    name: kiorex-pg
  method: barmanObjectStore
";

pub fn phase_of(obj: &Value) -> usize {
    let k = kind(obj);
    match k.as_str() {
        "Namespace" => 0,
        "NetworkPolicy" => 1,
        "Job" => 4,
        _ if namespace(obj) == "kiorex-data"
            && !matches!(
                k.as_str(),
                "ConfigMap" | "Secret" | "ServiceAccount" | "Service"
            ) =>
        {
            3
        }
        "Deployment" | "DaemonSet" | "StatefulSet" | "Ingress" | "PodDisruptionBudget" => 5,
        _ => 2,
    }
}

pub fn run(args: RenderArgs) -> Result<()> {
    let site = SiteConfig::load(&args.site)?;
    let objects = render(&site, &args.manifests)?;
    let written = write(&objects, &args.out)?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"out": args.out, "objects": objects.len(), "files": written.iter().map(|(f, n)| serde_json::json!({"file": f, "objects": n})).collect::<Vec<_>>()})
            )?
        ),
        Output::Text => {
            println!(
                "rendered {} objects for site {} into {}:",
                objects.len(),
                site.site.name,
                args.out.display()
            );
            for (file, count) in &written {
                println!("  {file:<26} {count:>3} objects");
            }
            println!(
                "Review them (e.g. `diff -r` against the last render), then `kiorexctl install`."
            );
        }
    }
    Ok(())
}

/// The site's objects in kustomize's order.
pub fn render(site: &SiteConfig, manifests: &Path) -> Result<Vec<Value>> {
    let overlay = manifests.join(&site.site.overlay);
    let mut objects = kustomize::build(&overlay).map_err(|e| {
        fail(
            "KX-CTL-040",
            exit::FAILED,
            format!("cannot render {}: {e:#}", overlay.display()),
        )
    })?;
    apply_site(&mut objects, site)?;
    kustomize::sort_legacy(&mut objects);
    if let Some(found) = placeholder(&objects) {
        return Err(fail(
            "KX-CTL-041",
            exit::FAILED,
            format!(
                "{found} still holds a documentation address from the base; set the site's addresses in the overlay (k3s-manifests/README.md, Adding a facility)"
            ),
        ));
    }
    Ok(objects)
}

/// The values that come from kiorex-site.toml rather than from the overlay.
fn apply_site(objects: &mut [Value], site: &SiteConfig) -> Result<()> {
    let mut image = Mapping::new();
    image.insert("name".into(), crate::bundle::IMAGE_REPOSITORY.into());
    image.insert("newTag".into(), site.site.version.clone().into());
    kustomize::set_image(objects, &image)?;
    for obj in objects.iter_mut() {
        match (kind(obj).as_str(), name(obj).as_str()) {
            ("Ingress", "kiorex-staff-portal") => set_ingress_host(obj, &site.portals.lan),
            ("Ingress", "kiorex-patient-portal") => set_ingress_host(obj, &site.portals.dmz),
            ("Deployment", "kiorex-core") => set_env(
                obj,
                "KIOREX_SERVER__BASE_URL",
                &format!("https://{}", site.portals.lan),
            ),
            _ => {}
        }
    }
    Ok(())
}

fn set_ingress_host(obj: &mut Value, host: &str) {
    let Some(spec) = obj.get_mut("spec") else {
        return;
    };
    if let Some(tls) = spec.get_mut("tls").and_then(Value::as_sequence_mut) {
        for t in tls {
            t["hosts"] = Value::Sequence(vec![host.into()]);
        }
    }
    if let Some(rules) = spec.get_mut("rules").and_then(Value::as_sequence_mut) {
        for r in rules {
            r["host"] = host.into();
        }
    }
}

fn set_env(obj: &mut Value, key: &str, value: &str) {
    let Some(containers) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(|s| s.get_mut("containers"))
        .and_then(Value::as_sequence_mut)
    else {
        return;
    };
    for c in containers.iter_mut().filter(|c| c["name"] == "kiorex") {
        let env = c
            .as_mapping_mut()
            .expect("containers are maps")
            .entry("env".into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        let Some(list) = env.as_sequence_mut() else {
            continue;
        };
        match list.iter_mut().find(|e| e["name"] == key) {
            Some(e) => e["value"] = value.into(),
            None => {
                let mut m = Mapping::new();
                m.insert("name".into(), key.into());
                m.insert("value".into(), value.into());
                list.push(Value::Mapping(m));
            }
        }
    }
}

/// The first object holding an address from the documentation ranges the base uses.
fn placeholder(objects: &[Value]) -> Option<String> {
    fn walk(v: &Value) -> bool {
        match v {
            Value::String(s) => ["192.0.2.", "198.51.100.", "203.0.113."]
                .iter()
                .any(|p| s.starts_with(p)),
            Value::Sequence(l) => l.iter().any(walk),
            Value::Mapping(m) => m.values().any(walk),
            _ => false,
        }
    }
    objects
        .iter()
        .find(|o| walk(o))
        .map(|o| format!("{} {}/{}", kind(o), namespace(o), name(o)))
}

pub fn to_yaml(objects: &[&Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&quote_yaml11_booleans(&serde_norway::to_string(o)?));
    }
    Ok(out)
}

/// The emitter follows YAML 1.2, where `on`, `off`, `yes`, `no`, `y` and `n` are strings and
/// stay unquoted; Kubernetes' YAML reader (and PyYAML) follow YAML 1.1 and would read them as
/// booleans. A plain scalar of that form in the output is always a string (real booleans are
/// written `true`/`false`), so it is quoted. Lines inside block scalars (`|`) are content and
/// are left alone.
pub fn quote_yaml11_booleans(text: &str) -> String {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    let mut out = String::with_capacity(text.len());
    let mut block_indent: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(b) = block_indent {
            if line.trim().is_empty() || indent > b {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block_indent = None;
        }
        let mut fixed = line.to_owned();
        for sep in [": ", "- "] {
            if let Some(pos) = line.rfind(sep) {
                let value = &line[pos + sep.len()..];
                let before = &line[..pos];
                let plain_prefix =
                    sep == ": " || before.trim().is_empty() || before.trim_end().ends_with('-');
                if WORDS.contains(&value) && plain_prefix {
                    fixed = format!("{before}{sep}'{value}'");
                    break;
                }
            }
        }
        let trimmed = line.trim_end();
        if trimmed.ends_with('|')
            || trimmed.ends_with("|-")
            || trimmed.ends_with('>')
            || trimmed.ends_with(">-")
        {
            block_indent = Some(indent);
        }
        out.push_str(&fixed);
        out.push('\n');
    }
    out
}

/// Writes one file per phase and `all.yaml`; returns (file, objects) per phase.
fn write(objects: &[Value], out: &Path) -> Result<Vec<(String, usize)>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (i, (file, what)) in PHASES.iter().enumerate() {
        let part: Vec<&Value> = objects.iter().filter(|o| phase_of(o) == i).collect();
        let text = format!(
            "# {what}\n# Rendered by kiorexctl render; apply in file order.\n{}",
            to_yaml(&part)?
        );
        std::fs::write(out.join(file), text)?;
        written.push((file.to_string(), part.len()));
    }
    std::fs::write(
        out.join("all.yaml"),
        to_yaml(&objects.iter().collect::<Vec<_>>())?,
    )?;
    // Not part of the site's steady state: `upgrade` applies it to take an on-demand backup.
    std::fs::write(out.join(PRE_UPGRADE_BACKUP), PRE_UPGRADE_BACKUP_YAML)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_booleans_are_quoted_outside_block_scalars() {
        let text = "a: on\nb: 'x'\nc: true\nlist:\n- off\nconf: |\n  log: on\n  - no\nd: no\n";
        assert_eq!(
            quote_yaml11_booleans(text),
            "a: 'on'\nb: 'x'\nc: true\nlist:\n- 'off'\nconf: |\n  log: on\n  - no\nd: 'no'\n"
        );
    }
}
