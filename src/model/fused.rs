//! Weights between the members' networks and their fused network (`CifarResNet::fused`):
//! a fused parameter holds the members' along its first dimension, member 0 first, and
//! member `i`'s classifier is `heads.<i>` (`linear` alone).

use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use std::collections::HashMap;

/// The member whose own parameter a fused parameter is (a head), and the name it has
/// in the member's network; `None`: every member's, side by side.
pub fn member_name(fused: &str) -> (Option<usize>, String) {
    let head = fused.strip_prefix("heads.").and_then(|rest| {
        let (i, field) = rest.split_once('.')?;
        Some((i.parse().ok()?, format!("linear.{field}")))
    });
    match head {
        Some((i, name)) => (Some(i), name),
        None => (None, fused.to_string()),
    }
}

/// Sets every variable of `fused` from the members' variables.
pub fn fuse(fused: &VarMap, members: &[&VarMap]) -> Result<()> {
    let get = |vars: &VarMap, name: &str| -> Result<Tensor> {
        let data = vars.data().lock().expect("varmap lock");
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().detach()),
            None => candle_core::bail!("a member has no parameter `{name}`"),
        }
    };
    for (name, var) in super::sorted_vars(fused) {
        let t = match member_name(&name) {
            (Some(i), own) => get(members[i], &own)?,
            (None, own) => {
                let parts = members.iter().map(|m| get(m, &own));
                Tensor::cat(&parts.collect::<Result<Vec<_>>>()?, 0)?
            }
        };
        var.set(&t)?;
    }
    Ok(())
}

/// Member `i`'s (of `members`) variables out of the fused network's, by the member's
/// names: what its checkpoint and weights file hold.
pub fn member_tensors(fused: &VarMap, i: usize, members: usize) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, var) in super::sorted_vars(fused) {
        let t = var.as_tensor().detach();
        match member_name(&name) {
            (Some(j), own) if j == i => {
                out.insert(own, t);
            }
            (Some(_), _) => {}
            (None, own) => {
                let rows = t.dim(0)? / members;
                out.insert(own, t.narrow(0, i * rows, rows)?.contiguous()?);
            }
        }
    }
    Ok(out)
}
