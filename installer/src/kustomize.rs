//! The subset of kustomize that k3s-manifests/ uses (k3s-manifests/README.md lists it), so that
//! `kiorexctl render` works on a host without kubectl or kustomize. It follows
//! tools/manifest-checks/kustomize_lite.py rule for rule, and the manifest checks compare the
//! two outputs object by object. Anything outside the subset is an error naming the field.

use anyhow::{Result, bail};
use serde_norway::{Mapping, Value};
use std::path::{Path, PathBuf};

const SUPPORTED_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "patches",
    "images",
];

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "IngressClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "RuntimeClass",
    "CSIDriver",
    "Node",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// API groups with the Kubernetes strategic-merge schema; custom resources merge maps and
/// replace lists, as kustomize does without a schema.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "discovery.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "node.k8s.io",
    "coordination.k8s.io",
    "admissionregistration.k8s.io",
];

const MERGE_KEYS: &[(&str, &str)] = &[
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("env", "name"),
    ("volumes", "name"),
    ("volumeMounts", "mountPath"),
    ("imagePullSecrets", "name"),
    ("hostAliases", "ip"),
    ("topologySpreadConstraints", "topologyKey"),
];

/// kustomize's "legacy" output order.
const ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

pub fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub fn group(obj: &Value) -> String {
    s(obj, "apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g.to_owned())
        .unwrap_or_default()
}

pub fn kind(obj: &Value) -> String {
    s(obj, "kind")
}

pub fn namespace(obj: &Value) -> String {
    obj.get("metadata")
        .map(|m| s(m, "namespace"))
        .unwrap_or_default()
}

pub fn name(obj: &Value) -> String {
    obj.get("metadata")
        .map(|m| s(m, "name"))
        .unwrap_or_default()
}

type Id = (String, String, String, String);

fn id(obj: &Value) -> Id {
    (group(obj), kind(obj), namespace(obj), name(obj))
}

fn fmt_id((g, k, ns, n): &Id) -> String {
    let g = if g.is_empty() { "core" } else { g };
    let ns = if ns.is_empty() {
        String::new()
    } else {
        format!("{ns}/")
    };
    format!("{k}.{g}/{ns}{n}")
}

fn load_docs(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if v.is_null() {
            continue;
        }
        if !v.is_mapping() || v.get("kind").is_none() || v.get("apiVersion").is_none() {
            bail!(
                "{}: every document must be an object with apiVersion and kind",
                path.display()
            );
        }
        if name(&v).is_empty() {
            bail!("{}: {} without metadata.name", path.display(), kind(&v));
        }
        docs.push(v);
    }
    Ok(docs)
}

use serde::Deserialize;

fn merge_map(base: &Mapping, patch: &Mapping, builtin: bool, path: &[String]) -> Result<Mapping> {
    let directive = patch.get("$patch").and_then(Value::as_str);
    if directive == Some("replace") {
        let mut out = patch.clone();
        out.remove("$patch");
        return Ok(out);
    }
    if let Some(d) = directive {
        bail!("unsupported $patch directive {d:?} at {}", path.join("."));
    }
    let mut out = base.clone();
    for (key, pval) in patch {
        let k = key.as_str().unwrap_or_default().to_owned();
        if k.starts_with('$') {
            bail!("unsupported directive {k} at {}", path.join("."));
        }
        if pval.is_null() {
            out.remove(key);
            continue;
        }
        let mut sub = path.to_vec();
        sub.push(k);
        let merged = match (out.get(key), pval) {
            (Some(Value::Mapping(b)), Value::Mapping(p)) => {
                Value::Mapping(merge_map(b, p, builtin, &sub)?)
            }
            (Some(Value::Sequence(b)), Value::Sequence(p)) => {
                Value::Sequence(merge_list(b, p, builtin, &sub)?)
            }
            (_, Value::Mapping(p)) => Value::Mapping(
                p.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            (_, v) => v.clone(),
        };
        out.insert(key.clone(), merged);
    }
    Ok(out)
}

fn list_merge_key(builtin: bool, path: &[String]) -> Option<&'static str> {
    if !builtin {
        return None;
    }
    let field = path.last()?.as_str();
    if let Some((_, k)) = MERGE_KEYS.iter().find(|(f, _)| *f == field) {
        return Some(k);
    }
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    if field == "ports" && matches!(parent, Some("containers" | "initContainers")) {
        return Some("containerPort");
    }
    if field == "ports" && path.len() == 2 && path[0] == "spec" {
        return Some("port");
    }
    None
}

