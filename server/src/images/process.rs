//! The CPU side of an upload, free of I/O: recognise the format by its magic bytes, read the dimensions from
//! the header and refuse decompression bombs before decoding, decode under [`image::Limits`], apply the EXIF
//! orientation, flatten transparency onto white, and re-encode a display version and a thumbnail as fresh
//! JPEGs. Re-encoding from pixels is what drops every piece of metadata (EXIF, GPS, XMP, comments, ICC).
//!
//! [`process`] is blocking work; callers run it on the blocking pool.

use std::io::Cursor;

use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits,
    RgbImage, codecs::jpeg::JpegEncoder, imageops::FilterType, metadata::Orientation,
};

/// Largest accepted upload, in bytes (10 MiB).
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
/// Largest accepted image, in pixels (40 megapixels), judged from the header before decoding.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Longest accepted side, in pixels.
pub const MAX_SIDE: u32 = 30_000;
/// Longest side of the display version; smaller images are not enlarged.
pub const DISPLAY_MAX_SIDE: u32 = 1600;
/// Longest side of the thumbnail.
pub const THUMB_MAX_SIDE: u32 = 400;
/// JPEG quality of both stored versions.
pub const JPEG_QUALITY: u8 = 82;
/// Most memory a decoder may allocate: 40 MP of 16-bit RGB fits, an absurd colour depth does not.
const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;

/// The formats an upload may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
}

impl Format {
    fn image_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::WebP => ImageFormat::WebP,
        }
    }
}

/// The format announced by the first bytes of the file; the file name and the declared type are never
/// consulted.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::WebP)
    } else {
        None
    }
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JPEG, PNG or WebP image, or one that cannot be decoded (corrupt, truncated).
    Unsupported(String),
    /// Larger than [`MAX_PIXELS`] or [`MAX_SIDE`]; the dimensions when the header told them.
    TooManyPixels(Option<(u32, u32)>),
}

impl Rejection {
    pub fn message(&self) -> String {
        let limit = format!(
            "at most {} megapixels and {MAX_SIDE} pixels per side are accepted",
            MAX_PIXELS / 1_000_000
        );
        match self {
            Rejection::Unsupported(why) => why.clone(),
            Rejection::TooManyPixels(Some((w, h))) => {
                format!("the image is too large ({w}×{h} pixels); {limit}")
            }
            Rejection::TooManyPixels(None) => format!("the image is too large; {limit}"),
        }
    }
}

/// The two stored versions of an accepted upload.
#[derive(Debug)]
pub struct Processed {
    /// JPEG, longest side at most [`DISPLAY_MAX_SIDE`].
    pub display: Vec<u8>,
    /// JPEG, longest side at most [`THUMB_MAX_SIDE`].
    pub thumb: Vec<u8>,
    /// Dimensions of the display version (after the orientation was applied).
    pub width: u32,
    pub height: u32,
}

const NOT_AN_IMAGE: &str = "only JPEG, PNG and WebP images are accepted";

fn unreadable() -> Rejection {
    Rejection::Unsupported(
        "the file could not be read as a JPEG, PNG or WebP image; it may be damaged or incomplete"
            .into(),
    )
}

fn classify(err: ImageError) -> Rejection {
    match err {
        ImageError::Limits(_) => Rejection::TooManyPixels(None),
        _ => unreadable(),
    }
}

/// Whether a JPEG runs from its start to an end-of-image marker after its first scan. The decoder is lenient
/// and would otherwise turn a cut-off upload into an image with a grey bottom.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    loop {
        if i >= bytes.len() || bytes[i] != 0xFF {
            return false;
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1; // fill bytes
        }
        let Some(&marker) = bytes.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => continue,
            // End of image before any scan.
            0xD9 => return false,
            _ => {
                let Some(len) = bytes.get(i..i + 2) else {
                    return false;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 {
                    return false;
                }
                i += len;
                if marker == 0xDA {
                    // Start of scan: entropy-coded data never contains FF D9 (FF is stuffed with 00), so the
                    // first FF D9 after it is the end of the image.
                    return bytes
                        .get(i..)
                        .is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9]));
                }
            }
        }
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

