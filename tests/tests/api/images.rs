//! Image uploads: formats and limits, re-encoding without metadata, serving with caching, attachment rules and
//! the sweep of unattached images. Every image is generated here with the `image` crate.

use std::io::Cursor;

use campus_trade::images::{model::image as image_row, service as images};
use campus_trade_tests::{TestApp, app_test};
use image::{DynamicImage, ImageDecoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::{StatusCode, header::HeaderMap};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::Value;

async fn upload_as(
    app: &TestApp,
    token: Option<&str>,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> (StatusCode, Value) {
    app.upload_file(token, filename, content_type, bytes).await
}

async fn upload(app: &TestApp, token: &str, bytes: &[u8]) -> (StatusCode, Value) {
    upload_as(app, Some(token), "photo.jpg", "image/jpeg", bytes).await
}

/// Uploads a valid photo and returns its id.
async fn upload_ok(app: &TestApp, token: &str) -> i64 {
    let (s, body) = upload(app, token, &jpeg(&gradient(64, 48), 85)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["id"].as_i64().expect("image id")
}

async fn fetch(
    app: &TestApp,
    url: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = app.http.get(url);
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let resp = req.send().await.expect("fetch sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 120])
    })
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).expect("a JPEG")
}

/// The 24 bytes of the GPS latitude we plant: 39° 54' 27.17".
const GPS_LATITUDE: [u8; 24] = [
    0, 0, 0, 39, 0, 0, 0, 1, 0, 0, 0, 54, 0, 0, 0, 1, 0, 0, 0x0A, 0x9D, 0, 0, 0, 100,
];
/// The 24 bytes of the GPS longitude we plant: 116° 23' 43.21".
const GPS_LONGITUDE: [u8; 24] = [
    0, 0, 0, 116, 0, 0, 0, 1, 0, 0, 0, 23, 0, 0, 0, 1, 0, 0, 0x10, 0xE1, 0, 0, 0, 100,
];

/// An EXIF APP1 segment (big-endian TIFF) with an orientation and a GPS IFD (latitude and longitude).
fn exif_app1(orientation: u16) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&value);
    }
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    const RATIONAL: u16 = 5;
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    // IFD0 at 8: two entries (30 bytes) → the GPS IFD at 38.
    tiff.extend_from_slice(&2u16.to_be_bytes());
    let o = orientation.to_be_bytes();
    entry(&mut tiff, 0x0112, SHORT, 1, [o[0], o[1], 0, 0]);
    entry(&mut tiff, 0x8825, LONG, 1, 38u32.to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(tiff.len(), 38);
    // GPS IFD at 38: three entries (42 bytes) → latitude at 80, longitude at 104.
    tiff.extend_from_slice(&3u16.to_be_bytes());
    entry(&mut tiff, 0x0001, ASCII, 2, *b"N\0\0\0");
    entry(&mut tiff, 0x0002, RATIONAL, 3, 80u32.to_be_bytes());
    entry(&mut tiff, 0x0004, RATIONAL, 3, 104u32.to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(tiff.len(), 80);
    tiff.extend_from_slice(&GPS_LATITUDE);
    tiff.extend_from_slice(&GPS_LONGITUDE);

    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(&payload);
    segment
}

/// Splices a segment in right after SOI.
fn splice_after_soi(jpeg: &[u8], segment: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The markers of a JPEG's segments up to the first scan.
fn header_markers(jpeg: &[u8]) -> Vec<u8> {
    let mut markers = vec![];
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        markers.push(marker);
        if marker == 0xDA {
            break;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        i += 2 + len;
    }
    markers
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A tiny PNG whose header claims `w`×`h` pixels (8-bit RGBA) — what a decompression bomb looks like before
/// it is inflated.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut tagged = kind.to_vec();
        tagged.extend_from_slice(data);
        out.extend_from_slice(&tagged);
        out.extend_from_slice(&crc32(&tagged).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // The start of a zlib stream; it would inflate to gigabytes if anybody decoded it.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0xDA, 0xED, 0xC1, 0x01, 0x0D, 0x00, 0x00],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn assert_close(px: [u8; 3], want: [u8; 3], what: &str) {
    let near = px
        .iter()
        .zip(want)
        .all(|(&a, b)| (i16::from(a) - i16::from(b)).abs() <= 40);
    assert!(near, "{what}: got {px:?}, want about {want:?}");
}

app_test!(
    async fn exif_is_stripped_and_orientation_applied(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;

        // 300×200, red on the left, blue on the right; orientation 6 means "rotate 90° clockwise to view".
        let source = RgbImage::from_fn(300, 200, |x, _| {
            if x < 150 { Rgb([220, 20, 20]) } else { Rgb([20, 20, 220]) }
        });
        let with_exif = splice_after_soi(&jpeg(&source, 95), &exif_app1(6));
        // The fixture really carries what we think: the image crate reads orientation 6, and the GPS bytes are
        // in the file.
        let mut decoder = image::ImageReader::with_format(Cursor::new(&with_exif), ImageFormat::Jpeg)
            .into_decoder()
            .unwrap();
        assert_eq!(
            decoder.orientation().unwrap(),
            image::metadata::Orientation::Rotate90
        );
        assert!(contains(&with_exif, &GPS_LATITUDE));

        let (s, body) = upload(&app, &alice.token, &with_exif).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!((body["width"].as_i64(), body["height"].as_i64()), (Some(200), Some(300)));
        let url = body["url"].as_str().unwrap();
        let thumb_url = body["thumbnail_url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/media/images/", app.state.public_base_url)));
        assert_ne!(url, thumb_url);

        for u in [url, thumb_url] {
            let (s, headers, bytes) = fetch(&app, u, None).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(headers["content-type"], "image/jpeg");
            assert!(!header_markers(&bytes).contains(&0xE1), "an APP1 segment survived");
            assert!(!contains(&bytes, b"Exif\0\0"));
            assert!(!contains(&bytes, &GPS_LATITUDE));
            assert!(!contains(&bytes, &GPS_LONGITUDE));
            let img = decode(&bytes).to_rgb8();
            assert_eq!(img.dimensions(), (200, 300));
            // Rotated clockwise: the left (red) half is now on top, the right (blue) half at the bottom.
            assert_close(img.get_pixel(100, 40).0, [220, 20, 20], "top");
            assert_close(img.get_pixel(100, 260).0, [20, 20, 220], "bottom");
        }
    }
);

app_test!(
    async fn large_images_are_scaled_and_small_ones_kept(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;

        let (s, body) = upload(&app, &alice.token, &jpeg(&gradient(3000, 2000), 80)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!((body["width"].as_i64(), body["height"].as_i64()), (Some(1600), Some(1067)));
        let (_, _, display) = fetch(&app, body["url"].as_str().unwrap(), None).await;
        let display = decode(&display);
        assert_eq!((display.width(), display.height()), (1600, 1067));
        let (_, _, thumb) = fetch(&app, body["thumbnail_url"].as_str().unwrap(), None).await;
        let thumb = decode(&thumb);
        assert_eq!((thumb.width(), thumb.height()), (400, 267));

        // Portrait: the long side is the height.
        let (s, body) = upload(&app, &alice.token, &jpeg(&gradient(1000, 2400), 80)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!((body["width"].as_i64(), body["height"].as_i64()), (Some(667), Some(1600)));

        // Never enlarged.
        let small = encode(DynamicImage::ImageRgb8(gradient(120, 80)), ImageFormat::Png);
        let (s, body) = upload_as(&app, Some(&alice.token), "small.png", "image/png", &small).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!((body["width"].as_i64(), body["height"].as_i64()), (Some(120), Some(80)));
        let (_, _, thumb) = fetch(&app, body["thumbnail_url"].as_str().unwrap(), None).await;
        let thumb = decode(&thumb);
        assert_eq!((thumb.width(), thumb.height()), (120, 80));
    }
);

app_test!(
    async fn png_with_alpha_and_webp_are_accepted(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;

        // Left half fully transparent (black underneath), right half opaque green.
        let rgba = RgbaImage::from_fn(80, 40, |x, _| {
            if x < 40 { Rgba([0, 0, 0, 0]) } else { Rgba([10, 200, 10, 255]) }
        });
        let png = encode(DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png);
        // The declared type and name do not matter; the content does.
        let (s, body) =
            upload_as(&app, Some(&alice.token), "upload.bin", "application/octet-stream", &png).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (_, headers, bytes) = fetch(&app, body["url"].as_str().unwrap(), None).await;
        assert_eq!(headers["content-type"], "image/jpeg");
        let img = decode(&bytes).to_rgb8();
        assert_close(img.get_pixel(10, 20).0, [255, 255, 255], "transparent area becomes white");
        assert_close(img.get_pixel(70, 20).0, [10, 200, 10], "opaque area keeps its colour");

        let webp = encode(DynamicImage::ImageRgba8(rgba), ImageFormat::WebP);
        assert_eq!(&webp[8..12], b"WEBP");
        let (s, body) = upload_as(&app, Some(&alice.token), "p.webp", "image/webp", &webp).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!((body["width"].as_i64(), body["height"].as_i64()), (Some(80), Some(40)));
        let (_, _, bytes) = fetch(&app, body["url"].as_str().unwrap(), None).await;
        assert_close(decode(&bytes).to_rgb8().get_pixel(10, 20).0, [255, 255, 255], "webp alpha");
    }
);

app_test!(
    async fn oversized_and_malformed_uploads_are_refused(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let mb = 1024 * 1024;

        // 20 MB: refused by the body limit before it is read.
        let mut huge = vec![0u8; 20 * mb];
        huge[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
        let (s, body) = upload(&app, &alice.token, &huge).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["code"], "payload_too_large");
        // One byte over 10 MB fits in the body limit but not in the file limit.
        let (s, body) = upload(&app, &alice.token, &huge[..10 * mb + 1]).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["code"], "payload_too_large");
        // Exactly 10 MB is within the size limit (and then refused for not being an image).
        let (s, body) = upload(&app, &alice.token, &huge[..10 * mb]).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
        assert_eq!(body["code"], "unsupported_image");
        drop(huge);

        // Decompression bombs: refused from the header, before anything is decoded.
        for (w, h) in [(100_000, 100_000), (7_000, 6_000)] {
            let (s, body) =
                upload_as(&app, Some(&alice.token), "bomb.png", "image/png", &png_claiming(w, h)).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{w}x{h}: {body}");
            assert_eq!(body["code"], "image_too_large_pixels");
            assert!(body["message"].as_str().unwrap().contains("megapixels"), "{body}");
        }

        let valid = jpeg(&gradient(200, 150), 85);
        let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        let refused: [(&str, &str, &[u8]); 5] = [
            ("text renamed .jpg", "image/jpeg", b"just some text, honestly a photo"),
            ("a GIF", "image/gif", gif),
            ("a truncated JPEG", "image/jpeg", &valid[..valid.len() / 2]),
            ("a JPEG cut just before its end", "image/jpeg", &valid[..valid.len() - 2]),
            ("an empty file", "image/jpeg", b""),
        ];
        for (what, content_type, bytes) in refused {
            let (s, body) = upload_as(&app, Some(&alice.token), "x.jpg", content_type, bytes).await;
            assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{what}: {body}");
            assert_eq!(body["code"], "unsupported_image", "{what}");
        }

        // Nothing above took the service down, and nothing refused was stored.
        let (s, body) = upload(&app, &alice.token, &valid).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let stored = image_row::Entity::find().all(&app.state.db).await.unwrap();
        assert_eq!(stored.len(), 1);
    }
);

app_test!(
    async fn media_is_cached_and_revalidated(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let (s, body) = upload(&app, &alice.token, &jpeg(&gradient(90, 60), 85)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let url = body["url"].as_str().unwrap();

        let (s, headers, bytes) = fetch(&app, url, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
        let cache = headers["cache-control"].to_str().unwrap();
        assert!(cache.contains("max-age=31536000") && cache.contains("immutable") && cache.contains("public"), "{cache}");
        let etag = headers["etag"].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

        let (s, headers, bytes) = fetch(&app, url, Some(&etag)).await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        assert!(bytes.is_empty());
        assert_eq!(headers["etag"].to_str().unwrap(), etag);
        let (s, _, _) = fetch(&app, url, Some(&format!("W/{etag}"))).await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        let (s, _, bytes) = fetch(&app, url, Some("\"something-else\"")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(!bytes.is_empty());
        // The thumbnail is another file with another tag.
        let (_, headers, _) = fetch(&app, body["thumbnail_url"].as_str().unwrap(), None).await;
        assert_ne!(headers["etag"].to_str().unwrap(), etag);

        for path in ["/media/images/2026/11/nope_display.jpg", "/media/images/%2e%2e/%2e%2e/campus_trade.db", "/media/.tmp-x"] {
            let (s, body) = app.get(path, None).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body["code"], "not_found", "{path}");
        }
    }
);

app_test!(
    async fn attach_enforces_ownership_and_exclusivity(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let bob = app.login("bob").await;
        let db = &app.state.db;
        let a1 = upload_ok(&app, &alice.token).await;
        let a2 = upload_ok(&app, &alice.token).await;
        let a3 = upload_ok(&app, &alice.token).await;
        let b1 = upload_ok(&app, &bob.token).await;

        let field_error = |r: Result<(), campus_trade::error::AppError>| match r {
            Err(campus_trade::error::AppError::Validation(fields)) => {
                fields.get("image_ids").cloned().expect("image_ids named")
            }
            other => panic!("expected a 422 on image_ids, got {other:?}"),
        };

        // Bob's image is not Alice's to attach; it is reported like a missing one.
        let msg = field_error(images::attach(db, alice.id, &[a1, b1], "listing", 1).await);
        assert!(msg.contains(&b1.to_string()), "{msg}");
        let msg = field_error(images::attach(db, alice.id, &[999_999], "listing", 1).await);
        assert!(msg.contains("999999"), "{msg}");
        let msg = field_error(images::attach(db, alice.id, &[a1, a1], "listing", 1).await);
        assert!(msg.contains(&a1.to_string()), "{msg}");

        images::attach(db, alice.id, &[a2, a1], "listing", 1).await.unwrap();
        let shown = images::for_targets(db, "listing", &[1, 2]).await.unwrap();
        let ids: Vec<i64> = shown[&1].iter().map(|i| i.id).collect();
        assert_eq!(ids, [a2, a1]);
        assert!(!shown.contains_key(&2));

        // Attached to listing 1, so not available to listing 2 (nor to a post with the same id).
        let msg = field_error(images::attach(db, alice.id, &[a1], "listing", 2).await);
        assert!(msg.contains(&a1.to_string()) && msg.contains("attached"), "{msg}");
        field_error(images::attach(db, alice.id, &[a1], "post", 1).await);

        // Reattaching to the same target reorders; an image left out is detached (and becomes sweepable).
        images::attach(db, alice.id, &[a3, a2], "listing", 1).await.unwrap();
        let shown = images::for_targets(db, "listing", &[1]).await.unwrap();
        let order: Vec<(i64, Option<i32>)> = shown[&1].iter().map(|i| (i.id, i.position)).collect();
        assert_eq!(order, [(a3, Some(0)), (a2, Some(1))]);
        let freed = image_row::Entity::find_by_id(a1).one(db).await.unwrap().unwrap();
        assert_eq!((freed.target_type, freed.target_id, freed.attached_at), (None, None, None));
        // …so it can go to listing 2 now.
        images::attach(db, alice.id, &[a1], "listing", 2).await.unwrap();

        // A failed attach inside a transaction leaves everything as it was.
        {
            use sea_orm::TransactionTrait;
            let txn = db.begin().await.unwrap();
            field_error(images::attach(&txn, alice.id, &[a2, b1], "listing", 3).await);
            txn.rollback().await.unwrap();
        }
        let shown = images::for_targets(db, "listing", &[1, 2, 3]).await.unwrap();
        assert_eq!(shown[&1].len(), 2);
        assert_eq!(shown[&2][0].id, a1);
        assert!(!shown.contains_key(&3));

        // The API view uses absolute URLs.
        let r = campus_trade::images::api::image_ref(&app.state, &shown[&2][0]);
        assert_eq!(r.id, a1);
        assert!(r.url.starts_with("http") && r.thumbnail_url.ends_with("_thumb.jpg"));
    }
);

app_test!(
    async fn sweep_deletes_old_unattached_images_only(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let db = &app.state.db;

        let mut made = vec![];
        for _ in 0..3 {
            let (s, body) = upload(&app, &alice.token, &jpeg(&gradient(64, 48), 85)).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            made.push((
                body["id"].as_i64().unwrap(),
                body["url"].as_str().unwrap().to_string(),
                body["thumbnail_url"].as_str().unwrap().to_string(),
            ));
        }
        let (old_loose, old_attached, fresh_loose) = (&made[0], &made[1], &made[2]);
        images::attach(db, alice.id, &[old_attached.0], "listing", 7).await.unwrap();
        // Two of them were uploaded 25 hours ago.
        image_row::Entity::update_many()
            .col_expr(
                image_row::Column::CreatedAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::hours(25)),
            )
            .filter(image_row::Column::Id.is_in([old_loose.0, old_attached.0]))
            .exec(db)
            .await
            .unwrap();

        let deleted = images::sweep_unattached(&app.state, chrono::Duration::hours(24)).await.unwrap();
        assert_eq!(deleted, 1);
        assert!(image_row::Entity::find_by_id(old_loose.0).one(db).await.unwrap().is_none());
        for url in [&old_loose.1, &old_loose.2] {
            let (s, _, _) = fetch(&app, url, None).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{url} should be gone");
        }
        for (_, url, thumb) in [old_attached, fresh_loose] {
            assert_eq!(fetch(&app, url, None).await.0, StatusCode::OK);
            assert_eq!(fetch(&app, thumb, None).await.0, StatusCode::OK);
        }
        // A second sweep (say, on another instance) finds nothing more.
        assert_eq!(images::sweep_unattached(&app.state, chrono::Duration::hours(24)).await.unwrap(), 0);

        // Detaching an old image makes it sweepable.
        images::attach(db, alice.id, &[], "listing", 7).await.unwrap();
        assert_eq!(images::sweep_unattached(&app.state, chrono::Duration::hours(24)).await.unwrap(), 1);
        assert_eq!(fetch(&app, &old_attached.1, None).await.0, StatusCode::NOT_FOUND);
        let left: Vec<i64> = image_row::Entity::find().all(db).await.unwrap().iter().map(|i| i.id).collect();
        assert_eq!(left, [fresh_loose.0]);
    }
);

app_test!(
    async fn uploads_need_a_session_and_are_rate_limited(backend) {
        let app = TestApp::spawn_with(backend, &[("IMAGE_UPLOADS_PER_10_MINUTES", "2")]).await;
        let photo = jpeg(&gradient(32, 32), 85);
        let (s, body) = upload_as(&app, None, "p.jpg", "image/jpeg", &photo).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], "unauthorized");
        let (s, _) = upload_as(&app, Some("not-a-real-token"), "p.jpg", "image/jpeg", &photo).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        let alice = app.login("alice").await;
        let bob = app.login("bob").await;
        for _ in 0..2 {
            assert_eq!(upload(&app, &alice.token, &photo).await.0, StatusCode::OK);
        }
        let (s, body) = upload(&app, &alice.token, &photo).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["code"], "rate_limited");
        // The limit is per student.
        assert_eq!(upload(&app, &bob.token, &photo).await.0, StatusCode::OK);
    }
);