fn merge_list(
    base: &[Value],
    patch: &[Value],
    builtin: bool,
    path: &[String],
) -> Result<Vec<Value>> {
    let key = list_merge_key(builtin, path);
    let all_maps = base.iter().chain(patch).all(Value::is_mapping);
    let Some(key) = key.filter(|_| all_maps) else {
        if patch.iter().any(|i| i.get("$patch").is_some()) {
            bail!("$patch inside a replaced list at {}", path.join("."));
        }
        return Ok(patch.to_vec());
    };
    // kustomize's order: the patch's items first (merged with their base item), then the base
    // items the patch does not mention.
    let mut out = Vec::new();
    for item in patch {
        let Some(k) = item.get(key) else {
            bail!("list item without merge key {key:?} at {}", path.join("."));
        };
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            continue;
        }
        match base.iter().find(|b| b.get(key) == Some(k)) {
            None => out.push(item.clone()),
            Some(m) => out.push(Value::Mapping(merge_map(
                m.as_mapping().expect("checked"),
                item.as_mapping().expect("checked"),
                builtin,
                path,
            )?)),
        }
    }
    let mentioned: Vec<&Value> = patch.iter().filter_map(|i| i.get(key)).collect();
    out.extend(
        base.iter()
            .filter(|b| !b.get(key).is_some_and(|k| mentioned.contains(&k)))
            .cloned(),
    );
    Ok(out)
}

fn apply_patch(resources: &mut Vec<Value>, patch: &Value, source: &Path) -> Result<()> {
    let pid = id(patch);
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| id(r) == pid)
        .map(|(i, _)| i)
        .collect();
    if matches.len() != 1 {
        bail!(
            "{}: patch for {} matches {} objects (need 1)",
            source.display(),
            fmt_id(&pid),
            matches.len()
        );
    }
    let i = matches[0];
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        resources.remove(i);
        return Ok(());
    }
    let mut body = patch.as_mapping().cloned().unwrap_or_default();
    body.remove("apiVersion");
    body.remove("kind");
    let builtin = BUILTIN_GROUPS.contains(&group(patch).as_str());
    let merged = merge_map(
        resources[i].as_mapping().expect("loaded objects are maps"),
        &body,
        builtin,
        &[],
    )?;
    resources[i] = Value::Mapping(merged);
    Ok(())
}

fn set_namespace(resources: &mut [Value], ns: &str) {
    for r in resources {
        if CLUSTER_SCOPED.contains(&kind(r).as_str()) {
            continue;
        }
        if let Some(md) = r.get_mut("metadata").and_then(Value::as_mapping_mut) {
            md.insert("namespace".into(), ns.into());
        }
    }
}

fn split_image(image: &str) -> (String, String, String) {
    let (name, digest) = image.split_once('@').unwrap_or((image, ""));
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        let (n, t) = name.rsplit_once(':').expect("contains ':'");
        (n.to_owned(), t.to_owned(), digest.to_owned())
    } else {
        (name.to_owned(), String::new(), digest.to_owned())
    }
}

fn walk_containers(node: &mut Value, f: &mut dyn FnMut(&mut Mapping)) {
    match node {
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                if matches!(k.as_str(), Some("containers" | "initContainers"))
                    && let Value::Sequence(list) = v
                {
                    for c in list.iter_mut() {
                        if let Value::Mapping(c) = c
                            && c.get("image").is_some_and(Value::is_string)
                        {
                            f(c);
                        }
                    }
                }
                walk_containers(v, f);
            }
        }
        Value::Sequence(list) => list.iter_mut().for_each(|v| walk_containers(v, f)),
        _ => {}
    }
}

/// Rewrites images named `name` (kustomize `images:` semantics).
pub fn set_image(resources: &mut [Value], spec: &Mapping) -> Result<()> {
    for k in spec.keys() {
        if !matches!(k.as_str(), Some("name" | "newName" | "newTag" | "digest")) {
            bail!("images: unsupported key {k:?}");
        }
    }
    let get = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_owned);
    let want = get("name").unwrap_or_default();
    for r in resources.iter_mut() {
        walk_containers(r, &mut |c| {
            let (name, tag, digest) = split_image(c["image"].as_str().unwrap_or_default());
            if name != want {
                return;
            }
            let name = get("newName").unwrap_or(name);
            let image = if let Some(d) = get("digest") {
                format!("{name}@{d}")
            } else if let Some(t) = get("newTag") {
                format!("{name}:{t}")
            } else {
                let tag = if tag.is_empty() {
                    String::new()
                } else {
                    format!(":{tag}")
                };
                let digest = if digest.is_empty() {
                    String::new()
                } else {
                    format!("@{digest}")
                };
                format!("{name}{tag}{digest}")
            };
            c.insert("image".into(), image.into());
        });
    }
    Ok(())
}

/// Builds the kustomization in `dir`.
pub fn build(dir: &Path) -> Result<Vec<Value>> {
    build_inner(dir, &mut Vec::new())
}

