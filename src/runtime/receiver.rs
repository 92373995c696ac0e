//! `POST /alertmanager`: Alertmanager's webhook receiver, on the main listener (Alertmanager
//! reaches it through the Service). Only with the bearer token ALERTMANAGER_TOKEN (a Secret;
//! Alertmanager's `http_config.authorization.credentials`), bodies up to 1 MiB. What it
//! receives feeds the `alert` signal and is shown in `/status`; a push evaluates at once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::mpsc;

use crate::settings::Secret;
use crate::signals::alerts::{AlertStore, Webhook};

/// Larger bodies are refused (413): Alertmanager groups alerts, a group is small.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AlertReceiver {
    pub alerts: Arc<AlertStore>,
    /// ALERTMANAGER_TOKEN; without it the receiver refuses everything.
    pub token: Option<Secret>,
    /// Wakes the daemon to evaluate the pushed sources at once.
    pub push: Option<mpsc::Sender<()>>,
}

pub fn router(receiver: AlertReceiver) -> Router {
    Router::new()
        .route("/alertmanager", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(receiver)
}

async fn receive(State(r): State<AlertReceiver>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = &r.token else {
        let text = "ALERTMANAGER_TOKEN is not set: this receiver is off\n";
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    };
    if !crate::runtime::admin::bearer(token, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token (ALERTMANAGER_TOKEN) is required\n",
        )
            .into_response();
    }
    let hook: Webhook = match serde_json::from_slice(&body) {
        Ok(hook) => hook,
        Err(e) => {
            let text = format!("not an Alertmanager webhook body: {e}\n");
            return (StatusCode::BAD_REQUEST, text).into_response();
        }
    };
    let version = hook.version.clone().unwrap_or_default();
    let received = r.alerts.receive(hook, jiff::Timestamp::now());
    tracing::info!(received, version = %version, "alerts received from Alertmanager");
    if let Some(push) = &r.push {
        // Full: an evaluation is already due; it will read these alerts.
        let _ = push.try_send(());
    }
    (StatusCode::OK, Json(serde_json::json!({"received": received}))).into_response()
}
