//! The read-only HTTP side, which the Service exposes: `/metrics`, `/healthz` (liveness: the
//! loop is ticking), `/readyz` (can do its job) and `/status` (everything, as JSON). What
//! changes state is on the admin listener (admin.rs), never here; the one thing this port
//! takes in is Alertmanager's webhook, behind its own token (receiver.rs).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::runtime::metrics::Metrics;
use crate::runtime::status::Status;

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
    let (reasons, degraded) = {
        let status = read(&s);
        (status.not_ready(), status.degraded())
    };
    if reasons.is_empty() {
        let body = if degraded.is_empty() {
            serde_json::json!({"ready": true})
        } else {
            serde_json::json!({"ready": true, "degraded": degraded})
        };
        (StatusCode::OK, Json(body)).into_response()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::runtime::status::SourceInfo;

    fn app(edit: impl FnOnce(&mut Status)) -> Router {
        let mut status = Status::new(Duration::from_secs(15), false);
        edit(&mut status);
        router(AppState {
            status: Arc::new(RwLock::new(status)),
            metrics: Arc::new(Metrics::new().unwrap()),
        })
    }

    #[tokio::test]
    async fn the_public_listener_changes_nothing() {
        let app = app(|_| {});
        let request = Request::post("/quarantine/clear").body(Body::empty()).unwrap();
        assert_eq!(
            app.oneshot(request).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }

    async fn call(app: Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_follows_the_loop() {
        let (code, _) = call(app(|_| {}), "/healthz").await;
        assert_eq!(code, StatusCode::OK, "starting up counts from the start");
        let stalled = |s: &mut Status| s.last_beat = Instant::now().checked_sub(Duration::from_secs(46 + 30));
        let (code, body) = call(app(stalled), "/healthz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("3 × CHECK_INTERVAL"));
    }

    #[tokio::test]
    async fn readyz_means_can_do_its_job() {
        let (code, body) = call(app(|_| {}), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["reasons"],
            serde_json::json!(["no valid rule set loaded", "no evaluation has completed yet"])
        );
        let ready = |s: &mut Status| {
            s.rules_loaded = true;
            s.ticks = 1;
        };
        let (code, body) = call(app(ready), "/readyz").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, r#"{"ready":true}"#));
        let source = |source: &'static str, error: &str| SourceInfo {
            source,
            kind: "kafka_lag",
            params: Default::default(),
            up: false,
            error: Some(error.into()),
        };
        // A signal source that never answered, or no longer does, is listed, never unready.
        let kafka_down = |s: &mut Status| {
            ready(s);
            s.sources
                .insert("k".into(), source("kafka", "broker 127.0.0.1:9 refused"));
        };
        let (code, body) = call(app(kafka_down), "/readyz").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(
            body.contains(
                r#""degraded":["source kafka (k) has not answered yet: broker 127.0.0.1:9 refused"]"#
            ),
            "{body}"
        );
        let answered_then_down = |s: &mut Status| {
            kafka_down(s);
            s.answered.insert("k".into());
        };
        let (code, body) = call(app(answered_then_down), "/readyz").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("source kafka (k) is down: broker"), "{body}");
        // Without a Kubernetes API configured, pod signals are unknown, not a reason.
        let no_api = |s: &mut Status| {
            ready(s);
            s.sources
                .insert("p".into(), source("kubernetes", "no Kubernetes API configured"));
        };
        assert_eq!(call(app(no_api), "/readyz").await.0, StatusCode::OK);
        // With one: the API answering and the Lease campaign running are the job.
        let api_down = |s: &mut Status| {
            no_api(s);
            s.kubernetes = Some(crate::runtime::status::KubeInfo {
                lease_running: false,
                watch_namespaces: "prod".to_owned(),
            });
        };
        let (code, body) = call(app(api_down), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("the Kubernetes API is unreachable: source p"),
            "{body}"
        );
        assert!(body.contains("the Lease campaign has stopped"), "{body}");
    }

    #[tokio::test]
    async fn metrics_and_status_render() {
        let (code, body) = call(app(|_| {}), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("automaton_build_info"), "{body}");
        let (code, body) = call(app(|_| {}), "/status").await;
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["rules_loaded"], false);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    }
}
