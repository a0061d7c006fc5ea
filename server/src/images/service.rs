use super::model::image;
use crate::{error::AppResult, state::AppState};
use std::collections::HashMap;
pub async fn attach(
    _txn: &impl sea_orm::ConnectionTrait,
    _owner_id: i64,
    _image_ids: &[i64],
    _target_type: &str,
    _target_id: i64,
) -> AppResult<()> {
    Ok(())
}
pub async fn for_targets(
    _db: &impl sea_orm::ConnectionTrait,
    _target_type: &str,
    _target_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<image::Model>>> {
    Ok(HashMap::new())
}
pub fn urls(state: &AppState, img: &image::Model) -> (String, String) {
    (
        format!("{}/media/{}", state.public_base_url, img.display_key),
        format!("{}/media/{}", state.public_base_url, img.thumb_key),
    )
}
