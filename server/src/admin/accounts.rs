//! Operator sessions and accounts: login (password, then the TOTP code when enrolled), logout, the caller's own
//! account (password change, two-step login enrolment), and admins' management of operator accounts.

use chrono::{DateTime, Utc};
use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi, param::Path, payload::Json, types::MaybeUndefined,
};
use sea_orm::TransactionTrait;

use super::{
    AdminTags, audit,
    auth::{CurrentOperator, Need, OperatorAuth, Permission, Role, perm},
    operators::{self, NewOperator, OperatorPatch, operator},
    totp,
};
use crate::{
    error::{AppError, AppResult},
    state::AppState,
    util, web,
};

/// An operator account as the console shows it. Never carries the password hash or the TOTP secret.
#[derive(Debug, Clone, Object)]
pub struct OperatorView {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// What the role may do.
    pub permissions: Vec<Permission>,
    /// The schools the operator may act on; `null` for every school.
    pub schools: Option<Vec<i64>>,
    pub disabled: bool,
    /// Whether login needs a TOTP code.
    pub totp_enabled: bool,
    /// Set while the account is locked after repeated failed logins.
    pub locked_until: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub fn view(op: &operator::Model, schools: &Option<Vec<i64>>) -> OperatorView {
    let now = util::now();
    OperatorView {
        id: op.id,
        username: op.username.clone(),
        role: op.role,
        permissions: op.role.permissions().to_vec(),
        schools: schools.clone(),
        disabled: op.disabled,
        totp_enabled: op.totp_secret.is_some(),
        locked_until: op.locked_until.filter(|u| *u > now),
        last_login_at: op.last_login_at,
        created_at: op.created_at,
    }
}

/// A login.
#[derive(Debug, Object)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The 6-digit code of the authenticator app; required when two-step login is on (401 `totp_required`
    /// without it).
    pub totp_code: Option<String>,
}

/// A new operator session.
#[derive(Debug, Object)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>` to `/admin/api`. Lapses after `OPERATOR_SESSION_TTL_HOURS`
    /// unused.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub operator: OperatorView,
}

