//! Operator accounts: who may use the operator API, with which role and over which schools.
//!
//! Passwords are argon2id PHC strings (at least 10 characters). Five wrong passwords or codes in a row lock the
//! account for 15 minutes (the right password included). A second factor is optional: TOTP (see
//! [`super::totp`]), enrolled by generating a secret and confirming it with a first code. Accounts are never
//! deleted (the audit log names them); an admin disables them instead. Everything here is free of HTTP.

use std::collections::BTreeMap;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
    sea_query::{Expr, ExprTrait},
};

use super::{audit, auth::Role, totp};
use crate::{
    db::is_unique_violation,
    error::{AppError, AppResult},
    state::AppState,
    util,
};

pub mod operator {
    use sea_orm::entity::prelude::*;

    pub use crate::admin::auth::Role;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "operators")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Lower case letters, digits, `.`, `_` and `-`; 3–32 characters.
        pub username: String,
        /// argon2id PHC string.
        pub password_hash: String,
        pub role: Role,
        /// Acts on every school; otherwise only on those in `operator_schools`.
        pub all_schools: bool,
        pub disabled: bool,
        /// Wrong passwords or codes since the last success or lockout.
        pub failed_attempts: i32,
        pub locked_until: Option<DateTimeUtc>,
        /// The confirmed TOTP secret (base32); the second factor is on when set.
        pub totp_secret: Option<String>,
        /// A secret generated for enrolment, waiting for its first code.
        pub totp_pending_secret: Option<String>,
        /// The last time step a code was accepted for; a code is good once.
        pub totp_last_step: Option<i64>,
        pub last_login_at: Option<DateTimeUtc>,
        pub password_changed_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod operator_school {
    use sea_orm::entity::prelude::*;

    /// A school an operator without `all_schools` may act on.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "operator_schools")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub operator_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub school_id: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Wrong passwords or codes in a row that lock an account.
pub const MAX_FAILED_ATTEMPTS: i32 = 5;
/// How long a locked account refuses every login.
pub const LOCKOUT: chrono::Duration = chrono::Duration::minutes(15);
/// Login attempts one address may make per minute, whatever the account.
pub const LOGINS_PER_IP_PER_MINUTE: u64 = 20;

/// A username as stored: trimmed and lower case; 3–32 of `a-z 0-9 . _ -`.
pub fn normalize_username(raw: &str) -> AppResult<String> {
    let name = raw.trim().to_ascii_lowercase();
    if !(3..=32).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(AppError::invalid_field(
            "username",
            "must be 3–32 characters: letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(name)
}

/// The password rules: 10–128 characters, not the username.
pub fn check_password(password: &str, username: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(format!("must be at least {PASSWORD_MIN_CHARS} characters"));
    }
    if n > PASSWORD_MAX_CHARS {
        return Err(format!("must be at most {PASSWORD_MAX_CHARS} characters"));
    }
    if password.trim().to_ascii_lowercase() == username {
        return Err("must not be the username".into());
    }
    Ok(())
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random salt, as a PHC string. Runs on the blocking
/// pool: it takes tens of milliseconds of CPU by design.
pub async fn hash_password(password: &str) -> AppResult<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let hash: PasswordHash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| AppError::internal(anyhow::anyhow!("hashing a password: {e}")))?;
        Ok(hash.to_string())
    })
    .await
    .map_err(AppError::internal)?
}

/// Whether the password matches the PHC string (parameters are read from the string).
pub async fn verify_password(hash: &str, password: &str) -> AppResult<bool> {
    let (hash, password) = (hash.to_string(), password.to_string());
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .map_err(AppError::internal)
}

/// A hash of a password nobody has, verified against when a username does not exist, so that the answer takes
/// as long as for a real account.
async fn dummy_hash() -> &'static str {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_init(|| async {
            hash_password(&util::random_token(24))
                .await
                .unwrap_or_default()
        })
        .await
}

