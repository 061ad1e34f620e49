//! Photo sanitizer for uploaded tip attachments.
//!
//! Every photo is fully decoded and re-encoded as a fresh JPEG, so nothing from
//! the original file (EXIF, GPS, XMP, ICC profiles, comments, trailing data,
//! thumbnails) can reach storage and de-anonymise a tipster.

use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

/// Longest side of the stored photo, in pixels. Larger photos are downscaled.
const MAX_SIDE: u32 = 2560;
/// JPEG quality of the re-encoded photo.
const JPEG_QUALITY: u8 = 82;
/// Worst-case decoded bytes per pixel for the accepted formats (16-bit RGBA PNG).
const MAX_BYTES_PER_PIXEL: u64 = 8;
/// Allowance for decoder-internal buffers (zlib window, row buffers, tables).
const DECODER_SLACK_BYTES: u64 = 16 * 1024 * 1024;

/// Longest side the decoder accepts, whatever the pixel count (checked from the header).
const MAX_DECODE_SIDE: u32 = 16_384;

/// Photos decoded at once in this process: decoding a large photo takes hundreds of
/// megabytes for a moment, so concurrent uploads wait their turn here instead of adding
/// up. Set once by [`set_decoders`] (the `photo_decoders` setting), else one less than the
/// cores (at least one): a core stays free for text tips while photos are decoded.
static DECODERS: OnceLock<Arc<Semaphore>> = OnceLock::new();

fn decoders() -> Arc<Semaphore> {
    DECODERS
        .get_or_init(|| Arc::new(Semaphore::new(default_decoders())))
        .clone()
}

fn default_decoders() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Sets how many photos this process decodes at once (0: one less than the cores, at
/// least one). The
/// first call wins: the bound is process-wide, as the memory it protects.
pub fn set_decoders(n: usize) {
    let n = if n == 0 { default_decoders() } else { n };
    let _ = DECODERS.set(Arc::new(Semaphore::new(n)));
}

/// Sanitizes photos one after the other off the async threads, each decode holding one of
/// the process's decoding places; stops at the first refusal.
pub async fn sanitize_all(
    photos: Vec<Vec<u8>>,
    limits: PhotoLimits,
) -> Vec<Result<CleanPhoto, PhotoError>> {
    let decoders = decoders();
    let mut results = Vec::with_capacity(photos.len());
    for photo in photos {
        let Ok(permit) = decoders.clone().acquire_owned().await else {
            results.push(Err(PhotoError::Corrupt));
            break;
        };
        let result = tokio::task::spawn_blocking(move || {
            let result = sanitize(&photo, &limits);
            drop(permit);
            result
        })
        .await
        .unwrap_or(Err(PhotoError::Corrupt));
        let refused = result.is_err();
        results.push(result);
        if refused {
            break;
        }
    }
    results
}

/// Limits on an uploaded photo.
///
/// Both limits are enforced before any pixel data is decoded.
#[derive(Debug, Clone, Copy)]
pub struct PhotoLimits {
    /// Maximum size of the uploaded file, in bytes (inclusive).
    pub max_bytes: usize,
    /// Maximum `width * height` declared by the image header (inclusive).
    pub max_pixels: u64,
}

impl Default for PhotoLimits {
    /// 10 MiB and 40 megapixels: enough for any phone camera.
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
        }
    }
}

/// Why a photo was refused. Every failure of [`sanitize`] is one of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum PhotoError {
    /// The file is larger than [`PhotoLimits::max_bytes`].
    #[error("photo file is too large")]
    TooLarge,
    /// The header declares more than [`PhotoLimits::max_pixels`] pixels.
    #[error("photo has too many pixels")]
    TooManyPixels,
    /// The content is not JPEG, PNG or WebP (judged by magic bytes).
    #[error("photo type is not supported")]
    UnsupportedType,
    /// The content looked like a supported type but could not be decoded.
    #[error("photo is corrupt")]
    Corrupt,
}

impl PhotoError {
    /// Stable machine-readable code, used as a localisation key.
    pub fn code(&self) -> &'static str {
        match self {
            PhotoError::TooLarge => "error.photo_too_large",
            PhotoError::TooManyPixels => "error.photo_too_many_pixels",
            PhotoError::UnsupportedType => "error.photo_unsupported_type",
            PhotoError::Corrupt => "error.photo_corrupt",
        }
    }
}