/// A session that replaces every earlier one (after a password change).
#[derive(Debug, Object)]
pub struct NewSession {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A password change.
#[derive(Debug, Object)]
pub struct PasswordChange {
    pub current_password: String,
    /// 10–128 characters, not the username.
    pub new_password: String,
}

/// Enrolment of an authenticator app: show `otpauth_uri` as a QR code (or `secret` for typing), then confirm
/// with a first code. Shown once.
#[derive(Debug, Object)]
pub struct TotpEnrolment {
    /// The shared secret, RFC 4648 base32.
    pub secret: String,
    /// `otpauth://totp/…` for authenticator apps (SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
}

/// A code from the authenticator app.
#[derive(Debug, Object)]
pub struct TotpCode {
    pub code: String,
}

/// Turning two-step login off: the password again, and a current code.
#[derive(Debug, Object)]
pub struct TotpDisable {
    pub password: String,
    /// Required while two-step login is on (not for an enrolment that was never confirmed).
    pub code: Option<String>,
}

#[derive(ApiResponse)]
pub enum LoggedOut {
    /// The session has ended.
    #[oai(status = 204)]
    Done,
}

pub struct SessionApi;

#[OpenApi(tag = "AdminTags::Session")]
impl SessionApi {
    /// Log in with username and password (and the TOTP code when two-step login is on). Wrong passwords and
    /// codes count: the fifth in a row locks the account for 15 minutes (403 `account_locked`). Other
    /// refusals: 401 `invalid_credentials`, 401 `totp_required`, 401 `invalid_totp`, 403 `operator_disabled`,
    /// 429 `rate_limited` (20 attempts per address per minute).
    ///
    /// Permission: none (this is how an operator gets a session).
    #[oai(
        path = "/v1/auth/login",
        method = "post",
        operation_id = "operator_login"
    )]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> AppResult<Json<LoginResponse>> {
        let ip = web::client_ip(req, state.config.trust_proxy_headers);
        let out = operators::login(
            &state,
            &body.username,
            &body.password,
            body.totp_code.as_deref(),
            ip,
        )
        .await?;
        Ok(Json(LoginResponse {
            token: out.token,
            expires_at: out.expires_at,
            operator: view(&out.operator, &out.schools),
        }))
    }

    /// End the caller's session; the token stops working at once.
    ///
    /// Permission: any operator.
    #[oai(
        path = "/v1/auth/logout",
        method = "post",
        operation_id = "operator_logout"
    )]
    async fn logout(&self, state: Data<&AppState>, auth: OperatorAuth) -> AppResult<LoggedOut> {
        let op = &auth.0;
        let txn = state.db.begin().await?;
        audit::begin(&txn, op.actor(), "operator.logout")
            .await?
            .finish(&txn, audit::Record::target("operator", op.id()))
            .await?;
        txn.commit().await?;
        operators::sessions(&state)
            .revoke(&op.session.token_hash, op.id())
            .await?;
        Ok(LoggedOut::Done)
    }

    /// The caller's own account.
    ///
    /// Permission: any operator.
    #[oai(path = "/v1/me", method = "get", operation_id = "operator_me")]
    async fn me(&self, auth: OperatorAuth) -> AppResult<Json<OperatorView>> {
        Ok(Json(view(&auth.0.operator, &auth.0.schools)))
    }

    /// Change the caller's password. Every session of the account ends (other devices included); the answer
    /// carries a new session for this one.
    ///
    /// Permission: any operator.
    #[oai(
        path = "/v1/me/password",
        method = "post",
        operation_id = "change_own_password"
    )]
    async fn change_password(
        &self,
        state: Data<&AppState>,
        auth: OperatorAuth,
        body: Json<PasswordChange>,
    ) -> AppResult<Json<NewSession>> {
        let op = &auth.0;
        if !operators::verify_password(&op.operator.password_hash, &body.current_password).await? {
            return Err(AppError::invalid_field(
                "current_password",
                "wrong password",
            ));
        }
        operators::check_password(&body.new_password, &op.operator.username)
            .map_err(|p| AppError::invalid_field("new_password", p))?;
        let hash = operators::hash_password(&body.new_password).await?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, op.actor(), "operator.password_change").await?;
        operators::update_in(
            &txn,
            op.id(),
            &OperatorPatch {
                password_hash: Some(hash),
                ..Default::default()
            },
        )
        .await?;
        pending
            .finish(&txn, audit::Record::target("operator", op.id()))
            .await?;
        txn.commit().await?;
        let sessions = operators::sessions(&state);
        sessions.revoke_all(op.id()).await?;
        let (token, expires_at) = sessions.create(op.id()).await?;
        Ok(Json(NewSession { token, expires_at }))
    }

    /// Start enrolling an authenticator app for two-step login: a new secret, shown once. Login does not ask
    /// for codes until the enrolment is confirmed. 409 `totp_already_enabled` while a confirmed app exists.
    ///
    /// Permission: any operator.
    #[oai(
        path = "/v1/me/totp",
        method = "post",
        operation_id = "start_totp_enrolment"
    )]
    async fn start_totp(
        &self,
        state: Data<&AppState>,
        auth: OperatorAuth,
    ) -> AppResult<Json<TotpEnrolment>> {
        let op = &auth.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, op.actor(), "operator.totp_start").await?;
        let secret = operators::start_totp_in(&txn, op.id()).await?;
        // The secret itself never reaches the audit log.
        pending
            .finish(&txn, audit::Record::target("operator", op.id()))
            .await?;
        txn.commit().await?;
        Ok(Json(TotpEnrolment {
            otpauth_uri: totp::provisioning_uri(&op.operator.username, &secret),
            secret,
        }))
    }

    /// Confirm the enrolment with a first code from the app. From then on every login needs a code.
    ///
    /// Permission: any operator.
    #[oai(
        path = "/v1/me/totp/confirm",
        method = "post",
        operation_id = "confirm_totp_enrolment"
    )]
    async fn confirm_totp(
        &self,
        state: Data<&AppState>,
        auth: OperatorAuth,
        body: Json<TotpCode>,
    ) -> AppResult<Json<OperatorView>> {
        let op = &auth.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, op.actor(), "operator.totp_confirm").await?;
        let fresh = operators::find(&txn, op.id()).await?;
        operators::confirm_totp_in(&txn, &fresh, &body.code).await?;
        let after = operators::find(&txn, op.id()).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("operator", op.id())
                    .after(&serde_json::json!({ "totp_enabled": true })),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view(&after, &op.schools)))
    }

    /// Turn two-step login off (or abandon an enrolment), with the password and, while it is on, a current
    /// code.
    ///
    /// Permission: any operator.
    #[oai(
        path = "/v1/me/totp/disable",
        method = "post",
        operation_id = "disable_totp"
    )]
    async fn disable_totp(
        &self,
        state: Data<&AppState>,
        auth: OperatorAuth,
        body: Json<TotpDisable>,
    ) -> AppResult<Json<OperatorView>> {
        let op = &auth.0;
        if !operators::verify_password(&op.operator.password_hash, &body.password).await? {
            return Err(AppError::invalid_field("password", "wrong password"));
        }
        if let Some(secret) = &op.operator.totp_secret {
            let now = u64::try_from(util::now().timestamp()).unwrap_or(0);
            if totp::verify(secret, body.code.as_deref().unwrap_or(""), now).is_none() {
                return Err(AppError::invalid_field("code", "wrong or expired code"));
            }
        }
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, op.actor(), "operator.totp_disable").await?;
        operators::disable_totp_in(&txn, op.id()).await?;
        let after = operators::find(&txn, op.id()).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("operator", op.id())
                    .after(&serde_json::json!({ "totp_enabled": false })),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view(&after, &op.schools)))
    }
}

