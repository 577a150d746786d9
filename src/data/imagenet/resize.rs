//! Antialiased bilinear resampling of 8-bit RGB images, computed as Pillow computes
//! `Image.resize(size, BILINEAR)` (its `ImagingResample`): a triangle filter widened by the
//! scale factor when shrinking, coefficients in 22-bit fixed point, the horizontal pass
//! first, rounded and clamped to bytes between the passes. torchvision's transforms on
//! PIL images resample this way, so lecal's crops equal theirs value for value.
//!
//! Each output pixel depends only on the coefficients of its row and column, so a window
//! of the output (the centre crop of the evaluation transform) is computed alone, without
//! the rest of the resized image.

/// An RGB image, 3 bytes per pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Pillow's `PRECISION_BITS` for 8-bit images: 32 - 8 - 2.
const PRECISION: u32 = 22;

/// The filter taps of each output coordinate along one axis: the first source index,
/// how many taps, and the fixed-point weights (`taps` per output, zero-filled).
struct Coeffs {
    start: Vec<usize>,
    count: Vec<usize>,
    taps: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size` source pixels
/// mapped onto `out_size` outputs, of which only `first..first + len` are wanted.
fn coeffs(in_size: usize, out_size: usize, first: usize, len: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1
    let taps = support.ceil() as usize * 2 + 1;
    let mut c = Coeffs {
        start: Vec::with_capacity(len),
        count: Vec::with_capacity(len),
        taps,
        weights: vec![0; len * taps],
    };
    let mut w = vec![0f64; taps];
    for (o, xx) in (first..first + len).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(xmax) {
            let d = ((x + xmin) as f64 - center + 0.5) / filter_scale;
            *wx = (1.0 - d.abs()).max(0.0);
            total += *wx;
        }
        let row = &mut c.weights[o * taps..o * taps + xmax];
        for (cw, &wx) in row.iter_mut().zip(&w[..xmax]) {
            let v = if total != 0.0 { wx / total } else { wx };
            let f = v * f64::from(1u32 << PRECISION);
            *cw = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        c.start.push(xmin);
        c.count.push(xmax);
    }
    c
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION).clamp(0, 255) as u8
}

/// The `window` (x, y, width, height) of `src`'s region `region` (x, y, width, height)
/// resized to `out_w × out_h`, as Pillow's `img.crop(region).resize((out_w, out_h),
/// BILINEAR)` followed by a crop to `window`. Returns `window`'s RGB bytes.
pub fn resize(
    src: &Rgb,
    region: (usize, usize, usize, usize),
    out_w: usize,
    out_h: usize,
    window: (usize, usize, usize, usize),
) -> Rgb {
    let (rx, ry, rw, rh) = region;
    let (wx, wy, ww, wh) = window;
    assert!(
        rx + rw <= src.width && ry + rh <= src.height,
        "region outside the image"
    );
    assert!(
        wx + ww <= out_w && wy + wh <= out_h,
        "window outside the output"
    );
    let vertical = rh != out_h;
    let cv = coeffs(rh, out_h, wy, wh);
    // The source rows the vertical pass reads: the horizontal pass computes only these.
    let (row0, rows) = if vertical {
        let last = cv.start[wh - 1] + cv.count[wh - 1];
        (cv.start[0], last - cv.start[0])
    } else {
        (wy, wh)
    };
    let mid = horizontal_pass(src, region, out_w, window, row0, rows);
    if !vertical {
        return Rgb {
            width: ww,
            height: wh,
            pixels: mid,
        };
    }
    // Vertical pass: rows of `mid` start at `row0`.
    let mut out = vec![0u8; wh * ww * 3];
    let line = ww * 3;
    let mut acc = vec![0i32; line];
    for (o, dst) in out.chunks_exact_mut(line).enumerate() {
        acc.fill(1 << (PRECISION - 1));
        let k = &cv.weights[o * cv.taps..o * cv.taps + cv.count[o]];
        for (t, &w) in k.iter().enumerate() {
            let r = cv.start[o] - row0 + t;
            for (a, &s) in acc.iter_mut().zip(&mid[r * line..(r + 1) * line]) {
                *a += i32::from(s) * w;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    Rgb {
        width: ww,
        height: wh,
        pixels: out,
    }
}

/// The horizontal pass of `resize`: source rows `row0..row0 + rows` of `region`, each
/// resampled to the `window`'s columns of an `out_w`-wide output (or copied when the width
/// does not change).
fn horizontal_pass(
    src: &Rgb,
    region: (usize, usize, usize, usize),
    out_w: usize,
    window: (usize, usize, usize, usize),
    row0: usize,
    rows: usize,
) -> Vec<u8> {
    let (rx, ry, rw, _) = region;
    let (wx, _, ww, _) = window;
    let horizontal = rw != out_w;
    let stride = src.width * 3;
    let mut mid = vec![0u8; rows * ww * 3];
    if horizontal {
        let ch = coeffs(rw, out_w, wx, ww);
        for r in 0..rows {
            let line = &src.pixels[(ry + row0 + r) * stride + rx * 3..];
            let out = &mut mid[r * ww * 3..(r + 1) * ww * 3];
            for (o, px) in out.chunks_exact_mut(3).enumerate() {
                let k = &ch.weights[o * ch.taps..o * ch.taps + ch.count[o]];
                let s = &line[ch.start[o] * 3..];
                let mut acc = [1i32 << (PRECISION - 1); 3];
                for (t, &w) in k.iter().enumerate() {
                    acc[0] += i32::from(s[t * 3]) * w;
                    acc[1] += i32::from(s[t * 3 + 1]) * w;
                    acc[2] += i32::from(s[t * 3 + 2]) * w;
                }
                px.copy_from_slice(&[clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]);
            }
        }
    } else {
        for r in 0..rows {
            let from = (ry + row0 + r) * stride + (rx + wx) * 3;
            mid[r * ww * 3..(r + 1) * ww * 3].copy_from_slice(&src.pixels[from..from + ww * 3]);
        }
    }
    mid
}
