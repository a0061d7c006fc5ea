//! Rules of the images capability, free of HTTP: upload (rate limit, processing on the blocking pool, storage),
//! attachment of a student's images to the object that shows them, lookup by target, public URLs, and the
//! sweep of images nobody attached.
//!
//! Other capabilities (listings, later forum posts) call [`attach`] inside the transaction that saves their
//! object, [`for_targets`] to show the images, and [`super::api::image_ref`] to put them in a response.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr, sea_query::Func,
};
use tokio::sync::Semaphore;

use super::{
    model::image,
    process::{self, Processed, Rejection},
};
use crate::{
    auth::service::rate_limit,
    error::{AppError, AppResult},
    state::AppState,
    util,
};

/// Unattached images older than this are deleted by the sweep.
pub const UNATTACHED_TTL: chrono::Duration = chrono::Duration::hours(24);

/// At most this many uploads are decoded at once per instance: each may hold a few hundred MB while it is
/// decoded, and the blocking pool must not eat every core.
static PROCESSING: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Semaphore::new(cores.clamp(1, 4))
});

fn rejection(r: Rejection) -> AppError {
    let message = r.message();
    match r {
        Rejection::Unsupported(_) => AppError::unsupported_media_type("unsupported_image", message),
        Rejection::TooManyPixels(_) => AppError::unprocessable("image_too_large_pixels", message),
    }
}

/// The 413 of an upload over [`process::MAX_UPLOAD_BYTES`].
pub fn too_large() -> AppError {
    AppError::payload_too_large(
        "payload_too_large",
        format!(
            "the image is larger than {} MiB",
            process::MAX_UPLOAD_BYTES / (1024 * 1024)
        ),
    )
}

fn storage_error(e: std::io::Error) -> AppError {
    tracing::error!(error = %e, "image storage failed");
    AppError::unavailable(
        "storage_unavailable",
        "the image could not be stored; try again shortly",
    )
}

/// The absolute URL of a storage key.
pub fn media_url(state: &AppState, key: &str) -> String {
    format!("{}/media/{key}", state.public_base_url)
}

/// The display URL and the thumbnail URL of an image.
pub fn urls(state: &AppState, img: &image::Model) -> (String, String) {
    (
        media_url(state, &img.display_key),
        media_url(state, &img.thumb_key),
    )
}

/// Accepts an upload by `owner_id`: checks the rate limit and the size, decodes and re-encodes it (see
/// [`process`]), stores both versions and records the image, unattached.
pub async fn upload(state: &AppState, owner_id: i64, bytes: Vec<u8>) -> AppResult<image::Model> {
    rate_limit(
        &state.kv,
        &format!("rl:images:user:{owner_id}"),
        u64::from(state.config.image_uploads_per_10_minutes),
        Duration::from_secs(600),
        "image uploads",
    )
    .await?;
    if bytes.len() > process::MAX_UPLOAD_BYTES {
        return Err(too_large());
    }
    if process::sniff(&bytes).is_none() {
        return Err(rejection(Rejection::Unsupported(
            "only JPEG, PNG and WebP images are accepted".into(),
        )));
    }

    let processed: Processed = {
        let permit = PROCESSING
            .acquire()
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("image semaphore closed: {e}")))?;
        // The permit travels with the work: if the client goes away, the decode still finishes on the blocking
        // pool and keeps its slot until then.
        let work = move || {
            let _permit = permit;
            process::process(&bytes)
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result.map_err(rejection)?,
            // A decoder that panics on a crafted file must not take the request down with a 500.
            Err(e) if e.is_panic() => {
                tracing::warn!(owner_id, "image decoder panicked on an upload");
                return Err(rejection(Rejection::Unsupported(
                    "the file could not be read as an image".into(),
                )));
            }
            Err(e) => return Err(AppError::internal(e)),
        }
    };

    let now = util::now();
    let stem = format!("images/{}/{}", now.format("%Y/%m"), util::random_token(16));
    let display_key = format!("{stem}_display.jpg");
    let thumb_key = format!("{stem}_thumb.jpg");
    // The row first: if the process dies before the files are written, the sweep still finds the row (a
    // missing file is fine to it), whereas files without a row would never be collected.
    let row = image::ActiveModel {
        owner_id: Set(owner_id),
        display_key: Set(display_key.clone()),
        thumb_key: Set(thumb_key.clone()),
        width: Set(processed.width as i32),
        height: Set(processed.height as i32),
        bytes: Set(processed.display.len() as i64),
        sha256: Set(util::sha256_hex(&processed.display)),
        target_type: Set(None),
        target_id: Set(None),
        position: Set(None),
        created_at: Set(now),
        attached_at: Set(None),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;

    let stored = async {
        state
            .storage
            .put(&display_key, processed.display, "image/jpeg")
            .await?;
        state
            .storage
            .put(&thumb_key, processed.thumb, "image/jpeg")
            .await
    }
    .await;
    if let Err(e) = stored {
        let _ = image::Entity::delete_by_id(row.id).exec(&state.db).await;
        let _ = state.storage.delete(&display_key).await;
        let _ = state.storage.delete(&thumb_key).await;
        return Err(storage_error(e));
    }
    tracing::info!(
        image_id = row.id,
        owner_id,
        width = row.width,
        height = row.height,
        "image uploaded"
    );
    Ok(row)
}

