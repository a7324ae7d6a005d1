//! `GET /`: the operator's page of locks, queues, deadlocks and events (docs/api.md, "The web
//! page"). It is one HTML file inside the binary, nothing fetched from elsewhere; everything it
//! shows it reads from this server's API with the token entered in the page, and it follows the
//! event stream to stay current without a reload.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use super::App;

const PAGE: &str = include_str!("page/index.html");

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Its own script and style only; no other origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
