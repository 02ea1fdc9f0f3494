//! The UI's two static files, embedded in the binary.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use nsq_daemon::http_api::err;

const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

pub fn serve(name: &str) -> Response {
    let (body, content_type) = match name {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return err(StatusCode::NOT_FOUND, "NOT_FOUND").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}
