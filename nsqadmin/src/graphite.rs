//! Graphite, for those who run it: `/api/graphite` turns a statsd counter
//! into a per-second rate as upstream does, and `--proxy-graphite` serves
//! graphite's `/render` through nsqadmin.

use crate::ctx::Ctx;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nsq_daemon::http_api::{err, Answer, V1};

/// `GET /api/graphite?metric=rate&target=...`: `{"rate":"12.34"}` or `"N/A"`.
pub async fn rate(ctx: &Ctx) -> Answer {
    if ctx.query.get("metric") != Some("rate") {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_ARG_METRIC"));
    }
    let target = ctx
        .query
        .get("target")
        .ok_or(err(StatusCode::BAD_REQUEST, "INVALID_ARG_TARGET"))?;
    let interval = ctx.state.opts.statsd_interval.as_secs().max(1);
    let from = format!("-{}sec", interval * 2);
    let until = format!("-{interval}sec");
    let internal = || err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    let query = [
        ("from", from.as_str()),
        ("until", until.as_str()),
        ("format", "json"),
        ("target", target),
    ];
    let url = nsq::http_client::api_url(&ctx.state.opts.graphite_url, "/render", &query)
        .map_err(|_| internal())?;
    tracing::info!(url = %url, target, "GRAPHITE");
    let client = reqwest::Client::builder()
        .timeout(ctx.state.opts.http_client_request_timeout)
        .connect_timeout(ctx.state.opts.http_client_connect_timeout)
        .build()
        .map_err(|_| internal())?;
    let response = client.get(url).send().await.map_err(|e| {
        tracing::error!(error = %e, "graphite request failed");
        internal()
    })?;
    #[derive(serde::Deserialize)]
    struct Series {
        datapoints: Vec<Vec<Option<f64>>>,
    }
    let series: Vec<Series> = response.json().await.map_err(|e| {
        tracing::error!(error = %e, "graphite answer unreadable");
        internal()
    })?;
    let value = series
        .first()
        .and_then(|s| s.datapoints.first())
        .and_then(|p| p.first().copied().flatten());
    let rate = match value {
        Some(v) if v >= 0.0 => format!("{:.2}", v / interval as f64),
        _ => "N/A".to_string(),
    };
    Ok(V1::json(&serde_json::json!({ "rate": rate })))
}

/// `GET /render?...` forwarded to graphite, with the basic auth of `--graphite-url`.
pub async fn proxy(ctx: &Ctx) -> Response {
    let Ok(base) = reqwest::Url::parse(&ctx.state.opts.graphite_url) else {
        return err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR").into_response();
    };
    let mut url = base.clone();
    url.set_path("/render");
    url.set_query(ctx.url.split_once('?').map(|(_, q)| q));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let client = reqwest::Client::new();
    let mut request = client
        .get(url)
        .timeout(ctx.state.opts.http_client_request_timeout);
    if !base.username().is_empty() {
        request = request.basic_auth(base.username(), base.password());
    }
    match request.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_string();
            match r.bytes().await {
                Ok(body) => (
                    status,
                    [(axum::http::header::CONTENT_TYPE, content_type)],
                    body,
                )
                    .into_response(),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "graphite proxy failed");
            StatusCode::BAD_GATEWAY.into_response()
        }
    }
}
