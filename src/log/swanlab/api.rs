//! A blocking SwanLab API client, mirroring `sdk/internal/pkg/client/` (session with
//! `X-SwanLab-SDK-Version`, API-key login, `sid` cookie refreshed a week before expiry, urllib3
//! retries on 429/5xx with backoff 0, 1, 2, 4, 8 s) and `swanlab.exceptions.ApiError` (4xx is
//! final, 5xx and network errors are retryable). The API key is only ever sent in the login
//! request's `authorization` header; errors carry the method, path and status, never the key.

use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder};
use reqwest::Method;
use serde_json::Value;

use super::settings::ApiKey;
use super::time;

/// The SDK release whose protocol this client speaks; the server may gate features on it.
pub(crate) const SDK_VERSION: &str = "0.10.3";
const REFRESH_BEFORE_S: i64 = 7 * 24 * 3600;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: Option<u16>,
    pub message: String,
}

impl ApiError {
    pub fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }
    pub fn protocol(message: impl Into<String>) -> ApiError {
        // A malformed answer will not improve by asking again.
        ApiError {
            status: Some(422),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) struct Client {
    http: Http,
    base: String,
    key: ApiKey,
    sid: String,
    expires_at: i64,
    pub username: String,
}

fn http_client() -> Http {
    Http::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("qwen3-sft/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("building a reqwest client with static settings")
}

fn describe(method: &Method, url: &str, e: &reqwest::Error) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let what = if e.is_timeout() {
        "timed out".to_string()
    } else {
        // reqwest names the URL; presigned ones carry signatures in the query, so drop it.
        let mut s = e.to_string();
        if let Some(u) = e.url() {
            s = s.replace(u.as_str(), path);
        }
        s
    };
    format!("{method} {path} failed: {what}")
}

fn send(req: RequestBuilder, method: &Method, url: &str) -> Result<(u16, Value), ApiError> {
    let resp = req.send().map_err(|e| ApiError {
        status: None,
        message: describe(method, url, &e),
    })?;
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if (200..300).contains(&status) {
        return Ok((status, body));
    }
    let detail = body
        .get("message")
        .and_then(Value::as_str)
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let path = url.split('?').next().unwrap_or(url);
    Err(ApiError {
        status: Some(status),
        message: format!("{method} {path} returned HTTP {status}{detail}"),
    })
}

impl Client {
    /// `POST /api/login/api_key` with the raw key in `authorization`.
    pub fn login(api_host: &str, key: ApiKey) -> Result<Client, ApiError> {
        let mut c = Client {
            http: http_client(),
            base: format!("{api_host}/api"),
            key,
            sid: String::new(),
            expires_at: 0,
            username: String::new(),
        };
        c.refresh()?;
        Ok(c)
    }

    fn refresh(&mut self) -> Result<(), ApiError> {
        let url = format!("{}/login/api_key", self.base);
        let mut last = None;
        for delay in [0u64, 1, 2, 4, 8, 0] {
            let req = self
                .http
                .post(&url)
                .header("X-SwanLab-SDK-Version", SDK_VERSION)
                .header("authorization", self.key.expose());
            match send(req, &Method::POST, &url) {
                Ok((_, body)) => {
                    let sid = body.get("sid").and_then(Value::as_str);
                    let user = body.pointer("/userInfo/username").and_then(Value::as_str);
                    let (Some(sid), Some(user)) = (sid, user) else {
                        return Err(ApiError::protocol(
                            "login response lacks sid or userInfo.username",
                        ));
                    };
                    self.sid = sid.to_string();
                    self.username = user.to_string();
                    self.expires_at = body
                        .get("expiredAt")
                        .and_then(Value::as_str)
                        .and_then(time::parse_rfc3339)
                        .unwrap_or(i64::MAX);
                    return Ok(());
                }
                Err(e) if e.retryable() => last = Some(e),
                Err(e) if e.status == Some(401) || e.status == Some(403) => {
                    return Err(ApiError {
                        status: e.status,
                        message: format!("{e} (check the SwanLab API key)"),
                    });
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(Duration::from_secs(delay));
        }
        Err(last.expect("at least one attempt"))
    }

    /// One API call; `retries` extra attempts on retryable failures (the SDK's plain calls use 5,
    /// upload calls 0 because the uploader schedules its own retries).
    pub fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retries: usize,
    ) -> Result<(u16, Value), ApiError> {
        let now = time::now().seconds;
        if self.expires_at - now <= REFRESH_BEFORE_S {
            // The SDK keeps going with the old sid when a refresh fails.
            let _ = self.refresh();
        }
        let url = format!("{}{path}", self.base);
        let delays = [0u64, 1, 2, 4, 8];
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("X-SwanLab-SDK-Version", SDK_VERSION)
                .header("Cookie", format!("sid={}", self.sid));
            if let Some(b) = body {
                req = req.json(b);
            }
            match send(req, &method, &url) {
                Err(e) if e.retryable() && attempt < retries => {
                    std::thread::sleep(Duration::from_secs(delays[attempt.min(delays.len() - 1)]));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `PUT` of a media file to a presigned object-store URL (no cookie, no retries).
    pub fn put_object(
        &self,
        url: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ApiError> {
        let req = self
            .http
            .put(url)
            .header("X-SwanLab-SDK-Version", SDK_VERSION)
            .header("Content-Type", content_type)
            .body(bytes);
        send(req, &Method::PUT, url).map(|_| ())
    }
}
