//! ImageNet ResNet-18/34/50 (He et al. 2016, "Deep Residual Learning for Image
//! Recognition", table 1) in the layout of torchvision's `torchvision.models.resnet`, so
//! that its published `.pth` state dicts load name for name: conv7×7/2(3→64)+BN+ReLU
//! (`conv1`, `bn1`), max-pool 3×3/2, four stages `layer1`..`layer4` of widths 64, 128, 256,
//! 512 (strides 1, 2, 2, 2), global average pooling, `fc`. ResNet-18/34 stack
//! BasicBlocks; ResNet-50 stacks Bottlenecks (expansion 4) with the stride on the 3×3
//! convolution (torchvision's "ResNet v1.5"). A block whose stride or width changes takes a
//! `downsample` shortcut: 1×1 convolution (`downsample.0`) and BN (`downsample.1`).
//!
//! The base width (64) is a parameter so that tests can check PyTorch's numbers on a
//! narrow network of the same architecture.

use super::conv::Conv2d;
use super::kernels::Kernels;
use super::linear::Linear;
use super::BatchNorm2d;
use crate::spec::{ImagenetLayers, ModelName};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// torchvision's `downsample`: `Sequential(conv1x1(cin, cout, stride), BatchNorm2d(cout))`.
#[derive(Debug, Clone)]
struct Downsample {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl Downsample {
    /// `None` where the identity fits: same width and stride 1.
    fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        k: Kernels,
        vb: VarBuilder,
    ) -> Result<Option<Self>> {
        if stride == 1 && cin == cout {
            return Ok(None);
        }
        let vb = vb.pp("downsample");
        Ok(Some(Self {
            conv: Conv2d::new(cin, cout, 1, stride, 0, k, vb.pp("0"))?,
            bn: BatchNorm2d::new(cout, vb.pp("1"))?,
        }))
    }
}

/// The shortcut branch of a block: `x` itself, or its projection.
fn shortcut(down: &Option<Downsample>, x: &Tensor, train: bool) -> Result<Tensor> {
    match down {
        Some(d) => d.bn.forward_t(&d.conv.forward(x)?, train),
        None => Ok(x.clone()),
    }
}

/// A convolution followed by its batch norm, the unit every block is made of.
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    /// `conv{i}` and `bn{i}` of `vb`, a `size`×`size` convolution padded to keep the size.
    #[allow(clippy::too_many_arguments)]
    fn new(
        i: usize,
        cin: usize,
        cout: usize,
        size: usize,
        stride: usize,
        k: Kernels,
        vb: &VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(
                cin,
                cout,
                size,
                stride,
                size / 2,
                k,
                vb.pp(format!("conv{i}")),
            )?,
            bn: BatchNorm2d::new(cout, vb.pp(format!("bn{i}")))?,
        })
    }

    /// `act(bn(conv(x)) [+ residual])`, the batch norm's tail fused as in the CIFAR ResNet.
    fn forward(&self, x: &Tensor, residual: Option<&Tensor>, train: bool) -> Result<Tensor> {
        self.bn
            .forward_act(&self.conv.forward(x)?, residual, true, train)
    }
}

/// A residual block: BasicBlock (two 3×3 convolutions, expansion 1) or Bottleneck (1×1,
/// 3×3 with the stride, 1×1 to four times the width).
#[derive(Debug, Clone)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<Downsample>,
}

