//! Rules of listings, free of HTTP: publishing with content checks, edits with price history, the status state
//! machine as conditional updates, bumps, browsing with stable cursors, favourites and view counts.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};

use super::model::{
    Condition as ItemCondition, Status, Transition, favorite, hot_score, listing, listing_place,
    price_change,
};
use crate::{
    chat,
    error::{AppError, AppResult},
    images,
    moderation::{self, Scene, Verdict},
    state::AppState,
    users::model::user,
    util,
};

pub const TITLE_MAX: usize = 60;
pub const DESCRIPTION_MAX: usize = 2000;
pub const PRICE_MAX: i64 = 10_000_000;
pub const MAX_IMAGES: usize = 9;
pub const MAX_PLACES: usize = 5;
pub const PAGE_MAX: u64 = 50;
/// Longest moderation label stored (the column is 40 characters).
pub const LABEL_MAX: usize = 40;
/// Listings a student may publish per hour.
pub const PUBLISH_PER_HOUR: u64 = 30;

/// The SQL that selects publicly browsable listings. Written as a literal (not a bound parameter) so that SQLite
/// and PostgreSQL both match it against the partial feed indexes.
pub const PUBLIC_PREDICATE: &str = "status IN ('on_sale', 'reserved')";

/// How the item may change hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum TradeMethod {
    /// Meet on campus.
    Meetup,
    /// The seller delivers (to the dorm, by courier).
    Delivery,
}

/// Everything a listing says, as the seller typed it.
#[derive(Debug, Clone)]
pub struct ListingInput {
    pub title: String,
    pub description: String,
    pub price: i64,
    pub original_price: Option<i64>,
    pub condition: ItemCondition,
    pub category_id: i64,
    pub image_ids: Vec<i64>,
    pub trade_methods: Vec<TradeMethod>,
    pub meetup_place_ids: Vec<i64>,
    pub campus_id: Option<i64>,
}

/// An edit: `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct ListingPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub original_price: Option<Option<i64>>,
    pub condition: Option<ItemCondition>,
    pub category_id: Option<i64>,
    pub image_ids: Option<Vec<i64>>,
    pub trade_methods: Option<Vec<TradeMethod>>,
    pub meetup_place_ids: Option<Vec<i64>>,
    pub campus_id: Option<Option<i64>>,
}

/// At most `max` characters of `s`.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn count_chars(s: &str) -> usize {
    s.chars().count()
}

/// Field-by-field checks that need no database; every problem is reported at once.
pub fn validate_input(input: &mut ListingInput) -> AppResult<()> {
    let mut problems = BTreeMap::new();
    input.title = input.title.trim().to_string();
    input.description = input.description.trim().to_string();
    if !(1..=TITLE_MAX).contains(&count_chars(&input.title))
        || input.title.chars().any(char::is_control)
    {
        problems.insert(
            "title".into(),
            format!("must be 1–{TITLE_MAX} characters on one line"),
        );
    }
    if count_chars(&input.description) > DESCRIPTION_MAX {
        problems.insert(
            "description".into(),
            format!("must be at most {DESCRIPTION_MAX} characters"),
        );
    }
    if !(1..=PRICE_MAX).contains(&input.price) {
        problems.insert("price".into(), format!("must be 1 to {PRICE_MAX} fen"));
    }
    if let Some(op) = input.original_price
        && !(1..=PRICE_MAX * 10).contains(&op)
    {
        problems.insert(
            "original_price".into(),
            format!("must be 1 to {} fen", PRICE_MAX * 10),
        );
    }
    let unique_images: HashSet<i64> = input.image_ids.iter().copied().collect();
    if input.image_ids.is_empty()
        || input.image_ids.len() > MAX_IMAGES
        || unique_images.len() != input.image_ids.len()
    {
        problems.insert(
            "image_ids".into(),
            format!("must be 1–{MAX_IMAGES} distinct uploaded images"),
        );
    }
    input.trade_methods.dedup();
    if input.trade_methods.is_empty() {
        problems.insert(
            "trade_methods".into(),
            "choose at least one of meetup, delivery".into(),
        );
    }
    let unique_places: HashSet<i64> = input.meetup_place_ids.iter().copied().collect();
    if input.meetup_place_ids.len() > MAX_PLACES
        || unique_places.len() != input.meetup_place_ids.len()
    {
        problems.insert(
            "meetup_place_ids".into(),
            format!("at most {MAX_PLACES} distinct places"),
        );
    }
    if !input.meetup_place_ids.is_empty() && !input.trade_methods.contains(&TradeMethod::Meetup) {
        problems.insert(
            "meetup_place_ids".into(),
            "meet-up places need the meetup trade method".into(),
        );
    }
    AppError::check_fields(problems)
}

/// Checks against the catalogue: the category, campus and places must exist, be shown, and belong to the school.
async fn validate_references(
    state: &AppState,
    school_id: i64,
    input: &ListingInput,
) -> AppResult<()> {
    let cat = state
        .catalogue
        .get_with(&state.db, |c| {
            c.category_by_id.contains_key(&input.category_id)
                && input
                    .campus_id
                    .is_none_or(|id| c.campuses.contains_key(&id))
                && input
                    .meetup_place_ids
                    .iter()
                    .all(|p| c.places.contains_key(p))
        })
        .await?;
    let mut problems = BTreeMap::new();
    if cat
        .category_by_id
        .get(&input.category_id)
        .is_none_or(|c| c.hidden)
    {
        problems.insert("category_id".into(), "no such category".into());
    }
    if let Some(campus) = input.campus_id
        && !cat.campus_of_school(campus, school_id)
    {
        problems.insert("campus_id".into(), "not a campus of your school".into());
    }
    for place in &input.meetup_place_ids {
        let ok = cat.places.get(place).is_some_and(|p| {
            !p.hidden
                && cat.school_of_place(*place) == Some(school_id)
                && input.campus_id.is_none_or(|c| c == p.campus_id)
        });
        if !ok {
            problems.insert(
                "meetup_place_ids".into(),
                format!("place {place} is not a meet-up place of this campus"),
            );
        }
    }
    AppError::check_fields(problems)
}

