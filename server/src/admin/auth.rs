//! Who is calling the operator API and what they may do.
//!
//! [`OperatorAuth`] is the bearer security scheme of every operator endpoint: it resolves the token in the
//! operators' namespace of the session store (a student token is never found there, so it gets 401) and loads
//! the account and its schools. Endpoints declare the permission they need in their signature with
//! [`Need<P>`](Need): the check runs before the request body is read, so an operator without the permission gets
//! 403 `permission_denied` whatever they send. [`require`] adds the school check for the object at hand: an
//! operator limited to some schools gets 403 `outside_school_scope` for anything of another school.

use std::{marker::PhantomData, ops::Deref};

use anyhow::anyhow;
use poem::Request;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme, auth::Bearer,
    registry::Registry,
};
use sea_orm::sea_query::StringLen;

use super::operators::{self, operator};
use crate::{
    auth::sessions::Session,
    error::{AppError, AppResult},
    state::AppState,
};

/// What an operator is for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
    clap::ValueEnum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[oai(rename = "OperatorRole", rename_all = "snake_case")]
pub enum Role {
    /// Everything, including operator accounts, the catalogue and site settings.
    #[sea_orm(string_value = "admin")]
    Admin,
    /// Content, reports and students.
    #[sea_orm(string_value = "moderator")]
    Moderator,
    /// Orders, disputes and refunds, and looking students up.
    #[sea_orm(string_value = "support")]
    Support,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Moderator => "moderator",
            Role::Support => "support",
        }
    }

    /// The permissions of the role. `docs/operators.md` has the same table; keep the two in step.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[
                Operators, Settings, Catalogue, Audit, Moderation, Users, UserLookup, Orders, Stats,
            ],
            Role::Moderator => &[Moderation, Users, UserLookup, Stats],
            Role::Support => &[Orders, UserLookup, Stats],
        }
    }

    pub fn permits(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

/// What an endpoint needs. Every operator endpoint declares one (or only a login) — see the table in
/// `docs/operators.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename = "OperatorPermission", rename_all = "snake_case")]
pub enum Permission {
    /// Operator accounts.
    Operators,
    /// Site settings.
    Settings,
    /// Schools, campuses, meet-up places, categories and forum boards.
    Catalogue,
    /// Reading the audit log.
    Audit,
    /// The moderation queue, the blocklist, and forum moderation.
    Moderation,
    /// Bans, verification decisions and rosters.
    Users,
    /// Looking students up: search, profile, listings, reports.
    UserLookup,
    /// Orders, disputes, refunds and payouts (the orders capability adds these endpoints).
    Orders,
    /// The dashboard's statistics.
    Stats,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Operators => "operators",
            Permission::Settings => "settings",
            Permission::Catalogue => "catalogue",
            Permission::Audit => "audit",
            Permission::Moderation => "moderation",
            Permission::Users => "users",
            Permission::UserLookup => "user_lookup",
            Permission::Orders => "orders",
            Permission::Stats => "stats",
        }
    }
}

/// The authenticated operator.
#[derive(Debug, Clone)]
pub struct CurrentOperator {
    pub operator: operator::Model,
    /// The schools the operator may act on; `None` for every school.
    pub schools: Option<Vec<i64>>,
    pub session: Session,
}

impl CurrentOperator {
    pub fn id(&self) -> i64 {
        self.operator.id
    }

    pub fn role(&self) -> Role {
        self.operator.role
    }

    /// Whether the operator may act on objects of `school` (`None`: something of no particular school, which
    /// only an operator of every school may touch).
    pub fn covers(&self, school: Option<i64>) -> bool {
        match (&self.schools, school) {
            (None, _) => true,
            (Some(list), Some(s)) => list.contains(&s),
            (Some(_), None) => false,
        }
    }

    /// The schools a listing query should be limited to: the one asked for (if the operator covers it), else
    /// the operator's own schools (`None`: no limit).
    pub fn school_filter(&self, requested: Option<i64>) -> AppResult<Option<Vec<i64>>> {
        match requested {
            Some(s) => {
                if !self.covers(Some(s)) {
                    return Err(out_of_scope());
                }
                Ok(Some(vec![s]))
            }
            None => Ok(self.schools.clone()),
        }
    }

    /// Who the audit log names.
    pub fn actor(&self) -> super::audit::Actor<'_> {
        super::audit::Actor::Operator {
            id: self.operator.id,
            name: &self.operator.username,
        }
    }
}

fn out_of_scope() -> AppError {
    AppError::forbidden(
        "outside_school_scope",
        "this belongs to a school outside your operator account's schools",
    )
}

/// Refuses unless the operator's role has `permission` and the operator covers `school` (see
/// [`CurrentOperator::covers`]).
pub fn require(op: &CurrentOperator, permission: Permission, school: Option<i64>) -> AppResult<()> {
    require_permission(op, permission)?;
    if !op.covers(school) {
        return Err(out_of_scope());
    }
    Ok(())
}

/// The role check alone (the school check follows once the object is loaded).
pub fn require_permission(op: &CurrentOperator, permission: Permission) -> AppResult<()> {
    if !op.role().permits(permission) {
        return Err(AppError::forbidden(
            "permission_denied",
            format!(
                "this needs the `{}` permission, which the {} role does not have",
                permission.as_str(),
                op.role().as_str()
            ),
        ));
    }
    Ok(())
}

/// An operator session token from `POST /admin/api/v1/auth/login`, sent as `Authorization: Bearer <token>`.
/// Student tokens are not accepted.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_operator")]
pub struct OperatorAuth(pub CurrentOperator);

