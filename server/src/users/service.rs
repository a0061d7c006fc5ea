//! Rules of the users capability, free of HTTP: accounts created on first login, profile edits, schools, and
//! student verification (roster match, operator decisions, one account per student number, expiry).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, sea_query::Expr,
};
use sha2::Sha256;

use super::model::{campus, roster_entry, school, student_identity, user, verification_request};
use crate::{
    db::is_unique_violation,
    error::{AppError, AppResult},
    state::AppState,
    util,
};

pub const NICKNAME_MAX_CHARS: usize = 20;
pub const BIO_MAX_CHARS: usize = 200;

/// Finds the user with this openid, creating the account on first login. Two first logins racing each other
/// end with one account: the loser of the unique-index race reads the winner's row.
pub async fn find_or_create_by_openid(
    db: &DatabaseConnection,
    openid: &str,
    unionid: Option<String>,
) -> AppResult<(user::Model, bool)> {
    if let Some(existing) = user::Entity::find()
        .filter(user::Column::Openid.eq(openid))
        .one(db)
        .await?
    {
        return Ok((existing, false));
    }
    let now = util::now();
    let fresh = user::ActiveModel {
        openid: Set(openid.to_string()),
        unionid: Set(unionid),
        nickname: Set(format!("同学{}", &util::sha256_hex(openid.as_bytes())[..6])),
        avatar_url: Set(None),
        bio: Set(String::new()),
        school_id: Set(None),
        campus_id: Set(None),
        status: Set(user::Status::Active),
        ban_reason: Set(None),
        banned_until: Set(None),
        verified_school_id: Set(None),
        verified_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        last_login_at: Set(None),
        ..Default::default()
    };
    match fresh.insert(db).await {
        Ok(created) => Ok((created, true)),
        Err(e) if is_unique_violation(&e) => {
            let existing = user::Entity::find()
                .filter(user::Column::Openid.eq(openid))
                .one(db)
                .await?;
            existing
                .map(|u| (u, false))
                .ok_or_else(|| AppError::internal(e))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn touch_login(db: &DatabaseConnection, user_id: i64) -> AppResult<()> {
    user::Entity::update_many()
        .col_expr(user::Column::LastLoginAt, Expr::value(util::now()))
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A user that others may see (not deleted); 404 otherwise.
pub async fn visible_user(db: &DatabaseConnection, id: i64) -> AppResult<user::Model> {
    match user::Entity::find_by_id(id).one(db).await? {
        Some(u) if u.status != user::Status::Deleted => Ok(u),
        _ => Err(AppError::not_found("user")),
    }
}

/// The schools with these ids, by id.
pub async fn schools_by_id(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = i64>,
) -> AppResult<HashMap<i64, school::Model>> {
    let ids: Vec<i64> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = school::Entity::find()
        .filter(school::Column::Id.is_in(ids))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|s| (s.id, s)).collect())
}

pub async fn campus_by_id(db: &impl ConnectionTrait, id: i64) -> AppResult<Option<campus::Model>> {
    Ok(campus::Entity::find_by_id(id).one(db).await?)
}

/// Every school with its campuses, for the Mini Program's picker.
pub async fn list_schools(
    db: &DatabaseConnection,
) -> AppResult<Vec<(school::Model, Vec<campus::Model>)>> {
    let schools = school::Entity::find()
        .order_by_asc(school::Column::Id)
        .all(db)
        .await?;
    let campuses = campus::Entity::find()
        .order_by_asc(campus::Column::Id)
        .all(db)
        .await?;
    let mut by_school: HashMap<i64, Vec<campus::Model>> = HashMap::new();
    for c in campuses {
        by_school.entry(c.school_id).or_default().push(c);
    }
    Ok(schools
        .into_iter()
        .map(|s| {
            let c = by_school.remove(&s.id).unwrap_or_default();
            (s, c)
        })
        .collect())
}

/// A profile edit; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub nickname: Option<String>,
    /// `Some(None)` removes the avatar.
    pub avatar_url: Option<Option<String>>,
    pub bio: Option<String>,
    pub school_id: Option<i64>,
    /// `Some(None)` clears the campus.
    pub campus_id: Option<Option<i64>>,
}

fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Checks a profile edit field by field; every problem is reported at once.
pub fn validate_profile(change: &mut ProfileChange) -> AppResult<()> {
    let mut problems = std::collections::BTreeMap::new();
    if let Some(nick) = change.nickname.as_mut() {
        *nick = nick.trim().to_string();
        let n = nick.chars().count();
        if n == 0 || n > NICKNAME_MAX_CHARS || has_control_chars(nick) {
            problems.insert(
                "nickname".into(),
                format!("must be 1–{NICKNAME_MAX_CHARS} characters"),
            );
        }
    }
    if let Some(bio) = change.bio.as_mut() {
        *bio = bio.trim().to_string();
        if bio.chars().count() > BIO_MAX_CHARS || bio.chars().any(|c| c.is_control() && c != '\n') {
            problems.insert(
                "bio".into(),
                format!("must be at most {BIO_MAX_CHARS} characters"),
            );
        }
    }
    if let Some(Some(url)) = change.avatar_url.as_ref()
        && (!url.starts_with("https://") || url.len() > 512 || url.chars().any(char::is_whitespace))
    {
        problems.insert(
            "avatar_url".into(),
            "must be an https:// URL of at most 512 characters".into(),
        );
    }
    AppError::check_fields(problems)
}

/// Nickname and bio are public: content security reads them (scene 1) before they are saved. A profile has no
/// "waiting for review" state, so anything but a pass is refused — except when WeChat could not be asked at all,
/// which must not stop students from editing their profile.
async fn check_profile_text(
    state: &AppState,
    current: &user::Model,
    change: &ProfileChange,
) -> AppResult<()> {
    use crate::moderation::{Scene, Verdict, service::check_text};
    let changed: Vec<&str> = [
        change
            .nickname
            .as_deref()
            .filter(|n| *n != current.nickname),
        change
            .bio
            .as_deref()
            .filter(|b| !b.is_empty() && *b != current.bio),
    ]
    .into_iter()
    .flatten()
    .collect();
    if changed.is_empty() {
        return Ok(());
    }
    match check_text(
        state,
        &current.openid,
        Scene::Profile,
        None,
        &changed.join("\n"),
    )
    .await?
    {
        Verdict::Pass => Ok(()),
        Verdict::Review { label } if label == "unchecked" => Ok(()),
        Verdict::Review { label } | Verdict::Risky { label } => Err(AppError::Unprocessable {
            code: "content_rejected",
            message: format!(
                "the nickname or bio was rejected by content security ({label}); please change it"
            ),
        }),
    }
}

/// Applies a validated profile edit. A verified student cannot move to another school while the badge is live.
pub async fn update_profile(
    state: &AppState,
    current: &user::Model,
    mut change: ProfileChange,
) -> AppResult<user::Model> {
    validate_profile(&mut change)?;
    check_profile_text(state, current, &change).await?;
    let db = &state.db;
    let now = util::now();
    let mut school_id = current.school_id;
    let mut campus_id = current.campus_id;
    if let Some(new_school) = change.school_id
        && Some(new_school) != current.school_id
    {
        if let Some(verified) = current.verified_school(now)
            && verified != new_school
        {
            return Err(AppError::conflict(
                "school_locked_by_verification",
                "a verified student cannot change school while the verification is valid",
            ));
        }
        if school::Entity::find_by_id(new_school)
            .one(db)
            .await?
            .is_none()
        {
            return Err(AppError::invalid_field("school_id", "no such school"));
        }
        school_id = Some(new_school);
        campus_id = None;
    }
    if let Some(new_campus) = change.campus_id {
        campus_id = new_campus;
    }
    if let Some(cid) = campus_id {
        match campus_by_id(db, cid).await? {
            Some(c) if Some(c.school_id) == school_id => {}
            _ => {
                return Err(AppError::invalid_field(
                    "campus_id",
                    "not a campus of the chosen school",
                ));
            }
        }
    }

    let mut active: user::ActiveModel = current.clone().into();
    if let Some(nick) = change.nickname {
        active.nickname = Set(nick);
    }
    if let Some(avatar) = change.avatar_url {
        active.avatar_url = Set(avatar);
    }
    if let Some(bio) = change.bio {
        active.bio = Set(bio);
    }
    active.school_id = Set(school_id);
    active.campus_id = Set(campus_id);
    active.updated_at = Set(now);
    Ok(active.update(db).await?)
}

// ---------------------------------------------------------------------------------------------------------------
// Student verification

/// A student number as typed, made canonical (no spaces, upper case) and checked.
pub fn normalize_student_number(raw: &str) -> AppResult<String> {
    let n: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if !(4..=20).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AppError::invalid_field(
            "student_number",
            "must be 4–20 letters and digits",
        ));
    }
    Ok(n)
}