/// The schools an operator may act on: `None` for every school.
pub async fn schools_of(
    db: &impl ConnectionTrait,
    op: &operator::Model,
) -> AppResult<Option<Vec<i64>>> {
    if op.all_schools {
        return Ok(None);
    }
    let rows = operator_school::Entity::find()
        .filter(operator_school::Column::OperatorId.eq(op.id))
        .order_by_asc(operator_school::Column::SchoolId)
        .all(db)
        .await?;
    Ok(Some(rows.into_iter().map(|r| r.school_id).collect()))
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewOperator {
    pub username: String,
    pub password: String,
    pub role: Role,
    /// `None`: every school.
    pub schools: Option<Vec<i64>>,
}

/// A validated account with its password hashed, ready to insert.
#[derive(Debug, Clone)]
pub struct PreparedOperator {
    username: String,
    password_hash: String,
    role: Role,
    schools: Option<Vec<i64>>,
}

/// Checks every field (all problems at once) and hashes the password. Done before the transaction.
pub async fn prepare(db: &DatabaseConnection, new: NewOperator) -> AppResult<PreparedOperator> {
    let mut problems = BTreeMap::new();
    let username = match normalize_username(&new.username) {
        Ok(u) => u,
        Err(AppError::Validation(f)) => {
            problems.extend(f);
            String::new()
        }
        Err(e) => return Err(e),
    };
    if let Err(p) = check_password(&new.password, &username) {
        problems.insert("password".into(), p);
    }
    let schools = match new.schools {
        None => None,
        Some(mut ids) => {
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                problems.insert(
                    "schools".into(),
                    "name at least one school, or leave out for every school".into(),
                );
            } else if crate::users::service::schools_by_id(db, ids.iter().copied())
                .await?
                .len()
                != ids.len()
            {
                problems.insert("schools".into(), "no such school".into());
            }
            Some(ids)
        }
    };
    AppError::check_fields(problems)?;
    Ok(PreparedOperator {
        username,
        password_hash: hash_password(&new.password).await?,
        role: new.role,
        schools,
    })
}

/// Inserts a prepared account in the caller's transaction; 409 `username_taken` when the name exists.
pub async fn insert_in(
    txn: &impl ConnectionTrait,
    p: PreparedOperator,
) -> AppResult<operator::Model> {
    let now = util::now();
    let row = operator::ActiveModel {
        username: Set(p.username),
        password_hash: Set(p.password_hash),
        role: Set(p.role),
        all_schools: Set(p.schools.is_none()),
        disabled: Set(false),
        failed_attempts: Set(0),
        locked_until: Set(None),
        totp_secret: Set(None),
        totp_pending_secret: Set(None),
        totp_last_step: Set(None),
        last_login_at: Set(None),
        password_changed_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AppError::conflict("username_taken", "an operator with this username exists")
        } else {
            e.into()
        }
    })?;
    replace_schools(txn, row.id, p.schools.as_deref()).await?;
    Ok(row)
}

async fn replace_schools(
    txn: &impl ConnectionTrait,
    operator_id: i64,
    schools: Option<&[i64]>,
) -> AppResult<()> {
    operator_school::Entity::delete_many()
        .filter(operator_school::Column::OperatorId.eq(operator_id))
        .exec(txn)
        .await?;
    if let Some(ids) = schools.filter(|s| !s.is_empty()) {
        operator_school::Entity::insert_many(ids.iter().map(|s| operator_school::ActiveModel {
            operator_id: Set(operator_id),
            school_id: Set(*s),
        }))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// Creates an account outside any operator's session (the `operator create` command); audited as `cli`.
pub async fn create_from_cli(
    db: &DatabaseConnection,
    new: NewOperator,
) -> AppResult<operator::Model> {
    let prepared = prepare(db, new).await?;
    let txn = db.begin().await?;
    let pending = audit::begin(&txn, audit::Actor::Cli, "operator.create").await?;
    let row = insert_in(&txn, prepared).await?;
    let schools = schools_of(&txn, &row).await?;
    pending
        .finish(
            &txn,
            audit::Record::target("operator", row.id).after(&summary(&row, &schools)),
        )
        .await?;
    txn.commit().await?;
    Ok(row)
}

/// What the audit log keeps of an account (never the password hash or the TOTP secret).
pub fn summary(op: &operator::Model, schools: &Option<Vec<i64>>) -> serde_json::Value {
    serde_json::json!({
        "username": op.username,
        "role": op.role.as_str(),
        "schools": schools,
        "disabled": op.disabled,
        "totp_enabled": op.totp_secret.is_some(),
    })
}

pub async fn find(db: &impl ConnectionTrait, id: i64) -> AppResult<operator::Model> {
    operator::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("operator"))
}

/// Every account, by username.
pub async fn list(db: &DatabaseConnection) -> AppResult<Vec<(operator::Model, Option<Vec<i64>>)>> {
    let ops = operator::Entity::find()
        .order_by_asc(operator::Column::Username)
        .all(db)
        .await?;
    let links = operator_school::Entity::find().all(db).await?;
    let mut by_op: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for l in links {
        by_op.entry(l.operator_id).or_default().push(l.school_id);
    }
    Ok(ops
        .into_iter()
        .map(|o| {
            let schools = (!o.all_schools).then(|| by_op.remove(&o.id).unwrap_or_default());
            (o, schools)
        })
        .collect())
}

/// A change an admin makes to an account; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct OperatorPatch {
    pub role: Option<Role>,
    /// `Some(None)`: every school.
    pub schools: Option<Option<Vec<i64>>>,
    pub disabled: Option<bool>,
    /// Turns the second factor off (a lost phone); the operator enrols again.
    pub reset_totp: bool,
    /// A new password (already checked and hashed).
    pub password_hash: Option<String>,
    /// Lifts a lockout.
    pub unlock: bool,
}

