//! Who may talk to the control API: the bind policy (loopback unless explicitly allowed, and
//! then only with a token), the bearer token check, and the Origin/Host checks that stop a web
//! page in the user's browser from driving a loopback server (CSRF, DNS rebinding).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::{ApiError, AppState};
use super::{ControlConfig, ControlError, MIN_REMOTE_TOKEN_LEN};
use crate::cli::Secret;

/// Refuses a non-loopback address without `allow_remote` and a strong token; refuses a token
/// that could not travel in a header.
pub fn check_bind_policy(cfg: &ControlConfig) -> Result<(), ControlError> {
    if let Some(t) = cfg.token.as_ref().map(Secret::expose) {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ControlError::BadToken);
        }
    }
    if cfg.addr.ip().is_loopback() {
        return Ok(());
    }
    if !cfg.allow_remote {
        return Err(ControlError::RemoteNotAllowed { addr: cfg.addr });
    }
    match cfg.token.as_ref().map(Secret::expose) {
        None => Err(ControlError::RemoteNeedsToken { addr: cfg.addr }),
        Some(t) if t.len() < MIN_REMOTE_TOKEN_LEN => Err(ControlError::WeakToken),
        Some(_) => Ok(()),
    }
}

/// What every request is checked against.
#[derive(Debug)]
pub struct AuthPolicy {
    token: Option<Secret>,
    /// Bound to a loopback address: then the Host header must name loopback too.
    loopback: bool,
}

impl AuthPolicy {
    pub fn new(token: Option<Secret>, bound: SocketAddr) -> Self {
        AuthPolicy {
            token,
            loopback: bound.ip().is_loopback(),
        }
    }

    /// `Ok` or the error to answer with.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), ApiError> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if self.loopback {
            if let Some(h) = host {
                if !is_loopback_host(h) {
                    // DNS rebinding: a page on evil.example resolved to 127.0.0.1.
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!("Host '{h}' is not a loopback name"),
                    ));
                }
            }
        }
        if !matches!(*method, Method::GET | Method::HEAD) {
            if let Some(origin) = headers.get(header::ORIGIN) {
                // Browsers send Origin on every cross-site POST; a form or fetch from another
                // site must not start recordings (CSRF).
                let same = match (origin.to_str().ok(), host) {
                    (Some(o), Some(h)) => origin_matches_host(o, h),
                    _ => false,
                };
                if !same {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "cross-origin request refused",
                    ));
                }
            }
        }
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = bearer(headers).or_else(|| query.and_then(query_token));
        match presented {
            Some(t) if constant_time_eq(t.as_bytes(), expected.expose().as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("wrong token")),
            None => Err(ApiError::unauthorized(
                "this server needs 'Authorization: Bearer <token>'",
            )),
        }
    }
}

/// The middleware every route runs behind.
pub async fn require(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match state
        .auth
        .check(req.method(), req.headers(), req.uri().query())
    {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 section 2.1; the scheme is
/// case-insensitive, RFC 9110 section 11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `access_token` in the query (RFC 6750 section 2.3): what the browser page uses for the
/// MJPEG `<img>`, which cannot carry a header.
fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "access_token")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Compares without an early exit, so response timing does not leak how much of a guess was
/// right. Hand-written: six lines do not justify a dependency.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Origin: http://host:port` names the same authority as `Host: host:port`.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    authority.trim_end_matches('/').eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cfg(addr: &str, allow_remote: bool, token: Option<&str>) -> ControlConfig {
        ControlConfig {
            addr: addr.parse().unwrap(),
            allow_remote,
            token: token.map(Secret::new),
        }
    }

    #[test]
    fn remote_binds_need_the_flag_and_a_strong_token() {
        assert!(check_bind_policy(&cfg("127.0.0.1:7000", false, None)).is_ok());
        assert!(check_bind_policy(&cfg("[::1]:7000", false, None)).is_ok());
        assert!(matches!(
            check_bind_policy(&cfg("0.0.0.0:7000", false, Some("a-long-enough-token"))),
            Err(ControlError::RemoteNotAllowed { .. })
        ));
        assert!(matches!(
            check_bind_policy(&cfg("0.0.0.0:7000", true, None)),
            Err(ControlError::RemoteNeedsToken { .. })
        ));
        assert!(matches!(
            check_bind_policy(&cfg("0.0.0.0:7000", true, Some("short"))),
            Err(ControlError::WeakToken)
        ));
        assert!(check_bind_policy(&cfg("0.0.0.0:7000", true, Some("a-long-enough-token"))).is_ok());
        assert!(matches!(
            check_bind_policy(&cfg("127.0.0.1:7000", false, Some("has space"))),
            Err(ControlError::BadToken)
        ));
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn token_from_header_or_query() {
        let p = AuthPolicy::new(Some(Secret::new("s3cret")), "127.0.0.1:1".parse().unwrap());
        let get = Method::GET;
        assert!(p.check(&get, &HeaderMap::new(), None).is_err());
        let ok = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        assert!(p.check(&get, &ok, None).is_ok());
        let lower = headers(&[(header::AUTHORIZATION, "bearer s3cret")]);
        assert!(p.check(&get, &lower, None).is_ok());
        let wrong = headers(&[(header::AUTHORIZATION, "Bearer s3cre")]);
        assert_eq!(
            p.check(&get, &wrong, None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(p
            .check(&get, &HeaderMap::new(), Some("a=1&access_token=s3cret"))
            .is_ok());
        assert!(p
            .check(&get, &HeaderMap::new(), Some("access_token=nope"))
            .is_err());
    }

    #[test]
    fn loopback_server_refuses_foreign_hosts_and_origins() {
        let p = AuthPolicy::new(None, "127.0.0.1:7000".parse().unwrap());
        let post = Method::POST;
        let same = headers(&[
            (header::HOST, "127.0.0.1:7000"),
            (header::ORIGIN, "http://127.0.0.1:7000"),
        ]);
        assert!(p.check(&post, &same, None).is_ok());
        let local = headers(&[(header::HOST, "localhost:7000")]);
        assert!(p.check(&post, &local, None).is_ok());
        let v6 = headers(&[(header::HOST, "[::1]:7000")]);
        assert!(p.check(&Method::GET, &v6, None).is_ok());
        let rebound = headers(&[(header::HOST, "evil.example:7000")]);
        assert_eq!(
            p.check(&Method::GET, &rebound, None).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let csrf = headers(&[
            (header::HOST, "127.0.0.1:7000"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(p.check(&post, &csrf, None).is_err());
        // A GET with a foreign Origin (an <img> on another page) only reads.
        assert!(p.check(&Method::GET, &csrf, None).is_ok());
    }
}
