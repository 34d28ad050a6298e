//! The HTTP server: `punctual web` and `promote --web-addr` serve the dashboard, the JSON API
//! under `/api/v1`, `/metrics` and `/healthz`; `--metrics-addr` (`promote`, `work`) serves
//! only the last two, on the same server code.
//!
//! | file | what it owns |
//! |---|---|
//! | `routes.rs` | every `/api/v1` route in one table: the router is built from it, and a test checks it against `assets/openapi.json` |
//! | `api.rs` | the handlers of `/api/v1`: one library call each |
//! | `guard.rs` | authentication, refusal of cross-site writes, read-only mode |
//! | `error.rs` | errors as JSON with a stable code and the status a client expects |
//! | `history.rs` | the figures the dashboard charts over time, sampled in the background |
//! | `assets/` | the dashboard (one HTML page, one script, one style sheet) and `openapi.json`, compiled into the binary |
//!
//! The dashboard is a small script that calls the same API as any client, so every action
//! it offers is an API route with the same checks; it loads nothing from another origin
//! (the Content-Security-Policy says `'self'`), so it works offline. Its URLs are relative,
//! so a reverse proxy may serve it under any path prefix.

mod api;
mod error;
mod guard;
mod history;
mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::future::BoxFuture;
use punctual::metrics::PromoterMetrics;
use punctual::{Namespace, Queue};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::cli::{SiteArgs, WebArgs};
use crate::{shutdown_on_signals, CmdResult, Ctx, Failure};

pub(crate) use guard::Auth;

/// Largest request body: a bulk schedule of many jobs with their data.
const MAX_BODY: usize = 32 << 20;
/// Longest a request may take; above the longest wait the API allows.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// How long in-flight requests may finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(5);

/// Everything but static files may come only from this origin, and no page may frame this one.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The Prometheus text of `/metrics`, rendered on demand.
pub(crate) type Render = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;
/// The health check of `/healthz`: `Err` says why the process is unhealthy.
pub(crate) type Health = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What `/metrics` and `/healthz` answer with.
#[derive(Clone)]
pub(crate) struct Probes {
    pub(crate) metrics: Render,
    pub(crate) health: Health,
}

/// What the dashboard and the API read and act on.
pub(crate) struct Site {
    ns: Namespace,
    read_only: bool,
    auth: Auth,
    /// The promoter this server runs in (`promote --web-addr`): its promotion lags.
    promoter: Option<PromoterMetrics>,
    probes: Probes,
    history: history::History,
    /// Handles of queues that exist, opened once.
    queues: tokio::sync::Mutex<HashMap<String, Queue>>,
}