/// The stored form of a student number: HMAC-SHA256 keyed with the school's salt.
pub fn student_number_hash(school: &school::Model, normalized: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(school.roster_salt.as_bytes())
        .expect("HMAC takes any key");
    mac.update(normalized.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `2021301234` → `20******34`: enough to recognise, not enough to reuse.
pub fn mask_student_number(normalized: &str) -> String {
    let chars: Vec<char> = normalized.chars().collect();
    if chars.len() <= 4 {
        return format!(
            "**{}",
            chars[chars.len().saturating_sub(2)..]
                .iter()
                .collect::<String>()
        );
    }
    let middle = "*".repeat(chars.len() - 4);
    format!(
        "{}{}{}",
        chars[..2].iter().collect::<String>(),
        middle,
        chars[chars.len() - 2..].iter().collect::<String>()
    )
}

/// The end of the graduation year (31 December, 23:59:59 UTC): when a verification lapses.
pub fn end_of_year(year: i32) -> DateTime<Utc> {
    let year = year.clamp(GRADUATION_YEARS.0, GRADUATION_YEARS.1);
    Utc.with_ymd_and_hms(year, 12, 31, 23, 59, 59)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Graduation years the service accepts anywhere (rosters, requests); outside them a year is a typo.
pub const GRADUATION_YEARS: (i32, i32) = (2000, 2100);

/// The expected graduation year: as given, else from the roster, else from the enrolment year that most
/// Chinese student numbers start with (plus four years), else four years from now.
pub fn expected_graduation_year(
    given: Option<i32>,
    roster: Option<i32>,
    normalized: &str,
    now: DateTime<Utc>,
) -> i32 {
    if let Some(y) = given.or(roster) {
        return y;
    }
    let this_year = now.year();
    let enrolment = normalized
        .get(..4)
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|y| (this_year - 8..=this_year).contains(y));
    enrolment
        .map(|y| y + 4)
        .filter(|y| *y >= this_year)
        .unwrap_or(this_year + 4)
}

/// What a student asks to be verified as.
#[derive(Debug, Clone)]
pub struct VerificationInput {
    pub school_id: i64,
    pub student_number: String,
    pub real_name: Option<String>,
    pub graduation_year: Option<i32>,
}

/// Where a user's verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationState {
    None,
    Pending,
    Verified,
    Rejected,
    Expired,
}

/// The state, the latest request (if any) and the school it concerns.
pub async fn verification_status(
    db: &DatabaseConnection,
    user: &user::Model,
) -> AppResult<(VerificationState, Option<verification_request::Model>)> {
    let latest = verification_request::Entity::find()
        .filter(verification_request::Column::UserId.eq(user.id))
        .order_by_desc(verification_request::Column::Id)
        .one(db)
        .await?;
    let now = util::now();
    let state = if user.verified_school(now).is_some() {
        VerificationState::Verified
    } else {
        match latest.as_ref().map(|r| r.status) {
            Some(verification_request::Status::Pending) => VerificationState::Pending,
            Some(verification_request::Status::Rejected) => VerificationState::Rejected,
            _ if user.verified_until.is_some() => VerificationState::Expired,
            _ => VerificationState::None,
        }
    };
    Ok((state, latest))
}

/// `POST /api/v1/me/verification`: verified at once when the school's roster has the number, otherwise queued
/// for an operator.
pub async fn submit_verification(
    db: &DatabaseConnection,
    user: &user::Model,
    input: VerificationInput,
) -> AppResult<verification_request::Model> {
    let now = util::now();
    let normalized = normalize_student_number(&input.student_number)?;
    let real_name = input
        .real_name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if let Some(name) = &real_name
        && (name.chars().count() > 30 || has_control_chars(name))
    {
        return Err(AppError::invalid_field(
            "real_name",
            "must be at most 30 characters",
        ));
    }
    if let Some(y) = input.graduation_year
        && !(now.year()..=now.year() + 8).contains(&y)
    {
        return Err(AppError::invalid_field(
            "graduation_year",
            format!("must be between {} and {}", now.year(), now.year() + 8),
        ));
    }
    let Some(school) = school::Entity::find_by_id(input.school_id).one(db).await? else {
        return Err(AppError::invalid_field("school_id", "no such school"));
    };

    let (state, _) = verification_status(db, user).await?;
    match state {
        VerificationState::Verified => {
            return Err(AppError::conflict(
                "already_verified",
                "this account is already a verified student",
            ));
        }
        VerificationState::Pending => {
            return Err(AppError::conflict(
                "verification_pending",
                "a verification request is already waiting for review",
            ));
        }
        _ => {}
    }

    let hash = student_number_hash(&school, &normalized);
    let real_name_for_txn = real_name.clone();
    // Look-ups happen before the transaction: on SQLite a transaction that reads first and writes later fails
    // when another connection committed in between. The identity's primary key still settles any race.
    if let Some(existing) = student_identity::Entity::find_by_id((school.id, hash.clone()))
        .one(db)
        .await?
        && existing.user_id != user.id
        && existing.verified_until > now
    {
        return Err(AppError::conflict(
            "student_number_taken",
            "this student number is already verified for another account",
        ));
    }
    let roster = roster_entry::Entity::find_by_id((school.id, hash.clone()))
        .one(db)
        .await?;
    let year = expected_graduation_year(
        input.graduation_year,
        roster.as_ref().and_then(|r| r.graduation_year),
        &normalized,
        now,
    );
    let approved = roster.is_some();
    let user_id = user.id;
    db.transaction::<_, verification_request::Model, AppError>(move |txn| {
        Box::pin(async move {
            let request = verification_request::ActiveModel {
                user_id: Set(user_id),
                school_id: Set(school.id),
                student_number_hash: Set(hash.clone()),
                student_number_masked: Set(mask_student_number(&normalized)),
                real_name: Set(real_name_for_txn),
                graduation_year: Set(year),
                status: Set(if approved {
                    verification_request::Status::Approved
                } else {
                    verification_request::Status::Pending
                }),
                decided_by: Set(approved.then(|| "roster".to_string())),
                reject_reason: Set(None),
                created_at: Set(now),
                decided_at: Set(approved.then_some(now)),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            if approved {
                ensure_number_free(txn, school.id, &hash, user_id, now).await?;
                grant_verification(txn, user_id, school.id, &hash, end_of_year(year), now).await?;
            }
            Ok(request)
        })
    })
    .await
    .map_err(Into::into)
}

/// Refuses a number that is verified for another account; frees it when that verification has lapsed.
async fn ensure_number_free(
    txn: &impl ConnectionTrait,
    school_id: i64,
    hash: &str,
    user_id: i64,
    now: DateTime<Utc>,
) -> AppResult<()> {
    if let Some(existing) = student_identity::Entity::find_by_id((school_id, hash.to_string()))
        .one(txn)
        .await?
    {
        if existing.user_id != user_id && existing.verified_until > now {
            return Err(AppError::conflict(
                "student_number_taken",
                "this student number is already verified for another account",
            ));
        }
        student_identity::Entity::delete_by_id((school_id, hash.to_string()))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Records the verified identity and puts the badge on the user. The identity's primary key makes a second
/// account with the same number fail even under a race.
async fn grant_verification(
    txn: &impl ConnectionTrait,
    user_id: i64,
    school_id: i64,
    hash: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let identity = student_identity::ActiveModel {
        school_id: Set(school_id),
        number_hash: Set(hash.to_string()),
        user_id: Set(user_id),
        verified_until: Set(until),
        created_at: Set(now),
    };
    if let Err(e) = student_identity::Entity::insert(identity)
        .exec_without_returning(txn)
        .await
    {
        return Err(if is_unique_violation(&e) {
            AppError::conflict(
                "student_number_taken",
                "this student number is already verified for another account",
            )
        } else {
            e.into()
        });
    }
    // The school of a verified student is the school they are verified at.
    let school_changes = user::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .is_some_and(|u| u.school_id != Some(school_id));
    let mut update = user::Entity::update_many()
        .col_expr(user::Column::VerifiedSchoolId, Expr::value(school_id))
        .col_expr(user::Column::VerifiedUntil, Expr::value(until))
        .col_expr(user::Column::SchoolId, Expr::value(school_id))
        .col_expr(user::Column::UpdatedAt, Expr::value(now));
    if school_changes {
        update = update.col_expr(user::Column::CampusId, Expr::value(Option::<i64>::None));
    }
    update
        .filter(user::Column::Id.eq(user_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// An operator approves a pending request. Fails with 409 when it is no longer pending or the number has been
/// verified for someone else meanwhile.
pub async fn approve_verification(
    db: &DatabaseConnection,
    request_id: i64,
    decided_by: &str,
) -> AppResult<verification_request::Model> {
    let decided_by = decided_by.to_string();
    db.transaction::<_, verification_request::Model, AppError>(move |txn| {
        Box::pin(async move { approve_verification_in(txn, request_id, &decided_by).await })
    })
    .await
    .map_err(Into::into)
}

/// [`approve_verification`] in the caller's transaction (the operator API audits it in the same commit).
pub async fn approve_verification_in(
    txn: &impl ConnectionTrait,
    request_id: i64,
    decided_by: &str,
) -> AppResult<verification_request::Model> {
    let decided_by: String = decided_by.chars().take(64).collect();
    let now = util::now();
    let request = decide(
        txn,
        request_id,
        verification_request::Status::Approved,
        &decided_by,
        None,
        now,
    )
    .await?;
    ensure_number_free(
        txn,
        request.school_id,
        &request.student_number_hash,
        request.user_id,
        now,
    )
    .await?;
    grant_verification(
        txn,
        request.user_id,
        request.school_id,
        &request.student_number_hash,
        end_of_year(request.graduation_year),
        now,
    )
    .await?;
    crate::notifications::service::notify(
        txn,
        request.user_id,
        "verification_approved",
        "学生认证已通过",
        "你已成为认证学生，个人主页会显示认证标识。",
        Some("verification"),
        Some(request.id),
    )
    .await?;
    Ok(request)
}

/// An operator rejects a pending request, with a reason the student sees.
pub async fn reject_verification(
    db: &DatabaseConnection,
    request_id: i64,
    decided_by: &str,
    reason: &str,
) -> AppResult<verification_request::Model> {
    let reason = check_reject_reason(reason)?;
    let decided_by = decided_by.to_string();
    db.transaction::<_, verification_request::Model, AppError>(move |txn| {
        Box::pin(async move { reject_verification_in(txn, request_id, &decided_by, &reason).await })
    })
    .await
    .map_err(Into::into)
}

fn check_reject_reason(reason: &str) -> AppResult<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(AppError::invalid_field(
            "reason",
            "must be 1–200 characters",
        ));
    }
    Ok(reason.to_string())
}

/// [`reject_verification`] in the caller's transaction.
pub async fn reject_verification_in(
    txn: &impl ConnectionTrait,
    request_id: i64,
    decided_by: &str,
    reason: &str,
) -> AppResult<verification_request::Model> {
    let reason = check_reject_reason(reason)?;
    let decided_by: String = decided_by.chars().take(64).collect();
    let request = decide(
        txn,
        request_id,
        verification_request::Status::Rejected,
        &decided_by,
        Some(reason.clone()),
        util::now(),
    )
    .await?;
    crate::notifications::service::notify(
        txn,
        request.user_id,
        "verification_rejected",
        "学生认证未通过",
        &format!("原因：{reason}。你可以修改后重新提交。"),
        Some("verification"),
        Some(request.id),
    )
    .await?;
    Ok(request)
}

/// The one conditional update of a request: `pending → decision`.
async fn decide(
    txn: &impl ConnectionTrait,
    request_id: i64,
    decision: verification_request::Status,
    decided_by: &str,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<verification_request::Model> {
    let res = verification_request::Entity::update_many()
        .col_expr(verification_request::Column::Status, Expr::value(decision))
        .col_expr(
            verification_request::Column::DecidedBy,
            Expr::value(decided_by),
        )
        .col_expr(
            verification_request::Column::RejectReason,
            Expr::value(reason),
        )
        .col_expr(verification_request::Column::DecidedAt, Expr::value(now))
        .filter(verification_request::Column::Id.eq(request_id))
        .filter(verification_request::Column::Status.eq(verification_request::Status::Pending))
        .exec(txn)
        .await?;
    let request = verification_request::Entity::find_by_id(request_id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("verification request"))?;
    if res.rows_affected != 1 {
        return Err(AppError::conflict(
            "verification_not_pending",
            "this request has already been decided",
        ));
    }
    Ok(request)
}

/// Pending requests of a school, oldest first (the operators' queue).
pub async fn pending_verifications(
    db: &DatabaseConnection,
    school_id: Option<i64>,
) -> AppResult<Vec<verification_request::Model>> {
    let mut q = verification_request::Entity::find()
        .filter(verification_request::Column::Status.eq(verification_request::Status::Pending));
    if let Some(s) = school_id {
        q = q.filter(verification_request::Column::SchoolId.eq(s));
    }
    Ok(q.order_by_asc(verification_request::Column::Id)
        .all(db)
        .await?)
}

/// The operators' queue of pending requests, oldest first, limited to some schools (`None`: all).
pub async fn verification_queue(
    db: &DatabaseConnection,
    schools: Option<&[i64]>,
    after_id: Option<i64>,
    limit: u64,
) -> AppResult<Vec<verification_request::Model>> {
    let mut q = verification_request::Entity::find()
        .filter(verification_request::Column::Status.eq(verification_request::Status::Pending));
    if let Some(s) = schools {
        q = q.filter(verification_request::Column::SchoolId.is_in(s.iter().copied()));
    }
    if let Some(a) = after_id {
        q = q.filter(verification_request::Column::Id.gt(a));
    }
    Ok(q.order_by_asc(verification_request::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// One verification request; 404 when there is none.
pub async fn verification_request(
    db: &impl ConnectionTrait,
    id: i64,
) -> AppResult<verification_request::Model> {
    verification_request::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("verification request"))
}

/// One row of an uploaded roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterRow {
    pub student_number: String,
    pub graduation_year: Option<i32>,
}

/// What happened to an uploaded roster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosterReport {
    pub accepted: u64,
    /// (row number starting at 1, why)
    pub rejected: Vec<(usize, String)>,
}

/// The most rows one roster upload may carry.
pub const ROSTER_MAX_ROWS: usize = 100_000;

/// A roster file, parsed: the rows with their line numbers, and the lines refused already (line number, why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedRoster {
    pub rows: Vec<(usize, RosterRow)>,
    pub rejected: Vec<(usize, String)>,
}

/// Reads a roster CSV: one student per line, `student_number[,graduation_year]`, UTF-8 (a byte-order mark is
/// ignored), an optional header line, blank lines skipped, cells optionally in double quotes. Line numbers count
/// from 1 as an editor shows them. Numbers and years are checked later by [`import_roster_in`].
pub fn parse_roster_csv(text: &str) -> AppResult<ParsedRoster> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = ParsedRoster::default();
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<String> = line
            .split(',')
            .map(|c| c.trim().trim_matches('"').trim().to_string())
            .collect();
        if !seen_content {
            seen_content = true;
            let first = cells[0].to_lowercase();
            if first.contains("student") || first.contains("number") || first.contains("学号") {
                continue;
            }
        }
        if out.rows.len() >= ROSTER_MAX_ROWS {
            return Err(AppError::payload_too_large(
                "roster_too_large",
                format!("a roster upload carries at most {ROSTER_MAX_ROWS} rows; split the file"),
            ));
        }
        if cells.len() > 2 {
            out.rejected.push((
                line_no,
                "expected at most two columns: student_number, graduation_year".into(),
            ));
            continue;
        }
        let year = match cells.get(1).map(String::as_str).filter(|c| !c.is_empty()) {
            None => None,
            Some(y) => match y.parse::<i32>() {
                Ok(y) => Some(y),
                Err(_) => {
                    out.rejected.push((
                        line_no,
                        format!("graduation year {y:?} is not a whole number"),
                    ));
                    continue;
                }
            },
        };
        out.rows.push((
            line_no,
            RosterRow {
                student_number: cells[0].clone(),
                graduation_year: year,
            },
        ));
    }
    Ok(out)
}

/// Stores a roster's student numbers as salted hashes (re-uploading a number updates its year).
pub async fn import_roster(
    db: &DatabaseConnection,
    school_id: i64,
    rows: Vec<RosterRow>,
) -> AppResult<RosterReport> {
    let Some(school) = school::Entity::find_by_id(school_id).one(db).await? else {
        return Err(AppError::not_found("school"));
    };
    let txn = db.begin().await?;
    let report = import_roster_in(&txn, &school, rows).await?;
    txn.commit().await?;
    Ok(report)
}

/// [`import_roster`] in the caller's transaction, for a school already loaded.
pub async fn import_roster_in(
    txn: &impl ConnectionTrait,
    school: &school::Model,
    rows: Vec<RosterRow>,
) -> AppResult<RosterReport> {
    let now = util::now();
    let mut report = RosterReport::default();
    let mut entries = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        if let Some(y) = row.graduation_year
            && !(GRADUATION_YEARS.0..=GRADUATION_YEARS.1).contains(&y)
        {
            report
                .rejected
                .push((i + 1, format!("graduation year {y} is not plausible")));
            continue;
        }
        match normalize_student_number(&row.student_number) {
            Ok(n) => entries.push(roster_entry::ActiveModel {
                school_id: Set(school.id),
                number_hash: Set(student_number_hash(school, &n)),
                graduation_year: Set(row.graduation_year),
                created_at: Set(now),
            }),
            Err(_) => report.rejected.push((
                i + 1,
                "student number must be 4–20 letters and digits".into(),
            )),
        }
    }
    for chunk in entries.chunks(500) {
        let accepted = chunk.len() as u64;
        roster_entry::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    roster_entry::Column::SchoolId,
                    roster_entry::Column::NumberHash,
                ])
                .update_column(roster_entry::Column::GraduationYear)
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        report.accepted += accepted;
    }
    Ok(report)
}

