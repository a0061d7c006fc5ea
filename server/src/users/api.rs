//! HTTP endpoints of the users capability: the caller's own profile, public profiles, schools, and student
//! verification. Handlers parse, authorise, call [`super::service`] and map the result.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi, Tags, param::Path, payload::Json, types::MaybeUndefined,
};

use super::{
    model::{school, user, verification_request},
    service::{self, ProfileChange, VerificationInput, VerificationState},
};
use crate::{
    auth::StudentAuth,
    error::AppResult,
    reviews::{
        api::{Reputation, reputation_view},
        model::Counters,
    },
    state::AppState,
    util,
};

#[derive(Tags)]
enum UserTags {
    /// The caller's own account and profile.
    Me,
    /// Other students' public profiles.
    Users,
    /// Schools and their campuses.
    Schools,
    /// Student verification.
    Verification,
}

/// A school, by id and name.
#[derive(Debug, Clone, Object)]
pub struct SchoolRef {
    pub id: i64,
    pub name: String,
}

/// A campus, by id and name.
#[derive(Debug, Clone, Object)]
pub struct CampusRef {
    pub id: i64,
    pub name: String,
}

/// The caller's own account.
#[derive(Debug, Clone, Object)]
pub struct Me {
    pub id: i64,
    /// 1–20 characters.
    pub nickname: String,
    pub avatar_url: Option<String>,
    /// At most 200 characters.
    pub bio: String,
    pub school: Option<SchoolRef>,
    pub campus: Option<CampusRef>,
    /// Present while the caller is a verified student.
    pub verified_student: Option<VerifiedBadge>,
    pub created_at: DateTime<Utc>,
}

/// "Verified student of <school>", shown on profiles.
#[derive(Debug, Clone, Object)]
pub struct VerifiedBadge {
    pub school_id: i64,
    pub school_name: String,
}

/// What anybody may see of a student. Never carries openid, student number or real name.
#[derive(Debug, Clone, Object)]
pub struct PublicUser {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: Option<String>,
    pub bio: String,
    pub school: Option<SchoolRef>,
    pub verified_student: Option<VerifiedBadge>,
    pub member_since: DateTime<Utc>,
    /// Deals, ratings and reliability (see docs/reviews.md).
    pub reputation: Reputation,
}

/// A profile edit: fields left out stay as they are; `null` clears `avatar_url` and `campus_id`.
#[derive(Debug, Object)]
pub struct UpdateMe {
    pub nickname: Option<String>,
    pub avatar_url: MaybeUndefined<String>,
    pub bio: Option<String>,
    /// Choosing another school clears the campus. Refused while verified at a different school.
    pub school_id: Option<i64>,
    /// Must be a campus of the (new) school.
    pub campus_id: MaybeUndefined<i64>,
}

/// A school with its campuses.
#[derive(Debug, Clone, Object)]
pub struct School {
    pub id: i64,
    /// Stable English identifier, e.g. `demo-university`.
    pub slug: String,
    pub name: String,
    pub short_name: String,
    /// Whether only verified students may publish listings at this school.
    pub requires_verification: bool,
    pub campuses: Vec<CampusRef>,
}

/// Start student verification.
#[derive(Debug, Object)]
pub struct VerificationRequestBody {
    pub school_id: i64,
    /// 4–20 letters and digits; spaces are ignored.
    pub student_number: String,
    /// Optional; helps an operator who reviews the request.
    pub real_name: Option<String>,
    /// Expected graduation year; the verification lapses at its end. Guessed from the number when left out.
    pub graduation_year: Option<i32>,
}

/// Where the caller's verification stands.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// Never asked.
    None,
    /// Waiting for an operator.
    Pending,
    /// Verified; see `verified_until`.
    Verified,
    /// The last request was rejected; see `reject_reason`. A new request may be made.
    Rejected,
    /// The verification lapsed (graduation); a new request may be made.
    Expired,
}

/// The caller's verification.
#[derive(Debug, Clone, Object)]
pub struct Verification {
    pub status: VerificationStatus,
    /// The school of the latest request.
    pub school: Option<SchoolRef>,
    /// The number of the latest request, with its middle hidden.
    pub student_number_masked: Option<String>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub verified_until: Option<DateTime<Utc>>,
    pub reject_reason: Option<String>,
}

fn school_ref(s: &school::Model) -> SchoolRef {
    SchoolRef {
        id: s.id,
        name: s.name.clone(),
    }
}

