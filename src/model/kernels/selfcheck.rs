//! lecal's own kernels checked at their first use on a device, before any run trains with
//! them: each against candle's operations on the CPU, on small random inputs (well under
//! a second). Checked: the convolution (forward, input and weight gradients; ungrouped
//! with stride 1 and 2, and grouped as a fused network's) and the linear layers' matrix
//! product (forward and both gradients).
//!
//! A kernel that disagrees is not used: the process falls back to candle's path for it,
//! warns naming it, and every run trained with the kernels records the fallback
//! (`fallbacks` in run.toml's device details). The check runs once per device and choice
//! of kernels in a process.
//!
//! `LECAL_FAULT_INJECT=conv` (or `matmul`) negates that kernel's first result inside the
//! check: how the tests make it fail without a faulty kernel.

use super::{conv, matmul, ConvKernel, Kernels};
use crate::rng::Rng;
use candle_core::{Device, Result, Tensor};
use std::sync::Mutex;

/// The kernels to build models with after the check, and what fell back.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub kernels: Kernels,
    /// One line per kernel that disagreed: which, on which device, by how much.
    pub fallbacks: Vec<String>,
}

/// The largest difference allowed, relative to the reference's largest magnitude: far
/// above float32 rounding and TF32's 10-bit mantissa (cuDNN may use it), far below what a
/// wrong kernel gives (a wrong index, layout or algorithm is off by the values themselves).
const TOLERANCE: f32 = 2e-2;

/// The environment variable that injects a fault into one kernel's check.
pub const FAULT_INJECT: &str = "LECAL_FAULT_INJECT";

static DONE: Mutex<Vec<(String, Kernels, Checked)>> = Mutex::new(Vec::new());

/// `kernels` on `device`, checked (once per process for each device and choice).
pub fn checked(kernels: Kernels, device: &Device) -> Checked {
    let key = format!("{:?}", device.location());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, c)) = done.iter().find(|(d, k, _)| *d == key && *k == kernels) {
        return c.clone();
    }
    let c = check(kernels, device);
    for line in &c.fallbacks {
        eprintln!("warning: {line}");
    }
    done.push((key, kernels, c.clone()));
    c
}

fn check(mut kernels: Kernels, device: &Device) -> Checked {
    let mut fallbacks = Vec::new();
    let on = match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
    };
    let fault = std::env::var(FAULT_INJECT).unwrap_or_default();
    if kernels.conv.lecal_on(device) {
        if let Some(why) = disagreement(|| conv_case(kernels, device), fault == "conv") {
            fallbacks.push(format!(
                "lecal's convolution on {on} disagrees with candle's on the CPU ({why}): \
                 candle's convolution is used instead"
            ));
            kernels.conv = ConvKernel::Candle;
        }
    }
    if kernels.lecal_matmul_on(device) {
        if let Some(why) = disagreement(|| matmul_case(kernels, device), fault == "matmul") {
            fallbacks.push(format!(
                "lecal's matrix product on {on} disagrees with candle's on the CPU ({why}): \
                 candle's matrix product is used instead"
            ));
            kernels.lecal_matmul = false;
        }
    }
    Checked { kernels, fallbacks }
}

/// The outputs of a case on the device and on the CPU with candle's kernels, by name.
type Case = Result<Vec<(&'static str, Tensor, Tensor)>>;

/// Why a case disagrees (the first output off by more than `TOLERANCE`, or the error it
/// raised), or `None`; `inject` negates the device's first output.
fn disagreement(case: impl FnOnce() -> Case, inject: bool) -> Option<String> {
    let outputs = match case() {
        Ok(o) => o,
        Err(e) => return Some(format!("it failed: {e}")),
    };
    for (i, (what, ours, reference)) in outputs.into_iter().enumerate() {
        let ours = match inject && i == 0 {
            true => ours.neg(),
            false => Ok(ours),
        };
        match ours.and_then(|ours| relative_difference(&ours, &reference)) {
            Ok(d) if d <= TOLERANCE => {}
            Ok(d) => return Some(format!("{what} off by {d:.2e} of its largest value")),
            Err(e) => return Some(format!("{what}: {e}")),
        }
    }
    None
}

/// `max |a - b| / max |b|`, both brought to the CPU.
fn relative_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
    let a = a.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let b = b.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    if a.len() != b.len() {
        candle_core::bail!("{} values against {}", a.len(), b.len());
    }
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(&b) {
        let d = (x - y).abs();
        if !d.is_finite() {
            return Ok(f32::INFINITY);
        }
        worst = worst.max(d);
    }
    Ok(worst / scale)
}

