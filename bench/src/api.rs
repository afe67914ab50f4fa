//! HTTP client for the Kiorex core: bearer-token login and FHIR calls.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::cli::ServerArgs;

pub const FHIR_JSON: &str = "application/fhir+json";
const TOKEN_PATH: &str = "/api/v1/auth/token";
/// Token lifetime assumed when the server does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// One request; kept so it can be sent again after a token refresh.
pub struct Call {
    pub method: Method,
    /// Path below the server address, may include a query string.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    pub fn post(path: impl Into<String>, body: &Value) -> Self {
        Self {
            method: Method::POST,
            body: Some(body.to_string().into_bytes()),
            ..Self::get(path)
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }
}

struct Token {
    value: String,
    refresh_at: Instant,
}

/// Shared by all tasks: one connection pool, one bearer token.
pub struct Api {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
    token: RwLock<Option<Token>>,
}

impl Api {
    /// A client keeping up to `connections` idle connections to the server.
    pub fn new(server: &ServerArgs, connections: usize) -> Result<Self> {
        let base = server.url.trim_end_matches('/').to_owned();
        ensure!(
            base.starts_with("http://"),
            "--url must start with http:// (this tool has no TLS support; use the server's \
             plain HTTP address, e.g. from the appliance itself)"
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiorex-bench/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .timeout(server.timeout)
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Self {
            http,
            base,
            user: server.user.clone(),
            password: server.password.clone(),
            token: RwLock::new(None),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Logs in now, so that wrong addresses or passwords fail early.
    pub async fn login(&self) -> Result<()> {
        self.refresh(None).await.map(drop)
    }

    /// Sends `call` with the bearer token; on 401 gets a new token and retries once.
    pub async fn send(&self, call: &Call) -> Result<Response> {
        let token = self.bearer().await?;
        let response = self.request(call, &token).send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let token = self.refresh(Some(&token)).await?;
        Ok(self.request(call, &token).send().await?)
    }

    /// Sends `call` and returns the JSON body of a 2xx answer.
    pub async fn fetch_json(&self, call: &Call) -> Result<Value> {
        let response = self.send(call).await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(
            status.is_success(),
            "{} {} answered HTTP {status}: {}",
            call.method,
            call.path,
            snippet(&text)
        );
        serde_json::from_str(&text).with_context(|| format!("{} did not return JSON", call.path))
    }

    fn request(&self, call: &Call, token: &str) -> RequestBuilder {
        let url = format!("{}{}", self.base, call.path);
        let mut builder = self
            .http
            .request(call.method.clone(), url)
            .bearer_auth(token)
            .header(ACCEPT, FHIR_JSON);
        if !call.query.is_empty() {
            builder = builder.query(&call.query);
        }
        if let Some(body) = &call.body {
            builder = builder.header(CONTENT_TYPE, FHIR_JSON).body(body.clone());
        }
        builder
    }

    /// The current bearer token (for requests this client does not build itself).
    pub async fn bearer(&self) -> Result<String> {
        if let Some(token) = self.token.read().await.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        self.refresh(None).await
    }

    /// Gets a new token, unless another task already replaced `stale` (or,
    /// without `stale`, already holds one that is still fresh).
    async fn refresh(&self, stale: Option<&str>) -> Result<String> {
        let mut slot = self.token.write().await;
        if let Some(token) = slot.as_ref() {
            let replaced = stale.is_some_and(|stale| stale != token.value);
            let fresh = stale.is_none() && Instant::now() < token.refresh_at;
            if replaced || fresh {
                return Ok(token.value.clone());
            }
        }
        let token = self.fetch_token().await?;
        let value = token.value.clone();
        *slot = Some(token);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<Token> {
        let body = json!({"username": self.user, "password": self.password});
        let response = self
            .http
            .post(format!("{}{TOKEN_PATH}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!(
                "login as '{}' failed: HTTP {status}: {}",
                self.user,
                snippet(&text)
            );
        }
        let answer: Value = response.json().await.context("login answer is not JSON")?;
        parse_token(&answer, Instant::now())
    }
}

fn parse_token(answer: &Value, now: Instant) -> Result<Token> {
    let value = answer["access_token"]
        .as_str()
        .context("login answer has no access_token")?
        .to_owned();
    let lifetime = answer["expires_in"]
        .as_u64()
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    let margin = (lifetime / 5).min(Duration::from_secs(60));
    Ok(Token {
        value,
        refresh_at: now + lifetime - margin,
    })
}

/// The start of a (possibly long) response body, for error messages.
pub fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    let mut short: String = text.chars().take(MAX).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_refreshed_a_minute_early() {
        let now = Instant::now();
        let answer = json!({"access_token": "t", "token_type": "Bearer", "expires_in": 900});
        let token = parse_token(&answer, now).unwrap();
        assert_eq!(token.value, "t");
        assert_eq!(token.refresh_at - now, Duration::from_secs(840));
        let short = parse_token(&json!({"access_token": "t", "expires_in": 10}), now).unwrap();
        assert_eq!(short.refresh_at - now, Duration::from_secs(8));
        assert!(parse_token(&json!({"expires_in": 10}), now).is_err());
    }

    #[test]
    fn snippet_cuts_on_characters() {
        assert_eq!(snippet("short"), "short");
        let long = "é".repeat(400);
        assert_eq!(snippet(&long).chars().count(), 301);
    }

    #[test]
    fn only_plain_http_is_accepted() {
        let server = |url: &str| ServerArgs {
            url: url.into(),
            user: "u".into(),
            password: "p".into(),
            timeout: Duration::from_secs(1),
        };
        let api = Api::new(&server("http://localhost:8080/"), 4).unwrap();
        assert_eq!(api.base(), "http://localhost:8080");
        assert!(Api::new(&server("https://localhost"), 4).is_err());
    }
}
