//! HTTP endpoints of listings, categories and favourites. Handlers parse, authorise, call [`super::service`] and
//! shape the response; the rules live in the service and the model.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi, SecurityScheme, Tags,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    model::{
        Action, Condition, Status, Transition, Viewer, allowed_actions, listing, listing_place,
    },
    service::{self, Actor, BrowseQuery, ListingInput, ListingPatch, Sort, TradeMethod},
};
use crate::{
    auth::StudentAuth,
    error::{AppError, AppResult},
    images::{self, api::ImageRef},
    state::AppState,
    users::{
        api::{CampusRef, SchoolRef},
        model::user,
    },
    util,
};

#[derive(Tags)]
enum ListingTags {
    /// Items for sale.
    Listings,
    /// The category tree.
    Categories,
    /// The caller's favourites.
    Favorites,
}

/// Browsing works without login; with a session the answer is personalised (favourites, allowed actions).
#[derive(SecurityScheme)]
#[allow(clippy::large_enum_variant)] // lives for one request; the derive needs the plain type
pub enum OptionalStudent {
    Student(StudentAuth),
    #[oai(fallback)]
    Anonymous,
}

impl OptionalStudent {
    pub(crate) fn user(&self) -> Option<&user::Model> {
        match self {
            OptionalStudent::Student(a) => Some(&a.0.user),
            OptionalStudent::Anonymous => None,
        }
    }
}

/// A category with its sub-categories.
#[derive(Debug, Clone, Object)]
pub struct Category {
    pub id: i64,
    /// Stable English identifier.
    pub slug: String,
    /// Chinese name, shown to students.
    pub name: String,
    pub name_en: String,
    pub children: Vec<CategoryRef>,
}

/// A category, by id and name.
#[derive(Debug, Clone, Object)]
pub struct CategoryRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub parent_id: Option<i64>,
}

/// A meet-up place on a campus.
#[derive(Debug, Clone, Object)]
pub struct PlaceRef {
    pub id: i64,
    pub name: String,
    pub campus_id: i64,
}

/// The seller as shown on a card.
#[derive(Debug, Clone, Object)]
pub struct SellerSummary {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: Option<String>,
    /// Verified student of the listing's school.
    pub verified_student: bool,
    /// Deals and ratings (see docs/reviews.md).
    pub reputation: crate::reviews::api::CardReputation,
}

/// A listing in a feed.
#[derive(Debug, Clone, Object)]
pub struct ListingCard {
    pub id: i64,
    pub title: String,
    /// Fen.
    pub price: i64,
    /// Fen; what it cost new, if the seller said.
    pub original_price: Option<i64>,
    pub condition: Condition,
    pub status: Status,
    /// The first image.
    pub cover: Option<ImageRef>,
    pub seller: SellerSummary,
    pub school_id: i64,
    pub campus_id: Option<i64>,
    pub category_id: i64,
    pub favorite_count: i64,
    pub view_count: i64,
    pub created_at: DateTime<Utc>,
    /// Position in the newest feed (publication or last bump).
    pub bumped_at: DateTime<Utc>,
}

/// How often a listing was looked at, favourited and asked about.
#[derive(Debug, Clone, Object)]
pub struct ListingCounts {
    pub views: i64,
    pub favorites: i64,
    pub chats: i64,
}

/// Everything about one listing, for its detail page.
#[derive(Debug, Clone, Object)]
pub struct ListingDetail {
    pub id: i64,
    pub title: String,
    pub description: String,
    /// Fen.
    pub price: i64,
    pub original_price: Option<i64>,
    pub condition: Condition,
    pub status: Status,
    pub category: CategoryRef,
    /// In the seller's order; the first is the cover.
    pub images: Vec<ImageRef>,
    pub trade_methods: Vec<TradeMethod>,
    pub meetup_places: Vec<PlaceRef>,
    pub school: SchoolRef,
    pub campus: Option<CampusRef>,
    pub seller: crate::users::api::PublicUser,
    pub counts: ListingCounts,
    /// Whether the caller has favourited it.
    pub is_favorited: bool,
    /// What the caller may do now; render buttons from this.
    pub allowed_actions: Vec<Action>,
    /// Seller only: why content security or an operator held it back.
    pub moderation_label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub bumped_at: DateTime<Utc>,
    pub sold_at: Option<DateTime<Utc>>,
}

