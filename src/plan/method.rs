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
    // CRD's settings, which need its term (`crd_weight`).
    let crd_settings = [
        ("crd_dim", w.crd_dim.is_some()),
        ("crd_negatives", w.crd_negatives.is_some()),
        ("crd_temperature", w.crd_temperature.is_some()),
        ("crd_momentum", w.crd_momentum.is_some()),
    ];
    // SSKD's settings, which need one of its terms.
    let sskd_settings = [
        ("sskd_tf_temperature", w.sskd_tf_temperature.is_some()),
        ("sskd_ss_temperature", w.sskd_ss_temperature.is_some()),
        ("sskd_tf_keep", w.sskd_tf_keep.is_some()),
        ("sskd_ss_keep", w.sskd_ss_keep.is_some()),
        ("sskd_head_epochs", w.sskd_head_epochs.is_some()),
        ("sskd_head_lr", w.sskd_head_lr.is_some()),
        ("sskd_head_milestones", w.sskd_head_milestones.is_some()),
    ];
    let sskd_on = [m.sskd_tf_weight, m.sskd_ss_weight]
        .iter()
        .any(|v| v.is_some_and(|w| w.0 > 0.0));
    let teacher_fields: Vec<_> = [
        ("combine", w.combine.is_some()),
        ("temperature", w.temperature.is_some()),
        ("hard_weight", w.hard_weight.is_some()),
        ("teacher_weight", w.teacher_weight.is_some()),
        ("kl_reduction", w.kl_reduction.is_some()),
        ("teacher_reduction", w.teacher_reduction.is_some()),
        ("sample_weight", w.sample_weight.is_some()),
        ("crd_weight", w.crd_weight.is_some()),
        ("sskd_tf_weight", w.sskd_tf_weight.is_some()),
        ("sskd_ss_weight", w.sskd_ss_weight.is_some()),
    ]
    .into_iter()
    .chain(crd_settings)
    .chain(sskd_settings)
    .collect();
    let (unused, why): (Vec<_>, _) = match label {
        LabelSource::Hard => (
            [("epsilon", w.epsilon.is_some())]
                .into_iter()
                .chain(teacher_fields)
                .collect(),
            "apply to other label sources",
        ),
        LabelSource::Smoothed => (
            teacher_fields,
            "apply to label = \"teachers\"",
        ),
        LabelSource::Teachers if m.crd_weight.is_none() && crd_settings.iter().any(|c| c.1) => (
            crd_settings.to_vec(),
            "set CRD's term, which needs crd_weight",
        ),
        LabelSource::Teachers if !sskd_on && sskd_settings.iter().any(|c| c.1) => (
            sskd_settings.to_vec(),
            "set SSKD's terms, which need sskd_tf_weight or sskd_ss_weight above 0",
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
                // Defaults of the CRD paper's CIFAR-100 code (METHODS.md).
                crd: m
                    .crd_weight
                    .filter(|b| b.0 > 0.0)
                    .map(|b| crate::spec::Crd {
                        weight: b.0,
                        dim: m.crd_dim.map_or(128, |v| v.0),
                        negatives: m.crd_negatives.map_or(16384, |v| v.0),
                        temperature: m.crd_temperature.map_or(0.07, |v| v.0),
                        momentum: m.crd_momentum.map_or(0.5, |v| v.0),
                    }),
                // Defaults of the SSKD paper's CIFAR-100 code (METHODS.md).
                sskd: sskd_on.then(|| crate::spec::Sskd {
                    tf_weight: m.sskd_tf_weight.map_or(0.0, |v| v.0),
                    tf_temperature: m.sskd_tf_temperature.map_or(4.0, |v| v.0),
                    tf_keep: m.sskd_tf_keep.map_or(1.0, |v| v.0),
                    ss_weight: m.sskd_ss_weight.map_or(0.0, |v| v.0),
                    ss_temperature: m.sskd_ss_temperature.map_or(0.5, |v| v.0),
                    ss_keep: m.sskd_ss_keep.map_or(0.75, |v| v.0),
                    head_epochs: m.sskd_head_epochs.map_or(60, |v| v.0),
                    head_lr: m.sskd_head_lr.map_or(0.05, |v| v.0),
                    head_milestones: m
                        .sskd_head_milestones
                        .as_ref()
                        .map_or(vec![30, 45], |v| v.iter().map(|x| x.0).collect()),
                }),
            }
        }
    })
}

