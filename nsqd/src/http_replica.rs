//! Our replication failover endpoints (docs/replication-design.md §5):
//! `/replica/promote` and `/replica/forget` on a peer, `/replication/retire`
//! on an origin that comes back after a promotion. All are POSTs.

use crate::http_channel::off_async;
use crate::node::{Node, PromoteError, RetireError};
use axum::http::StatusCode;
use nsq::api::PromoteAnswer;
use nsq_daemon::http_api::{err, Answer, Params, V1};
use std::sync::Arc;

/// The paths this module answers.
pub fn handles(path: &str) -> bool {
    matches!(
        path,
        "/replica/promote" | "/replica/forget" | "/replication/retire"
    )
}

pub async fn answer(node: &Arc<Node>, path: &str, params: &Params) -> Answer {
    match path {
        "/replica/promote" => {
            let origin = params.get("origin").map(str::to_string);
            let node = node.clone();
            let promoted = off_async(move || node.promote(origin.as_deref()))
                .await?
                .map_err(promote_error)?;
            Ok(V1::json(&PromoteAnswer { promoted }))
        }
        "/replica/forget" => {
            let origin = params
                .get("origin")
                .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_ORIGIN"))?
                .to_string();
            let node = node.clone();
            let forgot = off_async(move || node.forget_origin(&origin))
                .await?
                .map_err(promote_error)?;
            match forgot {
                true => Ok(V1::Empty),
                false => Err(err(StatusCode::NOT_FOUND, "ORIGIN_NOT_FOUND")),
            }
        }
        _ => {
            let peer = params
                .get("peer")
                .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_PEER"))?
                .to_string();
            let node = node.clone();
            let retired = off_async(move || node.retire_copy(&peer)).await?;
            match retired {
                Ok(retired) => Ok(V1::json(&retired)),
                Err(RetireError::NotAPeer) => Err(err(StatusCode::NOT_FOUND, "PEER_NOT_FOUND")),
                Err(RetireError::NotFenced) => {
                    Err(err(StatusCode::CONFLICT, "PEER_HAS_NOT_PROMOTED"))
                }
            }
        }
    }
}

fn promote_error(e: PromoteError) -> V1 {
    match e {
        PromoteError::NoReplicas => err(StatusCode::BAD_REQUEST, "NO_REPLICAS_WITHOUT_LOG_MODE"),
        PromoteError::NotFound(_) => err(StatusCode::NOT_FOUND, "ORIGIN_NOT_FOUND"),
        PromoteError::Ambiguous { ids, .. } => err(
            StatusCode::CONFLICT,
            format!("ORIGIN_AMBIGUOUS: name one of {}", ids.join(", ")),
        ),
        PromoteError::Connected(_) => err(StatusCode::CONFLICT, "ORIGIN_CONNECTED"),
        PromoteError::Put(e) => {
            tracing::error!(error = %e, "promotion failed");
            err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
        PromoteError::Io(e) => {
            tracing::error!(error = %e, "promotion failed");
            err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
    }
}