/// A page of listings.
#[derive(Debug, Object)]
pub struct ListingPage {
    pub items: Vec<ListingCard>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A new listing.
#[derive(Debug, Object)]
pub struct CreateListing {
    /// 1–60 characters.
    pub title: String,
    /// At most 2000 characters.
    #[oai(default)]
    pub description: String,
    /// Fen, 1 … 10,000,000.
    pub price: i64,
    /// Fen, what it cost new.
    pub original_price: Option<i64>,
    pub condition: Condition,
    pub category_id: i64,
    /// 1–9 images uploaded by the caller through `POST /api/v1/images`; the first is the cover.
    pub image_ids: Vec<i64>,
    /// At least one.
    pub trade_methods: Vec<TradeMethod>,
    /// Up to 5 named places of the school (of `campus_id` when given); needs the `meetup` trade method.
    #[oai(default)]
    pub meetup_place_ids: Vec<i64>,
    /// A campus of the seller's school.
    pub campus_id: Option<i64>,
}

/// An edit: fields left out stay; `null` clears `original_price` and `campus_id`. Sold, removed and deleted
/// listings cannot be edited.
#[derive(Debug, Object)]
pub struct UpdateListing {
    pub title: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub original_price: MaybeUndefined<i64>,
    pub condition: Option<Condition>,
    pub category_id: Option<i64>,
    pub image_ids: Option<Vec<i64>>,
    pub trade_methods: Option<Vec<TradeMethod>>,
    pub meetup_place_ids: Option<Vec<i64>>,
    pub campus_id: MaybeUndefined<i64>,
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

fn maybe<T>(v: MaybeUndefined<T>) -> Option<Option<T>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

fn category_ref(c: &super::model::category::Model) -> CategoryRef {
    CategoryRef {
        id: c.id,
        slug: c.slug.clone(),
        name: c.name_zh.clone(),
        parent_id: c.parent_id,
    }
}

/// What a card needs besides the listing row: its seller and its cover, fetched for a whole page at once.
#[derive(Debug, sea_orm::FromQueryResult)]
struct CardExtras {
    listing_id: i64,
    nickname: String,
    avatar_url: Option<String>,
    verified_school_id: Option<i64>,
    verified_until: Option<DateTime<Utc>>,
    image_id: Option<i64>,
    display_key: Option<String>,
    thumb_key: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    completed_sales: Option<i32>,
    rating_count: Option<i32>,
    rating_sum: Option<i64>,
}

/// Builds feed cards: the page's listings plus ONE joined query for their sellers and covers, whatever the
/// page size (each query and each row crosses threads in the SQLite driver, so fewer is faster).
pub async fn cards(state: &AppState, rows: Vec<listing::Model>) -> AppResult<Vec<ListingCard>> {
    use sea_orm::{
        FromQueryResult,
        sea_query::{Alias, Expr, ExprTrait, Query},
    };
    type Image = images::model::image::Entity;
    type ImageCol = images::model::image::Column;
    type Rep = crate::reviews::model::user_reputation::Entity;
    type RepCol = crate::reviews::model::user_reputation::Column;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|l| l.id).collect();
    let query = Query::select()
        .expr_as(
            Expr::col((listing::Entity, listing::Column::Id)),
            Alias::new("listing_id"),
        )
        .column((user::Entity, user::Column::Nickname))
        .column((user::Entity, user::Column::AvatarUrl))
        .column((user::Entity, user::Column::VerifiedSchoolId))
        .column((user::Entity, user::Column::VerifiedUntil))
        .expr_as(
            Expr::col((Image::default(), ImageCol::Id)),
            Alias::new("image_id"),
        )
        .column((Image::default(), ImageCol::DisplayKey))
        .column((Image::default(), ImageCol::ThumbKey))
        .column((Image::default(), ImageCol::Width))
        .column((Image::default(), ImageCol::Height))
        .column((Rep::default(), RepCol::CompletedSales))
        .column((Rep::default(), RepCol::RatingCount))
        .column((Rep::default(), RepCol::RatingSum))
        .from(listing::Entity)
        .inner_join(
            user::Entity,
            Expr::col((user::Entity, user::Column::Id))
                .equals((listing::Entity, listing::Column::SellerId)),
        )
        .left_join(
            Image::default(),
            Expr::col((Image::default(), ImageCol::Id))
                .equals((listing::Entity, listing::Column::CoverImageId)),
        )
        // The seller's reputation rides along in the same query (a primary-key join).
        .left_join(
            Rep::default(),
            Expr::col((Rep::default(), RepCol::UserId))
                .equals((listing::Entity, listing::Column::SellerId)),
        )
        .and_where(Expr::col((listing::Entity, listing::Column::Id)).is_in(ids))
        .to_owned();
    let stmt = state.db.get_database_backend().build(&query);
    let extras: HashMap<i64, CardExtras> = CardExtras::find_by_statement(stmt)
        .all(&state.db)
        .await?
        .into_iter()
        .map(|e| (e.listing_id, e))
        .collect();
    let now = util::now();
    Ok(rows
        .into_iter()
        .map(|l| {
            let extra = extras.get(&l.id);
            let cover = extra.and_then(|e| match (e.image_id, &e.display_key, &e.thumb_key) {
                (Some(id), Some(display), Some(thumb)) => Some(ImageRef {
                    id,
                    url: images::service::media_url(state, display),
                    thumbnail_url: images::service::media_url(state, thumb),
                    width: e.width.unwrap_or_default(),
                    height: e.height.unwrap_or_default(),
                }),
                _ => None,
            });
            ListingCard {
                id: l.id,
                title: l.title,
                price: l.price,
                original_price: l.original_price,
                condition: l.condition,
                status: l.status,
                cover,
                seller: SellerSummary {
                    id: l.seller_id,
                    nickname: extra.map(|e| e.nickname.clone()).unwrap_or_default(),
                    avatar_url: extra.and_then(|e| e.avatar_url.clone()),
                    verified_student: extra.is_some_and(|e| {
                        e.verified_school_id == Some(l.school_id)
                            && e.verified_until.is_some_and(|u| u > now)
                    }),
                    reputation: crate::reviews::api::card_reputation(
                        &crate::reviews::model::Counters {
                            completed_sales: extra
                                .and_then(|e| e.completed_sales)
                                .unwrap_or(0)
                                .into(),
                            rating_count: extra.and_then(|e| e.rating_count).unwrap_or(0).into(),
                            rating_sum: extra.and_then(|e| e.rating_sum).unwrap_or(0),
                            ..Default::default()
                        },
                    ),
                },
                school_id: l.school_id,
                campus_id: l.campus_id,
                category_id: l.category_id,
                favorite_count: l.favorite_count,
                view_count: l.view_count,
                created_at: l.created_at,
                bumped_at: l.bumped_at,
            }
        })
        .collect())
}

/// Builds the detail view of a listing for `viewer`.
pub async fn detail(
    state: &AppState,
    l: listing::Model,
    seller: &user::Model,
    viewer: Option<&user::Model>,
) -> AppResult<ListingDetail> {
    let cat = state
        .catalogue
        .get_with(&state.db, |c| {
            c.schools.contains_key(&l.school_id) && c.category_by_id.contains_key(&l.category_id)
        })
        .await?;
    let imgs = images::service::for_targets(&state.db, "listing", &[l.id])
        .await?
        .remove(&l.id)
        .unwrap_or_default();
    let place_ids: Vec<i64> = listing_place::Entity::find()
        .filter(listing_place::Column::ListingId.eq(l.id))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|p| p.place_id)
        .collect();
    // The seller's stored reputation (one primary-key read; the chat response time is for the profile page).
    let counters = crate::reviews::reputation::counters(&state.db, seller.id).await?;
    let seller = crate::users::api::public_view_with(
        seller,
        &cat.schools,
        crate::reviews::api::reputation_view(&counters, None),
    );
    let viewer_id = viewer.map(|u| u.id);
    let is_favorited = match viewer_id {
        Some(uid) if uid != l.seller_id => service::favorited_among(&state.db, uid, &[l.id])
            .await?
            .contains(&l.id),
        _ => false,
    };
    let now = util::now();
    let mut trade_methods = Vec::new();
    if l.trade_meetup {
        trade_methods.push(TradeMethod::Meetup);
    }
    if l.trade_delivery {
        trade_methods.push(TradeMethod::Delivery);
    }
    let school = cat.schools.get(&l.school_id).map(|s| SchoolRef {
        id: s.id,
        name: s.name.clone(),
    });
    Ok(ListingDetail {
        id: l.id,
        allowed_actions: allowed_actions(
            &l,
            Viewer {
                user_id: viewer_id,
                has_favorited: is_favorited,
            },
            now,
        ),
        title: l.title,
        description: l.description,
        price: l.price,
        original_price: l.original_price,
        condition: l.condition,
        status: l.status,
        category: cat
            .category_by_id
            .get(&l.category_id)
            .map(category_ref)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("listing without category")))?,
        images: imgs
            .iter()
            .map(|i| images::api::image_ref(state, i))
            .collect(),
        trade_methods,
        meetup_places: place_ids
            .iter()
            .filter_map(|p| cat.places.get(p))
            .map(|p| PlaceRef {
                id: p.id,
                name: p.name.clone(),
                campus_id: p.campus_id,
            })
            .collect(),
        school: school
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("listing without school")))?,
        campus: l
            .campus_id
            .and_then(|c| cat.campuses.get(&c))
            .map(|c| CampusRef {
                id: c.id,
                name: c.name.clone(),
            }),
        seller,
        counts: ListingCounts {
            views: l.view_count,
            favorites: l.favorite_count,
            chats: l.chat_count,
        },
        is_favorited,
        moderation_label: if viewer_id == Some(l.seller_id) {
            l.moderation_label
        } else {
            None
        },
        created_at: l.created_at,
        updated_at: l.updated_at,
        bumped_at: l.bumped_at,
        sold_at: l.sold_at,
    })
}

