//! Teachers' weights: lecal's own `weights.safetensors`, or a PyTorch `.pth` in the layout
//! of the public CIFAR ResNet code or, for ResNet-18/34/50, of torchvision (a bare state
//! dict as torchvision publishes them, or one under `state_dict`, with or without
//! DataParallel's `module.` prefix; BatchNorm's `num_batches_tracked` counters are
//! dropped). Loaded as plain tensors, so a teacher's forward pass records no autograd
//! graph.

use super::{build_frozen, Kernels, ResNet};
use crate::spec::ModelName;
use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The two checkpoint formats, told apart by their first bytes, never by the file name
/// (a link's name, or a `.pth` that holds safetensors, says nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    /// PyTorch's zip archive (`torch.save` since 1.6) or a bare pickle.
    PyTorch,
}

fn format_of(path: &Path) -> anyhow::Result<Format> {
    use std::io::Read;
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path)
        .and_then(|f| f.take(9).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) {
        Ok(Format::PyTorch)
    } else if head.len() == 9 && head[8] == b'{' {
        // An 8-byte little-endian header length, then the JSON header.
        Ok(Format::Safetensors)
    } else {
        bail!(
            "{}: unknown checkpoint format: its first bytes are neither a safetensors header \
             nor a PyTorch zip archive or pickle",
            path.display()
        )
    }
}

/// Reads every tensor of a checkpoint, names normalised, on the CPU.
pub fn read(path: &Path) -> anyhow::Result<HashMap<String, Tensor>> {
    let raw: Vec<(String, Tensor)> = match format_of(path)? {
        Format::Safetensors => candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("cannot read {}", path.display()))?
            .into_iter()
            .collect(),
        Format::PyTorch => match candle_core::pickle::read_all_with_key(path, Some("state_dict")) {
            Ok(t) => t,
            Err(_) => candle_core::pickle::read_all(path).with_context(|| {
                format!("cannot read {} as a PyTorch checkpoint", path.display())
            })?,
        },
    };
    let mut out = HashMap::new();
    for (name, t) in raw {
        let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        out.insert(name, t.to_dtype(DType::F32)?);
    }
    Ok(out)
}

/// Checks names and shapes against what `model` with `classes` outputs needs; the error
/// names the file and the first tensor that does not fit.
pub fn check(
    tensors: &HashMap<String, Tensor>,
    model: ModelName,
    classes: usize,
    path: &Path,
) -> anyhow::Result<()> {
    let expected = super::shapes(model, classes)?;
    let what = format!("{} with {classes} classes", model.as_str());
    check_shapes(tensors, &expected, &what, path)
}

/// `check` against the sorted (name, shape) list of `what`.
pub(crate) fn check_shapes(
    tensors: &HashMap<String, Tensor>,
    expected: &[(String, Vec<usize>)],
    what: &str,
    path: &Path,
) -> anyhow::Result<()> {
    for (name, dims) in expected {
        match tensors.get(name) {
            None => bail!(
                "{}: no tensor `{name}` (shape {dims:?}), which {what} needs; is it a checkpoint of that model?",
                path.display(),
            ),
            Some(t) if t.dims() != dims.as_slice() => bail!(
                "{}: tensor `{name}` has shape {:?}, {what} needs {dims:?}",
                path.display(),
                t.dims(),
            ),
            _ => {}
        }
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| expected.binary_search_by(|(n, _)| n.cmp(k)).is_err())
        .collect();
    extra.sort();
    if let Some(name) = extra.first() {
        bail!(
            "{}: tensor `{name}` is not a parameter of {what}; is it a checkpoint of that model?",
            path.display(),
        );
    }
    Ok(())
}

