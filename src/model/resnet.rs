//! CIFAR ResNet-d, d = 6n+2: conv3×3(3→16)+BN+ReLU, three stages of n BasicBlocks with
//! 16, 32, 64 channels (strides 1, 2, 2), global average pooling, linear. A block whose
//! stride or width changes takes a 1×1 convolution + BN shortcut ("option B").

use super::conv::Conv2d;
use super::kernels::Kernels;
use super::linear::Linear;
use super::BatchNorm2d;
use crate::spec::ModelName;
use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    shortcut: Option<(Conv2d, BatchNorm2d)>,
}

fn conv3x3(cin: usize, cout: usize, stride: usize, k: Kernels, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::new(cin, cout, 3, stride, 1, k, vb)
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, k: Kernels, vb: VarBuilder) -> Result<Self> {
        let shortcut = if stride != 1 || cin != cout {
            let sc = vb.pp("shortcut");
            Some((
                Conv2d::new(cin, cout, 1, stride, 0, k, sc.pp("0"))?,
                BatchNorm2d::new(cout, sc.pp("1"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: conv3x3(cin, cout, stride, k, vb.pp("conv1"))?,
            bn1: BatchNorm2d::new(cout, vb.pp("bn1"))?,
            conv2: conv3x3(cout, cout, 1, k, vb.pp("conv2"))?,
            bn2: BatchNorm2d::new(cout, vb.pp("bn2"))?,
            shortcut,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.conv1.forward(x)?;
        let out = self.bn1.forward_act(&out, None, true, train)?;
        let short = match &self.shortcut {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        // relu(bn2(conv2(out)) + shortcut)
        self.bn2
            .forward_act(&self.conv2.forward(&out)?, Some(&short), true, train)
    }
}

/// A CIFAR ResNet in the public PyTorch CIFAR ResNet code's layout.
#[derive(Debug, Clone)]
pub struct CifarResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    stages: Vec<Vec<BasicBlock>>,
    linear: Linear,
}

impl CifarResNet {
    pub const WIDTHS: [usize; 3] = [16, 32, 64];

    /// The model `model` for `classes` classes, running `kernels`.
    pub fn new(model: ModelName, classes: usize, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let k = kernels;
        let depth = model.cifar_depth().ok_or_else(|| {
            candle_core::Error::Msg(format!("model {} is not implemented", model.as_str()))
        })?;
        let n = (depth - 2) / 6;
        let mut cin = Self::WIDTHS[0];
        let mut stages = Vec::new();
        for (s, &w) in Self::WIDTHS.iter().enumerate() {
            let layer = vb.pp(format!("layer{}", s + 1));
            let mut blocks = Vec::new();
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(cin, w, stride, k, layer.pp(b.to_string()))?);
                cin = w;
            }
            stages.push(blocks);
        }
        Ok(Self {
            conv1: conv3x3(3, Self::WIDTHS[0], 1, k, vb.pp("conv1"))?,
            bn1: BatchNorm2d::new(Self::WIDTHS[0], vb.pp("bn1"))?,
            stages,
            linear: Linear::new(Self::WIDTHS[2], classes, kernels, vb.pp("linear"))?,
        })
    }

    /// Logits of a normalised `(N, 3, H, W)` batch. `train` selects batch statistics
    /// (and updates the running ones) in BatchNorm.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.features_t(x, train)?.1)
    }

    /// The pooled penultimate features (`N×64`) and the logits.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let mut h = self
            .bn1
            .forward_act(&self.conv1.forward(x)?, None, true, train)?;
        for block in self.stages.iter().flatten() {
            h = block.forward_t(&h, train)?;
        }
        let pooled = h.mean((2, 3))?;
        let logits = self.linear.forward(&pooled)?;
        Ok((pooled, logits))
    }
}
