//! A recipe's data and its transforms: the dataset, its generation parameters, the
//! validation hold-out, the student's subset and the scale's limits.

use super::Scale;
use crate::recipe::{DatasetName, Recipe, RecipeError};
use crate::spec::{DataSpec, SyntheticSpec, Transform};

/// Defaults of the synthetic dataset when a recipe leaves them out.
pub const SYNTHETIC_DEFAULTS: SyntheticSpec = SyntheticSpec {
    train: 2000,
    test: 500,
    data_seed: 0,
    confusion: 0.0,
};

pub(super) fn data_spec(r: &Recipe, scale: &Scale) -> Result<DataSpec, RecipeError> {
    let raw = &r.raw;
    let name = *raw.dataset.get_ref();
    let sized = [DatasetName::Stl10, DatasetName::Imagenet];
    if let Some(v) = raw.resolution.as_ref().filter(|_| !sized.contains(&name)) {
        return Err(r.error(
            v.span(),
            "resolution",
            format!(
                "`resolution` applies to stl10 and imagenet only; {} has its own (for synthetic data: synthetic.resolution)",
                name.as_str()
            ),
        ));
    }
    let (classes, resolution, synthetic) = match name {
        DatasetName::Cifar10 => (10, 32, None),
        DatasetName::Cifar100 => (100, 32, None),
        DatasetName::Synthetic => {
            let (classes, res, s) = synthetic_spec(r)?;
            (classes, res, Some(s))
        }
        DatasetName::Stl10 => (10, stl10_resolution(r)?, None),
        DatasetName::Imagenet => (1000, imagenet_crop(r)?, None),
    };
    let whole = DataSpec {
        name,
        classes,
        resolution,
        synthetic,
        train_limit: None,
        test_limit: None,
        validation: None,
        train_subset: None,
    };
    // The splits' sizes, from the one table of them.
    let (train_n, test_n) = super::images(&whole);
    let validation = raw.validation.as_ref().map(|v| v.get_ref().0);
    if let Some(v) = validation {
        if v + 2 > train_n {
            let span = raw.validation.as_ref().map_or(0..0, |v| v.span());
            return Err(r.error(
                span,
                "validation",
                format!("{v} images held out of {train_n} leave fewer than 2 to train on"),
            ));
        }
    }
    let train_subset = raw.train_subset.as_ref().map(|v| v.get_ref().0);
    let available = train_n - validation.unwrap_or(0);
    if let Some(n) = train_subset {
        if !(2..=available).contains(&n) {
            let span = raw.train_subset.as_ref().map_or(0..0, |v| v.span());
            return Err(r.error(
                span,
                "train_subset",
                format!("expected 2 to {available} (the training images left after validation)"),
            ));
        }
    }
    Ok(DataSpec {
        train_limit: scale.train_limit(train_subset.unwrap_or(available)),
        test_limit: scale.test_limit(test_n),
        validation,
        train_subset,
        ..whole
    })
}

/// The synthetic dataset's parameters, defaults filled in: (classes, resolution, spec).
fn synthetic_spec(r: &Recipe) -> Result<(usize, usize, SyntheticSpec), RecipeError> {
    let raw = &r.raw;
    let o = raw
        .synthetic
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default();
    let d = SYNTHETIC_DEFAULTS;
    let s = SyntheticSpec {
        train: o.train.map_or(d.train, |v| v.0),
        test: o.test.map_or(d.test, |v| v.0),
        data_seed: o.data_seed.unwrap_or(d.data_seed),
        confusion: o.confusion.unwrap_or(d.confusion),
    };
    if !(0.0..=1.0).contains(&s.confusion) {
        let span = raw.synthetic.as_ref().map_or(0..0, |s| s.span());
        return Err(r.error(span, "synthetic.confusion", "expected a share from 0 to 1"));
    }
    let classes = o.classes.map_or(10, |v| v.0);
    if !(2..=1000).contains(&classes) {
        let span = raw.synthetic.as_ref().map_or(0..0, |s| s.span());
        return Err(r.error(span, "synthetic.classes", "expected 2 to 1000 classes"));
    }
    let res = o.resolution.map_or(16, |v| v.0);
    if !(8..=256).contains(&res) {
        let span = raw.synthetic.as_ref().map_or(0..0, |s| s.span());
        return Err(r.error(
            span,
            "synthetic.resolution",
            "expected a resolution from 8 to 256 pixels",
        ));
    }
    Ok((classes, res, s))
}

/// The data of the teacher runs a recipe plans: the student's, on the whole training
/// split (a student's `train_subset` is its own), with the scale's limit for that split.
pub(super) fn teacher_data(student: &DataSpec, scale: &Scale) -> DataSpec {
    let whole = DataSpec {
        train_subset: None,
        train_limit: None,
        ..student.clone()
    };
    let (train, _) = super::images(&whole);
    DataSpec {
        train_limit: scale.train_limit(train),
        ..whole
    }
}

