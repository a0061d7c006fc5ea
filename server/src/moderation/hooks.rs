//! What other capabilities do when an image check comes back flagged.
//!
//! [`media_flagged`] runs once a `wxa_media_check` verdict of `risky` or `review` has been recorded (and when an
//! image could not be checked at all: `review`/`unchecked`). If it returns an error it is run again by the
//! periodic job until it succeeds, so whatever it does must be idempotent.

use super::model::media_check;
use crate::{error::AppResult, state::AppState};

/// Called for every image check decided `risky` or `review`: the content it belongs to leaves the public feeds
/// and waits for an operator (a listing moves to `pending_review` with the label; a published post is hidden; the
/// image of a chat message is hidden).
pub async fn media_flagged(state: &AppState, check: &media_check::Model) -> AppResult<()> {
    tracing::warn!(
        check = check.id,
        target_type = %check.target_type,
        target_id = check.target_id,
        image_id = ?check.image_id,
        status = ?check.status,
        label = ?check.label,
        "image flagged by content security"
    );
    let label = check.label.clone().unwrap_or_else(|| "unchecked".into());
    match check.target_type.as_str() {
        "listing" => {
            crate::listings::service::hold_for_review(&state.db, check.target_id, &label).await
        }
        "post" => {
            crate::forum::service::moderate(
                &state.db,
                "post",
                check.target_id,
                crate::forum::service::Moderation::Hide("image_flagged"),
            )
            .await
        }
        "chat_message" => {
            crate::chat::service::hide_flagged_image(&state.db, check.target_id).await
        }
        _ => Ok(()),
    }
}
