use crate::cli::{documents_env, json_of, with_documents};
use kiorex_objects::{ObjectStore, S3Settings};
use kiorex_testkit::pki::Pki;
use kiorex_testkit::{ADMIN, ADMIN_PASSWORD, Site, ceph, s3_settings};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `objects` check of `kiorex configtest`, with `ca_bundle` (if any) configured.
fn objects_check(site: &Site, settings: &S3Settings, ca_bundle: Option<&std::path::Path>) -> Value {
    let mut command = with_documents(site, settings, &["configtest", "--output", "json"]);
    if let Some(ca) = ca_bundle {
        command.env("KIOREX_OBJECTS__CA_BUNDLE", ca);
    }
    let (_, report) = json_of(&mut command);
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "objects")
        .cloned()
        .unwrap_or_else(|| panic!("no objects check: {report}"))
}

/// RGW over HTTPS with a certificate from the hospital CA: with `objects.ca_bundle` naming that
/// CA, configtest passes and documents go up and come back down through a core; without it, or
/// with another CA, the store refuses to connect and configtest says why.
#[test]
fn rgw_over_tls_is_trusted_only_with_the_hospital_ca_bundle() {
    let hospital = Pki::new("Hospital CA");
    let other = Pki::new("Some other CA");
    let certificate = hospital.server("rgw", &["127.0.0.1"]);
    let gateway = ceph()
        .start_tls_gateway(&certificate)
        .expect("an HTTPS gateway");
    let settings = s3_settings(&gateway.endpoint());
    assert!(settings.endpoint.starts_with("https://"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The buckets are created over the plain shared gateway (same cluster).
    let plain = ObjectStore::new(&S3Settings {
        endpoint: ceph().endpoint(),
        ..settings.clone()
    })
    .unwrap();
    runtime.block_on(plain.create_missing_buckets()).unwrap();

    let site = Site::with_admin();
    let trusted = objects_check(&site, &settings, Some(&hospital.ca_file));
    assert_eq!(trusted["status"], "pass", "{trusted}");
    for refused in [
        objects_check(&site, &settings, None),
        objects_check(&site, &settings, Some(&other.ca_file)),
    ] {
        assert_eq!(refused["status"], "fail", "{refused}");
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains("TLS to the object store failed"),
            "{message}"
        );
        assert!(message.contains("certificate"), "{message}");
        assert!(message.contains("objects.ca_bundle"), "{message}");
        assert!(message.contains("KX-OBJ-495"), "{message}");
    }

    // A core with the bundle stores and serves documents over HTTPS to RGW.
    let mut env = documents_env(&site, &settings);
    env.push((
        "KIOREX_OBJECTS__CA_BUNDLE".into(),
        hospital.ca_file.display().to_string(),
    ));
    let core = site.serve_with(&env);
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let token: Value = client
            .post(format!("{}/api/v1/auth/token", core.base))
            .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().expect("token").to_owned();
        let patient = json!({"resourceType": "Patient", "name": [{"family": "Mensah", "given": ["Ama"]}], "birthDate": "1990-05-05", "gender": "female"});
        let created = client
            .post(format!("{}/fhir/Patient", core.base))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(patient.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let patient: Value = created.json().await.unwrap();
        let content = b"Consent, sent to RGW over TLS".to_vec();
        let form = reqwest::multipart::Form::new()
            .text("category", "consent")
            .part(
                "file",
                reqwest::multipart::Part::bytes(content.clone()).file_name("consent.txt"),
            );
        let uploaded = client
            .post(format!(
                "{}/api/v1/patients/{}/documents",
                core.base,
                patient["id"].as_str().unwrap()
            ))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = uploaded.status();
        let document: Value = uploaded.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{document}");
        let downloaded = client
            .get(format!(
                "{}/api/v1/documents/{}/content",
                core.base,
                document["id"].as_str().unwrap()
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(downloaded.status(), StatusCode::OK);
        assert_eq!(downloaded.bytes().await.unwrap().to_vec(), content);
    });
}
