//! Students as operators see them: search (nickname, id, school, student number), a profile with ban and
//! verification, their listings and the reports about them; bans; verification requests and school rosters.
//! The rules are in `crate::users::service` and `crate::moderation::reports`.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiRequest, Enum, Multipart, Object, OpenApi,
    param::{Path, Query},
    payload::{Json, ParsePayload, Payload},
    registry::{MetaSchema, MetaSchemaRef},
    types::multipart::Upload,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait};

use super::{
    AdminTags, audit,
    auth::{Need, perm},
};
use crate::{
    error::{AppError, AppResult},
    listings::model::listing,
    moderation::reports::{self, report},
    state::AppState,
    users::{
        model::{user, verification_request},
        schools,
        service::{self as users, UserQuery},
    },
    util,
};

/// An account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "AccountStatus", rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    /// Banned (see `ban` for the reason, end and whether it is still in force).
    Banned,
    Deleted,
}

fn status_of(s: user::Status) -> AccountStatus {
    match s {
        user::Status::Active => AccountStatus::Active,
        user::Status::Banned => AccountStatus::Banned,
        user::Status::Deleted => AccountStatus::Deleted,
    }
}

/// A ban.
#[derive(Debug, Clone, Object)]
pub struct BanView {
    pub reason: String,
    /// `null`: for good.
    pub until: Option<DateTime<Utc>>,
    /// False once `until` has passed (the ban has lifted itself).
    pub in_force: bool,
}

/// A student as operators see them.
#[derive(Debug, Clone, Object)]
pub struct AdminUser {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: Option<String>,
    pub bio: String,
    pub school_id: Option<i64>,
    pub campus_id: Option<i64>,
    pub status: AccountStatus,
    pub ban: Option<BanView>,
    /// The school the student is verified at, while the verification lasts.
    pub verified_school_id: Option<i64>,
    pub verified_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

pub fn admin_user(u: &user::Model) -> AdminUser {
    let now = util::now();
    AdminUser {
        id: u.id,
        nickname: u.nickname.clone(),
        avatar_url: u.avatar_url.clone(),
        bio: u.bio.clone(),
        school_id: u.school_id,
        campus_id: u.campus_id,
        status: status_of(u.status),
        ban: (u.status == user::Status::Banned).then(|| BanView {
            reason: u.ban_reason.clone().unwrap_or_default(),
            until: u.banned_until,
            in_force: u.is_banned(now),
        }),
        verified_school_id: u.verified_school(now),
        verified_until: u.verified_until,
        created_at: u.created_at,
        last_login_at: u.last_login_at,
    }
}

/// A page of students, newest first.
#[derive(Debug, Clone, Object)]
pub struct UserPage {
    pub items: Vec<AdminUser>,
    /// Pass as `before_id` for the next page; absent on the last page.
    pub next_before_id: Option<i64>,
}

/// A student's profile with counts.
#[derive(Debug, Clone, Object)]
pub struct UserDetail {
    pub user: AdminUser,
    /// Listings in every status.
    pub listings: u64,
    /// Open reports about the student or their content.
    pub open_reports: u64,
}

/// A listing as operators see it.
#[derive(Debug, Clone, Object)]
pub struct AdminListing {
    pub id: i64,
    pub school_id: i64,
    pub title: String,
    /// Fen.
    pub price: i64,
    pub status: crate::listings::model::Status,
    pub moderation_label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of listings, newest first.
#[derive(Debug, Clone, Object)]
pub struct AdminListingPage {
    pub items: Vec<AdminListing>,
    pub next_before_id: Option<i64>,
}

/// A report.
#[derive(Debug, Clone, Object)]
pub struct AdminReport {
    pub id: i64,
    pub reporter_id: i64,
    /// `listing`, `post`, `comment` or `user`.
    pub target_type: String,
    pub target_id: i64,
    pub reason: String,
    pub details: Option<String>,
    /// `open` or `resolved`.
    pub status: String,
    /// `remove` or `dismiss`, once resolved.
    pub decision: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A page of reports, newest first.
#[derive(Debug, Clone, Object)]
pub struct AdminReportPage {
    pub items: Vec<AdminReport>,
    pub next_before_id: Option<i64>,
}

/// A ban.
#[derive(Debug, Object)]
pub struct BanRequest {
    /// 1–200 characters; the student reads it when refused.
    pub reason: String,
    /// When the ban ends by itself (in the future); leave out for good.
    pub until: Option<DateTime<Utc>>,
}

/// Lifting a ban.
#[derive(Debug, Object)]
pub struct UnbanRequest {
    /// Why (kept in the audit log), at most 200 characters.
    pub reason: Option<String>,
}

fn page_limit(limit: Option<u64>) -> AppResult<u64> {
    let limit = limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid_field("limit", "must be 1–100"));
    }
    Ok(limit)
}

fn next_before(ids: &[i64], limit: u64) -> Option<i64> {
    (ids.len() as u64 == limit)
        .then(|| ids.last().copied())
        .flatten()
}

/// The school an operator must cover to act on a student.
fn school_of(u: &user::Model) -> Option<i64> {
    u.school_id.or(u.verified_school_id)
}

async fn find_user(state: &AppState, id: i64) -> AppResult<user::Model> {
    user::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::not_found("user"))
}

