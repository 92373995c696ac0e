//! URLs in rules and settings: validated without echoing them (a webhook URL holds its
//! token), shown only redacted, keyed by `host:port` for circuit breakers.

use url::Url;

/// `scheme://host[:port]/path` without credentials or query: safe for logs and labels.
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                port,
                u.path()
            )
        }
        Err(_) => "<invalid url>".to_owned(),
    }
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