/// Bans a user (until a date, or for good) and ends every session at once.
pub async fn ban_user(
    state: &AppState,
    user_id: i64,
    reason: &str,
    until: Option<DateTime<Utc>>,
) -> AppResult<()> {
    let txn = state.db.begin().await?;
    ban_user_in(&txn, user_id, reason, until).await?;
    txn.commit().await?;
    crate::auth::service::on_user_banned(state, user_id).await
}

/// The ban itself, in the caller's transaction: one conditional UPDATE of an account that is not deleted (a
/// banned one may be banned again with new terms). The caller ends the sessions after the commit with
/// [`crate::auth::service::on_user_banned`]. An end date in the past lifts the ban at once (every request
/// derives the ban from `banned_until`).
pub async fn ban_user_in(
    txn: &impl ConnectionTrait,
    user_id: i64,
    reason: &str,
    until: Option<DateTime<Utc>>,
) -> AppResult<user::Model> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(AppError::invalid_field(
            "reason",
            "must be 1–200 characters",
        ));
    }
    let res = user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value(user::Status::Banned))
        .col_expr(user::Column::BanReason, Expr::value(reason))
        .col_expr(user::Column::BannedUntil, Expr::value(until))
        .col_expr(user::Column::UpdatedAt, Expr::value(util::now()))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::Status.ne(user::Status::Deleted))
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::not_found("user"));
    }
    user::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("user"))
}

