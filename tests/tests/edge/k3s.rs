//! The edge's configuration as shipped for k3s (`k3s-manifests/base/dmz/configmap.yaml`) starts
//! an edge that forwards to core: its keys are the binary's, and nothing it needs is missing.

use super::{https_client, stack};
use kiorex_testkit::edge::EdgeProcess;
use serde_json::Value;
use std::path::Path;

/// The `kiorex.toml` block of a ConfigMap manifest (a YAML literal block, indented by four).
fn toml_block(manifest: &str) -> String {
    let mut lines = manifest
        .lines()
        .skip_while(|l| !l.ends_with("kiorex.toml: |"));
    lines.next().expect("a kiorex.toml block");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_k3s_edge_configuration_starts_an_edge_that_forwards_to_core() {
    let stack = stack(&[]).await;
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../k3s-manifests/base/dmz/configmap.yaml");
    let shipped = toml_block(&std::fs::read_to_string(manifest).unwrap());
    assert!(
        shipped.contains("core_url = \"https://kiorex-core-internal."),
        "{shipped}"
    );

    // The pod's mounts, filled from the test PKI: /etc/kiorex/… becomes a temporary directory.
    let etc = tempfile::tempdir().unwrap();
    let files = [
        ("tls/public/tls.crt", &stack.public_cert.cert),
        ("tls/public/tls.key", &stack.public_cert.key),
        ("tls/upstream/ca.crt", &stack.internal.ca_file),
        ("tls/upstream/tls.crt", &stack.edge_client.cert),
        ("tls/upstream/tls.key", &stack.edge_client.key),
        ("token/token-public-key.pem", &stack.token_public_key),
    ];
    for (to, from) in files {
        let to = etc.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    }
    let prefix = format!("{}/", etc.path().display());
    let config = etc.path().join("kiorex.toml");
    std::fs::write(&config, shipped.replace("/etc/kiorex/", &prefix)).unwrap();

    // Only the addresses change: the cluster's service name and ports are not on this host.
    let (port, admin_port) = (kiorex_testkit::free_port(), kiorex_testkit::free_port());
    let mut command = std::process::Command::new(kiorex_testkit::kiorex_binary());
    command
        .arg("--config")
        .arg(&config)
        .args(["serve", "edge"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KIOREX_EDGE__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "KIOREX_EDGE__ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .env(
            "KIOREX_EDGE__CORE_URL",
            format!("https://127.0.0.1:{}", stack.internal_port),
        );
    let log = etc.path().join("edge.log");
    let edge =
        tokio::task::spawn_blocking(move || EdgeProcess::spawn(command, port, admin_port, log))
            .await
            .unwrap();

    let client = https_client(&stack);
    let capability: Value = client
        .get(format!("{}/fhir/metadata", edge.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(capability["resourceType"], "CapabilityStatement");
    let metrics = reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kiorex_edge_requests_total{outcome=\"forwarded\"} 1\n"),
        "{metrics}"
    );
}