/// A seeded random tensor on `device`.
fn random(dims: &[usize], rng: &mut Rng, device: &Device) -> Result<Tensor> {
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(v, dims, device)
}

/// `f(x, w)` and the gradients of `sum(f(x, w) · m)` for x and w: the output, dx, dw.
fn with_gradients(
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    (x, w, m): (&Tensor, &Tensor, &Tensor),
) -> Result<[Tensor; 3]> {
    let (xv, wv) = (
        candle_core::Var::from_tensor(x)?,
        candle_core::Var::from_tensor(w)?,
    );
    let y = f(xv.as_tensor(), wv.as_tensor())?;
    let grads = (&y * m)?.sum_all()?.backward()?;
    let grad = |v: &candle_core::Var| {
        (grads.get(v).cloned()).ok_or_else(|| candle_core::Error::Msg("no gradient".into()))
    };
    Ok([y, grad(&xv)?, grad(&wv)?])
}

/// The convolution: (batch, channels in, out, stride, groups) on 6×6 images, 3×3.
fn conv_case(kernels: Kernels, device: &Device) -> Case {
    let mut rng = Rng::stream(0, "kernel self-check", &[0]);
    let mut out = Vec::new();
    for (n, cin, cout, stride, groups) in [(3, 8, 16, 1, 1), (2, 8, 8, 2, 1), (2, 12, 12, 1, 3)] {
        let x = random(&[n, cin, 6, 6], &mut rng, &Device::Cpu)?;
        let w = random(&[cout, cin / groups, 3, 3], &mut rng, &Device::Cpu)?;
        let oh = (6 + 2 - 3) / stride + 1;
        let m = random(&[n, cout, oh, oh], &mut rng, &Device::Cpu)?;
        let on = |t: &Tensor| t.to_device(device);
        let ours = with_gradients(
            |x, w| conv::conv2d_grouped(x, w, stride, 1, groups, kernels),
            (&on(&x)?, &on(&w)?, &on(&m)?),
        )?;
        let reference = with_gradients(|x, w| x.conv2d(w, 1, stride, 1, groups), (&x, &w, &m))?;
        for (what, (a, b)) in ["output", "input gradient", "weight gradient"]
            .into_iter()
            .zip(ours.into_iter().zip(reference))
        {
            out.push((what, a, b));
        }
    }
    Ok(out)
}

/// The linear layers' product `x · Wᵀ`: 5×24 by 24→7.
fn matmul_case(kernels: Kernels, device: &Device) -> Case {
    let mut rng = Rng::stream(0, "kernel self-check", &[1]);
    let x = random(&[5, 24], &mut rng, &Device::Cpu)?;
    let w = random(&[7, 24], &mut rng, &Device::Cpu)?;
    let m = random(&[5, 7], &mut rng, &Device::Cpu)?;
    let on = |t: &Tensor| t.to_device(device);
    let ours = with_gradients(
        |x, w| matmul::linear(x, w, None, kernels),
        (&on(&x)?, &on(&w)?, &on(&m)?),
    )?;
    let reference = with_gradients(|x, w| x.matmul(&w.t()?), (&x, &w, &m))?;
    let names = ["product", "its gradient for x", "its gradient for W"];
    Ok((names.into_iter().zip(ours.into_iter().zip(reference)))
        .map(|(what, (a, b))| (what, a, b))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_kernels_pass_their_check_and_an_injected_fault_falls_back() {
        let k = Kernels::lecal();
        let c = check(k, &Device::Cpu);
        assert_eq!(
            c,
            Checked {
                kernels: k,
                fallbacks: Vec::new()
            }
        );
        let bad = disagreement(|| conv_case(k, &Device::Cpu), true).unwrap();
        assert!(bad.starts_with("output off by"), "{bad}");
        assert_eq!(disagreement(|| matmul_case(k, &Device::Cpu), false), None);
    }
}
