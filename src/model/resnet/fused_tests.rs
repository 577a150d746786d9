//! A fused network of three ResNet-8 members against the three networks alone, with the
//! members' weights: logits, every parameter's gradient and the running statistics the
//! same, value for value, on the CPU.

use super::*;
use crate::model::kernels::common::{random, values};
use crate::model::{init_weights, sorted_vars};
use crate::rng::Rng;
use candle_core::{DType, Device};
use candle_nn::VarMap;

const MEMBERS: usize = 3;
const CLASSES: usize = 10;

fn build(members: usize, kernels: Kernels) -> (CifarResNet, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = CifarResNet::fused(ModelName::Resnet8, CLASSES, members, kernels, vb).unwrap();
    (net, varmap)
}

/// Equal as numbers, element for element (a zero's sign aside: see the test).
fn same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (j, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(a == b, "{what}[{j}]: fused {a:e}, alone {b:e}");
    }
}

/// The gradients reaching the members' parameters differ at most in the sign of a zero:
/// the fused logits' gradient is assembled from the members' slices, and a -0 there adds
/// to +0. Nothing that the optimiser makes of a zero depends on its sign.
#[test]
fn a_fused_network_computes_each_member_as_it_computes_alone() {
    let kernels = Kernels::lecal();
    let alone: Vec<(CifarResNet, VarMap)> = (0..MEMBERS)
        .map(|i| {
            let (net, vars) = build(1, kernels);
            init_weights(&vars, 10 + i as u64).unwrap();
            (net, vars)
        })
        .collect();
    let (fused, fused_vars) = build(MEMBERS, kernels);
    let var = |vars: &VarMap, name: &str| vars.data().lock().unwrap()[name].clone();
    let members: Vec<&VarMap> = alone.iter().map(|(_, v)| v).collect();
    crate::model::fused::fuse(&fused_vars, &members).unwrap();
    // And back: each member's own tensors out of the fused ones.
    for (i, vars) in members.iter().enumerate() {
        let back = crate::model::fused::member_tensors(&fused_vars, i, MEMBERS).unwrap();
        assert_eq!(back.len(), sorted_vars(vars).len());
        for (name, v) in sorted_vars(vars) {
            same(&name, &values(&back[&name]), &values(v.as_tensor()));
        }
    }
    let mut rng = Rng::stream(7, "fusion test", &[]);
    let x = random(&[16, 3, 8, 8], &mut rng);
    let masks: Vec<Tensor> = (0..MEMBERS)
        .map(|_| random(&[16, CLASSES], &mut rng))
        .collect();
    let logits = fused.forward_t(&x, true).unwrap();
    let mut total = Tensor::new(0f32, &Device::Cpu).unwrap();
    for (i, m) in masks.iter().enumerate() {
        let mine = logits.narrow(1, i * CLASSES, CLASSES).unwrap();
        total = (total + (mine * m).unwrap().sum_all().unwrap()).unwrap();
    }
    let fused_grads = total.backward().unwrap();
    for (i, ((net, vars), m)) in alone.iter().zip(&masks).enumerate() {
        let own = net.forward_t(&x, true).unwrap();
        let mine = logits.narrow(1, i * CLASSES, CLASSES).unwrap();
        same(&format!("member {i} logits"), &values(&mine), &values(&own));
        let grads = (own * m).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in sorted_vars(&fused_vars) {
            let (member, own_name) = crate::model::fused::member_name(&name);
            if member.is_some_and(|j| j != i) {
                continue;
            }
            let theirs = var(vars, &own_name);
            let n = theirs.elem_count();
            let fused_part = match member {
                Some(_) => v.as_tensor().flatten_all().unwrap(),
                None => v
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .narrow(0, i * n, n)
                    .unwrap(),
            };
            let what = format!("member {i} {own_name}");
            if crate::model::is_buffer(&name) {
                // Updated by the forward pass in training mode.
                same(&what, &values(&fused_part), &values(theirs.as_tensor()));
                continue;
            }
            let g = fused_grads
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap();
            let g = match member {
                Some(_) => g,
                None => g.narrow(0, i * n, n).unwrap(),
            };
            let want = grads.get(theirs.as_tensor()).unwrap();
            same(&format!("{what} gradient"), &values(&g), &values(want));
        }
    }
}