/// A new operator account.
#[derive(Debug, Object)]
pub struct CreateOperator {
    /// 3–32 characters: letters, digits, `.`, `_`, `-` (stored in lower case).
    pub username: String,
    /// 10–128 characters, not the username. Tell it to the operator out of band; they should change it.
    pub password: String,
    pub role: Role,
    /// The schools the operator may act on; leave out (or `null`) for every school.
    pub schools: Option<Vec<i64>>,
}

/// A change to an operator account; fields left out stay as they are. A change of role, schools or password,
/// disabling, or resetting two-step login ends the account's sessions.
#[derive(Debug, Object)]
pub struct UpdateOperator {
    pub role: Option<Role>,
    /// The schools; `null` for every school.
    pub schools: MaybeUndefined<Vec<i64>>,
    pub disabled: Option<bool>,
    /// Turn two-step login off (a lost phone); the operator enrols again.
    pub reset_totp: Option<bool>,
    /// A new password (10–128 characters).
    pub password: Option<String>,
    /// Lift a lockout after failed logins.
    pub unlock: Option<bool>,
}

/// Whether `op` may manage an account acting on `schools` (`None`: every school).
fn may_manage(op: &CurrentOperator, schools: &Option<Vec<i64>>) -> AppResult<()> {
    let ok = match (&op.schools, schools) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(mine), Some(theirs)) => theirs.iter().all(|s| mine.contains(s)),
    };
    if ok {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "outside_school_scope",
            "an operator limited to some schools manages only accounts limited to those schools",
        ))
    }
}

pub struct OperatorsApi;

