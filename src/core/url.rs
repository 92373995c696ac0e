//! URLs in rules and settings: validated without echoing them (a webhook URL holds its
//! token), shown only redacted, keyed by `host:port` for circuit breakers.

use url::Url;

/// What a redacted secret reads as.
const HIDDEN: &str = "***";

/// `scheme://host[:port]/path?key=***`: safe for logs, labels, `/status` and Events. The
/// user and password are dropped, every query value is hidden (`?api-key=***`), and so is
/// every path segment that looks like a token (RPC providers and chat webhooks put their
/// keys in the path).
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path: Vec<&str> = u
                .path()
                .split('/')
                .map(|segment| if token_like(segment) { HIDDEN } else { segment })
                .collect();
            let query: Vec<String> = u
                .query_pairs()
                .map(|(key, _)| format!("{}={HIDDEN}", if token_like(&key) { HIDDEN } else { &key }))
                .collect();
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            format!(
                "{}://{}{}{}{query}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                port,
                path.join("/")
            )
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// A path segment that is probably a credential: long and mixing letters with digits (an
/// API key, a webhook secret), or very long whatever it holds. Words, names and numbers
/// (`admin`, `email-service-group`, `8899`) are kept.
fn token_like(segment: &str) -> bool {
    let letters = segment.chars().any(|c| c.is_ascii_alphabetic());
    let digits = segment.chars().any(|c| c.is_ascii_digit());
    (segment.len() >= 16 && letters && digits) || segment.len() >= 40
}

/// `host:port` of an URL (the default port when none is written): one circuit breaker per
/// endpoint, whatever path is called on it.
pub fn host_port(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => "invalid".to_owned(),
    }
}

/// Checks an URL is absolute http(s). The message says what is wrong without echoing the
/// value: a webhook URL that does not parse may still hold its token.
pub fn check_url(field: &str, url: &str) -> Option<String> {
    let found = match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => return None,
        Ok(u) if matches!(u.scheme(), "http" | "https") => "no host".to_owned(),
        Ok(u) => format!("the scheme `{}`", u.scheme()),
        Err(_) if !url.contains("://") => "no scheme (`http://` or `https://`)".to_owned(),
        Err(e) => format!("an invalid URL ({e})"),
    };
    Some(format!(
        "`{field}` must be an absolute http(s) URL such as `https://host/path`, found {found}"
    ))
}

/// `text` with every http(s) URL in it redacted: for error messages and parameters that
/// may quote one (a reqwest error, a list of reference RPCs).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || "\"'`,;()[]{}<>".contains(c))
            .map_or(rest.len(), |n| at + n);
        out.push_str(&redacted(&rest[at..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_queries_and_token_paths_are_hidden() {
        for (url, shown) in [
            (
                "http://127.0.0.1:8900/admin/cache/reduce",
                "http://127.0.0.1:8900/admin/cache/reduce",
            ),
            (
                "https://user:pa55word@rpc.example.com/",
                "https://rpc.example.com/",
            ),
            (
                "https://mainnet.helius-rpc.com/?api-key=3f0c9a7e-5b1d",
                "https://mainnet.helius-rpc.com/?api-key=***",
            ),
            (
                "https://x.solana-mainnet.quiknode.pro/4d2f8e9a1b3c5d7e9f0a2b4c6d8e0f1a/",
                "https://x.solana-mainnet.quiknode.pro/***/",
            ),
            (
                "https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/dGhpc2lzYXNlY3JldDEyMzQ",
                "https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/***",
            ),
            ("http://svc:9093/api/v2/alerts", "http://svc:9093/api/v2/alerts"),
            ("not a url", "<invalid url>"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }

    #[test]
    fn urls_inside_text_are_redacted_and_the_rest_kept() {
        let text = r#"getSlot https://u:p@rpc.example.com/?api-key=s3cr3t failed; ["https://a.example/9f8e7d6c5b4a39281706f5e4d3c2b1a0"]"#;
        assert_eq!(
            redact_text(text),
            r#"getSlot https://rpc.example.com/?api-key=*** failed; ["https://a.example/***"]"#
        );
        assert_eq!(redact_text("no url here"), "no url here");
    }
}