/// Attaches `image_ids`, in this order (positions 0, 1, …), to the target, and detaches the images the target
/// had that are not in the list (they become unattached, and the sweep deletes them).
///
/// Every image must exist, belong to `owner_id` and be unattached or already attached to this same target;
/// otherwise 422 on `image_ids` naming the offending id. Each image is claimed with a conditional UPDATE, so
/// two targets racing for one image cannot both get it. Call it inside the transaction that saves the
/// target, so a refusal leaves nothing half done.
pub async fn attach(
    txn: &impl ConnectionTrait,
    owner_id: i64,
    image_ids: &[i64],
    target_type: &str,
    target_id: i64,
) -> AppResult<()> {
    for (i, id) in image_ids.iter().enumerate() {
        if image_ids[..i].contains(id) {
            return Err(AppError::invalid_field(
                "image_ids",
                format!("image {id} is listed twice"),
            ));
        }
    }
    let now = util::now();
    let free_or_here = Condition::any().add(image::Column::TargetId.is_null()).add(
        Condition::all()
            .add(image::Column::TargetType.eq(target_type))
            .add(image::Column::TargetId.eq(target_id)),
    );
    for (position, &id) in image_ids.iter().enumerate() {
        let claimed = image::Entity::update_many()
            .col_expr(image::Column::TargetType, Expr::value(target_type))
            .col_expr(image::Column::TargetId, Expr::value(target_id))
            .col_expr(image::Column::Position, Expr::value(position as i32))
            .col_expr(
                image::Column::AttachedAt,
                Func::coalesce([Expr::col(image::Column::AttachedAt), Expr::value(now)]).into(),
            )
            .filter(image::Column::Id.eq(id))
            .filter(image::Column::OwnerId.eq(owner_id))
            .filter(free_or_here.clone())
            .exec(txn)
            .await?;
        if claimed.rows_affected != 1 {
            let problem = match image::Entity::find_by_id(id).one(txn).await? {
                Some(img) if img.owner_id == owner_id => {
                    format!("image {id} is already attached to something else")
                }
                // Another student's image is reported like a missing one: its existence is not ours to know.
                _ => format!("image {id} does not exist"),
            };
            return Err(AppError::invalid_field("image_ids", problem));
        }
    }
    let mut detach = detach_from(target_type, target_id);
    if !image_ids.is_empty() {
        detach = detach.filter(image::Column::Id.is_not_in(image_ids.iter().copied()));
    }
    detach.exec(txn).await?;
    Ok(())
}

/// The update that detaches the images of a target (the sweep then deletes them once they are a day old).
fn detach_from(target_type: &str, target_id: i64) -> sea_orm::UpdateMany<image::Entity> {
    image::Entity::update_many()
        .col_expr(
            image::Column::TargetType,
            Expr::value(Option::<String>::None),
        )
        .col_expr(image::Column::TargetId, Expr::value(Option::<i64>::None))
        .col_expr(image::Column::Position, Expr::value(Option::<i32>::None))
        .col_expr(
            image::Column::AttachedAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(image::Column::TargetType.eq(target_type))
        .filter(image::Column::TargetId.eq(target_id))
}

/// Detaches every image of a target (e.g. when it is deleted); the sweep then deletes them.
pub async fn detach_all(
    txn: &impl ConnectionTrait,
    target_type: &str,
    target_id: i64,
) -> AppResult<()> {
    detach_from(target_type, target_id).exec(txn).await?;
    Ok(())
}

/// The images of each of these targets, in their order. Targets without images are absent from the map.
pub async fn for_targets(
    db: &impl ConnectionTrait,
    target_type: &str,
    target_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<image::Model>>> {
    let mut out: HashMap<i64, Vec<image::Model>> = HashMap::new();
    if target_ids.is_empty() {
        return Ok(out);
    }
    let rows = image::Entity::find()
        .filter(image::Column::TargetType.eq(target_type))
        .filter(image::Column::TargetId.is_in(target_ids.iter().copied()))
        .order_by_asc(image::Column::TargetId)
        .order_by_asc(image::Column::Position)
        .order_by_asc(image::Column::Id)
        .all(db)
        .await?;
    for row in rows {
        if let Some(target) = row.target_id {
            out.entry(target).or_default().push(row);
        }
    }
    Ok(out)
}

/// Deletes the images that are not attached to anything and were uploaded more than `older_than` ago: the row
/// first (with a conditional delete, so an image attached meanwhile survives and two instances sweeping at once
/// delete each image once), then its files. Returns how many images this call deleted.
pub async fn sweep_unattached(state: &AppState, older_than: chrono::Duration) -> AppResult<u64> {
    const BATCH: u64 = 200;
    let cutoff = util::now() - older_than;
    let unattached = || {
        Condition::all()
            .add(image::Column::AttachedAt.is_null())
            .add(image::Column::TargetId.is_null())
            .add(image::Column::CreatedAt.lt(cutoff))
    };
    let mut deleted = 0;
    let mut after = 0i64;
    loop {
        let batch = image::Entity::find()
            .filter(unattached())
            .filter(image::Column::Id.gt(after))
            .order_by_asc(image::Column::Id)
            .limit(BATCH)
            .all(&state.db)
            .await?;
        for img in &batch {
            after = img.id;
            let gone = image::Entity::delete_many()
                .filter(image::Column::Id.eq(img.id))
                .filter(unattached())
                .exec(&state.db)
                .await?;
            if gone.rows_affected == 0 {
                continue;
            }
            deleted += 1;
            for key in [&img.display_key, &img.thumb_key] {
                if let Err(e) = state.storage.delete(key).await {
                    tracing::warn!(image_id = img.id, error = %e, "could not delete an image file");
                }
            }
        }
        if (batch.len() as u64) < BATCH {
            break;
        }
    }
    Ok(deleted)
}
