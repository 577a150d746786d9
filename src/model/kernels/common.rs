//! What lecal's CPU custom ops (`conv.rs`, the fused batch norm) share: reading an input
//! storage as an f32 slice, output vectors that are written once instead of zero-filled
//! first, and splitting the one flat output of a backward op into the gradients of its
//! arguments (a candle custom op has a single output).

use candle_core::{CpuStorage, Layout, Result, Tensor};
use std::mem::MaybeUninit;

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

/// Zeroes `v` and returns it as initialised.
pub fn zeroed(v: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for x in v.iter_mut() {
        x.write(0.0);
    }
    // SAFETY: every element was written just above; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(v as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A vector of `len` elements written by `fill`: outputs are not zero-filled only to be
/// overwritten.
///
/// # Safety
/// `fill` must write every one of the `len` elements.
pub unsafe fn filled_vec(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` elements (the caller's promise).
    unsafe { v.set_len(len) };
    v
}

/// A CPU tensor of standard normal values drawn from `rng` (tests).
#[cfg(test)]
pub fn random(shape: &[usize], rng: &mut crate::rng::Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu).expect("a CPU tensor")
}

/// A tensor's values, flattened (tests).
#[cfg(test)]
pub fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|f| f.to_vec1())
        .expect("f32 values")
}