/// Loads a teacher: read, check, move to the device, build a frozen model.
pub fn load_teacher(
    path: &Path,
    model: ModelName,
    classes: usize,
    kernels: Kernels,
    device: &Device,
) -> anyhow::Result<ResNet> {
    let tensors = read(path)?;
    check(&tensors, model, classes, path)?;
    let on_device = tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(device)?)))
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    build_frozen(model, classes, on_device, kernels, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build_trainable;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    /// Numbers of a fixture CSV, row-major.
    fn floats(name: &str) -> Vec<f32> {
        std::fs::read_to_string(fixture(name))
            .unwrap()
            .split([',', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }

    /// The fixed input of scripts/make-pth-fixture.py: sin(0.37·i), shape (2, 3, 8, 8).
    fn fixed_input() -> Tensor {
        let x: Vec<f32> = (0..2 * 3 * 8 * 8)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        Tensor::from_vec(x, (2, 3, 8, 8), &Device::Cpu).unwrap()
    }

    /// Eval-mode logits, flattened, compared with the fixture's within `tol`.
    fn assert_logits(net: &ResNet, expected: &[f32], tol: f32, what: &str) {
        let got = net
            .forward_t(&fixed_input(), false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < tol, "{what}: {got:?} vs {expected:?}");
        }
    }

    /// The fixtures come from PyTorch (scripts/make-pth-fixture.py): a CIFAR ResNet-8 of the
    /// public code's layout, with non-trivial BatchNorm statistics, and its eval-mode
    /// logits on a fixed input. Loading it must reproduce those logits.
    #[test]
    fn pytorch_checkpoints_load_and_reproduce_pytorch_logits() {
        let expected = floats("resnet8-c10.logits.csv");
        for name in ["resnet8-c10.pth", "resnet8-c10-bare.pth"] {
            let net = load_teacher(
                &fixture(name),
                ModelName::Resnet8,
                10,
                Kernels::lecal(),
                &Device::Cpu,
            )
            .unwrap();
            assert_logits(&net, &expected, 1e-5, name);
        }
        let e = load_teacher(
            &fixture("resnet8-c10.pth"),
            ModelName::Resnet8,
            100,
            Kernels::lecal(),
            &Device::Cpu,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("`linear.bias` has shape [10]"), "{e}");
    }

    /// Two SGD steps in training mode (batch statistics, running-statistics update, weight
    /// decay, momentum) from the fixture's weights end where PyTorch's did.
    #[test]
    fn two_training_steps_match_pytorch() {
        let expected = floats("resnet8-c10.sgd.csv");
        let (net, vm) =
            build_trainable(ModelName::Resnet8, 10, 0, Kernels::lecal(), &Device::Cpu).unwrap();
        let t = read(&fixture("resnet8-c10-bare.pth")).unwrap();
        super::super::load_into(&vm, &t).unwrap();
        let params = super::super::trainable_vars(&vm);
        let mut opt = crate::train::sgd::Sgd::new(params, 0.9, 5e-4);
        let x = fixed_input();
        let mixes = vec![vec![(3u16, 1.0)], vec![(7u16, 1.0)]];
        for _ in 0..2 {
            let logits = net.forward_t(&x, true).unwrap();
            let loss = crate::method::loss(
                &crate::spec::Method::Hard,
                &logits,
                &mixes,
                &[],
                &Device::Cpu,
            )
            .unwrap();
            opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        }
        let frozen = super::super::build_frozen(
            ModelName::Resnet8,
            10,
            super::super::snapshot(&vm),
            Kernels::lecal(),
            &Device::Cpu,
        )
        .unwrap();
        assert_logits(&frozen, &expected, 1e-4, "after two steps");
    }

    /// The variables' names and shapes of a narrow ImageNet ResNet: base width `base`, 10
    /// classes.
    fn narrow_shapes(model: ModelName, base: usize) -> Vec<(String, Vec<usize>)> {
        super::super::shapes_of(|vb| {
            super::super::ImageNetResNet::with_base_width(model, base, 10, Kernels::CANDLE, vb)
        })
        .unwrap()
    }

    /// torchvision's own ResNet-18 and ResNet-50 at reduced width, saved as torchvision
    /// publishes its weights (a bare state dict with `num_batches_tracked`), and their
    /// eval-mode logits on sin(0.37·i), shape (2, 3, 64, 64) (scripts/make-imagenet-fixture.py).
    #[test]
    fn torchvision_state_dicts_load_and_reproduce_torchvisions_logits() {
        let x: Vec<f32> = (0..2 * 3 * 64 * 64)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let x = Tensor::from_vec(x, (2, 3, 64, 64), &Device::Cpu).unwrap();
        for (model, base, stem) in [
            (ModelName::Resnet18, 8, "imagenet-resnet18-w8"),
            (ModelName::Resnet50, 4, "imagenet-resnet50-w4"),
        ] {
            let path = fixture(&format!("{stem}.pth"));
            let tensors = read(&path).unwrap();
            check_shapes(&tensors, &narrow_shapes(model, base), stem, &path).unwrap();
            let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
            let net = super::super::ImageNetResNet::with_base_width(
                model,
                base,
                10,
                Kernels::lecal(),
                vb,
            )
            .unwrap();
            let expected = floats(&format!("{stem}.logits.csv"));
            let got = net.forward_t(&x, false).unwrap();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let scale = expected.iter().fold(0f32, |m, e| m.max(e.abs()));
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    (g - e).abs() <= 1e-4 * scale,
                    "{stem}: {got:?} vs {expected:?}"
                );
            }
        }
    }

    #[test]
    fn a_torchvision_state_dict_of_another_model_is_refused_by_name() {
        let path = fixture("imagenet-resnet18-w8.pth");
        let tensors = read(&path).unwrap();
        // Full width: the first tensor in name order is already too narrow.
        let e = check(&tensors, ModelName::Resnet18, 10, &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("imagenet-resnet18-w8.pth")
                && e.contains("`bn1.bias` has shape [8], resnet18 with 10 classes needs [64]"),
            "{e}"
        );
        // A ResNet-18 read as a ResNet-50 of the same width.
        let e = check_shapes(
            &tensors,
            &narrow_shapes(ModelName::Resnet50, 8),
            "resnet50",
            &path,
        )
        .unwrap_err()
        .to_string();
        // In name order the stem fits; the classifier comes next.
        assert!(
            e.contains("imagenet-resnet18-w8.pth")
                && e.contains("`fc.weight` has shape [10, 64], resnet50 needs [10, 256]"),
            "{e}"
        );
        // A truncated state dict names its first missing tensor.
        let shapes = narrow_shapes(ModelName::Resnet18, 8);
        let mut cut = tensors.clone();
        cut.remove("layer3.1.bn2.running_var");
        cut.remove("layer4.0.downsample.0.weight");
        let e = check_shapes(&cut, &shapes, "resnet18", &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "imagenet-resnet18-w8.pth: no tensor `layer3.1.bn2.running_var` (shape [32])"
            ),
            "{e}"
        );
    }

    #[test]
    fn our_safetensors_round_trip_and_mismatches_name_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let (_, vm) =
            build_trainable(ModelName::Resnet8, 10, 4, Kernels::lecal(), &Device::Cpu).unwrap();
        candle_core::safetensors::save(&super::super::snapshot(&vm), &p).unwrap();
        let t = read(&p).unwrap();
        check(&t, ModelName::Resnet8, 10, &p).unwrap();
        let e = check(&t, ModelName::Resnet8, 100, &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`linear.bias` has shape [10]"), "{e}");
        let e = check(&t, ModelName::Resnet14, 10, &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no tensor `layer1.1.bn1.bias`"), "{e}");
        let net = load_teacher(&p, ModelName::Resnet8, 10, Kernels::lecal(), &Device::Cpu).unwrap();
        let x = Tensor::zeros((2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), [2, 10]);
    }

    #[test]
    fn issue_13_checkpoint_formats_are_told_by_content_not_by_name() {
        let dir = tempfile::tempdir().unwrap();
        // A PyTorch checkpoint reached through a link named .safetensors.
        let link = dir.path().join("teacher.safetensors");
        std::os::unix::fs::symlink(fixture("resnet8-c10.pth"), &link).unwrap();
        let expected = floats("resnet8-c10.logits.csv");
        let net = load_teacher(
            &link,
            ModelName::Resnet8,
            10,
            Kernels::lecal(),
            &Device::Cpu,
        )
        .unwrap();
        assert_logits(&net, &expected, 1e-4, "a .pth behind a .safetensors link");
        // safetensors in a file named .pth.
        let (_, vm) =
            build_trainable(ModelName::Resnet8, 10, 4, Kernels::lecal(), &Device::Cpu).unwrap();
        let p = dir.path().join("w.pth");
        candle_core::safetensors::save(&super::super::snapshot(&vm), &p).unwrap();
        check(&read(&p).unwrap(), ModelName::Resnet8, 10, &p).unwrap();
        // Neither.
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a checkpoint at all").unwrap();
        let e = read(&junk).unwrap_err().to_string();
        assert!(
            e.contains("junk.safetensors") && e.contains("first bytes"),
            "{e}"
        );
    }
}