/// CRD and SSKD distil one teacher's features: CRD into a memory of one embedding per
/// training image, SSKD through rotated copies of the images; neither takes batch
/// augmentation, and they do not combine. SSKD rotates images held in memory.
pub(super) fn distiller_checks(
    r: &crate::recipe::Recipe,
    teachers: usize,
    base: &crate::spec::RunSpec,
) -> Vec<crate::recipe::RecipeError> {
    let Method::Teachers { crd, sskd, .. } = &base.method else {
        return Vec::new();
    };
    let (name, why) = match (crd, sskd) {
        (None, None) => return Vec::new(),
        (Some(_), Some(_)) => {
            let e = "CRD (crd_weight) and SSKD (sskd_*_weight) do not combine: choose one";
            return vec![r.error(method_span(r), "method", e)];
        }
        (Some(_), None) => (
            "CRD (crd_weight)",
            "CRD's memory holds one embedding per training image, which batch augmentation mixes",
        ),
        (None, Some(_)) => (
            "SSKD (sskd_*_weight)",
            "SSKD matches rotated copies of each image, which batch augmentation mixes",
        ),
    };
    let mut errors = Vec::new();
    if teachers != 1 {
        errors.push(r.error(
            r.raw.teachers.span(),
            "teachers",
            format!("{name} distils one teacher's features; {teachers} are listed"),
        ));
    }
    if base.augment != crate::spec::AugmentSpec::None {
        let span = r.raw.augment.as_ref().map_or(0..0, |a| a.span());
        errors.push(r.error(span, "augment", why));
    }
    if let Some(k) = sskd {
        if base.transform.resized_crop.is_some() {
            errors.push(r.error(
                r.raw.dataset.span(),
                "dataset",
                "SSKD rotates images held in memory (CIFAR, STL-10, synthetic); ImageNet is \
                 read from files",
            ));
        }
        let m = &k.head_milestones;
        if m.windows(2).any(|w| w[0] >= w[1]) || m.iter().any(|&e| e >= k.head_epochs) {
            errors.push(r.error(
                method_span(r),
                "sskd_head_milestones",
                format!(
                    "milestones must increase and stay below sskd_head_epochs ({}), found {m:?}",
                    k.head_epochs
                ),
            ));
        }
    }
    errors
}

fn method_span(r: &crate::recipe::Recipe) -> std::ops::Range<usize> {
    r.raw.method.as_ref().map_or(0..0, |m| m.span())
}

#[cfg(test)]
mod tests {
    use crate::plan::build;
    use crate::plan::tests::{full, last_spec, set};
    use crate::recipe::tests::VANILLA;
    use crate::spec::Method;

    const ONE: &str = "teachers = [ { model = \"resnet14\", seeds = [0] } ]";
    const TWO: &str = "teachers = [ { model = \"resnet14\", seeds = [0, 1] } ]";

    /// The Vanilla test recipe with `method` and more lines.
    fn recipe(method: &str, extra: &str) -> String {
        let m = format!("method = {method}\n{extra}");
        VANILLA.replace("method = \"vanilla\"", &m)
    }

    /// The planner's error on one recipe.
    fn error(text: &str) -> String {
        let (_d, s) = set(&[("r.toml", text)]);
        build(&s, &full()).unwrap_err().to_string()
    }

