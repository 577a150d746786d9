//! A recipe's method (preset and inline keys merged) resolved into the run spec's
//! `Method`: which keys fit which label source, and the defaults of `methods.md`.

use crate::recipe::{LabelSource, MethodFields};
use crate::spec::Method;

// Long: the table of which method keys fit which label source is one match, read
// against methods.md as a whole.
/// The method `m` (preset and recipe merged) of a recipe whose `teachers` list is empty
/// or not (`has_teachers`). A key written in the recipe itself (`inline`) that would have
/// no effect under the label source, and teachers that the label source would not use,
/// are errors (the key at fault, and why). Such keys inherited from a preset are dropped:
/// `{ preset = "kd", combine = "mean-softmax" }` is a method of its own. Keys without
/// effect never reach the run spec, so they cannot make equal runs look different.
pub(super) fn method_spec(
    m: &MethodFields,
    inline: Option<&MethodFields>,
    has_teachers: bool,
) -> Result<Method, (&'static str, String)> {
    use crate::recipe::{Combine, KlReduction, TeacherReduction};
    let label = m.label.ok_or((
        "method",
        "the method sets no `label` (hard, smoothed or teachers)".to_string(),
    ))?;
    let name = match label {
        LabelSource::Hard => "hard",
        LabelSource::Smoothed => "smoothed",
        LabelSource::Teachers => "teachers",
    };
    let combine = m.combine.unwrap_or(Combine::MeanSoftmax);
    let hard_weight = m.hard_weight.map_or(0.0, |w| w.0);
    let none = MethodFields::default();
    let w = inline.unwrap_or(&none);
    let teacher_fields = [
        ("combine", w.combine.is_some()),
        ("temperature", w.temperature.is_some()),
        ("hard_weight", w.hard_weight.is_some()),
        ("teacher_weight", w.teacher_weight.is_some()),
        ("kl_reduction", w.kl_reduction.is_some()),
        ("teacher_reduction", w.teacher_reduction.is_some()),
        ("sample_weight", w.sample_weight.is_some()),
    ];
    let (unused, why): (Vec<_>, _) = match label {
        LabelSource::Hard => (
            [("epsilon", w.epsilon.is_some())]
                .into_iter()
                .chain(teacher_fields)
                .collect(),
            "apply to other label sources",
        ),
        LabelSource::Smoothed => (
            teacher_fields.into_iter().collect(),
            "apply to label = \"teachers\"",
        ),
        LabelSource::Teachers if combine == Combine::MeanSoftmax => (
            vec![
                ("kl_reduction", w.kl_reduction.is_some()),
                ("teacher_reduction", w.teacher_reduction.is_some()),
                ("sample_weight", w.sample_weight.is_some()),
                ("epsilon", w.epsilon.is_some() && hard_weight == 0.0),
            ],
            "apply to combine = \"per-teacher-kl\" (epsilon: to a hard-label term, hard_weight > 0)",
        ),
        LabelSource::Teachers => (
            vec![("epsilon", w.epsilon.is_some() && hard_weight == 0.0)],
            "smooth the hard-label term, which hard_weight = 0 leaves out",
        ),
    };
    let unused: Vec<&str> = unused.into_iter().filter(|u| u.1).map(|u| u.0).collect();
    if !unused.is_empty() {
        return Err((
            "method",
            format!(
                "`{}` would have no effect with label = \"{name}\": they {why}",
                unused.join("`, `")
            ),
        ));
    }
    match (label, has_teachers) {
        (LabelSource::Teachers, false) => {
            return Err((
                "method",
                "label = \"teachers\" needs teachers: add a `teachers` list".into(),
            ))
        }
        (LabelSource::Hard | LabelSource::Smoothed, true) => {
            return Err((
                "teachers",
                format!("teachers are listed, but label = \"{name}\" does not use them"),
            ))
        }
        _ => {}
    }
    Ok(match label {
        LabelSource::Hard => Method::Hard,
        LabelSource::Smoothed => Method::Smoothed {
            epsilon: m.epsilon.map_or(0.1, |e| e.0),
        },
        LabelSource::Teachers => {
            // Keys without effect take their defaults (`mean-softmax` has no KL and no
            // per-teacher reduction; no hard-label term has nothing to smooth).
            let per_teacher = combine == Combine::PerTeacherKl;
            Method::Teachers {
                combine,
                temperature: m.temperature.map_or(1.0, |t| t.0),
                hard_weight,
                teacher_weight: m.teacher_weight.map_or(1.0, |w| w.0),
                kl_reduction: m
                    .kl_reduction
                    .filter(|_| per_teacher)
                    .unwrap_or(KlReduction::BatchMean),
                teacher_reduction: m
                    .teacher_reduction
                    .filter(|_| per_teacher)
                    .unwrap_or(TeacherReduction::Mean),
                epsilon: m.epsilon.filter(|_| hard_weight > 0.0).map_or(0.0, |e| e.0),
                sample_weight: m.sample_weight.filter(|_| per_teacher).unwrap_or_default(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::plan::build;
    use crate::plan::tests::{full, last_spec, set};
    use crate::recipe::tests::VANILLA;
    use crate::spec::Method;

    #[test]
    fn issue_19_wsl_weights_only_the_per_teacher_kl_and_makes_runs_of_its_own() {
        let teachers = "teachers = [ { model = \"resnet14\", seeds = [0] } ]";
        let recipe = |method: &str, extra: &str| {
            let m = format!("method = {method}\n{extra}");
            VANILLA.replace("method = \"vanilla\"", &m)
        };
        let built = |text: &str| {
            let (_d, s) = set(&[("r.toml", text)]);
            build(&s, &full()).map_err(|e| e.to_string())
        };
        for (method, extra) in [
            ("{ preset = \"sl\", sample_weight = \"wsl\" }", teachers),
            ("{ preset = \"vanilla\", sample_weight = \"wsl\" }", ""),
        ] {
            let e = built(&recipe(method, extra)).unwrap_err();
            assert!(e.contains("`sample_weight` would have no effect"), "{e}");
        }
        let spec = |m: &str| last_spec(&recipe(m, teachers));
        let (kd, wsl) = (spec("\"kd\""), spec("\"wsl\""));
        assert!(matches!(
            wsl.method,
            Method::Teachers {
                sample_weight: crate::spec::SampleWeight::Wsl,
                temperature: 4.0,
                teacher_weight: 2.25,
                ..
            }
        ));
        // `none` is left out of the spec: runs without it keep their ids.
        assert!(!toml::to_string(&kd).unwrap().contains("sample_weight"));
        assert_ne!(kd.id(), wsl.id());
    }
}