/// A sanitized photo: a baseline JPEG with no metadata segments.
#[derive(Debug, Clone)]
pub struct CleanPhoto {
    /// The re-encoded JPEG; its only APPn segment is the JFIF APP0 header.
    pub jpeg: Vec<u8>,
    /// Width of `jpeg` in pixels (after orientation and downscaling).
    pub width: u32,
    /// Height of `jpeg` in pixels (after orientation and downscaling).
    pub height: u32,
}

/// Decodes, applies EXIF orientation, re-encodes as JPEG with no metadata.
///
/// Accepts JPEG, PNG and WebP, detected from the content itself. The output is
/// upright (EXIF orientation baked into the pixels), at most 2560 px on its
/// long side, with transparency flattened onto white, and carries no EXIF,
/// GPS, XMP, ICC profile or comment. Size limits are checked before decoding,
/// memory used by the decoder is bounded by `limits`, and the function never
/// panics on any input.
pub fn sanitize(bytes: &[u8], limits: &PhotoLimits) -> Result<CleanPhoto, PhotoError> {
    // The decoders are fuzzed upstream, but these bytes come from the internet:
    // a latent decoder panic must become a refusal, not a crashed request.
    // (Only effective with panic = "unwind", the default.)
    panic::catch_unwind(AssertUnwindSafe(|| sanitize_inner(bytes, limits)))
        .unwrap_or(Err(PhotoError::Corrupt))
}

fn sanitize_inner(bytes: &[u8], limits: &PhotoLimits) -> Result<CleanPhoto, PhotoError> {
    if bytes.len() > limits.max_bytes {
        return Err(PhotoError::TooLarge);
    }
    let format = sniff_format(bytes).ok_or(PhotoError::UnsupportedType)?;

    // PNG's IHDR sits at a fixed offset, so a bomb is refused before the
    // decoder even walks the chunk list.
    if let Some((w, h)) = png_ihdr_dimensions(bytes) {
        check_pixels(w, h, limits)?;
    }
    // A palette that is not whole RGB triples panics the png crate (0.18.1) while it
    // expands it: refused before decoding (the `catch_unwind` above stays as the net).
    if png_palette_malformed(bytes) {
        return Err(PhotoError::Corrupt);
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits(limits));
    // Only headers are parsed here; no pixel data yet.
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, limits)?;

    // A missing or malformed EXIF block just means "upright": orientation is
    // cosmetic and must not make an otherwise good photo fail.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);

    let mut img = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;

    // Downscale before rotating: the long-side bound is rotation-invariant,
    // and rotating the smaller image costs less memory. `thumbnail` averages each output
    // pixel's area straight into the output: `resize` first filled a 32-bit float copy
    // of every column (92 MB for a 12-megapixel photo), which with the decoded pixels
    // made a 10 MB upload cost a few hundred megabytes (issue 15).
    if img.width() > MAX_SIDE || img.height() > MAX_SIDE {
        img = img.thumbnail(MAX_SIDE, MAX_SIDE);
    }
    img.apply_orientation(orientation);

    let rgb = flatten_to_rgb(img);
    let (width, height) = rgb.dimensions();

    // A fresh encoder writes only SOI, JFIF APP0, tables and scan data; we never
    // hand it EXIF or ICC, so no metadata can be carried over.
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|_| PhotoError::Corrupt)?;

    Ok(CleanPhoto {
        jpeg,
        width,
        height,
    })
}

/// Identifies the accepted formats by magic bytes only; declared types lie.
fn sniff_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else {
        None
    }
}

/// Width and height from a PNG's leading IHDR chunk, if present.
fn png_ihdr_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
    Some((w, h))
}

/// Whether a PNG's palette (`PLTE`, before the first `IDAT`) is empty, longer than 256
/// entries or not a whole number of RGB triples. Not a PNG, or no palette: `false`.
fn png_palette_malformed(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return false;
    }
    let mut at = 8usize;
    while let (Some(len), Some(kind)) = (bytes.get(at..at + 4), bytes.get(at + 4..at + 8)) {
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        match kind {
            b"PLTE" => return len == 0 || !len.is_multiple_of(3) || len > 3 * 256,
            b"IDAT" | b"IEND" => return false,
            _ => {}
        }
        // Length, type, data, CRC; a length past the end ends the walk.
        match at.checked_add(12).and_then(|a| a.checked_add(len)) {
            Some(next) if next <= bytes.len() => at = next,
            _ => return false,
        }
    }
    false
}

