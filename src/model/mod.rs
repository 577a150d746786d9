//! The model zoo: CIFAR ResNets (He et al. 2016, "Deep Residual Learning for Image
//! Recognition", section 4.2) with 1×1-convolution shortcuts, parameter names as in the
//! public PyTorch CIFAR ResNet code (`conv1`, `bn1`, `layer1.0.conv1`, …,
//! `layer2.0.shortcut.0`, `linear`); the ImageNet ResNet-18/34/50 of the same paper with
//! torchvision's names (`layer2.0.downsample.0`, `fc`, …); and weight initialisation from
//! lecal's own seeded RNG.

mod batch_norm;
pub mod checkpoint;
mod conv;
pub mod fused;
mod imagenet;
pub mod kernels;
mod linear;
mod resnet;

pub use batch_norm::BatchNorm2d;
pub use imagenet::ImageNetResNet;
pub use kernels::{ConvChoice, ConvKernel, CpuKernelChoice, CpuLevel, Kernels, Microkernel};
pub use resnet::CifarResNet;

use crate::rng::Rng;
use crate::spec::ModelName;
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::sync::{Arc, Mutex};

/// Every model lecal trains: the family is fixed by the `ModelName` it is built for.
#[derive(Debug, Clone)]
pub enum ResNet {
    Cifar(CifarResNet),
    ImageNet(ImageNetResNet),
}

impl ResNet {
    /// The model `model` for `classes` classes, running `kernels`.
    pub fn new(model: ModelName, classes: usize, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        if model.imagenet_layers().is_some() {
            Ok(Self::ImageNet(ImageNetResNet::new(
                model, classes, kernels, vb,
            )?))
        } else {
            Ok(Self::Cifar(CifarResNet::new(model, classes, kernels, vb)?))
        }
    }

    /// Logits of a normalised `(N, 3, H, W)` batch. `train` selects batch statistics
    /// (and updates the running ones) in BatchNorm.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Cifar(net) => net.forward_t(x, train),
            Self::ImageNet(net) => net.forward_t(x, train),
        }
    }

    /// The pooled penultimate features (`N×feature_dim`) and the logits, from one pass.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        match self {
            Self::Cifar(net) => net.features_t(x, train),
            Self::ImageNet(net) => net.features_t(x, train),
        }
    }
}

/// The width of `model`'s pooled penultimate features (what `ResNet::features_t` gives).
pub fn feature_dim(model: ModelName) -> usize {
    match model.imagenet_layers() {
        Some(l) if l.bottleneck => 2048,
        Some(_) => 512,
        None => CifarResNet::WIDTHS[2],
    }
}

/// BatchNorm running statistics are buffers, not parameters: no gradient, no weight decay,
/// not counted.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// Builds a trainable model whose variables live in a new `VarMap`, initialised from `seed`.
pub fn build_trainable(
    model: ModelName,
    classes: usize,
    seed: u64,
    kernels: Kernels,
    device: &Device,
) -> anyhow::Result<(ResNet, VarMap)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let net = ResNet::new(model, classes, kernels, vb)?;
    init_weights(&varmap, seed)?;
    Ok((net, varmap))
}

/// Builds a model from plain tensors (no variables): its forward pass records no autograd
/// graph. Used for evaluation and for teachers.
pub fn build_frozen(
    model: ModelName,
    classes: usize,
    tensors: std::collections::HashMap<String, Tensor>,
    kernels: Kernels,
    device: &Device,
) -> anyhow::Result<ResNet> {
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    Ok(ResNet::new(model, classes, kernels, vb)?)
}

/// Plain (detached) copies of every variable, keyed by name.
pub fn snapshot(varmap: &VarMap) -> std::collections::HashMap<String, Tensor> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect()
}

/// Sorted (name, variable) pairs: `VarMap` iterates in no fixed order.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The trainable parameters (buffers excluded), sorted by name: what the optimiser updates.
pub fn trainable_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    sorted_vars(varmap)
        .into_iter()
        .filter(|(n, _)| !is_buffer(n))
        .collect()
}

