use super::model::image;
use crate::state::AppState;
use poem_openapi::Object;
#[derive(Debug, Clone, Object)]
pub struct ImageRef {
    pub id: i64,
    pub url: String,
    pub thumbnail_url: String,
    pub width: i32,
    pub height: i32,
}
pub fn image_ref(state: &AppState, m: &image::Model) -> ImageRef {
    let (url, thumbnail_url) = super::service::urls(state, m);
    ImageRef {
        id: m.id,
        url,
        thumbnail_url,
        width: m.width,
        height: m.height,
    }
}