pub struct UsersApi;

#[OpenApi(tag = "AdminTags::Users")]
impl UsersApi {
    /// Search students: `q` is part of a nickname or a user id; `student_number` is matched (hashed with each
    /// school's salt, never stored in clear) against verified identities and verification requests. Limited to
    /// the operator's schools (or `school`).
    ///
    /// Permission: `user_lookup`.
    #[oai(path = "/v1/users", method = "get", operation_id = "search_users")]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::UserLookup>,
        q: Query<Option<String>>,
        school: Query<Option<i64>>,
        student_number: Query<Option<String>>,
        status: Query<Option<AccountStatus>>,
        before_id: Query<Option<i64>>,
        /// 1–100, default 50.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<UserPage>> {
        let limit = page_limit(limit.0)?;
        let rows = users::search_users(
            &state.db,
            &UserQuery {
                text: q.0,
                schools: auth.school_filter(school.0)?,
                student_number: student_number.0.filter(|n| !n.trim().is_empty()),
                status: status.0.map(|s| match s {
                    AccountStatus::Active => user::Status::Active,
                    AccountStatus::Banned => user::Status::Banned,
                    AccountStatus::Deleted => user::Status::Deleted,
                }),
                before_id: before_id.0,
                limit,
            },
        )
        .await?;
        let ids: Vec<i64> = rows.iter().map(|u| u.id).collect();
        Ok(Json(UserPage {
            items: rows.iter().map(admin_user).collect(),
            next_before_id: next_before(&ids, limit),
        }))
    }

    /// A student's profile, ban and verification, with counts of listings and open reports.
    ///
    /// Permission: `user_lookup`.
    #[oai(path = "/v1/users/:id", method = "get", operation_id = "get_user")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::UserLookup>,
        id: Path<i64>,
    ) -> AppResult<Json<UserDetail>> {
        let u = find_user(&state, id.0).await?;
        auth.school(school_of(&u))?;
        let listings = listing::Entity::find()
            .filter(listing::Column::SellerId.eq(u.id))
            .count(&state.db)
            .await?;
        let open_reports = reports::reports_about_user(&state.db, u.id, None, 1000)
            .await?
            .iter()
            .filter(|r| r.status == "open")
            .count() as u64;
        Ok(Json(UserDetail {
            user: admin_user(&u),
            listings,
            open_reports,
        }))
    }

    /// A student's listings in every status, newest first.
    ///
    /// Permission: `user_lookup`.
    #[oai(
        path = "/v1/users/:id/listings",
        method = "get",
        operation_id = "user_listings"
    )]
    async fn listings(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::UserLookup>,
        id: Path<i64>,
        before_id: Query<Option<i64>>,
        /// 1–100, default 50.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<AdminListingPage>> {
        let limit = page_limit(limit.0)?;
        let u = find_user(&state, id.0).await?;
        auth.school(school_of(&u))?;
        let rows =
            crate::listings::service::all_of_seller(&state.db, u.id, before_id.0, limit).await?;
        let ids: Vec<i64> = rows.iter().map(|l| l.id).collect();
        Ok(Json(AdminListingPage {
            items: rows
                .into_iter()
                .map(|l| AdminListing {
                    id: l.id,
                    school_id: l.school_id,
                    title: l.title,
                    price: l.price,
                    status: l.status,
                    moderation_label: l.moderation_label,
                    created_at: l.created_at,
                    updated_at: l.updated_at,
                })
                .collect(),
            next_before_id: next_before(&ids, limit),
        }))
    }

    /// Reports about a student and about their listings, posts and comments (open and resolved), newest
    /// first.
    ///
    /// Permission: `user_lookup`.
    #[oai(
        path = "/v1/users/:id/reports",
        method = "get",
        operation_id = "user_reports"
    )]
    async fn reports(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::UserLookup>,
        id: Path<i64>,
        before_id: Query<Option<i64>>,
        /// 1–100, default 50.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<AdminReportPage>> {
        let limit = page_limit(limit.0)?;
        let u = find_user(&state, id.0).await?;
        auth.school(school_of(&u))?;
        let rows = reports::reports_about_user(&state.db, u.id, before_id.0, limit).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        Ok(Json(AdminReportPage {
            items: rows.into_iter().map(report_view).collect(),
            next_before_id: next_before(&ids, limit),
        }))
    }

    /// Ban a student, with a reason they read and an optional end date. Their sessions end at once (and live
    /// connections close); logins are refused with 403 `account_banned` until the ban ends or is lifted.
    ///
    /// Permission: `users`.
    #[oai(path = "/v1/users/:id/ban", method = "post", operation_id = "ban_user")]
    async fn ban(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Users>,
        id: Path<i64>,
        body: Json<BanRequest>,
    ) -> AppResult<Json<AdminUser>> {
        let u = find_user(&state, id.0).await?;
        auth.school(school_of(&u))?;
        if body.until.is_some_and(|t| t <= util::now()) {
            return Err(AppError::invalid_field("until", "must be in the future"));
        }
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "user.ban").await?;
        let before = admin_user(&u);
        let after = users::ban_user_in(&txn, u.id, &body.reason, body.until).await?;
        let view = admin_user(&after);
        pending
            .finish(
                &txn,
                audit::Record::target("user", u.id)
                    .school(school_of(&u))
                    .before_view(&before)
                    .after_view(&view)
                    .reason(Some(body.reason.trim())),
            )
            .await?;
        txn.commit().await?;
        crate::auth::service::on_user_banned(&state, u.id).await?;
        Ok(Json(view))
    }

    /// Lift a ban (also one whose end date has passed). 409 `invalid_transition` for an account that is not
    /// banned.
    ///
    /// Permission: `users`.
    #[oai(
        path = "/v1/users/:id/unban",
        method = "post",
        operation_id = "unban_user"
    )]
    async fn unban(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Users>,
        id: Path<i64>,
        body: Json<UnbanRequest>,
    ) -> AppResult<Json<AdminUser>> {
        let reason = super::reason(body.reason.as_deref(), false, 200)?;
        let u = find_user(&state, id.0).await?;
        auth.school(school_of(&u))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "user.unban").await?;
        let before = admin_user(&u);
        let after = users::unban_user_in(&txn, u.id).await?;
        let view = admin_user(&after);
        pending
            .finish(
                &txn,
                audit::Record::target("user", u.id)
                    .school(school_of(&u))
                    .before_view(&before)
                    .after_view(&view)
                    .reason(reason.as_deref()),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view))
    }
}