    #[test]
    fn issue_19_wsl_weights_only_the_per_teacher_kl_and_makes_runs_of_its_own() {
        for (method, extra) in [
            ("{ preset = \"sl\", sample_weight = \"wsl\" }", ONE),
            ("{ preset = \"vanilla\", sample_weight = \"wsl\" }", ""),
        ] {
            let e = error(&recipe(method, extra));
            assert!(e.contains("`sample_weight` would have no effect"), "{e}");
        }
        let spec = |m: &str| last_spec(&recipe(m, ONE));
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

    #[test]
    fn issue_19_crd_takes_one_teacher_no_batch_augmentation_and_its_paper_defaults() {
        let e = error(&recipe("\"crd\"", TWO));
        assert!(
            e.contains("r.toml") && e.contains("distils one teacher's features; 2 are listed"),
            "{e}"
        );
        let e = error(&recipe(
            "\"crd-kd\"",
            &format!("{ONE}\naugment = {{ kind = \"ricap\" }}"),
        ));
        assert!(
            e.contains("key `augment`") && e.contains("batch augmentation"),
            "{e}"
        );
        let e = error(&recipe("{ preset = \"kd\", crd_dim = 64 }", ONE));
        assert!(e.contains("`crd_dim` would have no effect"), "{e}");
        let e = error(&recipe("{ preset = \"vanilla\", crd_weight = 0.8 }", ""));
        assert!(e.contains("`crd_weight` would have no effect"), "{e}");
        let paper = crate::spec::Crd {
            weight: 0.8,
            dim: 128,
            negatives: 16384,
            temperature: 0.07,
            momentum: 0.5,
        };
        let crd = last_spec(&recipe("\"crd\"", ONE));
        let crd_kd = last_spec(&recipe("\"crd-kd\"", ONE));
        let kd = last_spec(&recipe("{ preset = \"crd-kd\", crd_weight = 0.0 }", ONE));
        for (spec, weight) in [(&crd, 0.0), (&crd_kd, 1.0)] {
            assert!(
                matches!(spec.method, Method::Teachers { crd: Some(c), teacher_weight, hard_weight: 1.0, temperature: 4.0, .. } if c == paper && teacher_weight == weight),
                "{:?}",
                spec.method
            );
        }
        assert_ne!(crd.id(), crd_kd.id());
        assert_ne!(crd_kd.id(), kd.id());
    }

    #[test]
    fn issue_19_sskd_takes_one_teacher_its_paper_defaults_and_batches_of_its_own() {
        let e = error(&recipe("\"sskd\"", TWO));
        assert!(e.contains("SSKD (sskd_*_weight) distils one teacher's features; 2 are listed"));
        let e = error(&recipe(
            "\"sskd\"",
            &format!("{ONE}\naugment = {{ kind = \"mixup\" }}"),
        ));
        assert!(
            e.contains("key `augment`") && e.contains("rotated copies"),
            "{e}"
        );
        let e = error(&recipe("{ preset = \"kd\", sskd_ss_keep = 0.5 }", ONE));
        assert!(
            e.contains("`sskd_ss_keep` would have no effect") && e.contains("sskd_ss_weight"),
            "{e}"
        );
        let e = error(&recipe("{ preset = \"sskd\", crd_weight = 0.8 }", ONE));
        assert!(e.contains("do not combine"), "{e}");
        let e = error(&recipe(
            "{ preset = \"sskd\", sskd_head_milestones = [30, 60] }",
            ONE,
        ));
        assert!(
            e.contains("key `sskd_head_milestones`") && e.contains("below sskd_head_epochs (60)"),
            "{e}"
        );
        let sskd = last_spec(&recipe("\"sskd\"", ONE));
        let paper = crate::spec::Sskd {
            tf_weight: 2.7,
            tf_temperature: 4.0,
            tf_keep: 1.0,
            ss_weight: 10.0,
            ss_temperature: 0.5,
            ss_keep: 0.75,
            head_epochs: 60,
            head_lr: 0.05,
            head_milestones: vec![30, 45],
        };
        assert_eq!(sskd.method.sskd(), Some(&paper));
        assert!(matches!(
            sskd.method,
            Method::Teachers {
                hard_weight: 0.1,
                teacher_weight: 0.9,
                temperature: 4.0,
                ..
            }
        ));
        // Both weights 0 is KD with SSKD's weights: no rotated batches, no SSKD in the spec.
        let off = "{ preset = \"sskd\", sskd_tf_weight = 0.0, sskd_ss_weight = 0.0 }";
        let off = last_spec(&recipe(off, ONE));
        assert_eq!(off.method.sskd(), None);
        assert_eq!(off.views(), 1);
        assert_eq!(sskd.views(), crate::spec::SSKD_VIEWS);
        // Rotated batches are not the others' batches: no cohort with KD.
        assert_ne!(sskd.batch_key(), off.batch_key());
        assert_ne!(sskd.id(), off.id());
    }
}