impl Block {
    fn basic(cin: usize, planes: usize, stride: usize, k: Kernels, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            convs: vec![
                ConvBn::new(1, cin, planes, 3, stride, k, &vb)?,
                ConvBn::new(2, planes, planes, 3, 1, k, &vb)?,
            ],
            downsample: Downsample::new(cin, planes, stride, k, vb)?,
        })
    }

    fn bottleneck(
        cin: usize,
        planes: usize,
        stride: usize,
        k: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = planes * BOTTLENECK_EXPANSION;
        Ok(Self {
            convs: vec![
                ConvBn::new(1, cin, planes, 1, 1, k, &vb)?,
                ConvBn::new(2, planes, planes, 3, stride, k, &vb)?,
                ConvBn::new(3, planes, out, 1, 1, k, &vb)?,
            ],
            downsample: Downsample::new(cin, out, stride, k, vb)?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (last, inner) = self.convs.split_last().expect("a block has convolutions");
        let mut h = x.clone();
        for c in inner {
            h = c.forward(&h, None, train)?;
        }
        // relu(bn(conv(h)) + shortcut)
        last.forward(&h, Some(&shortcut(&self.downsample, x, train)?), train)
    }
}

/// A Bottleneck's output channels per unit of its width.
const BOTTLENECK_EXPANSION: usize = 4;

/// An ImageNet ResNet in torchvision's layout.
#[derive(Debug, Clone)]
pub struct ImageNetResNet {
    stem: ConvBn,
    stages: Vec<Vec<Block>>,
    fc: Linear,
}

impl ImageNetResNet {
    /// torchvision's width of the stem and of the first stage.
    pub const BASE_WIDTH: usize = 64;

    /// The model `model` for `classes` classes, running `kernels`.
    pub fn new(model: ModelName, classes: usize, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        Self::with_base_width(model, Self::BASE_WIDTH, classes, kernels, vb)
    }

    /// The same architecture with every width scaled to `base` instead of 64.
    pub fn with_base_width(
        model: ModelName,
        base: usize,
        classes: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let ImagenetLayers { blocks, bottleneck } = model.imagenet_layers().ok_or_else(|| {
            candle_core::Error::Msg(format!("{} is not an ImageNet ResNet", model.as_str()))
        })?;
        let k = kernels;
        let mut cin = base;
        let mut stages = Vec::new();
        for (s, &n) in blocks.iter().enumerate() {
            let planes = base << s;
            let layer = vb.pp(format!("layer{}", s + 1));
            let mut stage = Vec::new();
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let vb = layer.pp(b.to_string());
                let block = if bottleneck {
                    Block::bottleneck(cin, planes, stride, k, vb)?
                } else {
                    Block::basic(cin, planes, stride, k, vb)?
                };
                cin = if bottleneck {
                    planes * BOTTLENECK_EXPANSION
                } else {
                    planes
                };
                stage.push(block);
            }
            stages.push(stage);
        }
        Ok(Self {
            stem: ConvBn::new(1, 3, base, 7, 2, k, &vb)?,
            stages,
            fc: Linear::new(cin, classes, kernels, vb.pp("fc"))?,
        })
    }

    /// Logits of a normalised `(N, 3, H, W)` batch. `train` selects batch statistics
    /// (and updates the running ones) in BatchNorm.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.features_t(x, train)?.1)
    }

    /// The pooled penultimate features (`N×512`, `N×2048` for ResNet-50) and the logits.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let h = self.stem.forward(x, None, train)?;
        let mut h = max_pool_3x3_s2(&h, train)?;
        for block in self.stages.iter().flatten() {
            h = block.forward_t(&h, train)?;
        }
        let pooled = h.mean((2, 3))?;
        let logits = self.fc.forward(&pooled)?;
        Ok((pooled, logits))
    }
}