/// Builds the caller's own view of their account.
pub async fn me_view(state: &AppState, u: &user::Model) -> AppResult<Me> {
    let now = util::now();
    let schools = service::schools_by_id(
        &state.db,
        u.school_id.into_iter().chain(u.verified_school(now)),
    )
    .await?;
    let campus = match u.campus_id {
        Some(id) => service::campus_by_id(&state.db, id)
            .await?
            .map(|c| CampusRef {
                id: c.id,
                name: c.name,
            }),
        None => None,
    };
    let public = public_view_with(u, &schools, reputation_view(&Counters::default(), None));
    Ok(Me {
        id: public.id,
        nickname: public.nickname,
        avatar_url: public.avatar_url,
        bio: public.bio,
        school: public.school,
        campus,
        verified_student: public.verified_student,
        created_at: u.created_at,
    })
}

/// What anybody may see of `u`, with the full reputation (chat response time included).
pub async fn public_view(state: &AppState, u: &user::Model) -> AppResult<PublicUser> {
    let now = util::now();
    let schools = service::schools_by_id(
        &state.db,
        u.school_id.into_iter().chain(u.verified_school(now)),
    )
    .await?;
    let reputation = crate::reviews::api::profile_reputation(state, u.id).await?;
    Ok(public_view_with(u, &schools, reputation))
}

/// The public profile, with schools looked up in a map the caller already has (the cached catalogue) and the
/// reputation the caller loaded.
pub fn public_view_with(
    u: &user::Model,
    schools: &std::collections::HashMap<i64, school::Model>,
    reputation: Reputation,
) -> PublicUser {
    let now = util::now();
    PublicUser {
        id: u.id,
        nickname: u.nickname.clone(),
        avatar_url: u.avatar_url.clone(),
        bio: u.bio.clone(),
        school: u.school_id.and_then(|id| schools.get(&id)).map(school_ref),
        verified_student: u
            .verified_school(now)
            .and_then(|id| schools.get(&id))
            .map(|s| VerifiedBadge {
                school_id: s.id,
                school_name: s.name.clone(),
            }),
        member_since: u.created_at,
        reputation,
    }
}

async fn verification_view(
    state: &AppState,
    u: &user::Model,
    st: VerificationState,
    latest: Option<verification_request::Model>,
) -> AppResult<Verification> {
    let status = match st {
        VerificationState::None => VerificationStatus::None,
        VerificationState::Pending => VerificationStatus::Pending,
        VerificationState::Verified => VerificationStatus::Verified,
        VerificationState::Rejected => VerificationStatus::Rejected,
        VerificationState::Expired => VerificationStatus::Expired,
    };
    let schools = service::schools_by_id(&state.db, latest.as_ref().map(|r| r.school_id)).await?;
    Ok(Verification {
        status,
        school: latest
            .as_ref()
            .and_then(|r| schools.get(&r.school_id))
            .map(school_ref),
        student_number_masked: latest.as_ref().map(|r| r.student_number_masked.clone()),
        submitted_at: latest.as_ref().map(|r| r.created_at),
        decided_at: latest.as_ref().and_then(|r| r.decided_at),
        verified_until: u.verified_until,
        reject_reason: latest.and_then(|r| r.reject_reason),
    })
}

/// The caller's own account.
pub struct MeApi;