pub struct ListingsApi;

#[OpenApi]
impl ListingsApi {
    /// The category tree (two levels). Needs no login.
    #[oai(
        path = "/v1/categories",
        method = "get",
        tag = "ListingTags::Categories",
        operation_id = "list_categories"
    )]
    async fn categories(&self, state: Data<&AppState>) -> AppResult<Json<Vec<Category>>> {
        let cat = state.catalogue.get(&state.db).await?;
        let visible: Vec<_> = cat.categories.iter().filter(|c| !c.hidden).collect();
        Ok(Json(
            visible
                .iter()
                .filter(|c| c.parent_id.is_none())
                .map(|c| Category {
                    id: c.id,
                    slug: c.slug.clone(),
                    name: c.name_zh.clone(),
                    name_en: c.name_en.clone(),
                    children: visible
                        .iter()
                        .filter(|k| k.parent_id == Some(c.id))
                        .map(|k| category_ref(k))
                        .collect(),
                })
                .collect(),
        ))
    }

    /// The named meet-up places of a campus. Needs no login.
    #[oai(
        path = "/v1/campuses/:id/places",
        method = "get",
        tag = "ListingTags::Categories",
        operation_id = "list_places"
    )]
    async fn places(
        &self,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> AppResult<Json<Vec<PlaceRef>>> {
        let cat = state.catalogue.get(&state.db).await?;
        if !cat.campuses.contains_key(&id.0) {
            return Err(AppError::not_found("campus"));
        }
        let mut places: Vec<_> = cat
            .places
            .values()
            .filter(|p| p.campus_id == id.0 && !p.hidden)
            .collect();
        places.sort_by_key(|p| (p.position, p.id));
        Ok(Json(
            places
                .into_iter()
                .map(|p| PlaceRef {
                    id: p.id,
                    name: p.name.clone(),
                    campus_id: p.campus_id,
                })
                .collect(),
        ))
    }

    /// Publish a listing. Text goes through content security: rejected text is 422 `content_rejected`; text
    /// that needs a human makes the listing `pending_review`, visible only to the seller until approved.
    #[oai(
        path = "/v1/listings",
        method = "post",
        tag = "ListingTags::Listings",
        operation_id = "create_listing"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<CreateListing>,
    ) -> AppResult<Json<ListingDetail>> {
        let b = body.0;
        let input = ListingInput {
            title: b.title,
            description: b.description,
            price: b.price,
            original_price: b.original_price,
            condition: b.condition,
            category_id: b.category_id,
            image_ids: b.image_ids,
            trade_methods: b.trade_methods,
            meetup_place_ids: b.meetup_place_ids,
            campus_id: b.campus_id,
        };
        let created = service::create(&state, &auth.0.user, input).await?;
        Ok(Json(
            detail(&state, created, &auth.0.user, Some(&auth.0.user)).await?,
        ))
    }

    /// Browse listings: filters, sorts and cursor pagination. Public callers see `on_sale` and `reserved`; a seller
    /// filtering by their own `seller_id` sees every status of theirs.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/v1/listings",
        method = "get",
        tag = "ListingTags::Listings",
        operation_id = "browse_listings"
    )]
    async fn browse(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        school_id: Query<Option<i64>>,
        campus_id: Query<Option<i64>>,
        /// A parent category includes its children.
        category_id: Query<Option<i64>>,
        /// Fen.
        min_price: Query<Option<i64>>,
        /// Fen.
        max_price: Query<Option<i64>>,
        /// Any of these conditions.
        condition: Query<Vec<Condition>>,
        seller_id: Query<Option<i64>>,
        /// Any of these statuses.
        status: Query<Vec<Status>>,
        /// Default `newest`.
        sort: Query<Option<Sort>>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<ListingPage>> {
        let q = BrowseQuery {
            school_id: school_id.0,
            campus_id: campus_id.0,
            category_id: category_id.0,
            min_price: min_price.0,
            max_price: max_price.0,
            conditions: condition.0,
            seller_id: seller_id.0,
            statuses: status.0,
            sort: sort.0.unwrap_or_default(),
            cursor: cursor.0,
            limit: limit.0,
        };
        let page = service::browse(&state, q, auth.user().map(|u| u.id)).await?;
        Ok(Json(ListingPage {
            items: cards(&state, page.items).await?,
            next_cursor: page.next_cursor,
        }))
    }

    /// One listing. Sellers see their own in any status; others see on-sale, reserved and sold listings.
    #[oai(
        path = "/v1/listings/:id",
        method = "get",
        tag = "ListingTags::Listings",
        operation_id = "get_listing"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: OptionalStudent,
        id: Path<i64>,
    ) -> AppResult<Json<ListingDetail>> {
        let viewer = auth.user();
        let (l, seller) =
            service::visible_with_seller(&state.db, id.0, viewer.map(|u| u.id)).await?;
        let viewer_key = match viewer {
            Some(u) => format!("u{}", u.id),
            None => format!(
                "ip{}",
                crate::web::client_ip(req, state.config.trust_proxy_headers)
                    .map(|i| i.to_string())
                    .unwrap_or_default()
            ),
        };
        service::record_view(&state, &l, viewer_key);
        Ok(Json(detail(&state, l, &seller, viewer).await?))
    }

    /// Edit a listing (seller only). Changed text is checked again; a price change is recorded.
    #[oai(
        path = "/v1/listings/:id",
        method = "patch",
        tag = "ListingTags::Listings",
        operation_id = "update_listing"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<UpdateListing>,
    ) -> AppResult<Json<ListingDetail>> {
        let b = body.0;
        let patch = ListingPatch {
            title: b.title,
            description: b.description,
            price: b.price,
            original_price: maybe(b.original_price),
            condition: b.condition,
            category_id: b.category_id,
            image_ids: b.image_ids,
            trade_methods: b.trade_methods,
            meetup_place_ids: b.meetup_place_ids,
            campus_id: maybe(b.campus_id),
        };
        let updated = service::update(&state, &auth.0.user, id.0, patch).await?;
        Ok(Json(
            detail(&state, updated, &auth.0.user, Some(&auth.0.user)).await?,
        ))
    }

    /// Delete a listing (seller only). A reserved listing must be released first.
    #[oai(
        path = "/v1/listings/:id",
        method = "delete",
        tag = "ListingTags::Listings",
        operation_id = "delete_listing"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        service::transition_delivering(
            &state,
            id.0,
            Actor::Seller(auth.0.id()),
            Transition::Delete,
            None,
        )
        .await?;
        Ok(Done::NoContent)
    }

    /// Take a listing off sale (seller only).
    #[oai(
        path = "/v1/listings/:id/withdraw",
        method = "post",
        tag = "ListingTags::Listings",
        operation_id = "withdraw_listing"
    )]
    async fn withdraw(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<ListingDetail>> {
        self.act(&state, &auth, id.0, Transition::Withdraw).await
    }

    /// Put a withdrawn listing back on sale (seller only).
    #[oai(
        path = "/v1/listings/:id/relist",
        method = "post",
        tag = "ListingTags::Listings",
        operation_id = "relist_listing"
    )]
    async fn relist(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<ListingDetail>> {
        self.act(&state, &auth, id.0, Transition::Relist).await
    }

    /// Mark a listing reserved for a buyer (seller only).
    #[oai(
        path = "/v1/listings/:id/reserve",
        method = "post",
        tag = "ListingTags::Listings",
        operation_id = "reserve_listing"
    )]
    async fn reserve(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<ListingDetail>> {
        self.act(&state, &auth, id.0, Transition::Reserve).await
    }

    /// Release a reservation (seller only).
    #[oai(
        path = "/v1/listings/:id/unreserve",
        method = "post",
        tag = "ListingTags::Listings",
        operation_id = "unreserve_listing"
    )]
    async fn unreserve(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<ListingDetail>> {
        self.act(&state, &auth, id.0, Transition::Unreserve).await
    }

    /// Record that the item was handed over outside the app (seller only). Price and content freeze.
    #[oai(
        path = "/v1/listings/:id/mark-sold",
        method = "post",
        tag = "ListingTags::Listings",
        operation_id = "mark_listing_sold"
    )]
    async fn mark_sold(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<ListingDetail>> {
        self.act(&state, &auth, id.0, Transition::MarkSold).await
    }

    /// 擦亮 (bump): move an on-sale listing to the top of the newest feed; once per 24 hours.
    #[oai(
        path = "/v1/listings/:id/bump",
        method = "post",
        tag = "ListingTags::Listings",
        operation_id = "bump_listing"
    )]
    async fn bump(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<ListingDetail>> {
        let l = service::bump(&state.db, auth.0.id(), id.0).await?;
        Ok(Json(
            detail(&state, l, &auth.0.user, Some(&auth.0.user)).await?,
        ))
    }

    /// Favourite a listing (idempotent).
    #[oai(
        path = "/v1/listings/:id/favorite",
        method = "put",
        tag = "ListingTags::Favorites",
        operation_id = "favorite_listing"
    )]
    async fn favorite(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        service::favorite(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }

    /// Remove a favourite (idempotent).
    #[oai(
        path = "/v1/listings/:id/favorite",
        method = "delete",
        tag = "ListingTags::Favorites",
        operation_id = "unfavorite_listing"
    )]
    async fn unfavorite(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        service::unfavorite(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }

    /// The caller's favourites, newest first, with each item's current price and status (sold items stay).
    #[oai(
        path = "/v1/me/favorites",
        method = "get",
        tag = "ListingTags::Favorites",
        operation_id = "my_favorites"
    )]
    async fn my_favorites(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<ListingPage>> {
        let page =
            service::my_favorites(&state.db, auth.0.id(), cursor.0.as_deref(), limit.0).await?;
        Ok(Json(ListingPage {
            items: cards(&state, page.items).await?,
            next_cursor: page.next_cursor,
        }))
    }

    /// The caller's own listings for the personal centre, newest first: every status but deleted, or only
    /// `status` (e.g. `withdrawn` or `pending_review`, which nobody else sees).
    #[oai(
        path = "/v1/me/listings",
        method = "get",
        tag = "ListingTags::Listings",
        operation_id = "my_listings"
    )]
    async fn my_listings(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        status: Query<Option<Status>>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<ListingPage>> {
        if status.0 == Some(Status::Deleted) {
            return Err(AppError::invalid_field(
                "status",
                "deleted listings are gone; choose another status",
            ));
        }
        let q = service::BrowseQuery {
            seller_id: Some(auth.0.id()),
            statuses: status.0.into_iter().collect(),
            cursor: cursor.0,
            limit: limit.0,
            ..Default::default()
        };
        let page = service::browse(&state, q, Some(auth.0.id())).await?;
        Ok(Json(ListingPage {
            items: cards(&state, page.items).await?,
            next_cursor: page.next_cursor,
        }))
    }
}

impl ListingsApi {
    async fn act(
        &self,
        state: &AppState,
        auth: &StudentAuth,
        id: i64,
        t: Transition,
    ) -> AppResult<Json<ListingDetail>> {
        let l =
            service::transition_delivering(state, id, Actor::Seller(auth.0.id()), t, None).await?;
        Ok(Json(
            detail(state, l, &auth.0.user, Some(&auth.0.user)).await?,
        ))
    }
}
