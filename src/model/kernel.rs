//! What lecal's CPU custom ops (`conv.rs`, the fused batch norm) share: reading an input
//! storage as an f32 slice, and splitting the one flat output of a backward op into the
//! gradients of its arguments (a candle custom op has a single output).

use candle_core::{CpuStorage, Layout, Result, Tensor};

/// The values of a contiguous f32 input of custom op `op`.
pub fn f32_slice<'a>(op: &str, s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: {what} must be contiguous f32"),
    }
}

/// Splits `flat = [da, db, …]` into a gradient shaped like `a` and one shaped like `b`.
pub fn split_gradients(flat: &Tensor, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let na = a.elem_count();
    let da = flat.narrow(0, 0, na)?.reshape(a.shape())?;
    let db = flat.narrow(0, na, b.elem_count())?.reshape(b.shape())?;
    Ok((da, db))
}