/// Initialises every variable in sorted name order from one seeded stream: conv weights
/// Kaiming normal (fan_out, ReLU gain), BatchNorm weight 1 and bias 0, running mean 0 and
/// variance 1, the classifier's weight and bias uniform ±1/√fan_in (PyTorch's `Linear`
/// default); torchvision's ResNet initialises the same way (`zero_init_residual=False`).
pub fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = Rng::stream(seed, "init", &[]);
    for (name, var) in sorted_vars(varmap) {
        let shape = var.shape().clone();
        let dims = shape.dims().to_vec();
        let n = shape.elem_count();
        let values: Vec<f32> = if name.ends_with(".running_mean") {
            vec![0.0; n]
        } else if name.ends_with(".running_var") {
            vec![1.0; n]
        } else if dims.len() == 4 {
            let fan_out = dims[0] * dims[2] * dims[3];
            let std = (2.0 / fan_out as f64).sqrt();
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        } else if let Some(layer) = classifier(&name) {
            let fan_in = varmap
                .data()
                .lock()
                .expect("varmap lock")
                .get(&format!("{layer}.weight"))
                .map_or(1, |w| w.dims()[1]);
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..n)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect()
        } else if name.ends_with(".weight") {
            vec![1.0; n]
        } else {
            vec![0.0; n]
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// Sets every variable of `varmap` from `tensors` (same names and shapes), e.g. to train
/// on from a checkpoint.
pub fn load_into(
    varmap: &VarMap,
    tensors: &std::collections::HashMap<String, Tensor>,
) -> anyhow::Result<()> {
    for (name, var) in sorted_vars(varmap) {
        let t = tensors
            .get(&name)
            .ok_or_else(|| anyhow::anyhow!("no tensor `{name}`"))?;
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The classifier layer (`linear` of the CIFAR ResNets, `fc` of torchvision's) that
/// `name` belongs to.
fn classifier(name: &str) -> Option<&'static str> {
    ["linear", "fc"]
        .into_iter()
        .find(|l| name.strip_prefix(l).is_some_and(|r| r.starts_with('.')))
}

/// Parameter count of a model with `classes` outputs, as PyTorch's `parameters()` counts.
pub fn parameters_of(model: ModelName, classes: usize) -> anyhow::Result<usize> {
    Ok(shapes(model, classes)?
        .iter()
        .filter(|(n, _)| !is_buffer(n))
        .map(|(_, d)| d.iter().product::<usize>())
        .sum())
}

/// (name, dimensions) pairs of a model's variables.
pub type Shapes = Vec<(String, Vec<usize>)>;

/// The name and shape of every variable of `model` with `classes` outputs (buffers
/// included), sorted by name. Nothing is initialised: a ResNet-50 costs no random draws.
pub fn shapes(model: ModelName, classes: usize) -> Result<Shapes> {
    shapes_of(|vb| ResNet::new(model, classes, Kernels::CANDLE, vb))
}

/// The variables `build` asks its `VarBuilder` for, sorted by name.
pub(crate) fn shapes_of<T>(build: impl FnOnce(VarBuilder) -> Result<T>) -> Result<Shapes> {
    let recorder = Recorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu);
    build(vb)?;
    let mut out = recorder.0.lock().expect("recorder lock").clone();
    out.sort();
    Ok(out)
}

/// A variable source that hands out zeros and notes what was asked for.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Shapes>>);

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = Tensor::zeros(&s, dtype, dev)?;
        self.0
            .lock()
            .expect("recorder lock")
            .push((name.to_string(), s.dims().to_vec()));
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("no shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// Number of trainable parameters (buffers excluded), as PyTorch's `parameters()` counts.
pub fn parameter_count(varmap: &VarMap) -> usize {
    trainable_vars(varmap)
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(m: ModelName, k: usize) -> usize {
        let (_, vm) = build_trainable(m, k, 0, Kernels::lecal(), &Device::Cpu).unwrap();
        parameter_count(&vm)
    }

    #[test]
    fn parameter_counts_match_methods_md() {
        assert_eq!(count(ModelName::Resnet20, 100), 278_324);
        assert_eq!(count(ModelName::Resnet32, 100), 472_756);
        assert_eq!(count(ModelName::Resnet44, 100), 667_188);
        assert_eq!(count(ModelName::Resnet56, 100), 861_620);
        assert_eq!(count(ModelName::Resnet110, 100), 1_736_564);
        // K = 10 changes only the linear layer: 64·90 + 90 fewer.
        assert_eq!(count(ModelName::Resnet20, 10), 278_324 - 90 * 65);
    }

    #[test]
    fn names_follow_the_pytorch_cifar_resnet() {
        let (_, vm) =
            build_trainable(ModelName::Resnet8, 10, 0, Kernels::lecal(), &Device::Cpu).unwrap();
        let names: Vec<String> = sorted_vars(&vm).into_iter().map(|(n, _)| n).collect();
        for expected in [
            "conv1.weight",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer1.0.bn2.bias",
            "layer2.0.shortcut.0.weight",
            "layer2.0.shortcut.1.weight",
            "layer3.0.shortcut.1.running_mean",
            "linear.weight",
            "linear.bias",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.starts_with("layer1.0.shortcut")));
    }

    #[test]
    fn init_is_seeded_and_has_the_right_scale() {
        let a = snapshot(
            &build_trainable(ModelName::Resnet8, 10, 1, Kernels::lecal(), &Device::Cpu)
                .unwrap()
                .1,
        );
        let b = snapshot(
            &build_trainable(ModelName::Resnet8, 10, 1, Kernels::lecal(), &Device::Cpu)
                .unwrap()
                .1,
        );
        let c = snapshot(
            &build_trainable(ModelName::Resnet8, 10, 2, Kernels::lecal(), &Device::Cpu)
                .unwrap()
                .1,
        );
        let v = |m: &std::collections::HashMap<String, Tensor>, k: &str| {
            m[k].flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(
            v(&a, "layer2.0.conv1.weight"),
            v(&b, "layer2.0.conv1.weight")
        );
        assert_ne!(
            v(&a, "layer2.0.conv1.weight"),
            v(&c, "layer2.0.conv1.weight")
        );
        // Kaiming fan_out: std √(2 / (32·3·3)) = 0.0833.
        let w = v(&a, "layer2.0.conv1.weight");
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - 0.0833).abs() < 0.01, "{std}");
        let lin = v(&a, "linear.weight");
        assert!(lin.iter().all(|x| x.abs() <= 0.125));
        assert!(v(&a, "bn1.weight").iter().all(|&x| x == 1.0));
        assert!(v(&a, "bn1.running_var").iter().all(|&x| x == 1.0));
    }

    /// torchvision's classifier `fc` is initialised as the CIFAR ResNets' `linear`.
    #[test]
    fn imagenet_classifier_gets_pytorchs_linear_init() {
        let (_, vm) =
            build_trainable(ModelName::Resnet18, 10, 3, Kernels::lecal(), &Device::Cpu).unwrap();
        let s = snapshot(&vm);
        let bound = 1.0 / 512f32.sqrt();
        for name in ["fc.weight", "fc.bias"] {
            let w = s[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(w.iter().all(|x| x.abs() <= bound), "{name}");
            assert!(w.iter().any(|&x| x != w[0]), "{name}: {w:?}");
        }
        // Uniform on ±bound: standard deviation bound/√3.
        let w = s["fc.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        let want = bound / 3f32.sqrt();
        assert!((std - want).abs() < 0.05 * want, "{std} vs {want}");
        // Kaiming fan_out on the stem: std √(2 / (64·7·7)).
        let w = s["conv1.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - (2.0f32 / 3136.0).sqrt()).abs() < 0.002, "{std}");
    }
}