/// torchvision's `MaxPool2d(kernel_size=3, stride=2, padding=1)` of a `(N, C, H, W)` input
/// that is non-negative (it follows a ReLU).
///
/// PyTorch pads with −∞; candle's pooling has no padding, so the input is padded with
/// zeros instead. That is exact here: every window holds at least two input values, all
/// ≥ 0, so a zero of the padding never exceeds the window's maximum.
///
/// candle's `max_pool2d` has no gradient when the stride differs from the kernel, so
/// training takes the maximum of shifted, subsampled views (separably: rows, then
/// columns), whose gradient is candle's. Where values tie the gradient is shared among
/// them instead of going to the first as PyTorch's does; ties are zeros of the ReLU before,
/// whose gradient the ReLU stops either way.
pub(crate) fn max_pool_3x3_s2(x: &Tensor, train: bool) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    if !train {
        return x
            .pad_with_zeros(2, 1, 1)?
            .pad_with_zeros(3, 1, 1)?
            .max_pool2d_with_stride(3, 2);
    }
    // One row or column beyond PyTorch's padding when the size is odd, so that the pairs
    // `every_other` reads exist; no window reaches it.
    let x = x
        .pad_with_zeros(2, 1, 2 * ho + 1 - h)?
        .pad_with_zeros(3, 1, 2 * wo + 1 - w)?;
    let rows = max_of_shifts(&x, 2, ho)?;
    max_of_shifts(&rows, 3, wo)
}

/// `out[i] = max(x[2i], x[2i+1], x[2i+2])` along `dim`, for `i < n`.
fn max_of_shifts(x: &Tensor, dim: usize, n: usize) -> Result<Tensor> {
    let mut out = every_other(x, dim, 0, n)?;
    for start in 1..3 {
        out = out.maximum(&every_other(x, dim, start, n)?)?;
    }
    Ok(out)
}

