//! Redis URLs in messages: never with their password, and with a hint when one is written
//! unencoded.

/// A Redis URL without its secrets, for messages and logs, however malformed the URL is:
/// everything before the last `@` (user and password) but a well-formed scheme, and the query
/// (`?pass=…` of socket URLs).
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.rfind('@') {
        None => ("", url),
        Some(at) => {
            let scheme = url.find("://").filter(|&i| {
                i < at
                    && url[..i]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            });
            let kept = scheme.map_or("", |i| &url[..i + 3]);
            (kept, &url[at..])
        }
    };
    let masked = if head.len() < url.len() - rest.len() {
        "***"
    } else {
        ""
    };
    match rest.split_once('?') {
        Some((base, query)) if !query.is_empty() => format!("{head}{masked}{base}?***"),
        _ => format!("{head}{masked}{rest}"),
    }
}

/// Said with every Redis URL that cannot be used as written: the usual cause is a user or
/// password holding characters that mean something in a URL.
pub const REDIS_URL_HINT: &str = "percent-encode reserved characters in the user and password: `#` → `%23`, `@` → `%40`, `/` → `%2F`, `?` → `%3F`, `:` → `%3A`, `%` → `%25` (e.g. redis://default:p%23ss@host:6379)";

/// Refuses a `redis://` / `rediss://` URL whose user or password holds `#`, `/` or `?`
/// unencoded, with the message to show (never the password). Each ends a URL's host part, so
/// such a URL names another host, port or database than meant (`redis://u:12#x@h` is host `u`,
/// port 12), or does not parse at all.
pub fn check_redis_url_encoding(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    let unencoded = rest.is_some_and(|rest| {
        rest.rfind('@')
            .is_some_and(|at| rest[..at].contains(['#', '/', '?']))
    });
    if unencoded {
        Err(format!(
            "invalid Redis URL {}: its user or password holds `#`, `/` or `?`, which end a URL's host part; {REDIS_URL_HINT}",
            redact_url(url)
        ))
    } else {
        Ok(())
    }
}

/// Why a Redis URL did not parse, as said to the user: never its password.
pub fn invalid_redis_url(url: &str, problem: impl std::fmt::Display) -> String {
    format!(
        "invalid Redis URL {}: {problem}; {REDIS_URL_HINT}",
        redact_url(url)
    )
}