fn check_pixels(w: u32, h: u32, limits: &PhotoLimits) -> Result<(), PhotoError> {
    if w == 0 || h == 0 {
        return Err(PhotoError::Corrupt);
    }
    if w > MAX_DECODE_SIDE || h > MAX_DECODE_SIDE || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(PhotoError::TooManyPixels);
    }
    Ok(())
}

/// Decoder limits derived from `max_pixels`, as a second line of defence
/// should a header check above be bypassed by a decoder quirk.
fn decoder_limits(limits: &PhotoLimits) -> image::Limits {
    let side = u32::try_from(limits.max_pixels)
        .unwrap_or(u32::MAX)
        .min(MAX_DECODE_SIDE);
    let mut l = image::Limits::default();
    l.max_image_width = Some(side);
    l.max_image_height = Some(side);
    l.max_alloc = Some(
        limits
            .max_pixels
            .saturating_mul(MAX_BYTES_PER_PIXEL)
            .saturating_add(DECODER_SLACK_BYTES),
    );
    l
}

fn map_image_error(e: ImageError) -> PhotoError {
    match e {
        ImageError::Limits(_) => PhotoError::TooManyPixels,
        _ => PhotoError::Corrupt,
    }
}

/// Converts to 8-bit RGB, compositing any transparency over white. Simply
/// dropping alpha would expose whatever colours hide under transparent pixels.
fn flatten_to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(src[3]);
        for c in 0..3 {
            let v = u16::from(src[c]) * a + 255 * (255 - a);
            dst[c] = ((v + 127) / 255) as u8;
        }
    }
    out
}

/// Photo fixtures for tests (here rather than in a test module so that the integration
/// tests build the same EXIF-laden photos).
#[doc(hidden)]
pub mod fixtures {
    /// GPS latitude 48/1, 51/1, 2964/100 as little-endian RATIONALs; a byte
    /// pattern that cannot appear by chance in the re-encoded output.
    pub const GPS_LAT: [u8; 24] = [
        48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 0x94, 0x0B, 0, 0, 100, 0, 0, 0,
    ];

    /// Hand-built little-endian TIFF: IFD0 {Orientation, GPSInfo pointer},
    /// GPS IFD {LatitudeRef "N", Latitude}.
    pub fn exif_tiff(orientation: u16) -> Vec<u8> {
        fn entry(t: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: [u8; 4]) {
            t.extend_from_slice(&tag.to_le_bytes());
            t.extend_from_slice(&typ.to_le_bytes());
            t.extend_from_slice(&count.to_le_bytes());
            t.extend_from_slice(&value);
        }
        const SHORT: u16 = 3;
        const LONG: u16 = 4;
        const ASCII: u16 = 2;
        const RATIONAL: u16 = 5;
        // Layout: header(8) | IFD0 at 8: 2 + 2*12 + 4 = 30 -> GPS IFD at 38:
        // 2 + 2*12 + 4 = 30 -> rational data at 68.
        let ifd0 = 8u32;
        let gps_ifd = ifd0 + 30;
        let lat_data = gps_ifd + 30;

        let mut t = Vec::new();
        t.extend_from_slice(b"II");
        t.extend_from_slice(&42u16.to_le_bytes());
        t.extend_from_slice(&ifd0.to_le_bytes());

        t.extend_from_slice(&2u16.to_le_bytes());
        let o = orientation.to_le_bytes();
        entry(&mut t, 0x0112, SHORT, 1, [o[0], o[1], 0, 0]);
        entry(&mut t, 0x8825, LONG, 1, gps_ifd.to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(t.len() as u32, gps_ifd);

        t.extend_from_slice(&2u16.to_le_bytes());
        entry(&mut t, 0x0001, ASCII, 2, [b'N', 0, 0, 0]);
        entry(&mut t, 0x0002, RATIONAL, 3, lat_data.to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(t.len() as u32, lat_data);

        t.extend_from_slice(&GPS_LAT);
        t
    }

    pub fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(payload.len() + 2).unwrap();
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&len.to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// Inserts an Exif APP1 (with GPS) and a COM segment right after SOI.
    pub fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&exif_tiff(orientation));
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&segment(0xE1, &app1));
        out.extend_from_slice(&segment(0xFE, b"secret-comment-tinbao"));
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    /// PNGs found by the fuzzer (2026-12-03): a 13-byte palette (not a multiple of 3)
    /// makes the png crate 0.18.1 panic while expanding it ("range end index 3 out of
    /// range for slice of length 1", `decoder/transform/palette.rs:74`), in production
    /// builds too once the chunks' CRCs are right (`png-palette-panic-valid-crc`). The
    /// panic must stay inside `sanitize`: the photo is refused as unreadable.
    #[test]
    fn a_png_that_panics_the_decoder_is_refused_not_a_crash() {
        for bytes in [
            &include_bytes!("../../fuzz/corpus/photo_decode/crash-png-palette-range")[..],
            &include_bytes!("../../fuzz/corpus/photo_decode/png-palette-panic-valid-crc")[..],
        ] {
            assert_eq!(
                sanitize(bytes, &PhotoLimits::default()).err(),
                Some(PhotoError::Corrupt)
            );
            // Refused before the decoder sees it, not only caught.
            assert!(png_palette_malformed(bytes));
        }
        assert!(!png_palette_malformed(b"GIF89a"));
    }