#[derive(poem_openapi::ApiResponse)]
enum Deleted {
    /// The account is deleted.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi]
impl MeApi {
    /// A copy of all personal data held about the caller, as one JSON document (PIPL's right of access):
    /// profile, verification requests, listings, favourites, images, posts, comments, votes, reports filed,
    /// blocks, notifications, and what later capabilities store.
    #[oai(
        path = "/v1/me/export",
        method = "get",
        tag = "UserTags::Me",
        operation_id = "export_me"
    )]
    async fn export_me(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
    ) -> AppResult<Json<serde_json::Value>> {
        Ok(Json(super::privacy::export(&state.db, auth.0.id()).await?))
    }

    /// Delete the caller's account. Refused (409 `open_orders`) while an order is open. Listings are withdrawn;
    /// nickname, avatar, bio, WeChat identity and verification are erased; favourites, blocks and notifications
    /// are dropped; posts, comments, messages and reviews stay, shown as written by "已注销用户". Every session
    /// ends; logging in with the same WeChat account later starts a new account.
    #[oai(
        path = "/v1/me",
        method = "delete",
        tag = "UserTags::Me",
        operation_id = "delete_me"
    )]
    async fn delete_me(&self, state: Data<&AppState>, auth: StudentAuth) -> AppResult<Deleted> {
        super::privacy::delete_account(&state, auth.0.id()).await?;
        Ok(Deleted::NoContent)
    }

    /// The counts behind the badges of the "me" page: listings by status, purchases and sales by order status,
    /// unread chat messages and notifications, reviews still to write, favourites.
    #[oai(
        path = "/v1/me/summary",
        method = "get",
        tag = "UserTags::Me",
        operation_id = "me_summary"
    )]
    async fn summary(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
    ) -> AppResult<Json<super::summary::MeSummary>> {
        Ok(Json(super::summary::summary(&state, auth.0.id()).await?))
    }

    /// The caller's profile.
    #[oai(
        path = "/v1/me",
        method = "get",
        tag = "UserTags::Me",
        operation_id = "get_me"
    )]
    async fn get_me(&self, state: Data<&AppState>, auth: StudentAuth) -> AppResult<Json<Me>> {
        Ok(Json(me_view(&state, &auth.0.user).await?))
    }

    /// Edit the caller's profile: nickname, avatar, bio, school and campus.
    #[oai(
        path = "/v1/me",
        method = "patch",
        tag = "UserTags::Me",
        operation_id = "update_me"
    )]
    async fn update_me(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<UpdateMe>,
    ) -> AppResult<Json<Me>> {
        let b = body.0;
        let change = ProfileChange {
            nickname: b.nickname,
            avatar_url: maybe(b.avatar_url),
            bio: b.bio,
            school_id: b.school_id,
            campus_id: maybe(b.campus_id),
        };
        let updated = service::update_profile(&state, &auth.0.user, change).await?;
        Ok(Json(me_view(&state, &updated).await?))
    }

    /// Ask to be verified as a student of a school. Verified at once when the school's roster lists the
    /// number; otherwise an operator decides. A student number can be verified for one account per school.
    #[oai(
        path = "/v1/me/verification",
        method = "post",
        tag = "UserTags::Verification",
        operation_id = "request_verification"
    )]
    async fn request_verification(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<VerificationRequestBody>,
    ) -> AppResult<Json<Verification>> {
        let b = body.0;
        let input = VerificationInput {
            school_id: b.school_id,
            student_number: b.student_number,
            real_name: b.real_name,
            graduation_year: b.graduation_year,
        };
        service::submit_verification(&state.db, &auth.0.user, input).await?;
        let user = service::visible_user(&state.db, auth.0.id()).await?;
        let (st, latest) = service::verification_status(&state.db, &user).await?;
        Ok(Json(verification_view(&state, &user, st, latest).await?))
    }

    /// The caller's verification state.
    #[oai(
        path = "/v1/me/verification",
        method = "get",
        tag = "UserTags::Verification",
        operation_id = "get_verification"
    )]
    async fn get_verification(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
    ) -> AppResult<Json<Verification>> {
        let (st, latest) = service::verification_status(&state.db, &auth.0.user).await?;
        Ok(Json(
            verification_view(&state, &auth.0.user, st, latest).await?,
        ))
    }
}

fn maybe<T>(v: MaybeUndefined<T>) -> Option<Option<T>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

/// Public profiles.
pub struct UsersApi;

#[OpenApi]
impl UsersApi {
    /// A student's public profile.
    #[oai(
        path = "/v1/users/:id",
        method = "get",
        tag = "UserTags::Users",
        operation_id = "get_user"
    )]
    async fn get_user(
        &self,
        state: Data<&AppState>,
        _auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<PublicUser>> {
        let u = service::visible_user(&state.db, id.0).await?;
        Ok(Json(public_view(&state, &u).await?))
    }
}

/// Schools and campuses.
pub struct SchoolsApi;

#[OpenApi]
impl SchoolsApi {
    /// Every school with its campuses, for the school picker. Needs no login.
    #[oai(
        path = "/v1/schools",
        method = "get",
        tag = "UserTags::Schools",
        operation_id = "list_schools"
    )]
    async fn list_schools(&self, state: Data<&AppState>) -> AppResult<Json<Vec<School>>> {
        let schools = service::list_schools(&state.db).await?;
        Ok(Json(
            schools
                .into_iter()
                .map(|(s, campuses)| School {
                    id: s.id,
                    slug: s.slug,
                    name: s.name,
                    short_name: s.short_name,
                    requires_verification: s.requires_verification,
                    campuses: campuses
                        .into_iter()
                        .map(|c| CampusRef {
                            id: c.id,
                            name: c.name,
                        })
                        .collect(),
                })
                .collect(),
        ))
    }
}