/// What content security says about the text; `risky` refuses it outright.
async fn check_content(
    state: &AppState,
    seller: &user::Model,
    title: &str,
    description: &str,
) -> AppResult<Option<String>> {
    let text = if description.is_empty() {
        title.to_string()
    } else {
        format!("{title}\n{description}")
    };
    match moderation::service::check_text(state, &seller.openid, Scene::Forum, Some(title), &text)
        .await?
    {
        Verdict::Pass => Ok(None),
        Verdict::Review { label } => Ok(Some(label)),
        Verdict::Risky { label } => Err(AppError::Unprocessable {
            code: "content_rejected",
            message: format!(
                "the text was rejected by content security ({label}); please change it"
            ),
        }),
    }
}

/// `POST /api/v1/listings`.
pub async fn create(
    state: &AppState,
    seller: &user::Model,
    mut input: ListingInput,
) -> AppResult<listing::Model> {
    validate_input(&mut input)?;
    let now = util::now();
    let Some(school_id) = seller.school_id else {
        return Err(AppError::conflict(
            "school_required",
            "choose your school in your profile before publishing",
        ));
    };
    let cat = state
        .catalogue
        .get_with(&state.db, |c| c.schools.contains_key(&school_id))
        .await?;
    if cat
        .schools
        .get(&school_id)
        .is_some_and(|s| s.requires_verification)
        && seller.verified_school(now) != Some(school_id)
    {
        return Err(AppError::forbidden(
            "verification_required",
            "this school lets only verified students publish; verify your student status first",
        ));
    }
    validate_references(state, school_id, &input).await?;
    crate::auth::service::rate_limit(
        &state.kv,
        &format!("rl:publish:{}", seller.id),
        PUBLISH_PER_HOUR,
        std::time::Duration::from_secs(3600),
        "new listings",
    )
    .await?;
    let review_label = check_content(state, seller, &input.title, &input.description).await?;
    let search_doc = crate::search::index::Doc::new(
        &input.title,
        &crate::search::index::category_names(
            &*state.catalogue.get(&state.db).await?,
            input.category_id,
        ),
        &input.description,
    );

    let seller_id = seller.id;
    let created = state
        .db
        .transaction::<_, listing::Model, AppError>(move |txn| {
            Box::pin(async move {
                let status = if review_label.is_some() {
                    Status::PendingReview
                } else {
                    Status::OnSale
                };
                let row = listing::ActiveModel {
                    seller_id: Set(seller_id),
                    school_id: Set(school_id),
                    campus_id: Set(input.campus_id),
                    category_id: Set(input.category_id),
                    title: Set(input.title),
                    description: Set(input.description),
                    price: Set(input.price),
                    original_price: Set(input.original_price),
                    condition: Set(input.condition),
                    trade_meetup: Set(input.trade_methods.contains(&TradeMethod::Meetup)),
                    trade_delivery: Set(input.trade_methods.contains(&TradeMethod::Delivery)),
                    status: Set(status),
                    moderation_label: Set(review_label),
                    cover_image_id: Set(input.image_ids.first().copied()),
                    view_count: Set(0),
                    favorite_count: Set(0),
                    chat_count: Set(0),
                    hot_score: Set(hot_score(0, 0, 0, now)),
                    created_at: Set(now),
                    updated_at: Set(now),
                    bumped_at: Set(now),
                    sold_at: Set(None),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                images::service::attach(txn, seller_id, &input.image_ids, "listing", row.id)
                    .await?;
                replace_places(txn, row.id, &input.meetup_place_ids).await?;
                crate::search::index::upsert(txn, row.id, &search_doc).await?;
                if row.status == Status::OnSale {
                    crate::forum::service::notify_wanted(txn, &row).await?;
                    crate::search::saved::published(txn, row.id).await?;
                }
                Ok(row)
            })
        })
        .await?;
    let imgs = images::service::for_targets(&state.db, "listing", &[created.id])
        .await?
        .remove(&created.id)
        .unwrap_or_default();
    crate::moderation::service::check_images_later(
        state,
        &seller.openid,
        "listing",
        created.id,
        imgs,
    );
    tracing::info!(
        listing_id = created.id,
        seller_id = seller.id,
        status = created.status.as_str(),
        "listing published"
    );
    Ok(created)
}

async fn replace_places(
    txn: &impl ConnectionTrait,
    listing_id: i64,
    place_ids: &[i64],
) -> AppResult<()> {
    listing_place::Entity::delete_many()
        .filter(listing_place::Column::ListingId.eq(listing_id))
        .exec(txn)
        .await?;
    if !place_ids.is_empty() {
        let rows = place_ids.iter().map(|p| listing_place::ActiveModel {
            listing_id: Set(listing_id),
            place_id: Set(*p),
        });
        listing_place::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// The listing as `viewer` may see it: others see only public or sold listings, nobody sees deleted ones.
pub async fn visible(
    db: &impl ConnectionTrait,
    id: i64,
    viewer: Option<i64>,
) -> AppResult<listing::Model> {
    match listing::Entity::find_by_id(id).one(db).await? {
        Some(l) if l.status == Status::Deleted => Err(AppError::not_found("listing")),
        Some(l) if l.status.visible_to_others() || Some(l.seller_id) == viewer => Ok(l),
        _ => Err(AppError::not_found("listing")),
    }
}

/// [`visible`], with the seller's account fetched in the same query (the detail page needs both).
pub async fn visible_with_seller(
    db: &impl ConnectionTrait,
    id: i64,
    viewer: Option<i64>,
) -> AppResult<(listing::Model, user::Model)> {
    match listing::Entity::find_by_id(id)
        .find_also_related(user::Entity)
        .one(db)
        .await?
    {
        Some((l, Some(seller)))
            if l.status != Status::Deleted
                && seller.status != user::Status::Deleted
                && (l.status.visible_to_others() || Some(l.seller_id) == viewer) =>
        {
            Ok((l, seller))
        }
        _ => Err(AppError::not_found("listing")),
    }
}

/// The caller's own listing, or 404 (not visible) / 403 (someone else's).
async fn owned(db: &impl ConnectionTrait, id: i64, seller_id: i64) -> AppResult<listing::Model> {
    let l = visible(db, id, Some(seller_id)).await?;
    if l.seller_id != seller_id {
        return Err(AppError::forbidden(
            "not_listing_owner",
            "only the seller can change this listing",
        ));
    }
    Ok(l)
}

fn refused(current: Status, what: &str) -> AppError {
    AppError::InvalidTransition {
        current: current.as_str(),
        message: format!("cannot {what} a listing that is {}", current.as_str()),
    }
}

/// `PATCH /api/v1/listings/{id}`: content changes are checked again; a price change is recorded.
pub async fn update(
    state: &AppState,
    seller: &user::Model,
    id: i64,
    patch: ListingPatch,
) -> AppResult<listing::Model> {
    let current = owned(&state.db, id, seller.id).await?;
    if !current.status.editable() {
        return Err(refused(current.status, "edit"));
    }
    let old_places: Vec<i64> = listing_place::Entity::find()
        .filter(listing_place::Column::ListingId.eq(id))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|p| p.place_id)
        .collect();
    let old_images: Vec<i64> = images::service::for_targets(&state.db, "listing", &[id])
        .await?
        .remove(&id)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.id)
        .collect();
    let text_changed = patch.title.is_some() || patch.description.is_some();
    let mut trade_methods = Vec::new();
    if current.trade_meetup {
        trade_methods.push(TradeMethod::Meetup);
    }
    if current.trade_delivery {
        trade_methods.push(TradeMethod::Delivery);
    }
    let mut input = ListingInput {
        title: patch.title.unwrap_or_else(|| current.title.clone()),
        description: patch
            .description
            .unwrap_or_else(|| current.description.clone()),
        price: patch.price.unwrap_or(current.price),
        original_price: patch.original_price.unwrap_or(current.original_price),
        condition: patch.condition.unwrap_or(current.condition),
        category_id: patch.category_id.unwrap_or(current.category_id),
        image_ids: patch
            .image_ids
            .clone()
            .unwrap_or_else(|| old_images.clone()),
        trade_methods: patch.trade_methods.unwrap_or(trade_methods),
        meetup_place_ids: patch.meetup_place_ids.clone().unwrap_or(old_places),
        campus_id: patch.campus_id.unwrap_or(current.campus_id),
    };
    validate_input(&mut input)?;
    validate_references(state, current.school_id, &input).await?;
    let review_label = if text_changed {
        check_content(state, seller, &input.title, &input.description).await?
    } else {
        None
    };
    // The index row changes with the text it is made of (title, description, category names).
    let search_doc = if text_changed || patch.category_id.is_some() {
        Some(crate::search::index::Doc::new(
            &input.title,
            &crate::search::index::category_names(
                &*state.catalogue.get(&state.db).await?,
                input.category_id,
            ),
            &input.description,
        ))
    } else {
        None
    };

    let now = util::now();
    let seller_id = seller.id;
    let images_changed = patch.image_ids.is_some();
    let places_changed = patch.meetup_place_ids.is_some();
    let new_images: Vec<i64> = input
        .image_ids
        .iter()
        .copied()
        .filter(|i| !old_images.contains(i))
        .collect();
    let (updated, cards) = state
        .db
        .transaction::<_, (listing::Model, chat::cards::Delivery), AppError>(move |txn| {
            Box::pin(async move {
                let new_status = match (&review_label, current.status) {
                    (Some(_), Status::OnSale | Status::Reserved) => Status::PendingReview,
                    (_, s) => s,
                };
                let change = listing::ActiveModel {
                    title: Set(input.title),
                    description: Set(input.description),
                    price: Set(input.price),
                    original_price: Set(input.original_price),
                    condition: Set(input.condition),
                    category_id: Set(input.category_id),
                    campus_id: Set(input.campus_id),
                    trade_meetup: Set(input.trade_methods.contains(&TradeMethod::Meetup)),
                    trade_delivery: Set(input.trade_methods.contains(&TradeMethod::Delivery)),
                    cover_image_id: Set(input.image_ids.first().copied()),
                    status: Set(new_status),
                    moderation_label: Set(review_label.or(current.moderation_label.clone())),
                    updated_at: Set(now),
                    ..Default::default()
                };
                // Optimistic: applies only if nobody changed the listing since we read it (status, price, label),
                // so concurrent edits cannot both win and the price history never records a stale price.
                let res = listing::Entity::update_many()
                    .set(change)
                    .filter(listing::Column::Id.eq(id))
                    .filter(listing::Column::SellerId.eq(seller_id))
                    .filter(listing::Column::Status.eq(current.status))
                    .filter(listing::Column::UpdatedAt.eq(current.updated_at))
                    .exec(txn)
                    .await?;
                if res.rows_affected != 1 {
                    let now_status =
                        listing::Entity::find_by_id(id).one(txn).await?.map(|l| l.status).unwrap_or(Status::Deleted);
                    if now_status.editable() {
                        return Err(AppError::conflict(
                            "listing_changed",
                            "the listing changed while you were editing it; reload it and try again",
                        ));
                    }
                    return Err(refused(now_status, "edit"));
                }
                if input.price != current.price {
                    price_change::ActiveModel {
                        listing_id: Set(id),
                        old_price: Set(current.price),
                        new_price: Set(input.price),
                        changed_at: Set(now),
                        ..Default::default()
                    }
                    .insert(txn)
                    .await?;
                }
                if images_changed {
                    images::service::attach(txn, seller_id, &input.image_ids, "listing", id)
                        .await?;
                }
                if places_changed {
                    replace_places(txn, id, &input.meetup_place_ids).await?;
                }
                if let Some(doc) = &search_doc {
                    crate::search::index::upsert(txn, id, doc).await?;
                }
                let row = listing::Entity::find_by_id(id)
                    .one(txn)
                    .await?
                    .ok_or_else(|| AppError::not_found("listing"))?;
                // Buyers already talking about the item hear of the new price in their conversations.
                let cards = if input.price != current.price {
                    chat::cards::listing_changed_in(
                        txn,
                        &row,
                        chat::cards::ListingChange::PriceChanged {
                            old: current.price,
                            new: input.price,
                        },
                    )
                    .await?
                } else {
                    chat::cards::Delivery::default()
                };
                Ok((row, cards))
            })
        })
        .await?;
    chat::cards::deliver(state, cards);
    if !new_images.is_empty() {
        let imgs = images::service::for_targets(&state.db, "listing", &[id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        crate::moderation::service::check_images_later(
            state,
            &seller.openid,
            "listing",
            id,
            imgs.into_iter()
                .filter(|i| new_images.contains(&i.id))
                .collect(),
        );
    }
    Ok(updated)
}

/// Who asks for a status change.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    Seller(i64),
    /// Content security, an operator, or another capability (orders).
    System,
}

/// Applies one transition of the state machine as a single conditional UPDATE in a transaction. A transition
/// that the current status does not allow is 409 `invalid_transition` carrying that status.
///
/// For callers without the application state: the chat cards a transition writes are stored, and clients see
/// them at their next sync; [`transition_delivering`] also pushes them at once.
pub async fn transition(
    db: &DatabaseConnection,
    id: i64,
    actor: Actor,
    t: Transition,
    label: Option<String>,
) -> AppResult<listing::Model> {
    let txn = db.begin().await?;
    let row = transition_in(&txn, id, actor, t, label).await?;
    txn.commit().await?;
    Ok(row)
}

/// [`transition`], pushing the chat cards it writes (listing reserved, back on sale, sold) to the open sockets
/// of the listing's conversations after the commit.
pub async fn transition_delivering(
    state: &AppState,
    id: i64,
    actor: Actor,
    t: Transition,
    label: Option<String>,
) -> AppResult<listing::Model> {
    let txn = state.db.begin().await?;
    let (row, cards) = transition_in_with_cards(&txn, id, actor, t, label).await?;
    txn.commit().await?;
    chat::cards::deliver(state, cards);
    Ok(row)
}

/// [`transition`] inside the caller's transaction (for capabilities that change more in the same commit). The
/// chat cards it writes reach sockets at the clients' next sync; use [`transition_in_with_cards`] to push them.
pub async fn transition_in(
    txn: &impl ConnectionTrait,
    id: i64,
    actor: Actor,
    t: Transition,
    label: Option<String>,
) -> AppResult<listing::Model> {
    let (row, _stored_not_pushed) = transition_in_with_cards(txn, id, actor, t, label).await?;
    Ok(row)
}

/// [`transition_in`], also returning the chat cards it wrote into the listing's conversations, for
/// [`chat::cards::deliver`] after the commit.
pub async fn transition_in_with_cards(
    txn: &impl ConnectionTrait,
    id: i64,
    actor: Actor,
    t: Transition,
    label: Option<String>,
) -> AppResult<(listing::Model, chat::cards::Delivery)> {
    apply_transition(txn, id, actor, t, label, matches!(actor, Actor::System)).await
}

/// Whether the listing has an order that is not finished (pending payment, paid, handed over, disputed, …).
/// Such a listing cannot be removed by an operator: the order has to be settled first.
///
pub async fn has_open_order(txn: &impl ConnectionTrait, listing_id: i64) -> AppResult<bool> {
    use crate::orders::model::{OrderStatus, order};
    let open = order::Entity::find()
        .filter(order::Column::ListingId.eq(listing_id))
        .filter(order::Column::Status.is_in([
            OrderStatus::PendingPayment,
            OrderStatus::PendingHandover,
            OrderStatus::Paid,
            OrderStatus::RefundRequested,
            OrderStatus::Disputed,
        ]))
        .one(txn)
        .await?;
    Ok(open.is_some())
}

/// An operator takes a listing down with a reason the seller reads in their inbox (in the same transaction).
/// Refused with 409 `listing_has_open_order` while an order of it is open, and `invalid_transition` from a
/// status that cannot be removed (already removed or deleted).
pub async fn remove_by_operator_in(
    txn: &impl ConnectionTrait,
    id: i64,
    reason: &str,
) -> AppResult<listing::Model> {
    if has_open_order(txn, id).await? {
        return Err(AppError::conflict(
            "listing_has_open_order",
            "this listing has an open order; settle the order (or its dispute) before removing the listing",
        ));
    }
    let (row, _cards) = apply_transition(
        txn,
        id,
        Actor::System,
        Transition::Remove,
        Some(reason.to_string()),
        false,
    )
    .await?;
    crate::notifications::service::notify(
        txn,
        row.seller_id,
        "listing_removed",
        "商品已被下架",
        &format!(
            "「{}」因违反社区规范被管理员下架。原因：{reason}",
            clip(&row.title, 30)
        ),
        Some("listing"),
        Some(row.id),
    )
    .await?;
    Ok(row)
}

/// A seller's listings in every status, newest first, for operators.
pub async fn all_of_seller(
    db: &impl ConnectionTrait,
    seller_id: i64,
    before_id: Option<i64>,
    limit: u64,
) -> AppResult<Vec<listing::Model>> {
    let mut q = listing::Entity::find().filter(listing::Column::SellerId.eq(seller_id));
    if let Some(b) = before_id {
        q = q.filter(listing::Column::Id.lt(b));
    }
    Ok(q.order_by_desc(listing::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The state machine's one conditional UPDATE; `notify` tells the seller about moderation transitions. Returns
/// the listing and the chat cards written into its conversations.
async fn apply_transition(
    txn: &impl ConnectionTrait,
    id: i64,
    actor: Actor,
    t: Transition,
    label: Option<String>,
    notify: bool,
) -> AppResult<(listing::Model, chat::cards::Delivery)> {
    // The conditional UPDATE comes first (with the seller in its WHERE), the read after it: on SQLite a
    // transaction that reads first and writes later fails when another connection committed in between.
    let (from, to) = t.rule();
    let now = util::now();
    // A listing content security holds (label set) relists into review, not on sale: withdrawing and relisting
    // is no way around an operator.
    let new_status = if t == Transition::Relist {
        Expr::cust("CASE WHEN moderation_label IS NULL THEN 'on_sale' ELSE 'pending_review' END")
    } else {
        Expr::value(to)
    };
    let mut q = listing::Entity::update_many()
        .col_expr(listing::Column::Status, new_status)
        .col_expr(listing::Column::UpdatedAt, Expr::value(now));
    if to == Status::Sold {
        q = q.col_expr(listing::Column::SoldAt, Expr::value(now));
    }
    if matches!(t, Transition::HoldForReview | Transition::Remove) {
        q = q.col_expr(
            listing::Column::ModerationLabel,
            Expr::value(label.map(|l| clip(&l, LABEL_MAX))),
        );
    }
    if t == Transition::Approve {
        q = q.col_expr(
            listing::Column::ModerationLabel,
            Expr::value(Option::<String>::None),
        );
    }
    q = q
        .filter(listing::Column::Id.eq(id))
        .filter(listing::Column::Status.is_in(from.iter().copied()));
    if let Actor::Seller(seller) = actor {
        q = q.filter(listing::Column::SellerId.eq(seller));
    }
    let res = q.exec(txn).await?;
    if res.rows_affected != 1 {
        // Say why: not there (or not visible to this seller), not theirs, or not in a status that allows it.
        let seller = match actor {
            Actor::Seller(s) => Some(s),
            Actor::System => None,
        };
        let row = match seller {
            Some(s) => owned(txn, id, s).await?,
            None => listing::Entity::find_by_id(id)
                .one(txn)
                .await?
                .ok_or_else(|| AppError::not_found("listing"))?,
        };
        return Err(refused(row.status, t.verb()));
    }
    let row = listing::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("listing"))?;
    if notify {
        notify_seller(txn, &row, t).await?;
    }
    if t == Transition::Approve {
        // Approved from review: for buyers it is a new listing, so wanted posts and saved searches hear of it now.
        crate::forum::service::notify_wanted(txn, &row).await?;
        crate::search::saved::published(txn, id).await?;
    }
    if t == Transition::Delete {
        // The photos of a deleted listing go with it (the sweep removes detached images), and so does its
        // search index row.
        images::service::detach_all(txn, "listing", id).await?;
        crate::search::index::remove(txn, id).await?;
    }
    let change = match t {
        Transition::Reserve => Some(chat::cards::ListingChange::Reserved),
        Transition::Unreserve => Some(chat::cards::ListingChange::BackOnSale),
        Transition::MarkSold => Some(chat::cards::ListingChange::Sold),
        _ => None,
    };
    let cards = match change {
        Some(change) => chat::cards::listing_changed_in(txn, &row, change).await?,
        None => chat::cards::Delivery::default(),
    };
    Ok((row, cards))
}

/// Tells the seller, in the same transaction, what content security or an operator did to their listing.
async fn notify_seller(
    txn: &impl ConnectionTrait,
    l: &listing::Model,
    t: Transition,
) -> AppResult<()> {
    let label = l.moderation_label.as_deref().unwrap_or("");
    let (kind, title, body) = match t {
        Transition::HoldForReview => (
            "listing_held",
            "商品正在审核",
            format!("「{}」需要人工审核，审核通过前仅你可见。", l.title),
        ),
        Transition::Approve => (
            "listing_approved",
            "商品审核通过",
            format!("「{}」已上架。", l.title),
        ),
        Transition::Remove => (
            "listing_removed",
            "商品已被下架",
            format!("「{}」因违反社区规范被下架（{label}）。", l.title),
        ),
        _ => return Ok(()),
    };
    crate::notifications::service::notify(
        txn,
        l.seller_id,
        kind,
        title,
        &body,
        Some("listing"),
        Some(l.id),
    )
    .await
}

/// Content security flagged one of the listing's images. A public listing leaves the feeds and waits for an
/// operator (`pending_review`); a withdrawn or already held one keeps the label, so relisting or approving it is
/// an operator's informed decision; a sold one, still visible by link, is taken down (`removed`). Idempotent.
pub async fn hold_for_review(db: &DatabaseConnection, id: i64, label: &str) -> AppResult<()> {
    let label = clip(label, LABEL_MAX);
    let current = match listing::Entity::find_by_id(id).one(db).await? {
        Some(l) => l.status,
        None => return Ok(()),
    };
    let t = match current {
        Status::OnSale | Status::Reserved => Transition::HoldForReview,
        Status::Sold => Transition::Remove,
        Status::Withdrawn | Status::PendingReview => {
            listing::Entity::update_many()
                .col_expr(listing::Column::ModerationLabel, Expr::value(label.clone()))
                .col_expr(listing::Column::UpdatedAt, Expr::value(util::now()))
                .filter(listing::Column::Id.eq(id))
                .filter(listing::Column::Status.eq(current))
                .exec(db)
                .await?;
            return Ok(());
        }
        Status::Removed | Status::Deleted => return Ok(()),
    };
    match transition(db, id, Actor::System, t, Some(label.clone())).await {
        Ok(_) => {
            tracing::warn!(
                listing_id = id,
                label,
                to = t.verb(),
                "listing taken off the feeds by content security"
            );
            Ok(())
        }
        // The status moved meanwhile: look again.
        Err(AppError::InvalidTransition { .. }) => Box::pin(hold_for_review(db, id, &label)).await,
        Err(e) => Err(e),
    }
}

/// 擦亮: move an on-sale listing to the top of the newest feed, once per 24 hours.
pub async fn bump(db: &DatabaseConnection, seller_id: i64, id: i64) -> AppResult<listing::Model> {
    let l = owned(db, id, seller_id).await?;
    if l.status != Status::OnSale {
        return Err(refused(l.status, "bump"));
    }
    let now = util::now();
    let earliest = l.bumped_at + super::model::BUMP_INTERVAL;
    let res = listing::Entity::update_many()
        .col_expr(listing::Column::BumpedAt, Expr::value(now))
        .col_expr(
            listing::Column::HotScore,
            Expr::value(hot_score(l.view_count, l.favorite_count, l.chat_count, now)),
        )
        .filter(listing::Column::Id.eq(id))
        .filter(listing::Column::Status.eq(Status::OnSale))
        .filter(listing::Column::BumpedAt.lte(now - super::model::BUMP_INTERVAL))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        let now_status = listing::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|l| l.status)
            .unwrap_or(Status::Deleted);
        if now_status != Status::OnSale {
            return Err(refused(now_status, "bump"));
        }
        return Err(AppError::conflict(
            "bump_too_soon",
            format!(
                "a listing can be bumped once every 24 hours; next at {}",
                earliest.to_rfc3339()
            ),
        ));
    }
    listing::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("listing"))
}

// ---------------------------------------------------------------------------------------------------------------
// Browsing

/// Feed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum Sort {
    /// Newest first (by publication or last bump).
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
    /// Time-decayed popularity of views, favourites and chats.
    Popular,
}