    /// Baseline JPEGs found by the `photo_decode` campaign (2026-12-03) make zune-jpeg
    /// 0.5.15 (the newest the `image` crate takes) panic in its inverse DCT: the AVX2 4×4
    /// one (`idct/avx2.rs`, an `unwrap` on a slice past the output's end) and the scalar
    /// one (`idct/scalar.rs`, a slice out of range); the decoder stops there rather than
    /// writing past it. It cannot be told from a good JPEG by its
    /// header, so the panic is caught inside `sanitize` and the photo refused as
    /// unreadable; the server goes on. Kept outside the fuzz corpus (a caught panic still
    /// stops libFuzzer), in `fuzz/regressions/`.
    #[test]
    fn a_jpeg_that_panics_the_decoder_is_refused_not_a_crash() {
        for bytes in [
            &include_bytes!(
                "../../fuzz/regressions/photo_decode/zune-jpeg-idct-avx2-4x4-unwrap.jpg"
            )[..],
            &include_bytes!(
                "../../fuzz/regressions/photo_decode/zune-jpeg-idct-avx2-4x4-unwrap-2.jpg"
            )[..],
            &include_bytes!("../../fuzz/regressions/photo_decode/zune-jpeg-idct-scalar-range.jpg")
                [..],
        ] {
            assert_eq!(
                sanitize(bytes, &PhotoLimits::default()).err(),
                Some(PhotoError::Corrupt)
            );
            let small = PhotoLimits {
                max_pixels: 1 << 16,
                ..PhotoLimits::default()
            };
            assert!(sanitize(bytes, &small).is_err());
        }
    }
    use image::codecs::png::PngEncoder;
    use image::codecs::webp::WebPEncoder;
    use image::{ImageEncoder, Rgb, Rgba, RgbaImage};
    use std::time::{Duration, Instant};

    // ---------- fixture builders ----------