/// The side an STL-10 recipe trains at (`resolution`, 96 when absent).
fn stl10_resolution(r: &Recipe) -> Result<usize, RecipeError> {
    let allowed = crate::spec::STL10_RESOLUTIONS;
    let res = r
        .raw
        .resolution
        .as_ref()
        .map_or(allowed[0], |v| v.get_ref().0);
    if !allowed.contains(&res) {
        let span = r.raw.resolution.as_ref().map_or(0..0, |v| v.span());
        return Err(r.error(
            span,
            "resolution",
            format!("STL-10 is trained at one of {allowed:?} pixels a side, not {res}"),
        ));
    }
    Ok(res)
}

/// The crop side of an ImageNet recipe (`resolution`, 224 when absent): smaller crops make
/// smoke runs fast, and the run's spec records them.
fn imagenet_crop(r: &Recipe) -> Result<usize, RecipeError> {
    let size = r.raw.resolution.as_ref().map_or(224, |v| v.get_ref().0);
    if !(16..=512).contains(&size) {
        let span = r.raw.resolution.as_ref().map_or(0..0, |v| v.span());
        return Err(r.error(
            span,
            "resolution",
            format!("an ImageNet crop of 16 to 512 pixels a side, not {size}"),
        ));
    }
    Ok(size)
}

pub(super) fn transform_spec(r: &Recipe, data: &DataSpec) -> Transform {
    // The paper normalises CIFAR-10 with the CIFAR-100 statistics too (methods.md).
    let (mean, std) = match &r.raw.normalize {
        Some(n) => (n.mean, [n.std[0].0, n.std[1].0, n.std[2].0]),
        None => match data.name {
            DatasetName::Synthetic => ([0.5; 3], [0.25; 3]),
            // STL-10's own training-split statistics: the paper gives none (inferred).
            DatasetName::Stl10 => ([0.4467, 0.4398, 0.4066], [0.2603, 0.2566, 0.2713]),
            DatasetName::Imagenet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            _ => ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]),
        },
    };
    if data.name == DatasetName::Imagenet {
        return Transform {
            crop_padding: 0,
            flip: true,
            mean,
            std,
            resized_crop: Some(crate::spec::ResizedCrop::imagenet(data.resolution)),
        };
    }
    Transform {
        // 4 px at 32x32 (the paper); the same eighth of the side at other resolutions.
        crop_padding: data.resolution / 8,
        flip: true,
        mean,
        std,
        resized_crop: None,
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::tests::{full, set};
    use crate::plan::{build, images, Scale};
    use crate::recipe::tests::VANILLA;

    #[test]
    fn a_student_subset_trains_on_fewer_images_and_its_teachers_on_all() {
        let student = VANILLA
            .replace("\"Vanilla\"", "\"KD\"")
            .replace("seeds = [0, 1]", "seeds = [0]\ntrain_subset = 20")
            .replace(
                "method = \"vanilla\"",
                "method = \"kd\"\nteachers = [ { model = \"resnet14\" } ]",
            );
        let plan_of = |text: &str, scale: &Scale| {
            let (_d, s) = set(&[("r.toml", text)]);
            build(&s, scale)
        };
        let p = plan_of(&student, &full()).unwrap();
        let (teacher, kd) = (&p.runs[0], &p.runs[1]);
        assert_eq!(kd.deps, vec![teacher.id.clone()]);
        assert_eq!(kd.spec.data.train_subset, Some(20));
        assert_eq!(images(&kd.spec.data), (20, 32));
        assert_eq!(teacher.spec.data.train_subset, None);
        assert_eq!(images(&teacher.spec.data), (64, 32));
        // The teacher is the whole split's vanilla run, as without a subset.
        let whole = plan_of(&student.replace("train_subset = 20", ""), &full()).unwrap();
        assert_eq!(whole.runs[0].id, teacher.id);
        assert_ne!(whole.runs[1].id, kd.id);
        // A scale limits each to its own share: a tenth of 64 and of 20.
        let tenth = Scale {
            data_fraction: 0.1,
            ..Scale::named("smoke").unwrap()
        };
        let p = plan_of(&student, &tenth).unwrap();
        assert_eq!(images(&p.runs[0].spec.data).0, 6);
        assert_eq!(images(&p.runs[1].spec.data).0, 2);
        let whole = plan_of(&student.replace("train_subset = 20", ""), &tenth).unwrap();
        assert_eq!(whole.runs[0].id, p.runs[0].id);
        // More images than the split has left after validation is an error naming the key.
        for bad in ["train_subset = 65", "train_subset = 60\nvalidation = 10"] {
            let e = plan_of(&student.replace("train_subset = 20", bad), &full())
                .unwrap_err()
                .to_string();
            assert!(e.contains("r.toml") && e.contains("train_subset"), "{e}");
        }
    }
}
