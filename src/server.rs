//! The HTTP side: `/metrics`, `/healthz` (liveness: the loop is ticking), `/readyz` (rules
//! loaded and every source answering) and `/status` (everything, as JSON).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::Metrics;
use crate::status::Status;

#[derive(Clone)]
pub struct AppState {
    pub status: Arc<RwLock<Status>>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.encode(),
    )
        .into_response()
}

fn read(s: &AppState) -> std::sync::RwLockReadGuard<'_, Status> {
    // A poisoned lock only means a panic elsewhere; the data is still worth showing.
    s.status.read().unwrap_or_else(|e| e.into_inner())
}

async fn healthz(State(s): State<AppState>) -> Response {
    if read(&s).healthy(Instant::now()) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the evaluation loop has not ticked within 3 × CHECK_INTERVAL\n",
        )
            .into_response()
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let reasons = read(&s).not_ready();
    if reasons.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "reasons": reasons})),
        )
            .into_response()
    }
}

async fn status(State(s): State<AppState>) -> Response {
    let body =
        serde_json::to_value(&*read(&s)).unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}));
    Json(body).into_response()
}