fn build_inner(dir: &Path, stack: &mut Vec<PathBuf>) -> Result<Vec<Value>> {
    let dir = dir
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    if stack.contains(&dir) {
        bail!("kustomization cycle at {}", dir.display());
    }
    let kfile = dir.join("kustomization.yaml");
    if !kfile.is_file() {
        bail!("{}: no kustomization.yaml", dir.display());
    }
    let kust: Value = serde_norway::from_str(&std::fs::read_to_string(&kfile)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", kfile.display()))?;
    let field = |k: &str| kust.get(k).cloned().unwrap_or(Value::Null);
    if let Some(m) = kust.as_mapping() {
        for k in m.keys() {
            let k = k.as_str().unwrap_or_default();
            if !SUPPORTED_KEYS.contains(&k) {
                bail!(
                    "{}: unsupported kustomize field {k:?} (see k3s-manifests/README.md)",
                    kfile.display()
                );
            }
        }
    }
    if !matches!(field("kind").as_str(), None | Some("Kustomization")) {
        bail!("{}: kind must be Kustomization", kfile.display());
    }
    stack.push(dir.clone());
    let mut resources = Vec::new();
    for entry in field("resources").as_sequence().into_iter().flatten() {
        let p = dir.join(entry.as_str().unwrap_or_default());
        if p.is_dir() {
            resources.extend(build_inner(&p, stack)?);
        } else if p.is_file() {
            resources.extend(load_docs(&p)?);
        } else {
            bail!("{}: resource {entry:?} not found", kfile.display());
        }
    }
    stack.pop();
    let mut seen = std::collections::HashSet::new();
    for r in &resources {
        if !seen.insert(id(r)) {
            bail!("{}: duplicate object {}", kfile.display(), fmt_id(&id(r)));
        }
    }
    for entry in field("patches").as_sequence().into_iter().flatten() {
        let keys: Vec<_> = entry
            .as_mapping()
            .map(|m| m.keys().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if keys != ["path"] {
            bail!(
                "{}: only `patches: - path: FILE` is supported, got {keys:?}",
                kfile.display()
            );
        }
        let ppath = dir.join(s(entry, "path"));
        for patch in load_docs(&ppath)? {
            apply_patch(&mut resources, &patch, &ppath)?;
        }
    }
    if let Some(ns) = field("namespace").as_str() {
        set_namespace(&mut resources, ns);
    }
    for spec in field("images").as_sequence().into_iter().flatten() {
        set_image(&mut resources, spec.as_mapping().unwrap_or(&Mapping::new()))?;
    }
    Ok(resources)
}

/// kustomize's legacy order: Namespaces first, webhooks last, then by kind, namespace, name.
pub fn sort_legacy(resources: &mut [Value]) {
    resources.sort_by_key(|r| {
        let k = kind(r);
        let pos = ORDER_FIRST
            .iter()
            .position(|x| *x == k)
            .or_else(|| ORDER_LAST.iter().position(|x| *x == k).map(|p| 1000 + p))
            .unwrap_or(500);
        (pos, k, namespace(r), name(r))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_norway::from_str(s).unwrap()
    }

    #[test]
    fn keyed_lists_merge_patch_items_first_and_other_lists_are_replaced() {
        let base =
            yaml("spec: {containers: [{name: a, image: x}, {name: b, image: y}], args: [1, 2]}");
        let patch = yaml("spec: {containers: [{name: b, image: z}], args: [3]}");
        let out = merge_map(
            base.as_mapping().unwrap(),
            patch.as_mapping().unwrap(),
            true,
            &[],
        )
        .unwrap();
        let out = Value::Mapping(out);
        assert_eq!(
            out,
            yaml("spec: {containers: [{name: b, image: z}, {name: a, image: x}], args: [3]}")
        );
    }

    #[test]
    fn null_deletes_and_replace_replaces() {
        let base = yaml("a: {b: 1, c: 2}\nd: 1");
        let patch = yaml("a: {$patch: replace, e: 3}\nd: null");
        let out = merge_map(
            base.as_mapping().unwrap(),
            patch.as_mapping().unwrap(),
            true,
            &[],
        )
        .unwrap();
        assert_eq!(Value::Mapping(out), yaml("a: {e: 3}"));
    }

    #[test]
    fn images_keep_or_replace_tags() {
        let mut r = vec![yaml(
            "spec: {containers: [{name: k, image: 'reg.local:5000/kiorex/kiorex:0.0.1'}]}",
        )];
        set_image(
            &mut r,
            yaml("{name: 'reg.local:5000/kiorex/kiorex', newTag: '0.2.0'}")
                .as_mapping()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            r[0]["spec"]["containers"][0]["image"],
            "reg.local:5000/kiorex/kiorex:0.2.0"
        );
    }
}
