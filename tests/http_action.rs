//! The `http` action's retries against a local server: transient failures (connect errors,
//! 5xx, 429 with its Retry-After) are retried with backoff; a timeout and other 4xx are not
//! (a timed-out admin POST may have been applied, a 400 will not get better).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automaton::actions::Http;
use automaton::clients::backoff::FullJitter;
use automaton::clients::http::{HttpClient, HttpError as ActionError};
use automaton::core::values::Dur;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// A path and the statuses (with an optional Retry-After) it answers, call after call.
type Script = (&'static str, Vec<(u16, Option<&'static str>)>);

/// Answers each path with its script of statuses (the last one repeats), counting calls.
async fn server(scripts: &[Script]) -> (String, Arc<Mutex<BTreeMap<String, usize>>>) {
    let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let mut app = Router::new();
    for (path, script) in scripts {
        let (calls, script, path) = (calls.clone(), script.clone(), *path);
        app = app.route(
            path,
            post(move || async move {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    let n = calls.entry(path.to_owned()).or_insert(0);
                    *n += 1;
                    *n
                };
                if path == "/slow" {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                let (status, retry_after) = script[(n - 1).min(script.len() - 1)];
                let mut headers = HeaderMap::new();
                if let Some(secs) = retry_after {
                    headers.insert("retry-after", secs.parse().unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), headers)
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

fn executor() -> HttpClient {
    let fast = FullJitter::exponential(Duration::from_millis(10), Duration::from_millis(50), 3);
    HttpClient::new().unwrap().with_backoff(fast)
}

fn http(url: String) -> Http {
    Http {
        method: "POST".to_owned(),
        url,
        body: None,
        expect_status: Some(200),
        timeout: Dur(Duration::from_millis(500)),
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_are_not() {
    let (base, calls) = server(&[
        ("/flaky", vec![(503, None), (502, None), (200, None)]),
        ("/down", vec![(500, None)]),
        ("/busy", vec![(429, Some("1")), (200, None)]),
        ("/too-busy", vec![(429, Some("3600"))]),
        ("/bad", vec![(400, None)]),
        ("/created", vec![(201, None)]),
        ("/slow", vec![(200, None)]),
    ])
    .await;
    let ex = executor();
    let run = |path: &str| {
        let (ex, spec) = (ex.clone(), http(format!("{base}{path}")));
        async move { spec.send(&ex).await }
    };

    assert_eq!(
        run("/flaky").await.unwrap(),
        format!("{base}/flaky answered 200 after 3 attempts")
    );
    // Three retries, then the last error.
    let err = run("/down").await.unwrap_err();
    assert!(matches!(err, ActionError::Status { status: 500, .. }), "{err}");
    // Retry-After is honoured in place of the computed (10-50 ms) delay.
    let started = Instant::now();
    assert!(run("/busy")
        .await
        .unwrap()
        .ends_with("answered 200 after 2 attempts"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not waited for"
    );
    // A Retry-After beyond 30 s is not waited for: fail now, decide again next tick.
    let err = run("/too-busy").await.unwrap_err();
    assert!(matches!(err, ActionError::Status { status: 429, .. }), "{err}");
    // A 400 is permanent; `expect_status: 200` makes a 201 a failure too, not retried.
    assert!(matches!(
        run("/bad").await.unwrap_err(),
        ActionError::Status { status: 400, .. }
    ));
    let err = run("/created").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{base}/created answered 201, expected 200")
    );
    // A timed-out POST may have been applied: never sent twice.
    let err = run("/slow").await.unwrap_err();
    assert!(matches!(err, ActionError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("not retried"), "{err}");

    let calls = calls.lock().unwrap().clone();
    let expected: BTreeMap<String, usize> = [
        ("/flaky", 3),
        ("/down", 4),
        ("/busy", 2),
        ("/too-busy", 1),
        ("/bad", 1),
        ("/created", 1),
        ("/slow", 1),
    ]
    .into_iter()
    .map(|(p, n)| (p.to_owned(), n))
    .collect();
    assert_eq!(calls, expected);
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_reported_without_the_url_secret() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = http(format!("http://127.0.0.1:{port}/admin?token=s3cret"));
    let err = spec.send(&executor()).await.unwrap_err();
    assert!(matches!(err, ActionError::Connect { .. }), "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to http://127.0.0.1:{port}/admin")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}
