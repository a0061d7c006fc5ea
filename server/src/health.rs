//! Probes for the load balancer and the orchestrator: `/healthz` says the process answers, `/readyz` says the
//! database (and Redis, when configured) answer too.

use poem::{handler, http::StatusCode, web::Data, web::Json};
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /healthz`: the process is alive.
#[handler]
pub fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when every dependency answers, 503 `not_ready` naming the ones that do not.
#[handler]
pub async fn readyz(state: Data<&AppState>) -> (StatusCode, Json<Value>) {
    let database = match state.db.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            "unreachable".to_string()
        }
    };
    let redis = match state.kv.as_redis() {
        None => "not_configured".to_string(),
        Some(_) => match state.kv.ping().await {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: redis unreachable");
                "unreachable".to_string()
            }
        },
    };
    let ready = database == "ok" && redis != "unreachable";
    let mut body = json!({ "status": if ready { "ok" } else { "not_ready" }, "database": database, "redis": redis });
    if !ready {
        body["code"] = "not_ready".into();
        body["message"] = "a dependency is unreachable".into();
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
