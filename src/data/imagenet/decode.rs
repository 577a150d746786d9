//! Reading an image file into 8-bit RGB. JPEG decoding is zune-jpeg's (pure Rust, SIMD
//! IDCT and colour conversion; not yet measured against jpeg-decoder or libjpeg-turbo);
//! grayscale and CMYK files come out as RGB, as PIL's `convert("RGB")` makes them for
//! torchvision. Errors name the file.

use super::resize::Rgb;
use anyhow::Context;
use std::path::Path;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// Decodes JPEG bytes into RGB.
pub fn decode_jpeg(bytes: &[u8]) -> anyhow::Result<Rgb> {
    // A cut-off file decodes "successfully" into grey rows in a lenient decoder; PIL
    // refuses it ("image file is truncated"), and so does lecal: the last marker must be
    // the end of image (some encoders pad a few bytes after it).
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    anyhow::ensure!(
        tail.windows(2).any(|w| w == [0xFF, 0xD9]),
        "truncated JPEG: no end-of-image marker"
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

/// Reads and decodes the image file at `path`; the error names it.
pub fn load(path: &Path) -> anyhow::Result<Rgb> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_jpeg(&bytes).with_context(|| format!("decoding {}", path.display()))
}
