//! An external scanner's view of the edge: sslyze (PyPI, in a venv made by `tools/sslyze/run`)
//! finds no protocol below TLS 1.2, no suite that is not an AEAD, and a valid chain to the
//! configured CA.

use super::*;

fn accepted(scan: &Value, command: &str) -> Vec<String> {
    let result = &scan[command];
    assert_eq!(result["status"], "COMPLETED", "{command}: {result}");
    result["result"]["accepted_cipher_suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cipher_suite"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_finds_no_old_protocol_no_weak_suite_and_a_valid_chain() {
    let stack = stack(&[("KIOREX_EDGE__ALLOW_TLS12", "true")]).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = stack.site.dir.path().join("sslyze.json");
    let port = stack.edge.port;
    let ca = stack.public.ca_file.clone();
    let target = format!("localhost:{port}{{127.0.0.1}}");
    let status = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            std::process::Command::new(root.join("tools/sslyze/run"))
                .args([
                    "--quiet",
                    "--sslv2",
                    "--sslv3",
                    "--tlsv1",
                    "--tlsv1_1",
                    "--tlsv1_2",
                    "--tlsv1_3",
                    "--certinfo",
                ])
                .arg(format!("--certinfo_ca_file={}", ca.display()))
                .arg(format!("--json_out={}", out.display()))
                .arg(&target)
                .status()
                .expect("run tools/sslyze/run (python3 and PyPI needed on first run)")
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "sslyze failed: {status}");
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let server = &report["server_scan_results"][0];
    assert_eq!(server["scan_status"], "COMPLETED", "{server}");
    let scan = &server["scan_result"];
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert_eq!(
            accepted(scan, old),
            Vec::<String>::new(),
            "{old} is accepted"
        );
    }
    let tls12 = accepted(scan, "tls_1_2_cipher_suites");
    assert!(
        !tls12.is_empty(),
        "TLS 1.2 was allowed in the configuration"
    );
    for suite in &tls12 {
        assert!(
            suite.starts_with("TLS_ECDHE_")
                && (suite.contains("_GCM_") || suite.contains("CHACHA20_POLY1305")),
            "{suite} is not an ECDHE AEAD suite"
        );
    }
    assert!(!accepted(scan, "tls_1_3_cipher_suites").is_empty());
    let deployment = &scan["certificate_info"]["result"]["certificate_deployments"][0];
    assert_eq!(deployment["received_chain_has_valid_order"], true);
    let validations = deployment["path_validation_results"].as_array().unwrap();
    assert!(
        validations
            .iter()
            .any(|v| v["was_validation_successful"] == true
                && v["trust_store"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("ca.pem"))),
        "the chain does not validate against the configured CA"
    );
}