impl OperatorPatch {
    /// Whether the change should end the account's sessions (what it may do, or who may log in, changed).
    pub fn ends_sessions(&self) -> bool {
        self.role.is_some()
            || self.schools.is_some()
            || self.disabled == Some(true)
            || self.reset_totp
            || self.password_hash.is_some()
    }
}

/// Checks the schools of a patch exist.
pub async fn check_schools(db: &DatabaseConnection, schools: &Option<Vec<i64>>) -> AppResult<()> {
    if let Some(ids) = schools {
        if ids.is_empty() {
            return Err(AppError::invalid_field(
                "schools",
                "name at least one school, or null for every school",
            ));
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        if crate::users::service::schools_by_id(db, unique.iter().copied())
            .await?
            .len()
            != unique.len()
        {
            return Err(AppError::invalid_field("schools", "no such school"));
        }
    }
    Ok(())
}

/// Applies a patch in the caller's transaction (one UPDATE, then the school list).
pub async fn update_in(
    txn: &impl ConnectionTrait,
    id: i64,
    patch: &OperatorPatch,
) -> AppResult<operator::Model> {
    let now = util::now();
    let mut q = operator::Entity::update_many()
        .col_expr(operator::Column::UpdatedAt, Expr::value(now))
        .filter(operator::Column::Id.eq(id));
    if let Some(role) = patch.role {
        q = q.col_expr(operator::Column::Role, Expr::value(role));
    }
    if let Some(schools) = &patch.schools {
        q = q.col_expr(operator::Column::AllSchools, Expr::value(schools.is_none()));
    }
    if let Some(disabled) = patch.disabled {
        q = q.col_expr(operator::Column::Disabled, Expr::value(disabled));
    }
    if patch.reset_totp {
        q = q
            .col_expr(
                operator::Column::TotpSecret,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                operator::Column::TotpPendingSecret,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                operator::Column::TotpLastStep,
                Expr::value(Option::<i64>::None),
            );
    }
    if let Some(hash) = &patch.password_hash {
        q = q
            .col_expr(operator::Column::PasswordHash, Expr::value(hash.clone()))
            .col_expr(operator::Column::PasswordChangedAt, Expr::value(now));
    }
    if patch.unlock {
        q = q
            .col_expr(operator::Column::FailedAttempts, Expr::value(0))
            .col_expr(
                operator::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
    }
    if q.exec(txn).await?.rows_affected != 1 {
        return Err(AppError::not_found("operator"));
    }
    if let Some(schools) = &patch.schools {
        let mut ids = schools.clone();
        if let Some(ids) = ids.as_mut() {
            ids.sort_unstable();
            ids.dedup();
        }
        replace_schools(txn, id, ids.as_deref()).await?;
    }
    find(txn, id).await
}

// ---------------------------------------------------------------------------------------------------------------
// Login

/// A successful login.
pub struct LoginOutcome {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub operator: operator::Model,
    pub schools: Option<Vec<i64>>,
}

fn invalid_credentials() -> AppError {
    AppError::Unauthorized {
        code: "invalid_credentials",
        message: "wrong username or password".into(),
    }
}

fn locked(until: DateTime<Utc>) -> AppError {
    AppError::forbidden(
        "account_locked",
        format!(
            "too many failed logins: this account is locked until {}",
            until.to_rfc3339()
        ),
    )
}

/// Counts a wrong password or code; the fifth in a row locks the account for [`LOCKOUT`] and starts the count
/// again. One conditional UPDATE (both right-hand sides read the row as it was).
async fn record_failure(db: &DatabaseConnection, id: i64) -> AppResult<()> {
    let until = util::now() + LOCKOUT;
    operator::Entity::update_many()
        .col_expr(
            operator::Column::FailedAttempts,
            Expr::case(
                Expr::col(operator::Column::FailedAttempts)
                    .add(1)
                    .gte(MAX_FAILED_ATTEMPTS),
                Expr::value(0),
            )
            .finally(Expr::col(operator::Column::FailedAttempts).add(1))
            .into(),
        )
        .col_expr(
            operator::Column::LockedUntil,
            Expr::case(
                Expr::col(operator::Column::FailedAttempts)
                    .add(1)
                    .gte(MAX_FAILED_ATTEMPTS),
                Expr::value(until),
            )
            .finally(Expr::col(operator::Column::LockedUntil))
            .into(),
        )
        .filter(operator::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// `POST /admin/api/v1/auth/login`: password, then the TOTP code when the account has one. Wrong answers count
/// towards the lockout; a missing code does not (the console asks for it and tries again).
pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
    totp_code: Option<&str>,
    ip: Option<std::net::IpAddr>,
) -> AppResult<LoginOutcome> {
    if let Some(ip) = ip {
        crate::auth::service::rate_limit(
            &state.kv,
            &format!("rl:oplogin:ip:{ip}"),
            LOGINS_PER_IP_PER_MINUTE,
            std::time::Duration::from_secs(60),
            "login attempts",
        )
        .await?;
    }
    let db = &state.db;
    let name = username.trim().to_ascii_lowercase();
    let found = if name.is_empty() || name.len() > 32 || password.len() > 1024 {
        None
    } else {
        operator::Entity::find()
            .filter(operator::Column::Username.eq(name.as_str()))
            .one(db)
            .await?
    };
    let Some(op) = found else {
        verify_password(dummy_hash().await, password).await?;
        return Err(invalid_credentials());
    };
    let now = util::now();
    if let Some(until) = op.locked_until.filter(|u| *u > now) {
        return Err(locked(until));
    }
    if !verify_password(&op.password_hash, password).await? {
        record_failure(db, op.id).await?;
        tracing::warn!(operator = %op.username, "operator login: wrong password");
        return Err(invalid_credentials());
    }
    if op.disabled {
        return Err(AppError::forbidden(
            "operator_disabled",
            "this operator account is disabled",
        ));
    }
    let step = match &op.totp_secret {
        None => None,
        Some(secret) => {
            let Some(code) = totp_code.filter(|c| !c.trim().is_empty()) else {
                return Err(AppError::Unauthorized {
                    code: "totp_required",
                    message:
                        "this account has two-step login: send the 6-digit code as `totp_code`"
                            .into(),
                });
            };
            match totp::verify(secret, code, unix_seconds(now)) {
                Some(step) if op.totp_last_step.is_none_or(|last| step as i64 > last) => {
                    Some(step as i64)
                }
                _ => {
                    record_failure(db, op.id).await?;
                    tracing::warn!(operator = %op.username, "operator login: wrong TOTP code");
                    return Err(invalid_totp());
                }
            }
        }
    };

    let txn = db.begin().await?;
    let mut q = operator::Entity::update_many()
        .col_expr(operator::Column::FailedAttempts, Expr::value(0))
        .col_expr(
            operator::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(operator::Column::LastLoginAt, Expr::value(now))
        .filter(operator::Column::Id.eq(op.id))
        .filter(operator::Column::Disabled.eq(false));
    if let Some(step) = step {
        // A code is good once: of two logins racing with the same code, one wins.
        q = q
            .col_expr(operator::Column::TotpLastStep, Expr::value(step))
            .filter(
                sea_orm::Condition::any()
                    .add(operator::Column::TotpLastStep.is_null())
                    .add(operator::Column::TotpLastStep.lt(step)),
            );
    }
    if q.exec(&txn).await?.rows_affected != 1 {
        return Err(invalid_totp());
    }
    let actor = audit::Actor::Operator {
        id: op.id,
        name: &op.username,
    };
    audit::begin(&txn, actor, "operator.login")
        .await?
        .finish(&txn, audit::Record::target("operator", op.id))
        .await?;
    txn.commit().await?;

    let schools = schools_of(db, &op).await?;
    let (token, expires_at) = sessions(state).create(op.id).await?;
    tracing::info!(operator = %op.username, "operator logged in");
    Ok(LoginOutcome {
        token,
        expires_at,
        operator: op,
        schools,
    })
}

fn unix_seconds(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

fn invalid_totp() -> AppError {
    AppError::Unauthorized {
        code: "invalid_totp",
        message: "the code is wrong, expired or already used".into(),
    }
}

/// The operators' namespace of the session store, with their session lifetime.
pub fn sessions(state: &AppState) -> crate::auth::sessions::Sessions<'_> {
    state.sessions.scoped(
        crate::auth::sessions::Namespace::Operator,
        state.config.operator_session_ttl,
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Second factor

/// Starts enrolment: a fresh secret waits for its first code. Refused while a confirmed factor is on (turn it
/// off first, or ask an admin to reset it).
pub async fn start_totp_in(txn: &impl ConnectionTrait, id: i64) -> AppResult<String> {
    let secret = totp::generate_secret();
    let res = operator::Entity::update_many()
        .col_expr(
            operator::Column::TotpPendingSecret,
            Expr::value(secret.clone()),
        )
        .col_expr(operator::Column::UpdatedAt, Expr::value(util::now()))
        .filter(operator::Column::Id.eq(id))
        .filter(operator::Column::TotpSecret.is_null())
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::conflict(
            "totp_already_enabled",
            "two-step login is already on; turn it off before enrolling a new device",
        ));
    }
    Ok(secret)
}

/// Confirms enrolment with the first code from the app; from then on every login needs a code.
pub async fn confirm_totp_in(
    txn: &impl ConnectionTrait,
    op: &operator::Model,
    code: &str,
) -> AppResult<()> {
    let Some(pending) = &op.totp_pending_secret else {
        return Err(AppError::conflict(
            "totp_not_started",
            "start enrolment first (POST /v1/me/totp)",
        ));
    };
    let Some(step) = totp::verify(pending, code, unix_seconds(util::now())) else {
        return Err(AppError::invalid_field(
            "code",
            "wrong or expired code; check the device's clock",
        ));
    };
    let res = operator::Entity::update_many()
        .col_expr(operator::Column::TotpSecret, Expr::value(pending.clone()))
        .col_expr(
            operator::Column::TotpPendingSecret,
            Expr::value(Option::<String>::None),
        )
        .col_expr(operator::Column::TotpLastStep, Expr::value(step as i64))
        .col_expr(operator::Column::UpdatedAt, Expr::value(util::now()))
        .filter(operator::Column::Id.eq(op.id))
        .filter(operator::Column::TotpPendingSecret.eq(pending.as_str()))
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::conflict(
            "totp_not_started",
            "the enrolment changed meanwhile; start again",
        ));
    }
    Ok(())
}

/// Turns the second factor off (the operator proved the password again).
pub async fn disable_totp_in(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    let res = operator::Entity::update_many()
        .col_expr(
            operator::Column::TotpSecret,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            operator::Column::TotpPendingSecret,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            operator::Column::TotpLastStep,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(operator::Column::UpdatedAt, Expr::value(util::now()))
        .filter(operator::Column::Id.eq(id))
        .filter(
            sea_orm::Condition::any()
                .add(operator::Column::TotpSecret.is_not_null())
                .add(operator::Column::TotpPendingSecret.is_not_null()),
        )
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::conflict(
            "totp_not_enabled",
            "two-step login is not on",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords_follow_the_rules() {
        assert_eq!(normalize_username("  Li.Lei_2 ").unwrap(), "li.lei_2");
        assert!(normalize_username("ab").is_err());
        assert!(normalize_username("李雷").is_err());
        assert!(normalize_username("has space").is_err());
        assert!(check_password("short", "x").is_err());
        assert!(check_password("li.lei.2026", "li.lei.2026").is_err());
        assert!(check_password(&"x".repeat(129), "y").is_err());
        assert!(check_password("correct horse battery", "lilei").is_ok());
        // Characters, not bytes: ten Chinese characters are enough.
        assert!(check_password("一二三四五六七八九十", "lilei").is_ok());
    }

    #[tokio::test]
    async fn password_hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(
            verify_password(&hash, "correct horse battery")
                .await
                .unwrap()
        );
        assert!(
            !verify_password(&hash, "correct horse batterY")
                .await
                .unwrap()
        );
        assert!(!verify_password("not a phc string", "x").await.unwrap());
        // A fresh salt every time.
        assert_ne!(hash, hash_password("correct horse battery").await.unwrap());
    }

    #[test]
    fn only_changes_of_power_end_sessions() {
        assert!(!OperatorPatch::default().ends_sessions());
        assert!(
            !OperatorPatch {
                unlock: true,
                disabled: Some(false),
                ..Default::default()
            }
            .ends_sessions()
        );
        assert!(
            OperatorPatch {
                role: Some(Role::Support),
                ..Default::default()
            }
            .ends_sessions()
        );
        assert!(
            OperatorPatch {
                schools: Some(None),
                ..Default::default()
            }
            .ends_sessions()
        );
    }
}