/// `x[start], x[start + 2], …` (`n` of them) along `dim`, through a reshape that pairs
/// neighbours (strided slicing has no gradient in candle).
fn every_other(x: &Tensor, dim: usize, start: usize, n: usize) -> Result<Tensor> {
    let part = x.narrow(dim, start, 2 * n)?;
    let mut dims = part.dims().to_vec();
    dims[dim] = n;
    dims.insert(dim + 1, 2);
    part.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{build_trainable, parameters_of, shapes, trainable_vars};
    use candle_core::{DType, Device, Var};

    const IMAGENET: [ModelName; 3] = [
        ModelName::Resnet18,
        ModelName::Resnet34,
        ModelName::Resnet50,
    ];

    #[test]
    fn parameter_counts_are_torchvisions() {
        assert_eq!(
            parameters_of(ModelName::Resnet18, 1000).unwrap(),
            11_689_512
        );
        assert_eq!(
            parameters_of(ModelName::Resnet34, 1000).unwrap(),
            21_797_672
        );
        assert_eq!(
            parameters_of(ModelName::Resnet50, 1000).unwrap(),
            25_557_032
        );
    }

    /// Every key and shape of torchvision's state dicts (scripts/make-imagenet-fixture.py),
    /// BatchNorm's `num_batches_tracked` counters aside: lecal neither keeps nor needs them.
    #[test]
    fn names_and_shapes_are_torchvisions_state_dict() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/imagenet-keys.csv"
        );
        let text = std::fs::read_to_string(path).unwrap();
        for m in IMAGENET {
            let mut torchvision: Vec<(String, Vec<usize>)> = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let mut f = l.split(',');
                    (f.next() == Some(m.as_str())).then(|| {
                        let key = f.next().unwrap().to_string();
                        let dims = f.next().unwrap();
                        let dims = dims.split('x').filter(|d| !d.is_empty());
                        (key, dims.map(|d| d.parse().unwrap()).collect())
                    })
                })
                .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
                .collect();
            torchvision.sort();
            assert!(
                torchvision.len() > 100,
                "{} keys of {}",
                torchvision.len(),
                m.as_str()
            );
            assert_eq!(shapes(m, 1000).unwrap(), torchvision, "{}", m.as_str());
        }
        let r50: Vec<(String, Vec<usize>)> = shapes(ModelName::Resnet50, 10).unwrap();
        for (key, dims) in [
            ("conv1.weight", vec![64, 3, 7, 7]),
            ("layer1.0.downsample.0.weight", vec![256, 64, 1, 1]),
            ("layer2.0.conv2.weight", vec![128, 128, 3, 3]),
            ("layer4.2.bn3.running_var", vec![2048]),
            ("fc.weight", vec![10, 2048]),
            ("fc.bias", vec![10]),
        ] {
            assert!(r50.contains(&(key.to_string(), dims)), "{key} in {r50:?}");
        }
        let r18 = shapes(ModelName::Resnet18, 10).unwrap();
        assert!(!r18
            .iter()
            .any(|(k, _)| k.starts_with("layer1.0.downsample")));
    }

    /// torchvision's pooling, computed from its definition: −∞ padding, 3×3 windows, stride 2.
    fn direct_pool(x: &[f32], (n, h, w): (usize, usize, usize)) -> Vec<f32> {
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let mut out = Vec::new();
        for plane in x.chunks(h * w).take(n) {
            for i in 0..ho {
                for j in 0..wo {
                    let mut m = f32::NEG_INFINITY;
                    for di in 0..3 {
                        for dj in 0..3 {
                            let (r, c) = ((2 * i + di) as isize - 1, (2 * j + dj) as isize - 1);
                            if (0..h as isize).contains(&r) && (0..w as isize).contains(&c) {
                                m = m.max(plane[r as usize * w + c as usize]);
                            }
                        }
                    }
                    out.push(m);
                }
            }
        }
        out
    }

    #[test]
    fn max_pool_with_zero_padding_equals_torchvisions_on_relu_outputs() {
        for (h, w) in [(8, 8), (7, 9), (1, 2), (5, 4)] {
            // Post-ReLU values: zeros and distinct positives, in (N=2, C=3) planes.
            let planes = 6;
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| ((i as f32 * 0.91).sin() * 3.0 + i as f32 * 1e-3).max(0.0))
                .collect();
            assert!(x.contains(&0.0) && x.iter().any(|&v| v > 0.0));
            let expected = direct_pool(&x, (planes, h, w));
            let t = Tensor::from_vec(x, (2, 3, h, w), &Device::Cpu).unwrap();
            for train in [false, true] {
                let got = max_pool_3x3_s2(&t, train).unwrap();
                assert_eq!(got.dims(), [2, 3, (h - 1) / 2 + 1, (w - 1) / 2 + 1]);
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(got, expected, "{h}×{w}, train {train}");
            }
        }
    }

    /// With distinct values, each output's gradient goes to its window's maximum alone.
    #[test]
    fn max_pool_gradient_goes_to_each_windows_maximum() {
        let (h, w) = (7, 6);
        let x: Vec<f32> = (0..h * w).map(|i| ((i * 37) % 43) as f32 + 1.0).collect();
        let var = Var::from_vec(x.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
        let y = max_pool_3x3_s2(var.as_tensor(), true).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let got = grads
            .get(&var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut expected = vec![0f32; h * w];
        for m in direct_pool(&x, (1, h, w)) {
            expected[x.iter().position(|&v| v == m).unwrap()] += 1.0;
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn forward_gives_one_logit_per_class_and_trains() {
        let x = Tensor::from_vec(
            (0..2 * 3 * 64 * 64)
                .map(|i| (i as f32 * 0.11).sin())
                .collect::<Vec<_>>(),
            (2, 3, 64, 64),
            &Device::Cpu,
        )
        .unwrap();
        let (net, vm) =
            build_trainable(ModelName::Resnet18, 7, 0, Kernels::lecal(), &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), [2, 7]);
        let loss = net
            .forward_t(&x, true)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        // Every parameter, the stem's behind the max-pool included, gets a gradient.
        for (name, v) in trainable_vars(&vm) {
            let g = grads
                .get(&v)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{name}");
        }
        let narrow = ImageNetResNet::with_base_width(
            ModelName::Resnet50,
            4,
            5,
            Kernels::lecal(),
            VarBuilder::zeros(DType::F32, &Device::Cpu),
        )
        .unwrap();
        assert_eq!(narrow.forward_t(&x, false).unwrap().dims(), [2, 5]);
    }
}
