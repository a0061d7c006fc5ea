//! Site settings: read them all, change some. Values are validated by their key's range
//! (`crate::settings::Key`); a change applies on this instance at once and on others within 30 s.

use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};
use sea_orm::TransactionTrait;

use super::{
    AdminTags, audit,
    auth::{Need, perm},
};
use crate::{
    error::AppResult,
    settings::{self, Key, SiteSettings},
    state::AppState,
};

/// The site settings.
#[derive(Debug, Clone, Object)]
pub struct Settings {
    /// Minutes a buyer has to pay before an unpaid order expires (5–1440, default 15).
    pub order_payment_timeout_minutes: u32,
    /// Days after hand-over before an order completes by itself (1–30, default 7).
    pub order_auto_complete_days: u32,
    /// Distinct students whose open reports hide a listing, post or comment until an operator decides (1–100;
    /// default `REPORT_HIDE_THRESHOLD`).
    pub report_hide_threshold: u32,
}

fn view(s: &SiteSettings) -> Settings {
    Settings {
        order_payment_timeout_minutes: s.order_payment_timeout_minutes,
        order_auto_complete_days: s.order_auto_complete_days,
        report_hide_threshold: s.report_hide_threshold,
    }
}

/// Settings to change; those left out stay. Every value is checked before any is stored.
#[derive(Debug, Object)]
pub struct UpdateSettings {
    pub order_payment_timeout_minutes: Option<u32>,
    pub order_auto_complete_days: Option<u32>,
    pub report_hide_threshold: Option<u32>,
}

pub struct SettingsApi;

#[OpenApi(tag = "AdminTags::Settings")]
impl SettingsApi {
    /// The site settings in force (stored values, or their defaults). Whether a school requires verification
    /// to publish is a property of the school (`PATCH /v1/schools/{id}`).
    ///
    /// Permission: `settings`.
    #[oai(path = "/v1/settings", method = "get", operation_id = "get_settings")]
    async fn get(
        &self,
        state: Data<&AppState>,
        _auth: Need<perm::Settings>,
    ) -> AppResult<Json<Settings>> {
        Ok(Json(view(&settings::load(&state.db, &state.config).await?)))
    }

    /// Change site settings. 422 `validation_failed` names every value out of range.
    ///
    /// Permission: `settings` (for operators of every school: settings apply everywhere).
    #[oai(
        path = "/v1/settings",
        method = "patch",
        operation_id = "update_settings"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Settings>,
        body: Json<UpdateSettings>,
    ) -> AppResult<Json<Settings>> {
        auth.school(None)?;
        let mut values = BTreeMap::new();
        let mut problems = BTreeMap::new();
        for (key, value) in [
            (
                Key::OrderPaymentTimeoutMinutes,
                body.order_payment_timeout_minutes,
            ),
            (Key::OrderAutoCompleteDays, body.order_auto_complete_days),
            (Key::ReportHideThreshold, body.report_hide_threshold),
        ] {
            let Some(v) = value else { continue };
            match key.validate(v) {
                Ok(_) => {
                    values.insert(key, v);
                }
                Err(crate::error::AppError::Validation(f)) => problems.extend(f),
                Err(e) => return Err(e),
            }
        }
        crate::error::AppError::check_fields(problems)?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "setting.update").await?;
        let before = settings::load(&txn, &state.config).await?;
        settings::store_in(&txn, &values, Some(auth.id())).await?;
        let after = settings::load(&txn, &state.config).await?;
        pending
            .finish(
                &txn,
                audit::Record::about("settings")
                    .before(&before.as_map())
                    .after(&after.as_map()),
            )
            .await?;
        txn.commit().await?;
        state.settings.invalidate();
        Ok(Json(view(&after)))
    }
}
