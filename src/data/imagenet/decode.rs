//! Reading an image file into 8-bit RGB. JPEG decoding is zune-jpeg's (pure Rust, SIMD
//! IDCT and colour conversion; `make bench` times it beside jpeg-decoder);
//! grayscale and CMYK files come out as RGB, as PIL's `convert("RGB")` makes them for
//! torchvision. A file is read by its content, as PIL opens it: ILSVRC2012's training set
//! holds a PNG named `.JPEG` (`n02105855_2933.JPEG`), decoded by zune-png. Errors name
//! the file.

use super::resize::Rgb;
use anyhow::Context;
use std::path::Path;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// Decodes JPEG bytes into RGB.
pub fn decode_jpeg(bytes: &[u8]) -> anyhow::Result<Rgb> {
    // A cut-off file decodes "successfully" into grey rows in a lenient decoder; PIL
    // refuses it ("image file is truncated"), and so does lecal: the end-of-image marker
    // must follow the image's scan data. Bytes after it (some files carry them) are fine.
    let scan = scan_start(bytes).context("not a JPEG: no scan data")?;
    anyhow::ensure!(
        bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]),
        "truncated JPEG: no end-of-image marker after the scan data"
    );
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_strict_mode(true)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = d.decode().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (width, height) = d.dimensions().context("the decoder gave no dimensions")?;
    anyhow::ensure!(
        d.output_colorspace() == Some(ColorSpace::RGB) && pixels.len() == width * height * 3,
        "decoded to {:?}, not RGB",
        d.output_colorspace()
    );
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// Where the first scan's data starts: the segments before it (EXIF and its thumbnail,
/// which has an end-of-image marker of its own, tables, the frame header) are skipped by
/// their lengths, not searched.
fn scan_start(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    loop {
        let (&ff, &marker) = (bytes.get(at)?, bytes.get(at + 1)?);
        if ff != 0xFF {
            return None;
        }
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let len = u16::from_be_bytes([*bytes.get(at + 2)?, *bytes.get(at + 3)?]) as usize;
        at += 2 + len;
        if marker == 0xDA {
            return Some(at.min(bytes.len()));
        }
    }
}

/// PNG's signature.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Decodes PNG bytes into RGB: 16-bit samples to 8, gray repeated, alpha dropped (PIL's
/// `convert("RGB")` drops it too).
pub fn decode_png(bytes: &[u8]) -> anyhow::Result<Rgb> {
    let options = DecoderOptions::default().png_set_strip_to_8bit(true);
    let mut d = zune_png::PngDecoder::new_with_options(ZCursor::new(bytes), options);
    let raw = d.decode_raw().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (width, height) = d.dimensions().context("the decoder gave no dimensions")?;
    let space = d.colorspace().context("the decoder gave no colour space")?;
    let channels = space.num_components();
    anyhow::ensure!(
        raw.len() == width * height * channels,
        "decoded {} bytes for {width}×{height} {space:?}",
        raw.len()
    );
    let pixels = match space {
        ColorSpace::RGB => raw,
        ColorSpace::RGBA => raw
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        ColorSpace::Luma | ColorSpace::LumaA => raw
            .chunks_exact(channels)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        other => anyhow::bail!("PNG colour space {other:?} is not supported"),
    };
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// Reads and decodes the image file at `path`, JPEG or PNG by its content; the error
/// names it.
pub fn load(path: &Path) -> anyhow::Result<Rgb> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(PNG) {
        return decode_png(&bytes).with_context(|| format!("decoding {} (a PNG)", path.display()));
    }
    decode_jpeg(&bytes).with_context(|| format!("decoding {}", path.display()))
}
