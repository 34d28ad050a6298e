//! Who may do what, checked once for every request before any handler runs:
//!
//! 1. `/healthz` is open (load balancers and orchestrators probe it without credentials).
//! 2. The dashboard's files hold no data: with a bearer token they are open, so the page can
//!    ask for the token; with basic auth they are not, so the browser asks at once.
//! 3. Everything else (the API, `/metrics`) needs the credentials when any are configured.
//! 4. A write (any method but GET and HEAD) from a browser must come from this site's own
//!    pages: refused when `Sec-Fetch-Site` says another site sent it or, for browsers that do
//!    not send that header, when `Origin` names another host than the request's. The check
//!    that Go 1.25's `http.CrossOriginProtection` makes; requests without either header
//!    (curl, programs) are not a browser's and pass. Cookies are never used, and a body must
//!    be `application/json`, which a cross-site form cannot send.
//! 5. In read-only mode every write is refused.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::Site;
use crate::cli::SiteArgs;
use crate::Failure;

/// The credentials a request must carry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// None (a loopback address, or `--no-auth` behind an authenticating proxy).
    Open,
    /// `Authorization: Bearer TOKEN`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`, as the whole header value expected.
    Basic(String),
}

impl Auth {
    /// From the flags: the secret is read from the environment variable they name. Without
    /// one, only a loopback address (or an explicit `--no-auth`) is served.
    pub(crate) fn from_args(args: &SiteArgs, addr: SocketAddr) -> Result<Auth, Failure> {
        let secret = |var: &str| match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
            _ => Err(Failure::Input(format!(
                "environment variable {var} is not set or empty (it should hold the secret)"
            ))),
        };
        if let Some(var) = &args.token_env {
            return Ok(Auth::Bearer(secret(var)?));
        }
        if let Some(var) = &args.basic_auth_env {
            let pair = secret(var)?;
            match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    return Ok(Auth::Basic(format!("Basic {}", base64(pair.as_bytes()))))
                }
                _ => {
                    return Err(Failure::Input(format!(
                        "environment variable {var} should hold user:password"
                    )))
                }
            }
        }
        if args.no_auth || addr.ip().is_loopback() {
            return Ok(Auth::Open);
        }
        Err(Failure::Input(format!(
            "refusing to serve {addr} without authentication: give --token-env VAR or \
             --basic-auth-env VAR, listen on 127.0.0.1, or give --no-auth behind a proxy \
             that authenticates"
        )))
    }

    /// `bearer`, `basic` or `none`, for the dashboard.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Auth::Open => "none",
            Auth::Bearer(_) => "bearer",
            Auth::Basic(_) => "basic",
        }
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        match self {
            Auth::Open => true,
            Auth::Bearer(token) => {
                let given = given.strip_prefix(b"Bearer ").unwrap_or_default();
                same(given, token.as_bytes())
            }
            Auth::Basic(expected) => same(given, expected.as_bytes()),
        }
    }
}

/// Equal, in a time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648), for the expected basic-auth header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The dashboard's own files.
fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/")
}

/// Whether a browser sent this write from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or_default();
    let origin_host = origin.split_once("://").map_or("", |(_, host)| host);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host)
}

/// The middleware.
pub(crate) async fn check(State(site): State<Arc<Site>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = path == "/healthz" || (is_page(path) && !matches!(site.auth, Auth::Basic(_)));
    if !open && !site.auth.admits(request.headers()) {
        return ApiError::unauthorized(&site.auth).into_response();
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        if cross_site(request.headers()) {
            return ApiError::cross_site().into_response();
        }
        if site.read_only {
            return ApiError::read_only().into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("ops:s3cret", "b3BzOnMzY3JldA=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn cross_site_writes_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(!cross_site(&headers(&[])), "curl sends neither header");
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[
            ("origin", "http://127.0.0.1:7474"),
            ("host", "127.0.0.1:7474")
        ])));
        assert!(cross_site(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:7474")
        ])));
        assert!(cross_site(&headers(&[("origin", "null"), ("host", "a")])));
    }

    #[test]
    fn credentials_are_compared_whole() {
        let auth = Auth::Bearer("t0ken".into());
        let mut h = HeaderMap::new();
        assert!(!auth.admits(&h));
        h.insert(header::AUTHORIZATION, "Bearer t0ke".parse().unwrap());
        assert!(!auth.admits(&h));
        h.insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        assert!(auth.admits(&h));
        h.insert(header::AUTHORIZATION, "Basic t0ken".parse().unwrap());
        assert!(!auth.admits(&h));
    }
}