fn report_view(r: report::Model) -> AdminReport {
    AdminReport {
        id: r.id,
        reporter_id: r.reporter_id,
        target_type: r.target_type,
        target_id: r.target_id,
        reason: r.reason,
        details: r.details,
        status: r.status,
        decision: r.decision,
        created_at: r.created_at,
        resolved_at: r.resolved_at,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Verification

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "VerificationRequestStatus", rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
}

/// A student's verification request.
#[derive(Debug, Clone, Object)]
pub struct VerificationView {
    pub id: i64,
    pub user_id: i64,
    pub school_id: i64,
    /// The student number with its middle hidden.
    pub student_number_masked: String,
    pub real_name: Option<String>,
    pub graduation_year: i32,
    pub status: RequestStatus,
    /// `roster`, or `operator:<username>`.
    pub decided_by: Option<String>,
    pub reject_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

fn verification_view(r: &verification_request::Model) -> VerificationView {
    VerificationView {
        id: r.id,
        user_id: r.user_id,
        school_id: r.school_id,
        student_number_masked: r.student_number_masked.clone(),
        real_name: r.real_name.clone(),
        graduation_year: r.graduation_year,
        status: match r.status {
            verification_request::Status::Pending => RequestStatus::Pending,
            verification_request::Status::Approved => RequestStatus::Approved,
            verification_request::Status::Rejected => RequestStatus::Rejected,
        },
        decided_by: r.decided_by.clone(),
        reject_reason: r.reject_reason.clone(),
        created_at: r.created_at,
        decided_at: r.decided_at,
    }
}

/// Rejecting a request.
#[derive(Debug, Object)]
pub struct RejectRequest {
    /// 1–200 characters; the student reads it.
    pub reason: String,
}

/// A roster as a CSV file.
pub struct CsvBody(pub Vec<u8>);

impl Payload for CsvBody {
    const CONTENT_TYPE: &'static str = "text/csv";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary")))
    }
}

impl ParsePayload for CsvBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(
        request: &poem::Request,
        body: &mut poem::RequestBody,
    ) -> poem::Result<Self> {
        Ok(Self(
            <Vec<u8> as poem::FromRequest>::from_request(request, body).await?,
        ))
    }
}

