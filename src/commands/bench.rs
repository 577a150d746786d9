//! `lecal bench`: throughput of a training step, a teacher's forward pass and the data
//! pipeline, or one step on a device checked against the CPU.

use super::align_thread_pools;
use crate::device::{self, DeviceChoice};
use crate::spec::ModelName;
use anyhow::{bail, Context};
use std::path::PathBuf;

/// What `lecal bench` was asked besides the device and models.
pub struct BenchOptions {
    /// The convolution `--check` runs where it checks only one.
    pub conv: crate::model::ConvChoice,
    pub cpu_kernels: crate::model::CpuKernelChoice,
    pub baseline: bool,
    pub min_seconds: f64,
    pub parts: Vec<String>,
    pub cohort_images: usize,
    pub fused_members: Vec<usize>,
    pub imagenet_images: usize,
    pub imagenet_dir: PathBuf,
    pub csv: Option<PathBuf>,
    pub check: bool,
}

const PARTS: [&str; 6] = [
    "train",
    "teacher",
    "data",
    "cohort",
    "fused",
    "imagenet-loader",
];

/// `lecal bench`: throughput, or with `check` one step against the CPU.
pub fn bench(
    device: DeviceChoice,
    models: &[String],
    o: BenchOptions,
) -> anyhow::Result<std::process::ExitCode> {
    let BenchOptions {
        conv,
        cpu_kernels,
        baseline,
        min_seconds,
        parts,
        cohort_images,
        fused_members,
        imagenet_images,
        imagenet_dir,
        csv,
        check,
    } = o;
    if let Some(p) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
        bail!(
            "--parts: unknown part `{p}`, expected one of {}",
            PARTS.join(", ")
        );
    }
    align_thread_pools();
    if check && std::env::var_os("NVIDIA_TF32_OVERRIDE").is_none() {
        // The check compares arithmetic, not TF32's 10-bit mantissa: cuDNN and cuBLAS
        // read this before their first call.
        std::env::set_var("NVIDIA_TF32_OVERRIDE", "0");
    }
    let dev = device::open(device)?;
    let kernels = |conv| crate::model::Kernels::new(conv, cpu_kernels);
    if check {
        return check_device(&dev, kernels(conv).map_err(anyhow::Error::msg)?);
    }
    // Timed: lecal's kernels (`--conv` is for `--check`), beside candle's with --baseline.
    let kernels = kernels(crate::model::ConvChoice::Lecal).map_err(anyhow::Error::msg)?;
    let models = models
        .iter()
        .map(|m| {
            ModelName::CIFAR
                .into_iter()
                .find(|x| x.as_str() == m)
                .with_context(|| format!("--models: unknown model `{m}`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!(
        "lecal {} (candle {}), {}, batch {}:",
        env!("CARGO_PKG_VERSION"),
        env!("LECAL_CANDLE_VERSION"),
        device::describe(&dev),
        crate::bench::BATCH
    );
    let opts = crate::bench::Options {
        device: dev,
        kernels,
        models,
        baseline,
        min_seconds,
        parts,
        cohort_images,
        fused_members,
        imagenet_images,
        imagenet_dir,
    };
    let measures = crate::bench::run(&opts)?;
    if let Some(p) = csv {
        crate::store::write_csv(&p, &measures)?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// One training step on `dev` against the same step on the CPU, with each convolution a
/// run on `dev` can use.
fn check_device(
    dev: &candle_core::Device,
    chosen: crate::model::Kernels,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::model::Kernels;
    // With cuDNN compiled in, both convolutions a GPU run can use are checked.
    let impls: &[(Kernels, &str)] = if cfg!(feature = "cudnn") && dev.is_cuda() {
        &[
            (Kernels::lecal(), "lecal's convolution (cuDNN)"),
            (Kernels::CANDLE, "candle's convolution"),
        ]
    } else {
        &[(chosen, "the default convolution")]
    };
    let mut ok = true;
    for &(kernels, name) in impls {
        let (loss, weights) = crate::bench::check_device(dev, kernels)?;
        let agree = loss < 1e-3 && weights < 1e-3;
        ok &= agree;
        outln!(
            "one ResNet20 training step on {} with {name}, against the CPU: loss differs by {loss:.2e}, updated weights by at most {weights:.2e}: {}",
            device::describe(dev),
            if agree {
                "agree (tolerance 1e-3)"
            } else {
                "DISAGREE (tolerance 1e-3)"
            }
        );
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
