use super::{kiorexctl, repo_root};
use std::path::Path;

fn docs(path: &Path) -> Vec<serde_norway::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_norway::Value| !v.is_null())
        .collect()
}

fn site(dir: &Path, lan: &str, dmz: &str, overlay: &str) {
    std::fs::write(
        dir.join("kiorex-site.toml"),
        format!(
            "[site]\nname = \"north\"\noverlay = \"{overlay}\"\nversion = \"0.3.1\"\n[[facility]]\ncode = \"NRT\"\nname = \"North\"\n\
             [portals]\nlan = \"{lan}\"\ndmz = \"{dmz}\"\n"
        ),
    )
    .unwrap();
}

fn render(dir: &Path) -> super::Run {
    let manifests = repo_root().join("k3s-manifests");
    kiorexctl(
        dir,
        &[
            "render",
            "--manifests",
            manifests.to_str().unwrap(),
            "--out",
            "out",
            "--output",
            "json",
        ],
    )
}

#[test]
fn render_applies_the_site_values_in_apply_order() {
    let dir = tempfile::tempdir().unwrap();
    site(
        dir.path(),
        "kiorex.north.lan",
        "patients.north.org",
        "overlays/single-site",
    );
    let run = render(dir.path());
    assert_eq!(run.status, 0, "{}", run.stderr);
    let out = dir.path().join("out");
    let all = docs(&out.join("all.yaml"));
    assert_eq!(run.json()["objects"], all.len());

    let kinds_in = |f: &str| {
        docs(&out.join(f))
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        kinds_in("01-namespaces.yaml")
            .iter()
            .all(|k| k == "Namespace")
    );
    assert!(
        kinds_in("02-network-policies.yaml")
            .iter()
            .all(|k| k == "NetworkPolicy")
    );
    assert_eq!(kinds_in("05-migrate.yaml"), ["Job"]);
    assert!(kinds_in("06-workloads.yaml").contains(&"Deployment".to_owned()));
    assert!(
        !kinds_in("03-config.yaml")
            .iter()
            .any(|k| k == "Deployment" || k == "NetworkPolicy")
    );

    let find = |kind: &str, name: &str| {
        all.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap()
            .clone()
    };
    let staff = find("Ingress", "kiorex-staff-portal");
    assert_eq!(staff["spec"]["rules"][0]["host"], "kiorex.north.lan");
    assert_eq!(staff["spec"]["tls"][0]["hosts"][0], "kiorex.north.lan");
    assert_eq!(
        find("Ingress", "kiorex-patient-portal")["spec"]["rules"][0]["host"],
        "patients.north.org"
    );
    let core = find("Deployment", "kiorex-core");
    let container = &core["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "registry.kiorex.local/kiorex/kiorex:0.3.1"
    );
    let env = container["env"].as_sequence().unwrap();
    assert!(env.iter().any(
        |e| e["name"] == "KIOREX_SERVER__BASE_URL" && e["value"] == "https://kiorex.north.lan"
    ));
    // Strings YAML 1.1 would read as booleans are quoted (Kubernetes reads YAML 1.1).
    let text = std::fs::read_to_string(out.join("all.yaml")).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.ends_with(": on") || l.ends_with(": off")),
        "unquoted on/off"
    );

    // Rendering again gives the same files.
    let before = std::fs::read(out.join("all.yaml")).unwrap();
    assert_eq!(render(dir.path()).status, 0);
    assert_eq!(std::fs::read(out.join("all.yaml")).unwrap(), before);
}

#[test]
fn render_refuses_placeholders_and_unsupported_kustomize() {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path(), "kiorex.north.lan", "patients.north.org", "base");
    let run = render(dir.path());
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains("KX-CTL-041") && run.stderr.contains("documentation address"),
        "{}",
        run.stderr
    );

    let manifests = dir.path().join("m");
    std::fs::create_dir_all(manifests.join("overlays/x")).unwrap();
    std::fs::write(
        manifests.join("overlays/x/kustomization.yaml"),
        "resources: []\nconfigMapGenerator: []\n",
    )
    .unwrap();
    site(
        dir.path(),
        "kiorex.north.lan",
        "patients.north.org",
        "overlays/x",
    );
    let run = kiorexctl(dir.path(), &["render", "--manifests", "m", "--out", "out"]);
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains("KX-CTL-040") && run.stderr.contains("configMapGenerator"),
        "{}",
        run.stderr
    );
}