#[derive(Debug, Clone, Default)]
pub struct BrowseQuery {
    pub school_id: Option<i64>,
    pub campus_id: Option<i64>,
    pub category_id: Option<i64>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub conditions: Vec<ItemCondition>,
    pub seller_id: Option<i64>,
    pub statuses: Vec<Status>,
    pub sort: Sort,
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

/// A page of results and the cursor of the next page (`None` at the end).
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The position after the last item of a page: the sort key and the id.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CursorKey {
    Time(i64),
    Int(i64),
    Float(f64),
}

fn encode_cursor(sort: Sort, key: CursorKey, id: i64) -> String {
    let key = match key {
        CursorKey::Time(micros) => format!("t{micros}"),
        CursorKey::Int(v) => format!("i{v}"),
        CursorKey::Float(v) => format!("f{:016x}", v.to_bits()),
    };
    util::encode_cursor(&(sort as u8).to_string(), &key, id)
}

fn decode_cursor(sort: Sort, cursor: &str) -> AppResult<(CursorKey, i64)> {
    let bad = util::invalid_cursor;
    let (key, id) = util::decode_cursor(&(sort as u8).to_string(), cursor)?;
    let key = match key.split_at_checked(1) {
        Some(("t", v)) => CursorKey::Time(v.parse().map_err(|_| bad())?),
        Some(("i", v)) => CursorKey::Int(v.parse().map_err(|_| bad())?),
        Some(("f", v)) => CursorKey::Float(f64::from_bits(
            u64::from_str_radix(v, 16).map_err(|_| bad())?,
        )),
        _ => return Err(bad()),
    };
    Ok((key, id))
}

/// `GET /api/v1/listings`: filtered, sorted, cursor-paged. Pages follow a keyset (sort key, id), so items added
/// while a student scrolls never repeat or shift what comes next.
pub async fn browse(
    state: &AppState,
    q: BrowseQuery,
    viewer: Option<i64>,
) -> AppResult<Page<listing::Model>> {
    let select = listing::Entity::find().filter(browse_condition(state, &q, viewer).await?);
    sorted_page(&state.db, select, q.sort, q.cursor.as_deref(), q.limit).await
}

/// The WHERE of a browse query: visibility (public listings, or every status of the caller's own) and the
/// filters. Search applies the same condition, so it shows exactly what browsing would.
pub(crate) async fn browse_condition(
    state: &AppState,
    q: &BrowseQuery,
    viewer: Option<i64>,
) -> AppResult<Condition> {
    let own = q.seller_id.is_some() && q.seller_id == viewer;
    let mut cond = Condition::all();
    if own {
        // A seller's own listings, in every status but deleted.
        cond = cond.add(listing::Column::Status.ne(Status::Deleted));
    } else {
        if let Some(bad) = q.statuses.iter().find(|s| !Status::PUBLIC.contains(s)) {
            return Err(AppError::invalid_field(
                "status",
                format!(
                    "{} listings are not public; use on_sale or reserved",
                    bad.as_str()
                ),
            ));
        }
        cond = cond.add(Expr::cust(PUBLIC_PREDICATE));
    }
    if !q.statuses.is_empty() && q.statuses.len() < if own { 7 } else { 2 } {
        cond = cond.add(listing::Column::Status.is_in(q.statuses.iter().copied()));
    }
    if let Some(s) = q.school_id {
        cond = cond.add(listing::Column::SchoolId.eq(s));
    }
    if let Some(c) = q.campus_id {
        cond = cond.add(listing::Column::CampusId.eq(c));
    }
    if let Some(cat) = q.category_id {
        let ids = state
            .catalogue
            .get(&state.db)
            .await?
            .category_with_children(cat);
        cond = cond.add(listing::Column::CategoryId.is_in(ids));
    }
    if let (Some(lo), Some(hi)) = (q.min_price, q.max_price)
        && lo > hi
    {
        return Err(AppError::invalid_field(
            "min_price",
            "must not exceed max_price",
        ));
    }
    if let Some(lo) = q.min_price {
        cond = cond.add(listing::Column::Price.gte(lo));
    }
    if let Some(hi) = q.max_price {
        cond = cond.add(listing::Column::Price.lte(hi));
    }
    if !q.conditions.is_empty() {
        cond = cond.add(listing::Column::Condition.is_in(q.conditions.iter().copied()));
    }
    if let Some(seller) = q.seller_id {
        cond = cond.add(listing::Column::SellerId.eq(seller));
    }
    Ok(cond)
}

/// One page of `select` in `sort` order after `cursor`, with the cursor of the next page (keyset over the sort
/// key and the id).
pub(crate) async fn sorted_page(
    db: &impl ConnectionTrait,
    mut select: sea_orm::Select<listing::Entity>,
    sort: Sort,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<Page<listing::Model>> {
    let limit = limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let (key_col, ascending) = match sort {
        Sort::Newest => (listing::Column::BumpedAt, false),
        Sort::PriceAsc => (listing::Column::Price, true),
        Sort::PriceDesc => (listing::Column::Price, false),
        Sort::Popular => (listing::Column::HotScore, false),
    };
    if let Some(cursor) = cursor {
        let (key, id) = decode_cursor(sort, cursor)?;
        let key_value: sea_orm::Value = match (sort, key) {
            (Sort::Newest, CursorKey::Time(micros)) => {
                DateTime::<Utc>::from_timestamp_micros(micros)
                    .ok_or_else(|| AppError::bad_request("invalid_cursor", "bad cursor"))?
                    .into()
            }
            (Sort::PriceAsc | Sort::PriceDesc, CursorKey::Int(v)) => v.into(),
            (Sort::Popular, CursorKey::Float(v)) => v.into(),
            _ => {
                return Err(AppError::bad_request(
                    "invalid_cursor",
                    "the cursor does not match the sort",
                ));
            }
        };
        let after = if ascending {
            Condition::any()
                .add(Expr::col(key_col).gt(key_value.clone()))
                .add(
                    Condition::all()
                        .add(Expr::col(key_col).eq(key_value))
                        .add(listing::Column::Id.gt(id)),
                )
        } else {
            Condition::any()
                .add(Expr::col(key_col).lt(key_value.clone()))
                .add(
                    Condition::all()
                        .add(Expr::col(key_col).eq(key_value))
                        .add(listing::Column::Id.lt(id)),
                )
        };
        select = select.filter(after);
    }
    select = if ascending {
        select
            .order_by_asc(key_col)
            .order_by_asc(listing::Column::Id)
    } else {
        select
            .order_by_desc(key_col)
            .order_by_desc(listing::Column::Id)
    };
    let mut rows = select.limit(limit + 1).all(db).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| {
            let key = match sort {
                Sort::Newest => CursorKey::Time(last.bumped_at.timestamp_micros()),
                Sort::PriceAsc | Sort::PriceDesc => CursorKey::Int(last.price),
                Sort::Popular => CursorKey::Float(last.hot_score),
            };
            encode_cursor(sort, key, last.id)
        })
    } else {
        None
    };
    Ok(Page {
        items: rows,
        next_cursor,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Favourites and counters

/// Recomputes the popularity score from the stored counters.
async fn refresh_hot(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    if let Some(l) = listing::Entity::find_by_id(id).one(txn).await? {
        listing::Entity::update_many()
            .col_expr(
                listing::Column::HotScore,
                Expr::value(hot_score(
                    l.view_count,
                    l.favorite_count,
                    l.chat_count,
                    l.bumped_at,
                )),
            )
            .filter(listing::Column::Id.eq(id))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Moves the favourite counter (and the popularity it feeds) by `delta`, in the caller's transaction.
async fn adjust_favorites(txn: &impl ConnectionTrait, id: i64, delta: i64) -> AppResult<()> {
    listing::Entity::update_many()
        .col_expr(
            listing::Column::FavoriteCount,
            Expr::col(listing::Column::FavoriteCount).add(delta),
        )
        .filter(listing::Column::Id.eq(id))
        .exec(txn)
        .await?;
    refresh_hot(txn, id).await
}

/// `PUT /api/v1/listings/{id}/favorite` (idempotent).
pub async fn favorite(db: &DatabaseConnection, user_id: i64, id: i64) -> AppResult<()> {
    let l = visible(db, id, Some(user_id)).await?;
    if l.seller_id == user_id {
        return Err(AppError::conflict(
            "own_listing",
            "you cannot favourite your own listing",
        ));
    }
    let txn = db.begin().await?;
    let inserted = favorite::Entity::insert(favorite::ActiveModel {
        user_id: Set(user_id),
        listing_id: Set(id),
        created_at: Set(util::now()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::columns([
            favorite::Column::UserId,
            favorite::Column::ListingId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    if inserted == 1 {
        // The count moves only while the listing is public; otherwise the favourite is undone (a listing sold or
        // withdrawn at this very moment cannot gain one).
        let res = listing::Entity::update_many()
            .col_expr(
                listing::Column::FavoriteCount,
                Expr::col(listing::Column::FavoriteCount).add(1),
            )
            .filter(listing::Column::Id.eq(id))
            .filter(Expr::cust(PUBLIC_PREDICATE))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            txn.rollback().await?;
            let now = listing::Entity::find_by_id(id)
                .one(db)
                .await?
                .map(|l| l.status)
                .unwrap_or(Status::Deleted);
            return Err(refused(now, "favourite"));
        }
        refresh_hot(&txn, id).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// `DELETE /api/v1/listings/{id}/favorite` (idempotent; works on sold listings too).
pub async fn unfavorite(db: &DatabaseConnection, user_id: i64, id: i64) -> AppResult<()> {
    let txn = db.begin().await?;
    let res = favorite::Entity::delete_many()
        .filter(favorite::Column::UserId.eq(user_id))
        .filter(favorite::Column::ListingId.eq(id))
        .exec(&txn)
        .await?;
    if res.rows_affected == 1 {
        adjust_favorites(&txn, id, -1).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Which of these listings the user has favourited.
pub async fn favorited_among(
    db: &DatabaseConnection,
    user_id: i64,
    ids: &[i64],
) -> AppResult<HashSet<i64>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(favorite::Entity::find()
        .filter(favorite::Column::UserId.eq(user_id))
        .filter(favorite::Column::ListingId.is_in(ids.to_vec()))
        .all(db)
        .await?
        .into_iter()
        .map(|f| f.listing_id)
        .collect())
}

/// `GET /api/v1/me/favorites`: newest favourite first, with each listing's current state (sold stays, deleted
/// and removed disappear).
pub async fn my_favorites(
    db: &DatabaseConnection,
    user_id: i64,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<Page<listing::Model>> {
    let limit = limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let mut q = favorite::Entity::find().filter(favorite::Column::UserId.eq(user_id));
    if let Some(c) = cursor {
        let (key, lid) = decode_cursor(Sort::Newest, c)?;
        let CursorKey::Time(micros) = key else {
            return Err(AppError::bad_request("invalid_cursor", "bad cursor"));
        };
        let at = DateTime::<Utc>::from_timestamp_micros(micros)
            .ok_or_else(|| AppError::bad_request("invalid_cursor", "bad cursor"))?;
        q = q.filter(
            Condition::any()
                .add(favorite::Column::CreatedAt.lt(at))
                .add(
                    Condition::all()
                        .add(favorite::Column::CreatedAt.eq(at))
                        .add(favorite::Column::ListingId.lt(lid)),
                ),
        );
    }
    let mut favs = q
        .order_by_desc(favorite::Column::CreatedAt)
        .order_by_desc(favorite::Column::ListingId)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = if favs.len() as u64 > limit {
        favs.truncate(limit as usize);
        favs.last().map(|f| {
            encode_cursor(
                Sort::Newest,
                CursorKey::Time(f.created_at.timestamp_micros()),
                f.listing_id,
            )
        })
    } else {
        None
    };
    let ids: Vec<i64> = favs.iter().map(|f| f.listing_id).collect();
    let mut by_id: HashMap<i64, listing::Model> = listing::Entity::find()
        .filter(listing::Column::Id.is_in(ids.clone()))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    let items = ids
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .filter(|l| l.status.visible_to_others() || l.seller_id == user_id)
        .collect();
    Ok(Page { items, next_cursor })
}

/// Counts a view at most once per viewer per listing per day; the count itself is buffered and written by a job,
/// so a detail request never waits for it.
pub fn record_view(state: &AppState, l: &listing::Model, viewer_key: String) {
    if viewer_key == format!("u{}", l.seller_id) {
        return;
    }
    let state = state.clone();
    let listing_id = l.id;
    tokio::spawn(async move {
        let day = util::now().format("%Y%m%d");
        let key = format!("view:{listing_id}:{viewer_key}:{day}");
        match state
            .kv
            .set_nx_ex(&key, "1", std::time::Duration::from_secs(86_400))
            .await
        {
            Ok(true) => state.views.add(listing_id),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "view de-duplication unavailable"),
        }
    });
}

/// View counts waiting to be written.
#[derive(Default)]
pub struct ViewBuffer {
    pending: std::sync::Mutex<HashMap<i64, i64>>,
}

impl ViewBuffer {
    pub fn add(&self, listing_id: i64) {
        *self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(listing_id)
            .or_default() += 1;
    }

    /// Writes the buffered counts (and the popularity they change). A count leaves the buffer only once it is
    /// written, so a database error, or the job being stopped halfway, keeps the rest for the next flush.
    /// Returns how many listings were updated.
    pub async fn flush(&self, db: &DatabaseConnection) -> AppResult<usize> {
        let snapshot: Vec<(i64, i64)> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        for (id, n) in &snapshot {
            let txn = db.begin().await?;
            listing::Entity::update_many()
                .col_expr(
                    listing::Column::ViewCount,
                    Expr::col(listing::Column::ViewCount).add(*n),
                )
                .filter(listing::Column::Id.eq(*id))
                .exec(&txn)
                .await?;
            refresh_hot(&txn, *id).await?;
            txn.commit().await?;
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(left) = pending.get_mut(id) {
                *left -= n;
                if *left <= 0 {
                    pending.remove(id);
                }
            }
        }
        Ok(snapshot.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ListingInput {
        ListingInput {
            title: " 山地自行车 ".into(),
            description: "九成新".into(),
            price: 35_000,
            original_price: Some(120_000),
            condition: ItemCondition::LikeNew,
            category_id: 1,
            image_ids: vec![1, 2],
            trade_methods: vec![TradeMethod::Meetup],
            meetup_place_ids: vec![3],
            campus_id: None,
        }
    }

    #[test]
    fn input_validation_reports_every_problem() {
        let mut ok = input();
        validate_input(&mut ok).unwrap();
        assert_eq!(ok.title, "山地自行车");

        let mut bad = ListingInput {
            title: "一".repeat(61),
            description: "x".repeat(2001),
            price: 0,
            image_ids: vec![1, 1],
            trade_methods: vec![],
            ..input()
        };
        let Err(AppError::Validation(f)) = validate_input(&mut bad) else {
            panic!("expected validation error")
        };
        for field in [
            "title",
            "description",
            "price",
            "image_ids",
            "trade_methods",
            "meetup_place_ids",
        ] {
            assert!(f.contains_key(field), "{field} not reported: {f:?}");
        }
        let mut too_many = ListingInput {
            image_ids: (1..=10).collect(),
            price: PRICE_MAX + 1,
            ..input()
        };
        let Err(AppError::Validation(f)) = validate_input(&mut too_many) else {
            panic!()
        };
        assert!(f.contains_key("image_ids") && f.contains_key("price"));
    }

    #[test]
    fn cursors_round_trip_and_reject_tampering() {
        let c = encode_cursor(Sort::Popular, CursorKey::Float(12.5), 99);
        assert_eq!(
            decode_cursor(Sort::Popular, &c).unwrap(),
            (CursorKey::Float(12.5), 99)
        );
        assert!(
            decode_cursor(Sort::Newest, &c).is_err(),
            "a cursor belongs to its sort"
        );
        assert!(decode_cursor(Sort::Newest, "not-a-cursor!").is_err());
        let t = encode_cursor(Sort::Newest, CursorKey::Time(1_700_000_000_123_456), 7);
        assert_eq!(
            decode_cursor(Sort::Newest, &t).unwrap(),
            (CursorKey::Time(1_700_000_000_123_456), 7)
        );
    }
}