    fn gradient_rgb(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 5) as u8, 128]))
    }

    fn encode_jpeg(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .unwrap();
        out
    }

    fn encode_png_rgba(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgba8,
            )
            .unwrap();
        out
    }

    fn encode_webp(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        WebPEncoder::new_lossless(&mut out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgba8,
            )
            .unwrap();
        out
    }

    /// Markers of all segments before the first SOS.
    fn jpeg_markers(jpeg: &[u8]) -> Vec<u8> {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let mut i = 2;
        let mut markers = Vec::new();
        while i + 4 <= jpeg.len() {
            assert_eq!(jpeg[i], 0xFF, "bad segment at {i}");
            let m = jpeg[i + 1];
            markers.push(m);
            if m == 0xDA {
                break;
            }
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            i += 2 + len;
        }
        markers
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        c.extend_from_slice(&body);
        c.extend_from_slice(&crc32(&body).to_be_bytes());
        c
    }

    /// A PNG whose IHDR claims `w`x`h` RGBA but whose IDAT holds a few bytes.
    fn lying_png(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
        // A valid empty zlib stream: decodes to nothing.
        png.extend_from_slice(&png_chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0, 0, 0, 1]));
        png.extend_from_slice(&png_chunk(b"IEND", &[]));
        png
    }

    fn ok(bytes: &[u8]) -> CleanPhoto {
        sanitize(bytes, &PhotoLimits::default()).expect("should sanitize")
    }

    fn err(bytes: &[u8]) -> PhotoError {
        sanitize(bytes, &PhotoLimits::default()).expect_err("should be refused")
    }

    // ---------- tests ----------

    #[test]
    fn exif_gps_and_comments_are_stripped() {
        let input = with_exif(&encode_jpeg(&gradient_rgb(32, 24)), 1);
        // Sanity: the fixture really carries what we are about to strip.
        assert!(contains(&input, b"Exif\0\0"));
        assert!(contains(&input, &GPS_LAT));
        assert!(jpeg_markers(&input).contains(&0xE1));

        let out = ok(&input);
        assert_eq!((out.width, out.height), (32, 24));
        let markers = jpeg_markers(&out.jpeg);
        assert!(!markers.contains(&0xE1), "APP1 survived: {markers:x?}");
        assert!(!markers.contains(&0xFE), "COM survived: {markers:x?}");
        // Only APP0 (JFIF) is allowed among APP0..APP15.
        assert!(markers.iter().all(|&m| !(0xE1..=0xEF).contains(&m)));
        assert!(!contains(&out.jpeg, b"Exif"));
        assert!(!contains(&out.jpeg, &GPS_LAT));
        assert!(!contains(&out.jpeg, b"secret-comment"));
    }

    #[test]
    fn orientation_6_rotates_clockwise() {
        // 40x20: top half red, bottom half blue.
        let img = RgbImage::from_fn(40, 20, |_, y| {
            if y < 10 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let out = ok(&with_exif(&encode_jpeg(&img), 6));
        assert_eq!((out.width, out.height), (20, 40));

        // 90° CW: the original top edge becomes the right edge.
        let decoded = image::load_from_memory(&out.jpeg).unwrap().into_rgb8();
        assert_eq!(decoded.dimensions(), (20, 40));
        let right = decoded.get_pixel(15, 20);
        let left = decoded.get_pixel(4, 20);
        assert!(right[0] > 200 && right[2] < 60, "right = {right:?}");
        assert!(left[2] > 200 && left[0] < 60, "left = {left:?}");
    }

    #[test]
    fn all_orientations_give_expected_dimensions() {
        let base = encode_jpeg(&gradient_rgb(40, 20));
        for o in 1..=8u16 {
            let out = ok(&with_exif(&base, o));
            let expect = if o >= 5 { (20, 40) } else { (40, 20) };
            assert_eq!((out.width, out.height), expect, "orientation {o}");
        }
    }

    #[test]
    fn png_bomb_is_refused_quickly() {
        let bomb = lying_png(100_000, 100_000);
        assert!(bomb.len() < 100);
        let start = Instant::now();
        assert_eq!(err(&bomb), PhotoError::TooManyPixels);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn an_overlong_side_is_refused_from_the_header() {
        // 20000x10 is few pixels, but no phone takes it: refused before decoding.
        assert_eq!(err(&lying_png(20_000, 10)), PhotoError::TooManyPixels);
        assert_eq!(err(&lying_png(10, 20_000)), PhotoError::TooManyPixels);
    }

    #[tokio::test]
    async fn sanitize_all_stops_at_the_first_refusal() {
        let good = encode_jpeg(&gradient_rgb(40, 20));
        let results = sanitize_all(
            vec![good.clone(), b"junk".to_vec(), good],
            PhotoLimits::default(),
        )
        .await;
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err(),
            &PhotoError::UnsupportedType
        );
    }

    #[test]
    fn lying_header_within_limits_is_corrupt() {
        // Claims 1000x1000 but carries no pixel data: bounded by max_pixels,
        // then refused as corrupt.
        let limits = PhotoLimits {
            max_pixels: 1_000_000,
            ..PhotoLimits::default()
        };
        assert_eq!(
            sanitize(&lying_png(1000, 1000), &limits).unwrap_err(),
            PhotoError::Corrupt
        );
    }

    #[test]
    fn pixel_limit_applies_to_jpeg_and_webp_too() {
        let limits = PhotoLimits {
            max_pixels: 40 * 20 - 1,
            ..PhotoLimits::default()
        };
        let jpeg = encode_jpeg(&gradient_rgb(40, 20));
        let webp = encode_webp(&DynamicImage::ImageRgb8(gradient_rgb(40, 20)).into_rgba8());
        assert_eq!(
            sanitize(&jpeg, &limits).unwrap_err(),
            PhotoError::TooManyPixels
        );
        assert_eq!(
            sanitize(&webp, &limits).unwrap_err(),
            PhotoError::TooManyPixels
        );
        let exact = PhotoLimits {
            max_pixels: 40 * 20,
            ..limits
        };
        assert!(sanitize(&jpeg, &exact).is_ok());
    }

    #[test]
    fn oversize_bytes_are_too_large() {
        let png = encode_png_rgba(&RgbaImage::new(16, 16));
        let tight = PhotoLimits {
            max_bytes: png.len() - 1,
            ..PhotoLimits::default()
        };
        assert_eq!(sanitize(&png, &tight).unwrap_err(), PhotoError::TooLarge);
        let exact = PhotoLimits {
            max_bytes: png.len(),
            ..tight
        };
        assert!(sanitize(&png, &exact).is_ok());
        // Checked before sniffing: junk over the limit is TooLarge too.
        let junk = vec![0u8; 11 * 1024 * 1024];
        assert_eq!(err(&junk), PhotoError::TooLarge);
    }

    #[test]
    fn unsupported_types_are_refused() {
        let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        assert_eq!(err(gif), PhotoError::UnsupportedType);
        assert_eq!(err(b"BM\x3a\x00\x00\x00"), PhotoError::UnsupportedType);
        assert_eq!(
            err(b"hello, this is a text file"),
            PhotoError::UnsupportedType
        );
        assert_eq!(err(b""), PhotoError::UnsupportedType);
        assert_eq!(err(&[0xFF, 0xD8]), PhotoError::UnsupportedType);
        assert_eq!(err(b"RIFF\0\0\0\0WAVEfmt "), PhotoError::UnsupportedType);
        let mut rng = XorShift(0x1234_5678_9abc_def0);
        let random: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        // Random bytes with a first byte that is none of the magics.
        let mut random = random;
        random[0] = 0x00;
        assert_eq!(err(&random), PhotoError::UnsupportedType);
    }

    #[test]
    fn truncated_or_damaged_is_corrupt() {
        let jpeg = encode_jpeg(&gradient_rgb(64, 64));
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        // Cut inside the headers, right before the scan.
        assert_eq!(err(&jpeg[..sos]), PhotoError::Corrupt);
        assert_eq!(err(&jpeg[..20]), PhotoError::Corrupt);
        let png = encode_png_rgba(&RgbaImage::new(64, 64));
        assert_eq!(err(&png[..png.len() / 2]), PhotoError::Corrupt);
        assert_eq!(err(&png[..30]), PhotoError::Corrupt);
        let webp = encode_webp(&RgbaImage::new(64, 64));
        assert_eq!(err(&webp[..webp.len() / 2]), PhotoError::Corrupt);
        assert_eq!(err(&lying_png(0, 10)), PhotoError::Corrupt);
    }

    #[test]
    fn png_and_webp_become_jpeg() {
        let img = RgbaImage::from_fn(30, 17, |x, y| Rgba([x as u8 * 8, y as u8 * 15, 90, 255]));
        for input in [encode_png_rgba(&img), encode_webp(&img)] {
            let out = ok(&input);
            assert_eq!(&out.jpeg[..3], &[0xFF, 0xD8, 0xFF]);
            assert_eq!((out.width, out.height), (30, 17));
            let back = image::load_from_memory(&out.jpeg).unwrap();
            assert_eq!((back.width(), back.height()), (30, 17));
        }
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        // Fully transparent pixels whose hidden colour is black.
        let img = RgbaImage::from_pixel(16, 16, Rgba([0, 0, 0, 0]));
        let out = ok(&encode_png_rgba(&img));
        let back = image::load_from_memory(&out.jpeg).unwrap().into_rgb8();
        assert!(back.pixels().all(|p| p.0.iter().all(|&c| c > 245)));
    }

    #[test]
    fn long_side_is_capped() {
        let img = RgbaImage::from_pixel(3000, 1000, Rgba([10, 200, 30, 255]));
        let out = ok(&encode_png_rgba(&img));
        assert_eq!(out.width, 2560);
        assert!((853..=854).contains(&out.height), "height {}", out.height);
        // Rotation is applied too when downscaling.
        let jpeg = encode_jpeg(&RgbImage::from_pixel(2600, 100, Rgb([1, 2, 3])));
        let out = ok(&with_exif(&jpeg, 8));
        assert_eq!(out.height, 2560);
        assert!(out.width <= 100);
    }

    #[test]
    fn codes_and_defaults() {
        assert_eq!(PhotoError::TooLarge.code(), "error.photo_too_large");
        assert_eq!(
            PhotoError::TooManyPixels.code(),
            "error.photo_too_many_pixels"
        );
        assert_eq!(
            PhotoError::UnsupportedType.code(),
            "error.photo_unsupported_type"
        );
        assert_eq!(PhotoError::Corrupt.code(), "error.photo_corrupt");
        let d = PhotoLimits::default();
        assert_eq!(d.max_bytes, 10 * 1024 * 1024);
        assert_eq!(d.max_pixels, 40_000_000);
    }

    // ---------- property-style robustness ----------

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Mutates `seed` in place: byte flips, truncation, splices, chunk copies.
    fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + rng.below(8) {
            match rng.below(5) {
                0 | 1 => {
                    let i = rng.below(v.len().max(1));
                    if let Some(b) = v.get_mut(i) {
                        *b = rng.next() as u8;
                    }
                }
                2 => {
                    let keep = rng.below(v.len() + 1);
                    v.truncate(keep);
                }
                3 => {
                    let i = rng.below(v.len() + 1);
                    let extra: Vec<u8> = (0..rng.below(32)).map(|_| rng.next() as u8).collect();
                    v.splice(i..i, extra);
                }
                _ => {
                    // Extreme values in a likely header field.
                    let i = rng.below(v.len().clamp(1, 64));
                    if let Some(b) = v.get_mut(i) {
                        *b = if rng.next() & 1 == 0 { 0xFF } else { 0x00 };
                    }
                }
            }
        }
        v
    }

    /// Calls the unguarded pipeline, so a decoder panic fails the test
    /// instead of being hidden by `sanitize`'s catch_unwind.
    fn assert_no_panic(bytes: &[u8], limits: &PhotoLimits) {
        let _ = sanitize_inner(bytes, limits);
    }

    #[test]
    fn random_bytes_never_panic() {
        let limits = PhotoLimits {
            max_bytes: 1 << 20,
            max_pixels: 256 * 256,
        };
        let magics: [&[u8]; 4] = [
            &[0xFF, 0xD8, 0xFF],
            b"\x89PNG\r\n\x1a\n",
            b"RIFF\x40\x00\x00\x00WEBPVP8 ",
            b"",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let mut v = magics[rng.below(magics.len())].to_vec();
            let n = rng.below(600);
            v.extend((0..n).map(|_| rng.next() as u8));
            assert_no_panic(&v, &limits);
        }
    }

    #[test]
    fn mutated_images_never_panic() {
        let limits = PhotoLimits {
            max_bytes: 1 << 20,
            max_pixels: 256 * 256,
        };
        let img = RgbaImage::from_fn(24, 16, |x, y| Rgba([x as u8 * 9, y as u8 * 13, 7, 200]));
        let seeds = [
            with_exif(&encode_jpeg(&gradient_rgb(24, 16)), 6),
            encode_png_rgba(&img),
            encode_webp(&img),
        ];
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        for i in 0..3000 {
            let v = mutate(&mut rng, &seeds[i % seeds.len()]);
            assert_no_panic(&v, &limits);
        }
    }
}