#[OpenApi(tag = "AdminTags::Operators")]
impl OperatorsApi {
    /// Every operator account (for an admin limited to some schools: the accounts limited to those schools).
    ///
    /// Permission: `operators`.
    #[oai(
        path = "/v1/operators",
        method = "get",
        operation_id = "list_operators"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Operators>,
    ) -> AppResult<Json<Vec<OperatorView>>> {
        let all = operators::list(&state.db).await?;
        Ok(Json(
            all.iter()
                .filter(|(_, schools)| may_manage(&auth, schools).is_ok())
                .map(|(o, s)| view(o, s))
                .collect(),
        ))
    }

    /// Create an operator account. 409 `username_taken`.
    ///
    /// Permission: `operators`.
    #[oai(
        path = "/v1/operators",
        method = "post",
        operation_id = "create_operator"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Operators>,
        body: Json<CreateOperator>,
    ) -> AppResult<Json<OperatorView>> {
        let b = body.0;
        may_manage(&auth, &b.schools)?;
        let prepared = operators::prepare(
            &state.db,
            NewOperator {
                username: b.username,
                password: b.password,
                role: b.role,
                schools: b.schools,
            },
        )
        .await?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "operator.create").await?;
        let row = operators::insert_in(&txn, prepared).await?;
        let schools = operators::schools_of(&txn, &row).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("operator", row.id)
                    .after(&operators::summary(&row, &schools)),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view(&row, &schools)))
    }

    /// One operator account.
    ///
    /// Permission: `operators`.
    #[oai(
        path = "/v1/operators/:id",
        method = "get",
        operation_id = "get_operator"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Operators>,
        id: Path<i64>,
    ) -> AppResult<Json<OperatorView>> {
        let row = operators::find(&state.db, id.0).await?;
        let schools = operators::schools_of(&state.db, &row).await?;
        may_manage(&auth, &schools)?;
        Ok(Json(view(&row, &schools)))
    }

    /// Change an operator account: role, schools, disabled, reset two-step login, a new password, lift a
    /// lockout. Admins cannot change their own role, schools or disable themselves (409 `cannot_change_self`).
    ///
    /// Permission: `operators`.
    #[oai(
        path = "/v1/operators/:id",
        method = "patch",
        operation_id = "update_operator"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Operators>,
        id: Path<i64>,
        body: Json<UpdateOperator>,
    ) -> AppResult<Json<OperatorView>> {
        let b = body.0;
        let current = operators::find(&state.db, id.0).await?;
        let current_schools = operators::schools_of(&state.db, &current).await?;
        may_manage(&auth, &current_schools)?;
        let schools = match b.schools {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(Some(v)),
        };
        if let Some(s) = &schools {
            may_manage(&auth, s)?;
            operators::check_schools(&state.db, s).await?;
        }
        if id.0 == auth.id() && (b.role.is_some() || schools.is_some() || b.disabled == Some(true))
        {
            return Err(AppError::conflict(
                "cannot_change_self",
                "ask another admin to change your own role, schools or to disable your account",
            ));
        }
        let password_hash = match &b.password {
            Some(p) => {
                operators::check_password(p, &current.username)
                    .map_err(|e| AppError::invalid_field("password", e))?;
                Some(operators::hash_password(p).await?)
            }
            None => None,
        };
        let patch = OperatorPatch {
            role: b.role,
            schools,
            disabled: b.disabled,
            reset_totp: b.reset_totp.unwrap_or(false),
            password_hash,
            unlock: b.unlock.unwrap_or(false),
        };
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "operator.update").await?;
        let before = operators::summary(&current, &current_schools);
        let row = operators::update_in(&txn, id.0, &patch).await?;
        let schools = operators::schools_of(&txn, &row).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("operator", row.id)
                    .before(&before)
                    .after(&operators::summary(&row, &schools)),
            )
            .await?;
        txn.commit().await?;
        if patch.ends_sessions() {
            operators::sessions(&state).revoke_all(row.id).await?;
        }
        Ok(Json(view(&row, &schools)))
    }
}