async fn check_operator(req: &Request, bearer: Bearer) -> poem::Result<CurrentOperator> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| AppError::internal(anyhow!("application state missing")))?;
    Ok(authenticate(state, &bearer.token).await?)
}

/// Resolves an operator token to the account behind it. Disabled accounts and unknown tokens get 401.
pub async fn authenticate(state: &AppState, token: &str) -> AppResult<CurrentOperator> {
    let invalid =
        || AppError::unauthorized("the operator session is invalid or has expired; log in again");
    if token.is_empty() || token.len() > 128 {
        return Err(invalid());
    }
    let session = operators::sessions(state)
        .resolve(token)
        .await?
        .ok_or_else(invalid)?;
    let operator = operators::find(&state.db, session.user_id)
        .await
        .map_err(|_| invalid())?;
    if operator.disabled {
        return Err(invalid());
    }
    let schools = operators::schools_of(&state.db, &operator).await?;
    Ok(CurrentOperator {
        operator,
        schools,
        session,
    })
}

/// A permission, as a type: `Need<perm::Moderation>` in a handler's signature.
pub trait Perm: Send + Sync + 'static {
    const PERMISSION: Permission;
}

/// The permission markers for [`Need`].
pub mod perm {
    use super::{Perm, Permission};

    macro_rules! markers {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("Marker of [`Permission::", stringify!($name), "`].")]
            pub struct $name;
            impl Perm for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }

    markers!(
        Operators, Settings, Catalogue, Audit, Moderation, Users, UserLookup, Orders, Stats
    );
}

/// An operator whose role has the permission `P`: [`OperatorAuth`] plus the role check, done before the body is
/// read. In the OpenAPI document it is the `OperatorAuth` scheme; the operation's description names the
/// permission.
pub struct Need<P: Perm>(pub CurrentOperator, PhantomData<P>);

impl<P: Perm> Need<P> {
    /// The school check for the object at hand (see [`require`]).
    pub fn school(&self, school: Option<i64>) -> AppResult<()> {
        require(&self.0, P::PERMISSION, school)
    }
}

impl<P: Perm> Deref for Need<P> {
    type Target = CurrentOperator;
    fn deref(&self) -> &CurrentOperator {
        &self.0
    }
}

impl<'a, P: Perm> ApiExtractor<'a> for Need<P> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <OperatorAuth as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <OperatorAuth as ApiExtractor>::security_schemes()
    }

    async fn from_request(
        req: &'a Request,
        body: &mut poem::RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let OperatorAuth(op) = OperatorAuth::from_request(req, body, param_opts).await?;
        require_permission(&op, P::PERMISSION)?;
        Ok(Need(op, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_table_says() {
        assert!(Role::Admin.permits(Permission::Operators));
        assert!(Role::Admin.permits(Permission::Orders));
        assert!(Role::Moderator.permits(Permission::Moderation));
        assert!(!Role::Moderator.permits(Permission::Orders));
        assert!(!Role::Moderator.permits(Permission::Catalogue));
        assert!(Role::Support.permits(Permission::Orders));
        assert!(Role::Support.permits(Permission::UserLookup));
        assert!(!Role::Support.permits(Permission::Users));
        assert!(!Role::Support.permits(Permission::Moderation));
        // Only admins hold the account, settings, catalogue and audit permissions.
        for p in [
            Permission::Operators,
            Permission::Settings,
            Permission::Catalogue,
            Permission::Audit,
        ] {
            assert!(
                !Role::Moderator.permits(p) && !Role::Support.permits(p),
                "{p:?}"
            );
        }
    }

    fn op(schools: Option<Vec<i64>>) -> CurrentOperator {
        let now = chrono::Utc::now();
        CurrentOperator {
            operator: operator::Model {
                id: 1,
                username: "mod".into(),
                password_hash: String::new(),
                role: Role::Moderator,
                all_schools: schools.is_none(),
                disabled: false,
                failed_attempts: 0,
                locked_until: None,
                totp_secret: None,
                totp_pending_secret: None,
                totp_last_step: None,
                last_login_at: None,
                password_changed_at: now,
                created_at: now,
                updated_at: now,
            },
            schools,
            session: Session {
                token_hash: String::new(),
                user_id: 1,
                expires_at: now,
            },
        }
    }

    #[test]
    fn school_scope_limits_objects_and_lists() {
        let scoped = op(Some(vec![1, 2]));
        assert!(require(&scoped, Permission::Moderation, Some(1)).is_ok());
        let err = require(&scoped, Permission::Moderation, Some(3)).unwrap_err();
        assert_eq!(err.code(), "outside_school_scope");
        assert_eq!(
            require(&scoped, Permission::Moderation, None)
                .unwrap_err()
                .code(),
            "outside_school_scope",
            "things of no school are for operators of every school"
        );
        assert_eq!(
            require(&scoped, Permission::Catalogue, Some(1))
                .unwrap_err()
                .code(),
            "permission_denied"
        );
        assert_eq!(scoped.school_filter(None).unwrap(), Some(vec![1, 2]));
        assert_eq!(scoped.school_filter(Some(2)).unwrap(), Some(vec![2]));
        assert!(scoped.school_filter(Some(5)).is_err());

        let everywhere = op(None);
        assert!(require(&everywhere, Permission::Moderation, None).is_ok());
        assert_eq!(everywhere.school_filter(None).unwrap(), None);
    }
}
