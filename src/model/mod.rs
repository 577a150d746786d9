//! The model zoo: CIFAR ResNets (He et al. 2016, "Deep Residual Learning for Image
//! Recognition", section 4.2) with 1×1-convolution shortcuts, parameter names as in the
//! public PyTorch CIFAR ResNet code (`conv1`, `bn1`, `layer1.0.conv1`, …,
//! `layer2.0.shortcut.0`, `linear`), and weight initialisation from lecal's own seeded RNG.

mod batch_norm;
pub mod checkpoint;
mod conv;
pub mod kernels;
mod resnet;

pub use batch_norm::BatchNorm2d;
pub use kernels::{ConvChoice, ConvKernel, Kernels};
pub use resnet::ResNet;

use crate::rng::Rng;
use crate::spec::ModelName;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

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
/// variance 1, linear weight and bias uniform ±1/√fan_in (PyTorch's default).
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
        } else if name.starts_with("linear.") {
            let fan_in = varmap
                .data()
                .lock()
                .expect("varmap lock")
                .get("linear.weight")
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

/// Parameter count of a model with `classes` outputs (built on the CPU to count).
pub fn parameters_of(model: ModelName, classes: usize) -> anyhow::Result<usize> {
    let (_, vm) = build_trainable(model, classes, 0, Kernels::CANDLE, &Device::Cpu)?;
    Ok(parameter_count(&vm))
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
        let (_, vm) = build_trainable(m, k, 0, Kernels::LECAL, &Device::Cpu).unwrap();
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
            build_trainable(ModelName::Resnet8, 10, 0, Kernels::LECAL, &Device::Cpu).unwrap();
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
            &build_trainable(ModelName::Resnet8, 10, 1, Kernels::LECAL, &Device::Cpu)
                .unwrap()
                .1,
        );
        let b = snapshot(
            &build_trainable(ModelName::Resnet8, 10, 1, Kernels::LECAL, &Device::Cpu)
                .unwrap()
                .1,
        );
        let c = snapshot(
            &build_trainable(ModelName::Resnet8, 10, 2, Kernels::LECAL, &Device::Cpu)
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
}
