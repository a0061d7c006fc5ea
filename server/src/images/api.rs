//! HTTP endpoints of the images capability: `POST /api/v1/images` (multipart upload, as `wx.uploadFile`
//! sends it) and the plain `GET /media/*key` handler that serves stored files with long-lived caching.

use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Path},
};
use poem_openapi::{Multipart, Object, OpenApi, Tags, payload::Json, types::multipart::Upload};
use tokio::io::AsyncReadExt;

use super::{model::image, process, service};
use crate::{
    auth::StudentAuth,
    error::{AppError, AppResult},
    state::AppState,
    storage, util, web,
};

#[derive(Tags)]
enum ImageTags {
    /// Photo uploads.
    Images,
}

/// An uploaded image as clients show it.
#[derive(Debug, Clone, Object)]
pub struct ImageRef {
    pub id: i64,
    /// Absolute URL of the display version (JPEG, longest side at most 1600 px).
    pub url: String,
    /// Absolute URL of the thumbnail (JPEG, longest side at most 400 px).
    pub thumbnail_url: String,
    /// Width of the display version in pixels.
    pub width: i32,
    /// Height of the display version in pixels.
    pub height: i32,
}

/// The API view of an image.
pub fn image_ref(state: &AppState, img: &image::Model) -> ImageRef {
    let (url, thumbnail_url) = service::urls(state, img);
    ImageRef {
        id: img.id,
        url,
        thumbnail_url,
        width: img.width,
        height: img.height,
    }
}

/// The multipart form of an upload.
#[derive(Debug, Multipart)]
pub struct UploadImageForm {
    /// The photo: JPEG, PNG or WebP, at most 10 MiB and 40 megapixels.
    pub file: Upload,
}

/// Photo uploads.
pub struct ImagesApi;

#[OpenApi]
impl ImagesApi {
    /// Upload a photo.
    ///
    /// Send it as `wx.uploadFile` does, with `name: 'file'`. JPEG, PNG and WebP are accepted, judged by the
    /// file's content (not its name or declared type); at most 10 MiB and 40 megapixels. The photo is turned
    /// upright, stripped of all metadata (location included) and stored as a display version (longest side
    /// 1600 px) and a thumbnail (400 px). Attach it to a listing within 24 hours by passing its `id`, or it is
    /// deleted. Each student may upload 60 photos per 10 minutes (`IMAGE_UPLOADS_PER_10_MINUTES`).
    ///
    /// Refusals: 413 `payload_too_large`, 415 `unsupported_image` (not an accepted format, damaged or
    /// incomplete), 422 `image_too_large_pixels`, 429 `rate_limited`.
    #[oai(
        path = "/v1/images",
        method = "post",
        tag = "ImageTags::Images",
        operation_id = "upload_image"
    )]
    async fn upload_image(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        form: UploadImageForm,
    ) -> AppResult<Json<ImageRef>> {
        let upload = form.file;
        // Refuse an oversized file before reading it into memory.
        if upload.size() > process::MAX_UPLOAD_BYTES {
            return Err(service::too_large());
        }
        let mut bytes = Vec::with_capacity(upload.size());
        upload
            .into_async_read()
            .take(process::MAX_UPLOAD_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(AppError::internal)?;
        let img = service::upload(&state, auth.0.id(), bytes).await?;
        Ok(Json(image_ref(&state, &img)))
    }
}

/// Whether an `If-None-Match` header value matches `etag` (a quoted strong tag); weak comparison, as RFC 9110
/// asks for this header.
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn content_type_of(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

/// `GET /media/*key`: a stored file. Stored files never change (a new upload gets a new key), so they are
/// cached for a year; the `ETag` lets clients revalidate with `If-None-Match` for a 304.
#[handler]
pub async fn serve_media(
    req: &Request,
    state: Data<&AppState>,
    Path(key): Path<String>,
) -> poem::Result<Response> {
    let not_found = || web::err(AppError::not_found("media"));
    if !storage::is_valid_key(&key) {
        return Err(not_found());
    }
    let bytes = match state.storage.get(&key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            tracing::error!(error = %e, "reading a media file failed");
            return Err(web::err(AppError::unavailable(
                "storage_unavailable",
                "the file cannot be read right now; try again shortly",
            )));
        }
    };
    let mut tagged = Vec::with_capacity(key.len() + 1 + bytes.len());
    tagged.extend_from_slice(key.as_bytes());
    tagged.push(0);
    tagged.extend_from_slice(&bytes);
    let etag = format!("\"{}\"", &util::sha256_hex(&tagged)[..32]);
    let cache_control = "public, max-age=31536000, immutable";

    let revalidated = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &etag));
    if revalidated {
        return Ok(Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .header(header::CACHE_CONTROL, cache_control)
            .finish());
    }
    Ok(Response::builder()
        .content_type(content_type_of(&key))
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, cache_control)
        .header("x-content-type-options", "nosniff")
        .body(bytes)
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let etag = "\"abc\"";
        assert!(etag_matches("\"abc\"", etag));
        assert!(etag_matches("W/\"abc\"", etag));
        assert!(etag_matches("\"x\", \"abc\"", etag));
        assert!(etag_matches("*", etag));
        assert!(!etag_matches("\"abcd\"", etag));
        assert!(!etag_matches("abc", etag));
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type_of("images/2026/11/a_display.jpg"),
            "image/jpeg"
        );
        assert_eq!(content_type_of("images/a"), "application/octet-stream");
    }
}
