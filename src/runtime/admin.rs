//! The admin listener (ADMIN_ADDR, `127.0.0.1:8001` by default): the endpoints that change
//! the daemon's state, apart from the read-only ones on LISTEN_ADDR that the Service
//! exposes to the cluster. Reached with `kubectl port-forward pod/NAME 8001` or `kubectl
//! exec`; with ADMIN_TOKEN set, only with `Authorization: Bearer TOKEN` too. Requests wait
//! in a bounded queue for the loop, and a replica that does not lead says so instead of
//! queueing what only the leader could apply.

use std::sync::{Arc, RwLock};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use crate::core::target::qualify;
use crate::runtime::commands::{Command, QUEUE};
use crate::runtime::status::Status;
use crate::settings::Secret;

#[derive(Clone)]
pub struct AdminState {
    pub status: Arc<RwLock<Status>>,
    /// Operators' requests to the daemon's loop.
    pub commands: tokio::sync::mpsc::Sender<Command>,
    pub token: Option<Secret>,
}

pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/quarantine/clear", axum::routing::post(clear_quarantine))
        .with_state(state)
}

/// Equal without an early exit: the time taken does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    token.is_none_or(|token| bearer(token, headers))
}

/// Whether the request carries `Authorization: Bearer TOKEN`, compared in constant time.
pub fn bearer(token: &Secret, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim().as_bytes(), token.expose().as_bytes()))
}

/// `?rule=R&target=T` (either or both may be left out: all of them).
#[derive(Debug, serde::Deserialize)]
struct ClearQuery {
    rule: Option<String>,
    target: Option<String>,
}

/// An operator's "this (rule, target) may act again". Queued for the daemon, which owns the
/// engine, and applied at its next evaluation.
async fn clear_quarantine(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<ClearQuery>,
) -> Response {
    if !authorized(s.token.as_ref(), &headers) {
        let body = serde_json::json!({"error": "ADMIN_TOKEN is set: send `Authorization: Bearer TOKEN`"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let (leader, quarantined, target) = {
        let status = s.status.read().unwrap_or_else(|e| e.into_inner());
        // `deployment/app` is in the automaton's own namespace, as in a rule file.
        let target = q.target.map(|t| qualify(&t, &status.namespace));
        let quarantined: Vec<String> = status
            .rules
            .iter()
            .filter(|r| q.rule.as_ref().is_none_or(|n| *n == r.name))
            .flat_map(|r| {
                r.targets
                    .iter()
                    .filter(|t| t.quarantined.is_some())
                    .filter(|t| target.as_ref().is_none_or(|n| *n == t.target))
                    .map(move |t| format!("{}/{}", r.name, t.target))
            })
            .collect();
        (status.leader, quarantined, target)
    };
    // Quarantines are kept by the replica that acted: a follower has nothing to clear.
    if !leader {
        let body = serde_json::json!({"queued": false,
            "error": "this replica does not hold the Lease: send this to the leader (`kubectl get lease`, then port-forward to its pod)"});
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    let command = Command::ClearQuarantine { rule: q.rule, target };
    if s.commands.try_send(command).is_err() {
        let body = serde_json::json!({"queued": false,
            "error": format!("{QUEUE} requests are already waiting for the next evaluation; try again after it")});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let body = serde_json::json!({"queued": true, "quarantined_now": quarantined,
        "note": "applied at the next evaluation"});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn app(leader: bool, token: Option<&str>) -> (Router, tokio::sync::mpsc::Receiver<Command>) {
        let mut status = Status::new(Duration::from_secs(15), false);
        status.leader = leader;
        let (commands, received) = crate::runtime::commands::channel();
        let token = token.map(|t| {
            crate::settings::Settings::from_vars([("ADMIN_TOKEN".to_owned(), t.to_owned())])
                .expect("a valid token")
                .admin_token
                .expect("set")
        });
        let app = admin_router(AdminState {
            status: Arc::new(RwLock::new(status)),
            commands,
            token,
        });
        (app, received)
    }

    async fn post(app: Router, uri: &str, auth: Option<&str>) -> StatusCode {
        let mut request = Request::post(uri);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn quarantine_clears_are_queued_for_the_loop_and_bounded() {
        let (app, mut received) = app(true, None);
        assert_eq!(
            post(
                app.clone(),
                "/quarantine/clear?rule=lag&target=deployment/app",
                None
            )
            .await,
            StatusCode::ACCEPTED
        );
        // As in a rule file, a target without a namespace is in the automaton's own.
        assert_eq!(
            received.try_recv().unwrap(),
            Command::ClearQuarantine {
                rule: Some("lag".to_owned()),
                target: Some("default/deployment/app".to_owned())
            }
        );
        for _ in 0..QUEUE {
            assert_eq!(
                post(app.clone(), "/quarantine/clear", None).await,
                StatusCode::ACCEPTED
            );
        }
        // The loop has not taken them yet: the next one is refused, not queued.
        assert_eq!(
            post(app.clone(), "/quarantine/clear", None).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(received.try_recv().is_ok());
        assert_eq!(post(app, "/quarantine/clear", None).await, StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn a_follower_says_it_is_not_the_leader_and_queues_nothing() {
        let (app, mut received) = app(false, None);
        assert_eq!(post(app, "/quarantine/clear", None).await, StatusCode::CONFLICT);
        assert!(received.try_recv().is_err());
    }

    #[tokio::test]
    async fn with_a_token_only_its_bearer_is_heard() {
        let token = "0123456789abcdef-admin";
        let (app, mut received) = app(true, Some(token));
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic 0123456789abcdef-admin"),
            Some("Bearer 0123456789abcdef-admi"),
        ] {
            assert_eq!(
                post(app.clone(), "/quarantine/clear", auth).await,
                StatusCode::UNAUTHORIZED,
                "{auth:?}"
            );
        }
        assert!(received.try_recv().is_err());
        let good = format!("Bearer {token}");
        assert_eq!(
            post(app, "/quarantine/clear", Some(&good)).await,
            StatusCode::ACCEPTED
        );
        assert!(received.try_recv().is_ok());
    }
}