/// Lifts a ban: one conditional UPDATE `banned → active`; 409 `invalid_transition` for an account that is not
/// banned (an expired ban counts as banned until lifted, though it no longer applies).
pub async fn unban_user_in(txn: &impl ConnectionTrait, user_id: i64) -> AppResult<user::Model> {
    let res = user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value(user::Status::Active))
        .col_expr(user::Column::BanReason, Expr::value(Option::<String>::None))
        .col_expr(
            user::Column::BannedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(util::now()))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::Status.eq(user::Status::Banned))
        .exec(txn)
        .await?;
    let row = user::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    if res.rows_affected != 1 {
        let current = match row.status {
            user::Status::Active => "active",
            user::Status::Banned => "banned",
            user::Status::Deleted => "deleted",
        };
        return Err(AppError::InvalidTransition {
            current,
            message: format!("cannot unban an account that is {current}"),
        });
    }
    Ok(row)
}

/// Which students an operator is looking for. Filters combine (AND).
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Part of the nickname, or a user id (digits only).
    pub text: Option<String>,
    /// Limit to these schools (by the school in the profile or the verified one); `None`: all.
    pub schools: Option<Vec<i64>>,
    /// A student number: hashed with the salt of each school searched, matched against verified identities
    /// and verification requests.
    pub student_number: Option<String>,
    pub status: Option<user::Status>,
    /// Users with a smaller id (the next page).
    pub before_id: Option<i64>,
    pub limit: u64,
}

