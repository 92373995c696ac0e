//! The `http` action's retries against a local server. A connect error (nothing sent) is
//! always retried. A POST that got a 5xx may have acted: it is retried only on 429 or 503
//! with a Retry-After, or on any 5xx when the rule opts in (`retry_5xx`); an idempotent PUT
//! is retried on every transient status. A timeout and other 4xx never are (a timed-out
//! admin POST may have been applied, a 400 will not get better).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automaton::actions::Http;
use automaton::clients::backoff::FullJitter;
use automaton::clients::http::{HttpClient, HttpError as ActionError};
use automaton::core::values::Dur;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
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
            any(move || async move {
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
        retry_5xx: false,
    }
}

#[tokio::test]
async fn what_may_have_acted_is_not_retried_unless_it_is_safe() {
    let (base, calls) = server(&[
        ("/flaky", vec![(503, None), (502, None), (200, None)]),
        ("/flaky-opt-in", vec![(503, None), (502, None), (200, None)]),
        ("/flaky-put", vec![(503, None), (502, None), (200, None)]),
        ("/down", vec![(500, None)]),
        ("/down-opt-in", vec![(500, None)]),
        ("/busy", vec![(429, Some("1")), (200, None)]),
        ("/unavailable", vec![(503, Some("1")), (200, None)]),
        ("/too-busy", vec![(429, Some("3600"))]),
        ("/bad", vec![(400, None)]),
        ("/created", vec![(201, None)]),
        ("/slow", vec![(200, None)]),
    ])
    .await;
    let ex = executor();
    let run = |path: &str, method: &str, retry_5xx: bool| {
        let mut spec = http(format!("{base}{path}"));
        spec.method = method.to_owned();
        spec.retry_5xx = retry_5xx;
        let ex = ex.clone();
        async move { spec.send(&ex).await }
    };

    // A POST answered 503 without Retry-After may have acted: one attempt, the error.
    let err = run("/flaky", "POST", false).await.unwrap_err();
    assert!(matches!(err, ActionError::Status { status: 503, .. }), "{err}");
    let err = run("/down", "POST", false).await.unwrap_err();
    assert!(matches!(err, ActionError::Status { status: 500, .. }), "{err}");
    // Opted in, or idempotent: retried through the 5xx.
    assert_eq!(
        run("/flaky-opt-in", "POST", true).await.unwrap(),
        format!("{base}/flaky-opt-in answered 200 after 3 attempts")
    );
    assert_eq!(
        run("/flaky-put", "PUT", false).await.unwrap(),
        format!("{base}/flaky-put answered 200 after 3 attempts")
    );
    // Three retries, then the last error.
    let err = run("/down-opt-in", "POST", true).await.unwrap_err();
    assert!(matches!(err, ActionError::Status { status: 500, .. }), "{err}");
    // 429 and 503 with a Retry-After: the server did not take it; honoured in place of the
    // computed (10-50 ms) delay, even for a POST.
    let started = Instant::now();
    assert!(run("/busy", "POST", false)
        .await
        .unwrap()
        .ends_with("answered 200 after 2 attempts"));
    assert!(run("/unavailable", "POST", false)
        .await
        .unwrap()
        .ends_with("answered 200 after 2 attempts"));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 was not waited for"
    );
    // A Retry-After beyond 30 s is not waited for: fail now, decide again next tick.
    let err = run("/too-busy", "POST", false).await.unwrap_err();
    assert!(matches!(err, ActionError::Status { status: 429, .. }), "{err}");
    // A 400 is permanent; `expect_status: 200` makes a 201 a failure too, not retried.
    assert!(matches!(
        run("/bad", "PUT", false).await.unwrap_err(),
        ActionError::Status { status: 400, .. }
    ));
    let err = run("/created", "POST", true).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{base}/created answered 201, expected 200")
    );
    // A timed-out POST may have been applied: never sent twice, even opted in.
    let err = run("/slow", "POST", true).await.unwrap_err();
    assert!(matches!(err, ActionError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("not retried"), "{err}");

    let calls = calls.lock().unwrap().clone();
    let expected: BTreeMap<String, usize> = [
        ("/flaky", 1),
        ("/flaky-opt-in", 3),
        ("/flaky-put", 3),
        ("/down", 1),
        ("/down-opt-in", 4),
        ("/busy", 2),
        ("/unavailable", 2),
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
