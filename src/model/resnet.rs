//! CIFAR ResNet-d, d = 6n+2: conv3×3(3→16)+BN+ReLU, three stages of n BasicBlocks with
//! 16, 32, 64 channels (strides 1, 2, 2), global average pooling, linear. A block whose
//! stride or width changes takes a 1×1 convolution + BN shortcut ("option B").
//!
//! `CifarResNet::fused` is `members` such networks as one (horizontal fusion): the stem's
//! filters side by side (the input is shared), every later convolution grouped with one
//! group per member, batch norm over all members' channels, one classifier head per
//! member. Each member's part computes what the member alone would, in the same order.

use super::conv::{Conv2d, ConvShape};
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

/// A 3×3 convolution of `m` members' `cin → cout` channels (one group each).
fn conv3x3(
    cin: usize,
    cout: usize,
    stride: usize,
    m: usize,
    k: Kernels,
    vb: VarBuilder,
) -> Result<Conv2d> {
    Conv2d::grouped(ConvShape::grouped(m, cin, cout, 3, stride, 1), k, vb)
}

impl BasicBlock {
    /// The block of `m` members, each `cin → cout` channels.
    fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        m: usize,
        k: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let shortcut = if stride != 1 || cin != cout {
            let sc = vb.pp("shortcut");
            let shape = ConvShape::grouped(m, cin, cout, 1, stride, 0);
            Some((
                Conv2d::grouped(shape, k, sc.pp("0"))?,
                BatchNorm2d::new(cout * m, sc.pp("1"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: conv3x3(cin, cout, stride, m, k, vb.pp("conv1"))?,
            bn1: BatchNorm2d::new(cout * m, vb.pp("bn1"))?,
            conv2: conv3x3(cout, cout, 1, m, k, vb.pp("conv2"))?,
            bn2: BatchNorm2d::new(cout * m, vb.pp("bn2"))?,
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
    /// One head per member (`linear` alone; `heads.<i>` fused).
    heads: Vec<Linear>,
}

impl CifarResNet {
    pub const WIDTHS: [usize; 3] = [16, 32, 64];

    /// The model `model` for `classes` classes, running `kernels`.
    pub fn new(model: ModelName, classes: usize, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        Self::fused(model, classes, 1, kernels, vb)
    }

    /// `members` networks `model` as one (one member: the network itself, with its
    /// parameter names). A fused parameter holds the members' along its first dimension,
    /// member 0 first; member `i`'s classifier is `heads.<i>`.
    pub fn fused(
        model: ModelName,
        classes: usize,
        members: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (k, m) = (kernels, members);
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
                blocks.push(BasicBlock::new(
                    cin,
                    w,
                    stride,
                    m,
                    k,
                    layer.pp(b.to_string()),
                )?);
                cin = w;
            }
            stages.push(blocks);
        }
        let head = |vb: VarBuilder| Linear::new(Self::WIDTHS[2], classes, kernels, vb);
        let heads = match m {
            1 => vec![head(vb.pp("linear"))?],
            _ => (0..m)
                .map(|i| head(vb.pp("heads").pp(i.to_string())))
                .collect::<Result<_>>()?,
        };
        // The stem: the members' filters side by side over the shared input.
        let stem = ConvShape::grouped(1, 3, Self::WIDTHS[0] * m, 3, 1, 1);
        Ok(Self {
            conv1: Conv2d::grouped(stem, k, vb.pp("conv1"))?,
            bn1: BatchNorm2d::new(Self::WIDTHS[0] * m, vb.pp("bn1"))?,
            stages,
            heads,
        })
    }

    /// Logits of a normalised `(N, 3, H, W)` batch. `train` selects batch statistics
    /// (and updates the running ones) in BatchNorm.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.features_t(x, train)?.1)
    }

    /// The pooled penultimate features (`N×64`) and the logits (fused: `N×(members·64)`
    /// and `N×(members·classes)`, member 0's first).
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let (pooled, mut logits) = self.member_logits(x, train)?;
        let logits = match logits.len() {
            1 => logits.pop().expect("one head"),
            _ => Tensor::cat(&logits, 1)?,
        };
        Ok((pooled, logits))
    }

    /// The pooled features (all members', side by side) and each member's logits
    /// (`N×classes`) apart, as its own head gives them.
    pub fn member_logits(&self, x: &Tensor, train: bool) -> Result<(Tensor, Vec<Tensor>)> {
        let mut h = self
            .bn1
            .forward_act(&self.conv1.forward(x)?, None, true, train)?;
        for block in self.stages.iter().flatten() {
            h = block.forward_t(&h, train)?;
        }
        let pooled = h.mean((2, 3))?;
        if let [head] = self.heads.as_slice() {
            let logits = head.forward(&pooled)?;
            return Ok((pooled, vec![logits]));
        }
        let width = Self::WIDTHS[2];
        let logits = (self.heads.iter().enumerate())
            .map(|(i, head)| head.forward(&pooled.narrow(1, i * width, width)?))
            .collect::<Result<Vec<_>>>()?;
        Ok((pooled, logits))
    }
}

#[cfg(test)]
mod fused_tests;