/// A roster uploaded as a form.
#[derive(Debug, Multipart)]
pub struct RosterForm {
    /// The CSV file.
    pub file: Upload,
}

/// A roster: `student_number[,graduation_year]` per line, UTF-8, an optional header line.
#[derive(ApiRequest)]
pub enum RosterUpload {
    /// The CSV as the body.
    Csv(CsvBody),
    /// The CSV as the `file` field of a form.
    Form(RosterForm),
}

/// A line of the roster that was not stored.
#[derive(Debug, Clone, Object)]
pub struct RejectedLine {
    /// Line number in the file, from 1.
    pub line: u64,
    pub reason: String,
}

/// What happened to an uploaded roster.
#[derive(Debug, Clone, Object)]
pub struct RosterResult {
    pub school_id: i64,
    /// Rows stored (a number already on the roster has its graduation year updated).
    pub accepted: u64,
    pub rejected: Vec<RejectedLine>,
}

pub struct VerificationApi;

#[OpenApi(tag = "AdminTags::Verification")]
impl VerificationApi {
    /// Verification requests waiting for a decision, oldest first, for the operator's schools (or `school`).
    ///
    /// Permission: `users`.
    #[oai(
        path = "/v1/verifications",
        method = "get",
        operation_id = "list_verification_requests"
    )]
    async fn queue(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Users>,
        school: Query<Option<i64>>,
        /// The last id of the previous page.
        after_id: Query<Option<i64>>,
        /// 1–100, default 50.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<Vec<VerificationView>>> {
        let limit = page_limit(limit.0)?;
        let schools = auth.school_filter(school.0)?;
        let rows =
            users::verification_queue(&state.db, schools.as_deref(), after_id.0, limit).await?;
        Ok(Json(rows.iter().map(verification_view).collect()))
    }

    /// Approve a request: the student becomes verified until the end of the graduation year and is told in
    /// their inbox. 409 `verification_not_pending`, `student_number_taken`.
    ///
    /// Permission: `users`.
    #[oai(
        path = "/v1/verifications/:id/approve",
        method = "post",
        operation_id = "approve_verification"
    )]
    async fn approve(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Users>,
        id: Path<i64>,
    ) -> AppResult<Json<VerificationView>> {
        let request = users::verification_request(&state.db, id.0).await?;
        auth.school(Some(request.school_id))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "verification.approve").await?;
        let by = format!("operator:{}", auth.operator.username);
        users::approve_verification_in(&txn, id.0, &by).await?;
        let after = users::verification_request(&txn, id.0).await?;
        let view = verification_view(&after);
        pending
            .finish(
                &txn,
                audit::Record::target("verification_request", id.0)
                    .school(Some(request.school_id))
                    .before_view(&verification_view(&request))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view))
    }

    /// Reject a request with a reason the student reads; they may ask again. 409 `verification_not_pending`.
    ///
    /// Permission: `users`.
    #[oai(
        path = "/v1/verifications/:id/reject",
        method = "post",
        operation_id = "reject_verification"
    )]
    async fn reject(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Users>,
        id: Path<i64>,
        body: Json<RejectRequest>,
    ) -> AppResult<Json<VerificationView>> {
        let request = users::verification_request(&state.db, id.0).await?;
        auth.school(Some(request.school_id))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "verification.reject").await?;
        let by = format!("operator:{}", auth.operator.username);
        users::reject_verification_in(&txn, id.0, &by, &body.reason).await?;
        let after = users::verification_request(&txn, id.0).await?;
        let view = verification_view(&after);
        pending
            .finish(
                &txn,
                audit::Record::target("verification_request", id.0)
                    .school(Some(request.school_id))
                    .before_view(&verification_view(&request))
                    .after_view(&view)
                    .reason(Some(body.reason.trim())),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view))
    }

    /// Upload a school's roster of student numbers (CSV as the body with `Content-Type: text/csv`, or as the
    /// `file` field of a form): `student_number[,graduation_year]` per line, an optional header line. Numbers
    /// are stored only as salted hashes; a student whose number is on the roster is verified at once when they
    /// ask. The answer lists every line not stored, with its number and why. At most 100,000 rows and
    /// `MAX_BODY_BYTES` per upload; split bigger files (uploading a number again only updates its year).
    ///
    /// Permission: `users`.
    #[oai(
        path = "/v1/schools/:id/roster",
        method = "post",
        operation_id = "upload_roster"
    )]
    async fn roster(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Users>,
        id: Path<i64>,
        body: RosterUpload,
    ) -> AppResult<Json<RosterResult>> {
        let school = schools::find(&state.db, id.0).await?;
        auth.school(Some(school.id))?;
        let bytes = match body {
            RosterUpload::Csv(c) => c.0,
            RosterUpload::Form(f) => f.file.into_vec().await.map_err(AppError::internal)?,
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            AppError::unprocessable(
                "roster_not_utf8",
                "the roster must be UTF-8 text (save the CSV as UTF-8)",
            )
        })?;
        let parsed = users::parse_roster_csv(&text)?;
        let (lines, rows): (Vec<usize>, Vec<users::RosterRow>) = parsed.rows.into_iter().unzip();
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "roster.upload").await?;
        let report = users::import_roster_in(&txn, &school, rows).await?;
        let mut rejected: Vec<RejectedLine> = parsed
            .rejected
            .into_iter()
            .chain(
                report
                    .rejected
                    .into_iter()
                    .map(|(row, why)| (lines[row - 1], why)),
            )
            .map(|(line, reason)| RejectedLine {
                line: line as u64,
                reason,
            })
            .collect();
        rejected.sort_by_key(|r| r.line);
        pending
            .finish(
                &txn,
                audit::Record::target("school", school.id)
                    .school(Some(school.id))
                    .after(&serde_json::json!({
                        "accepted": report.accepted,
                        "rejected": rejected.len(),
                    })),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(RosterResult {
            school_id: school.id,
            accepted: report.accepted,
            rejected,
        }))
    }
}
