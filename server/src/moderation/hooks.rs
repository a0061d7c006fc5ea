//! What other capabilities do when an image check comes back flagged.
//!
//! [`media_flagged`] runs once a `wxa_media_check` verdict of `risky` or `review` has been recorded (and when an
//! image could not be checked at all: `review`/`unchecked`). If it returns an error it is run again by the
//! periodic job until it succeeds, so whatever it does must be idempotent.

use super::model::media_check;
use crate::{error::AppResult, state::AppState};

/// Called for every image check decided `risky` or `review`. For now it only logs; hiding the listing and
/// queueing it for the operators is to be added here.
pub async fn media_flagged(_state: &AppState, check: &media_check::Model) -> AppResult<()> {
    tracing::warn!(
        check = check.id,
        target_type = %check.target_type,
        target_id = check.target_id,
        image_id = ?check.image_id,
        status = ?check.status,
        label = ?check.label,
        "image flagged by content security"
    );
    Ok(())
}
