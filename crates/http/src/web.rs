//! The dashboard: `web/dist` (built by `npm run build` in `web/`) embedded in
//! the binary and served at `/`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::problem::ApiError;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
struct Assets;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "webmanifest" => "application/manifest+json",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    // Hashed assets never change; everything else is revalidated.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Some(
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type(path)),
                (header::CACHE_CONTROL, cache),
            ],
            file.data.into_owned(),
        )
            .into_response(),
    )
}

/// `GET /`: the dashboard's page.
pub async fn index() -> Response {
    serve("index.html").unwrap_or_else(|| {
        ApiError::not_found("the dashboard was not built into this binary").into_response()
    })
}

/// `GET /{*path}` for the dashboard's static files; anything else is a 404 problem.
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(&path).unwrap_or_else(|| ApiError::not_found("no such endpoint").into_response())
}
