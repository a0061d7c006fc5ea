//! The operator API: what campus operators use (through their web console) to run the market — accounts and
//! roles, the moderation queue, students, orders and disputes, the catalogue, the forum, site settings,
//! statistics and the audit log.
//! It is served under `/admin/api/v1/…` with an OpenAPI document of its own (`/admin/api/openapi.json`) and
//! Swagger UI (`/admin/api/docs`); `docs/operators.md` describes roles, permissions, two-step login and the
//! audit log.
//!
//! Operator accounts, their sessions, permissions and the audit log live here ([`operators`], [`totp`],
//! [`auth`], [`audit`]). Everything else is a thin handler per area over the capabilities' own service
//! functions: the rules stay with the capability they belong to.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod forum;
pub mod moderation;
pub mod operators;
pub mod orders;
pub mod reviews;
pub mod settings;
pub mod stats;
pub mod totp;
pub mod users;

use poem_openapi::Tags;

/// The sections of the operator API.
#[derive(Tags)]
pub enum AdminTags {
    /// Operator login, logout, and the caller's own account (password, two-step login).
    Session,
    /// Operator accounts (admins only).
    Operators,
    /// The audit log of operator actions.
    Audit,
    /// The moderation queue, decisions on reported and held content, and the word blocklist.
    Moderation,
    /// Students: search, profiles, bans.
    Users,
    /// Student verification requests and school rosters.
    Verification,
    /// Schools, campuses, meet-up places, categories and forum boards.
    Catalogue,
    /// Forum moderation: pinning, locking, removing posts and comments.
    Forum,
    /// Orders and disputes: look-up with event log and payment records, dispute decisions, refund and payout
    /// retries, payment queries.
    Orders,
    /// Site settings.
    Settings,
    /// Statistics for the dashboard.
    Stats,
}

/// A reason an operator gives for an action: trimmed, 1–`max` characters when `required`, else optional.
pub fn reason(
    raw: Option<&str>,
    required: bool,
    max: usize,
) -> crate::error::AppResult<Option<String>> {
    let r = raw.map(str::trim).filter(|r| !r.is_empty());
    match r {
        None if required => Err(crate::error::AppError::invalid_field(
            "reason",
            format!("a reason is required (1–{max} characters)"),
        )),
        None => Ok(None),
        Some(r) if r.chars().count() > max || r.chars().any(|c| c.is_control() && c != '\n') => {
            Err(crate::error::AppError::invalid_field(
                "reason",
                format!("must be at most {max} characters"),
            ))
        }
        Some(r) => Ok(Some(r.to_string())),
    }
}
