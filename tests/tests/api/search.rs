use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["search"]["mode"] == "match")
                .map(|x| x["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn families(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x["resource"]["name"][0]["family"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_search_parameters() {
    let app = TestApp::spawn().await;
    let muller = app.patient("Müller", "Anna", "1980-04-02").await;
    let mulligan = app.patient("Mulligan", "Sean", "1975-12-31").await;
    let garcia = app.patient("de la García", "José", "2001-07-15").await;
    let s = |q: &'static str| app.get(User::NurseA, q);

    let found = s("/fhir/Patient?name=mul").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body["type"], "searchset");
    assert_eq!(
        families(&found.body),
        ["Müller", "Mulligan"],
        "without _sort, in the order of the matched name"
    );
    let mut got = ids(&found.body);
    got.sort();
    let mut want = vec![muller.as_str(), mulligan.as_str()];
    want.sort();
    assert_eq!(got, want, "prefix, accents and case ignored");
    assert_eq!(
        ids(&s("/fhir/Patient?family=MUELL,muller").await.body),
        [muller.as_str()],
        "comma means OR"
    );
    assert_eq!(
        ids(&s("/fhir/Patient?name=garcia").await.body),
        [garcia.as_str()],
        "a word inside a family name"
    );
    assert_eq!(
        ids(&s("/fhir/Patient?given=jose").await.body),
        [garcia.as_str()]
    );
    assert_eq!(
        ids(&s("/fhir/Patient?family:exact=muller").await.body),
        [muller.as_str()]
    );
    assert!(ids(&s("/fhir/Patient?family:exact=mull").await.body).is_empty());
    assert_eq!(
        ids(&s("/fhir/Patient?birthdate=1980-04-02").await.body),
        [muller.as_str()]
    );
    assert_eq!(
        ids(&s("/fhir/Patient?birthdate=1975").await.body),
        [mulligan.as_str()],
        "a year covers the year"
    );
    assert_eq!(
        ids(&s("/fhir/Patient?birthdate=gt2000-01-01").await.body),
        [garcia.as_str()]
    );
    let mut before = ids(&s("/fhir/Patient?birthdate=lt1981-01-01&_sort=birthdate")
        .await
        .body);
    assert_eq!(
        before,
        [mulligan.as_str(), muller.as_str()],
        "sorted by birth date"
    );
    before = ids(
        &s("/fhir/Patient?birthdate=le1980-04-02&birthdate=ge1980-04-02")
            .await
            .body,
    );
    assert_eq!(
        before,
        [muller.as_str()],
        "two criteria on one parameter both hold"
    );
    assert_eq!(
        ids(&s("/fhir/Patient?gender=female&name=mulligan").await.body),
        [mulligan.as_str()]
    );
    assert_eq!(
        ids(&app
            .get(User::NurseA, &format!("/fhir/Patient?_id={garcia}"))
            .await
            .body),
        [garcia.as_str()]
    );
    assert_eq!(
        families(&s("/fhir/Patient?_sort=-family").await.body),
        ["Mulligan", "Müller", "de la García"],
        "descending, accents folded"
    );

    let mrn = app
        .get(User::Admin, &format!("/fhir/Patient/{muller}"))
        .await
        .body["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_mrn = app
        .get(
            User::NurseA,
            &format!("/fhir/Patient?identifier=urn:kiorex:mrn:FACA|{mrn}"),
        )
        .await;
    assert_eq!(ids(&by_mrn.body), [muller.as_str()]);
    let recent = app
        .get(User::NurseA, "/fhir/Patient?_lastUpdated=ge2020-01-01")
        .await;
    assert_eq!(ids(&recent.body).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_follows_next_and_previous_links() {
    let app = TestApp::spawn().await;
    for i in 0..7 {
        app.patient(&format!("Pager{i}"), "Page", "1990-01-01")
            .await;
    }
    let mut seen = Vec::new();
    let mut url = app.url("/fhir/Patient?name=pager&_count=3&_sort=family");
    let mut pages = 0;
    loop {
        let page = app
            .send(app.client().get(&url).bearer_auth(app.token(User::Admin)))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(families(&page.body));
        pages += 1;
        let links = page.body["link"].as_array().unwrap().clone();
        if pages > 1 {
            assert!(
                links.iter().any(|l| l["relation"] == "previous"),
                "page {pages} has a previous link"
            );
        }
        match links.iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (0..7).map(|i| format!("Pager{i}")).collect::<Vec<_>>()
    );
}

async fn post_ok(app: &TestApp, path: &str, body: Value) -> String {
    let reply = app.post(User::Admin, path, &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{path}: {}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinical_searches_by_patient_code_category_date_and_include() {
    let app = TestApp::spawn().await;
    let p = app.patient("Clinical", "Search", "1960-06-06").await;
    let other = app.patient("Other", "Person", "1961-06-06").await;
    let subject = json!({"reference": format!("Patient/{p}")});
    let encounter = post_ok(&app, "/fhir/Encounter", json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": subject,
        "period": {"start": "2026-10-01T08:00:00Z", "end": "2026-10-01T09:00:00Z"}})).await;
    let vital = |code: &str, unit: &str, value: f64, when: &str| {
        json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "subject": subject,
        "encounter": {"reference": format!("Encounter/{encounter}")}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    };
    let hr = post_ok(
        &app,
        "/fhir/Observation",
        vital("8867-4", "/min", 80.0, "2026-10-01T08:10:00Z"),
    )
    .await;
    let temp = post_ok(
        &app,
        "/fhir/Observation",
        vital("8310-5", "Cel", 38.5, "2026-10-02T08:10:00Z"),
    )
    .await;
    post_ok(
        &app,
        "/fhir/Observation",
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Other"},
        "subject": {"reference": format!("Patient/{other}")}}),
    )
    .await;
    post_ok(&app, "/fhir/Condition", json!({"resourceType": "Condition", "subject": subject,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}})).await;
    post_ok(&app, "/fhir/AllergyIntolerance", json!({"resourceType": "AllergyIntolerance", "patient": subject, "code": {"text": "Penicillin"}})).await;
    post_ok(
        &app,
        "/fhir/MedicationRequest",
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": "Metformin 500 mg tablet"}, "subject": subject}),
    )
    .await;
    post_ok(&app, "/fhir/Procedure", json!({"resourceType": "Procedure", "status": "completed", "code": {"text": "Wound dressing"},
        "subject": subject, "performedDateTime": "2026-10-01T08:30:00Z"})).await;

    let app = &app;
    let get = |q: String| async move { app.get(User::Admin, &q).await };
    let by_patient = get(format!("/fhir/Observation?patient={p}")).await;
    let mut found = ids(&by_patient.body);
    found.sort();
    let mut want = vec![hr.as_str(), temp.as_str()];
    want.sort();
    assert_eq!(found, want);
    assert_eq!(
        ids(&get(format!(
            "/fhir/Observation?subject=Patient/{p}&code=http://loinc.org|8310-5"
        ))
        .await
        .body),
        [temp.as_str()]
    );
    assert_eq!(
        ids(&get(format!(
            "/fhir/Observation?patient={p}&category=vital-signs&date=2026-10-01"
        ))
        .await
        .body),
        [hr.as_str()]
    );
    assert_eq!(
        ids(
            &get(format!("/fhir/Observation?patient={p}&date=ge2026-10-02"))
                .await
                .body
        ),
        [temp.as_str()]
    );
    assert_eq!(
        ids(&get(format!(
            "/fhir/Observation?encounter={encounter}&_sort=-date"
        ))
        .await
        .body),
        [temp.as_str(), hr.as_str()]
    );
    let with_subject = get(format!(
        "/fhir/Observation?_id={hr}&_include=Observation:subject"
    ))
    .await;
    let included: Vec<&Value> = with_subject.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert_eq!(included.len(), 1);
    assert_eq!(included[0]["resource"]["id"], json!(p));
    assert_eq!(
        ids(&get(format!(
            "/fhir/Encounter?patient={p}&status=finished&date=2026-10"
        ))
        .await
        .body),
        [encounter.as_str()]
    );
    for resource in [
        "Condition",
        "AllergyIntolerance",
        "MedicationRequest",
        "Procedure",
    ] {
        let found = get(format!("/fhir/{resource}?patient={p}")).await;
        assert_eq!(ids(&found.body).len(), 1, "{resource}: {}", found.body);
        assert!(
            ids(&get(format!("/fhir/{resource}?patient={other}")).await.body).is_empty(),
            "{resource} of another patient"
        );
    }
    assert_eq!(
        ids(&get("/fhir/Condition?code=E11.9".into()).await.body).len(),
        1
    );
}
