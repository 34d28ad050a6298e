//! Every route of `/api/v1`, once: the router is built from [`ROUTES`], and a test checks the
//! table against `assets/openapi.json` in both directions, so the document cannot drift from
//! what is served.

use std::sync::Arc;

use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use super::{api, Site};

/// What a route does (its handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    OpenApi,
    Meta,
    ListQueues,
    GetQueue,
    Pause,
    Resume,
    ListJobs,
    Schedule,
    GetJob,
    Cancel,
    Reschedule,
    Wait,
    JobEvents,
    RetryDead,
    PurgeDead,
    Timeline,
    History,
    Schedules,
    Limits,
}

/// One route: method, path (axum's and OpenAPI's `{param}` syntax, under `/api/v1`), handler.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) op: Op,
}

const fn route(method: &'static str, path: &'static str, op: Op) -> Route {
    Route { method, path, op }
}

/// The API.
pub(crate) const ROUTES: &[Route] = &[
    route("GET", "/openapi.json", Op::OpenApi),
    route("GET", "/meta", Op::Meta),
    route("GET", "/queues", Op::ListQueues),
    route("GET", "/queues/{queue}", Op::GetQueue),
    route("POST", "/queues/{queue}/pause", Op::Pause),
    route("POST", "/queues/{queue}/resume", Op::Resume),
    route("GET", "/queues/{queue}/jobs", Op::ListJobs),
    route("POST", "/queues/{queue}/jobs", Op::Schedule),
    route("GET", "/queues/{queue}/jobs/{id}", Op::GetJob),
    route("DELETE", "/queues/{queue}/jobs/{id}", Op::Cancel),
    route(
        "POST",
        "/queues/{queue}/jobs/{id}/reschedule",
        Op::Reschedule,
    ),
    route("GET", "/queues/{queue}/jobs/{id}/wait", Op::Wait),
    route("GET", "/queues/{queue}/jobs/{id}/events", Op::JobEvents),
    route("POST", "/queues/{queue}/dead/retry", Op::RetryDead),
    route("POST", "/queues/{queue}/dead/purge", Op::PurgeDead),
    route("GET", "/queues/{queue}/timeline", Op::Timeline),
    route("GET", "/queues/{queue}/history", Op::History),
    route("GET", "/queues/{queue}/schedules", Op::Schedules),
    route("GET", "/queues/{queue}/limits", Op::Limits),
];

fn handler(op: Op, method: MethodFilter) -> MethodRouter<Arc<Site>> {
    match op {
        Op::OpenApi => on(method, super::openapi),
        Op::Meta => on(method, api::meta),
        Op::ListQueues => on(method, api::list_queues),
        Op::GetQueue => on(method, api::get_queue),
        Op::Pause => on(method, api::pause),
        Op::Resume => on(method, api::resume),
        Op::ListJobs => on(method, api::list_jobs),
        Op::Schedule => on(method, api::schedule),
        Op::GetJob => on(method, api::get_job),
        Op::Cancel => on(method, api::cancel),
        Op::Reschedule => on(method, api::reschedule),
        Op::Wait => on(method, api::wait),
        Op::JobEvents => on(method, api::job_events),
        Op::RetryDead => on(method, api::retry_dead),
        Op::PurgeDead => on(method, api::purge_dead),
        Op::Timeline => on(method, api::timeline),
        Op::History => on(method, api::history),
        Op::Schedules => on(method, api::schedules),
        Op::Limits => on(method, api::limits),
    }
}

fn filter(method: &str) -> MethodFilter {
    match method {
        "POST" => MethodFilter::POST,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::GET,
    }
}

/// The `/api/v1` router (without its fallbacks).
pub(crate) fn api() -> Router<Arc<Site>> {
    ROUTES.iter().fold(Router::new(), |router, r| {
        router.route(r.path, handler(r.op, filter(r.method)))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The OpenAPI document lists exactly the served routes, each with an operationId, a
    /// summary and its responses; every path parameter is declared.
    #[test]
    fn openapi_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                documented.insert((method.to_uppercase(), path.clone()));
                assert!(operation["operationId"].is_string(), "{method} {path}");
                assert!(operation["summary"].is_string(), "{method} {path}");
                assert!(operation["responses"].is_object(), "{method} {path}");
                let declared: BTreeSet<String> = item["parameters"]
                    .as_array()
                    .into_iter()
                    .chain(operation["parameters"].as_array())
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                let used: BTreeSet<String> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .map(str::to_owned)
                    .collect();
                assert_eq!(declared, used, "path parameters of {method} {path}");
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), format!("/api/v1{}", r.path)))
            .collect();
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }
}