/// Students matching the query, newest first.
pub async fn search_users(db: &DatabaseConnection, q: &UserQuery) -> AppResult<Vec<user::Model>> {
    use sea_orm::Condition;
    let mut s = user::Entity::find();
    if let Some(schools) = &q.schools {
        s = s.filter(
            Condition::any()
                .add(user::Column::SchoolId.is_in(schools.iter().copied()))
                .add(user::Column::VerifiedSchoolId.is_in(schools.iter().copied())),
        );
    }
    if let Some(text) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let mut any = Condition::any().add(user::Column::Nickname.contains(text));
        if let Ok(id) = text.parse::<i64>() {
            any = any.add(user::Column::Id.eq(id));
        }
        s = s.filter(any);
    }
    if let Some(raw) = &q.student_number {
        let normalized = normalize_student_number(raw)?;
        let mut schools = school::Entity::find();
        if let Some(ids) = &q.schools {
            schools = schools.filter(school::Column::Id.is_in(ids.iter().copied()));
        }
        let mut ids: Vec<i64> = Vec::new();
        for sc in schools.all(db).await? {
            let hash = student_number_hash(&sc, &normalized);
            ids.extend(
                student_identity::Entity::find()
                    .filter(student_identity::Column::SchoolId.eq(sc.id))
                    .filter(student_identity::Column::NumberHash.eq(hash.as_str()))
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|i| i.user_id),
            );
            ids.extend(
                verification_request::Entity::find()
                    .filter(verification_request::Column::SchoolId.eq(sc.id))
                    .filter(verification_request::Column::StudentNumberHash.eq(hash.as_str()))
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|r| r.user_id),
            );
        }
        s = s.filter(user::Column::Id.is_in(ids));
    }
    if let Some(status) = q.status {
        s = s.filter(user::Column::Status.eq(status));
    }
    if let Some(b) = q.before_id {
        s = s.filter(user::Column::Id.lt(b));
    }
    Ok(s.order_by_desc(user::Column::Id)
        .limit(q.limit)
        .all(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_numbers_are_normalised_and_masked() {
        assert_eq!(
            normalize_student_number(" 2021 30 1234 ").unwrap(),
            "2021301234"
        );
        assert_eq!(normalize_student_number("ab12cd").unwrap(), "AB12CD");
        assert!(normalize_student_number("12").is_err());
        assert!(normalize_student_number("2021-301").is_err());
        assert_eq!(mask_student_number("2021301234"), "20******34");
        assert_eq!(mask_student_number("ABCD"), "**CD");
    }

    #[test]
    fn graduation_year_prefers_what_is_known() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_eq!(
            expected_graduation_year(Some(2028), Some(2027), "2024000001", now),
            2028
        );
        assert_eq!(
            expected_graduation_year(None, Some(2027), "2024000001", now),
            2027
        );
        assert_eq!(
            expected_graduation_year(None, None, "2024000001", now),
            2028
        );
        // An enrolment year so old the student should have graduated falls back to four years from now.
        assert_eq!(
            expected_graduation_year(None, None, "2019000001", now),
            2030
        );
        assert_eq!(expected_graduation_year(None, None, "S1234567", now), 2030);
        assert_eq!(end_of_year(2028).to_rfc3339(), "2028-12-31T23:59:59+00:00");
    }

    #[test]
    fn roster_csv_keeps_line_numbers_and_refuses_malformed_lines() {
        let csv = "\u{feff}学号,毕业年份\r\n2024000001,2028\n\n\"2024000002\", \n2024000003,20x8\na,b,c\n";
        let parsed = parse_roster_csv(csv).unwrap();
        assert_eq!(
            parsed.rows,
            vec![
                (
                    2,
                    RosterRow {
                        student_number: "2024000001".into(),
                        graduation_year: Some(2028)
                    }
                ),
                (
                    4,
                    RosterRow {
                        student_number: "2024000002".into(),
                        graduation_year: None
                    }
                ),
            ]
        );
        assert_eq!(parsed.rejected.len(), 2);
        assert_eq!(parsed.rejected[0].0, 5);
        assert!(parsed.rejected[0].1.contains("20x8"));
        assert_eq!(parsed.rejected[1].0, 6);
        // Without a header the first line is a row.
        assert_eq!(parse_roster_csv("S1234567\n").unwrap().rows.len(), 1);
    }

    #[test]
    fn profile_validation_reports_every_field() {
        let mut change = ProfileChange {
            nickname: Some("  ".into()),
            bio: Some("x".repeat(201)),
            avatar_url: Some(Some("http://insecure.example/a.png".into())),
            ..Default::default()
        };
        let Err(AppError::Validation(fields)) = validate_profile(&mut change) else {
            panic!("expected validation error")
        };
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            ["avatar_url", "bio", "nickname"]
        );

        let mut ok = ProfileChange {
            nickname: Some(" 小明 ".into()),
            ..Default::default()
        };
        validate_profile(&mut ok).unwrap();
        assert_eq!(ok.nickname.as_deref(), Some("小明"));
        let mut long = ProfileChange {
            nickname: Some("一".repeat(21)),
            ..Default::default()
        };
        assert!(validate_profile(&mut long).is_err());
    }
}