impl Site {
    pub(crate) fn new(
        ns: Namespace,
        auth: Auth,
        read_only: bool,
        promoter: Option<PromoterMetrics>,
        probes: Probes,
    ) -> Arc<Site> {
        Arc::new(Site {
            ns,
            read_only,
            auth,
            promoter,
            probes,
            history: history::History::default(),
            queues: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The queue `name` if it exists (a read never creates one).
    async fn existing(&self, name: &str) -> Result<Queue, error::ApiError> {
        if let Some(q) = self.queues.lock().await.get(name) {
            return Ok(q.clone());
        }
        match self.ns.existing_queue(name).await? {
            Some(q) => {
                self.queues.lock().await.insert(name.to_owned(), q.clone());
                Ok(q)
            }
            None => Err(error::ApiError::unknown_queue(name)),
        }
    }

    /// The queue `name`, made if it does not exist (scheduling into a new queue, as the CLI
    /// and the library do).
    async fn queue(&self, name: &str) -> Result<Queue, error::ApiError> {
        if let Some(q) = self.queues.lock().await.get(name) {
            return Ok(q.clone());
        }
        let q = self.ns.queue(name).await?;
        self.queues.lock().await.insert(name.to_owned(), q.clone());
        Ok(q)
    }
}

/// `punctual web`.
pub(crate) async fn run(ctx: &Ctx, args: WebArgs) -> CmdResult {
    let auth = Auth::from_args(&args.site, args.addr)?;
    let ns = ctx.namespace().await?;
    let endpoint = crate::sidecar::Endpoint::new(ns.clone(), PromoterMetrics::default(), true);
    let site = Site::new(ns, auth, args.site.read_only, None, endpoint.probes());
    let stop = shutdown_on_signals()?;
    let (addr, server) = start(args.addr, stop.clone(), site).await?;
    tracing::info!("dashboard and API at http://{addr}/");
    server.await;
    Ok(())
}

/// `promote --web-addr`: the site, with the promoter's lags and health.
pub(crate) async fn start_in_promoter(
    addr: SocketAddr,
    args: &SiteArgs,
    ns: Namespace,
    promoter: PromoterMetrics,
    probes: Probes,
    stop: CancellationToken,
) -> Result<(), Failure> {
    let auth = Auth::from_args(args, addr)?;
    let site = Site::new(ns, auth, args.read_only, Some(promoter), probes);
    let (_, server) = start(addr, stop, site).await?;
    tokio::spawn(server);
    Ok(())
}

/// Binds `addr` now (a taken port is a start-up error) and returns the bound address and the
/// server, which runs until `stop` and then lets requests in flight finish for a moment.
pub(crate) async fn start(
    addr: SocketAddr,
    stop: CancellationToken,
    site: Arc<Site>,
) -> Result<(SocketAddr, BoxFuture<'static, ()>), Failure> {
    let sampler = tokio::spawn(history::run(site.clone(), stop.clone()));
    let app = site_router(site);
    let (local, server) = listen(addr, stop, app).await?;
    Ok((
        local,
        Box::pin(async move {
            server.await;
            sampler.abort();
        }),
    ))
}

/// The metrics-only server of `--metrics-addr`: `/metrics` and `/healthz`, no API.
pub(crate) async fn serve_probes(
    addr: SocketAddr,
    stop: CancellationToken,
    probes: Probes,
) -> Result<(), Failure> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics or /healthz\n") })
        .with_state(probes);
    let (local, server) = listen(addr, stop, app).await?;
    tracing::info!("metrics at http://{local}/metrics, health at http://{local}/healthz");
    tokio::spawn(server);
    Ok(())
}

async fn listen(
    addr: SocketAddr,
    stop: CancellationToken,
    app: Router,
) -> Result<(SocketAddr, BoxFuture<'static, ()>), Failure> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    let server = async move {
        let graceful =
            axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
        // Long waits (`/wait`) may be in flight at a stop: they get a moment, not their timeout.
        let deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        };
        tokio::select! {
            served = graceful => if let Err(e) = served {
                tracing::warn!(error = %e, "http server failed");
            },
            () = deadline => {}
        }
    };
    Ok((local, Box::pin(server)))
}

/// The whole site: API, probes, dashboard; behind the guard; with the security headers.
fn site_router(site: Arc<Site>) -> Router {
    let api = routes::api()
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method);
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(site_metrics))
        .route("/healthz", get(site_healthz))
        .route("/", get(page))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            site.clone(),
            guard::check,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(site)
}

async fn metrics(State(probes): State<Probes>) -> Response {
    render_metrics(&probes).await
}

async fn healthz(State(probes): State<Probes>) -> Response {
    render_health(&probes).await
}

async fn site_metrics(State(site): State<Arc<Site>>) -> Response {
    render_metrics(&site.probes).await
}

async fn site_healthz(State(site): State<Arc<Site>>) -> Response {
    render_health(&site.probes).await
}

async fn render_metrics(probes: &Probes) -> Response {
    let body = (probes.metrics)().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn render_health(probes: &Probes) -> Response {
    match (probes.health)().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

/// The dashboard's files, compiled in.
const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
pub(crate) const OPENAPI_JSON: &str = include_str!("assets/openapi.json");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

pub(crate) async fn openapi() -> Response {
    asset("application/json", OPENAPI_JSON)
}
