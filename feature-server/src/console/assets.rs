//! The console's page, script and style sheet, compiled into the binary (no build step, no
//! network: the page loads nothing from anywhere but this server).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
/// The page's scripts, loaded in this order (they share the page's global scope).
const SCRIPTS: [(&str, &str); 4] = [
    ("core.js", include_str!("ui/core.js")),
    ("charts.js", include_str!("ui/charts.js")),
    ("pages.js", include_str!("ui/pages.js")),
    ("live.js", include_str!("ui/live.js")),
];
const STYLE: &str = include_str!("ui/app.css");
const ICON: &str = include_str!("ui/icon.svg");

/// Only this server's own files, no inline script, no framing by other sites.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary may bring new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /ui` and `GET /ui/`: the page (every view of it is a `#/…` route of this one page).
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/{file}`: the scripts, the style sheet and the icon; 404 for anything else.
pub async fn file(Path(name): Path<String>) -> Response {
    if let Some((_, script)) = SCRIPTS.iter().find(|(n, _)| *n == name) {
        return asset("text/javascript; charset=utf-8", script);
    }
    match name.as_str() {
        "app.css" => asset("text/css; charset=utf-8", STYLE),
        "icon.svg" => asset("image/svg+xml", ICON),
        "index.html" => index().await,
        _ => (StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}
