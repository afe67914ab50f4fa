//! Sign-in helpers shared by the identity tests: a browser's cookie, by hand.

use kiorex_testkit::{Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A signed-in browser: its session cookie and CSRF token.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
    pub body: Value,
}

/// The `name=value` of the session cookie a response sets.
pub fn session_cookie(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-kiorex-session=") && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
}

pub async fn login(app: &TestApp, username: &str, password: &str) -> Reply {
    login_with(app, json!({"username": username, "password": password})).await
}

pub async fn login_with(app: &TestApp, body: Value) -> Reply {
    app.send(app.client().post(app.url("/api/v1/auth/login")).json(&body))
        .await
}

pub async fn sign_in(app: &TestApp, username: &str, password: &str) -> Browser {
    let reply = login(app, username, password).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    browser(&reply)
}

pub fn browser(reply: &Reply) -> Browser {
    Browser {
        cookie: session_cookie(reply).expect("session cookie"),
        csrf: reply.body["csrf_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body: reply.body.clone(),
    }
}

impl Browser {
    pub async fn get(&self, app: &TestApp, path: &str) -> Reply {
        app.send(
            app.client()
                .get(app.url(path))
                .header("cookie", &self.cookie),
        )
        .await
    }

    pub async fn post(&self, app: &TestApp, path: &str, body: &Value, with_csrf: bool) -> Reply {
        let mut request = app
            .client()
            .post(app.url(path))
            .header("cookie", &self.cookie)
            .json(body);
        if with_csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        app.send(request).await
    }

    pub fn roles(&self) -> Vec<String> {
        self.body["grants"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|g| g["role"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Maps directory groups to roles at facility A (as the admin page would).
pub async fn map_groups(app: &TestApp, rows: &[(&str, &str)]) {
    let body: Vec<Value> = rows
        .iter()
        .map(|(group, role)| json!({"group": group, "facility_id": app.facility_a, "role": role}))
        .collect();
    let reply = app
        .send(
            app.client()
                .put(app.url("/api/v1/admin/group-roles"))
                .bearer_auth(app.token(kiorex_testkit::User::Admin))
                .json(&body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// Audit entries of one action, newest first, straight from the log.
pub fn audit_count(app: &TestApp, action: &str, actor: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE action = '{action}' AND actor = '{actor}'"
    ))
}