/// Blends transparent pixels onto white (JPEG has no alpha; transparent black would turn black).
fn flatten(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in rgba.pixels() {
        let [r, g, b, a] = px.0;
        let a = u32::from(a);
        let blend = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        out.extend_from_slice(&[blend(r), blend(g), blend(b)]);
    }
    RgbImage::from_raw(w, h, out).expect("buffer has the image's size")
}

/// The image scaled down (never up) so that its longest side is at most `max_side`.
fn fit(img: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w.max(h) <= max_side {
        return img.clone();
    }
    let scale = |side: u32, long: u32| {
        ((u64::from(side) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long)).max(1)
            as u32
    };
    let (nw, nh) = if w >= h {
        (max_side, scale(h, w))
    } else {
        (scale(w, h), max_side)
    };
    image::imageops::resize(img, nw, nh, FilterType::CatmullRom)
}

fn to_jpeg(img: RgbImage, orientation: Orientation) -> Result<(Vec<u8>, u32, u32), Rejection> {
    let mut img = DynamicImage::ImageRgb8(img);
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode(rgb.as_raw(), w, h, ExtendedColorType::Rgb8)
        .map_err(|_| unreadable())?;
    Ok((out, w, h))
}

/// Checks, decodes and re-encodes an upload. Blocking and CPU-heavy.
pub fn process(bytes: &[u8]) -> Result<Processed, Rejection> {
    let format = sniff(bytes).ok_or_else(|| Rejection::Unsupported(NOT_AN_IMAGE.into()))?;
    if format == Format::Jpeg && !jpeg_is_complete(bytes) {
        return Err(unreadable());
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.limits(limits());
    // Building the decoder reads the header only; the pixel count is judged before any pixel is decoded.
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(unreadable());
    }
    if u64::from(w) * u64::from(h) > MAX_PIXELS || w > MAX_SIDE || h > MAX_SIDE {
        return Err(Rejection::TooManyPixels(Some((w, h))));
    }
    // Malformed EXIF is not worth refusing a photo over: it is shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let decoded = DynamicImage::from_decoder(decoder).map_err(classify)?;
    let full = flatten(decoded);
    // The bounds are square, so scaling before rotating gives the same result for less work.
    let display = fit(&full, DISPLAY_MAX_SIDE);
    drop(full);
    let thumb = fit(&display, THUMB_MAX_SIDE);
    let (display, width, height) = to_jpeg(display, orientation)?;
    let (thumb, _, _) = to_jpeg(thumb, orientation)?;
    Ok(Processed {
        display,
        thumb,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn formats_are_recognised_by_their_magic_bytes() {
        assert_eq!(sniff(&jpeg(4, 4)), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), None);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"hello, this is text"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn truncated_jpegs_are_noticed() {
        let full = jpeg(64, 48);
        assert!(jpeg_is_complete(&full));
        for cut in [3, 20, full.len() / 2, full.len() - 2] {
            assert!(!jpeg_is_complete(&full[..cut]), "cut at {cut}");
            assert!(matches!(
                process(&full[..cut]),
                Err(Rejection::Unsupported(_))
            ));
        }
        // Trailing bytes after the end of the image (some phones append data) are fine.
        let mut trailing = full.clone();
        trailing.extend_from_slice(b"vendor trailer");
        assert!(jpeg_is_complete(&trailing));
    }

    #[test]
    fn large_images_are_scaled_and_small_ones_kept() {
        let out = process(&jpeg(2000, 1000)).unwrap();
        assert_eq!((out.width, out.height), (1600, 800));
        let thumb = image::load_from_memory(&out.thumb).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (400, 200));

        let out = process(&jpeg(100, 300)).unwrap();
        assert_eq!((out.width, out.height), (100, 300));
    }

    #[test]
    fn fit_keeps_the_aspect_ratio_and_at_least_one_pixel() {
        let img = RgbImage::new(3000, 2);
        assert_eq!(fit(&img, 400).dimensions(), (400, 1));
        let img = RgbImage::new(2000, 3000);
        assert_eq!(fit(&img, 1600).dimensions(), (1067, 1600));
    }

    #[test]
    fn transparency_becomes_white() {
        let img = image::RgbaImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                image::Rgba([0, 0, 0, 0])
            } else {
                image::Rgba([200, 0, 0, 255])
            }
        });
        let flat = flatten(DynamicImage::ImageRgba8(img));
        assert_eq!(flat.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(flat.get_pixel(1, 0).0, [200, 0, 0]);
    }
}
