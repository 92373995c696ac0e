//! Keeping the password out of everything that is shown: URLs echoed in errors, and any
//! message that might quote one.

pub(crate) const REDACTED: &str = "***";

/// Replaces the password of a `scheme://user:password@host/...` URL, and any `password=`
/// parameter, with `***`. Works on text that does not even parse: everything between the
/// first `:` of the user info and the last `@` before the path is hidden.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_params(url);
    };
    let (head, rest) = url.split_at(scheme_end);
    // User info ends at the last `@`: an unencoded password may contain `/`, `?` or `@`, and
    // hiding a little too much (an `@` in the query) is harmless.
    let at = rest.rfind('@');
    let out = match at {
        Some(at) => {
            let (userinfo, tail) = rest.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{head}{}:{REDACTED}{tail}", &userinfo[..colon]),
                None => format!("{head}{rest}"),
            }
        }
        None => url.to_owned(),
    };
    redact_params(&out)
}

/// Hides the value of every `password=` parameter (URL query or `key=value` string).
fn redact_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        let value_start = i + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str(REDACTED);
        let tail = &rest[value_start..];
        let end = tail.find(['&', ' ', '#']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Removes whatever the URL's password segment is from `message`.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let secret = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match secret {
        Some(secret) => message.replace(secret, REDACTED),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        for (url, shown) in [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p@ss/w?rd@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?password=pw&x=1",
                "postgres://u@h/db?password=***&x=1",
            ),
            ("host=h password=pw user=u", "host=h password=*** user=u"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn scrubs_the_password_segment_of_a_url_from_a_message() {
        assert_eq!(
            scrub("bad value pw-1 near x", "postgres://u:pw-1@h/db"),
            "bad value *** near x"
        );
        assert_eq!(scrub("nothing to hide", "postgres://u@h/db"), "nothing to hide");
    }
}
