use super::*;
use crate::recipe::tests::{folder, VANILLA};
use crate::recipe::{load, RecipeSet};
use crate::spec::ModelName;

pub(super) fn set(files: &[(&str, &str)]) -> (tempfile::TempDir, RecipeSet) {
    let dir = folder(files);
    let s = load(&[dir.path().to_path_buf()]).unwrap();
    (dir, s)
}

pub(super) fn full() -> Scale {
    Scale::named("full").unwrap()
}

/// The spec of the last run the one recipe `text` plans.
pub(super) fn last_spec(text: &str) -> crate::spec::RunSpec {
    let (_d, s) = set(&[("r.toml", text)]);
    build(&s, &full())
        .unwrap()
        .runs
        .last()
        .unwrap()
        .spec
        .clone()
}

/// Rates for estimate tests: a ResNet8 step at 100 img/s, a forward pass at 300.
pub(super) fn resnet8_rates() -> Rates {
    Rates::from_measured(
        &[(ModelName::Resnet8, 100.0)],
        &[(ModelName::Resnet8, 300.0)],
        "test".into(),
    )
    .unwrap()
}

#[test]
fn each_seed_becomes_a_run() {
    let (_d, s) = set(&[("r.toml", VANILLA)]);
    let p = build(&s, &full()).unwrap();
    assert_eq!(p.runs.len(), 2);
    assert_eq!(p.runs[0].spec.seed, 0);
    assert_eq!(p.runs[1].spec.seed, 1);
    assert_eq!(p.runs[0].spec.schedule.epochs, 2);
    assert_eq!(p.runs[0].spec.schedule.lr, 0.05); // filled from `default`
    let cell = p.cells.values().next().unwrap();
    assert_eq!(cell.runs.len(), 2);
    assert_eq!(p.total_epochs(), 4);
}

#[test]
fn identical_runs_in_two_cells_are_planned_once() {
    let other = VANILLA.replace("\"Vanilla\"", "\"LS\"");
    let (_d, s) = set(&[("a.toml", VANILLA), ("b.toml", &other)]);
    let p = build(&s, &full()).unwrap();
    assert_eq!(p.runs.len(), 2, "same spec, same ids");
    assert_eq!(p.runs[0].cells.len(), 2);
    // A different method is a different run.
    let ls = other.replace("\"vanilla\"", "\"smoothing\"");
    let (_d, s) = set(&[("a.toml", VANILLA), ("b.toml", &ls)]);
    assert_eq!(build(&s, &full()).unwrap().runs.len(), 4);
}

#[test]
fn ids_are_stable_and_shaped() {
    let (_d, s) = set(&[("r.toml", VANILLA)]);
    let a = build(&s, &full()).unwrap();
    let b = build(&s, &full()).unwrap();
    assert_eq!(a, b);
    let id = &a.runs[0].id;
    assert!(id.starts_with("synthetic-resnet8-"), "{id}");
    assert_eq!(id.len(), "synthetic-resnet8-".len() + 12);
}

#[test]
fn ids_change_with_every_field() {
    let (_d, s) = set(&[("r.toml", VANILLA)]);
    let base = build(&s, &full()).unwrap().runs[0].spec.clone();
    type Mutation = fn(&mut RunSpec);
    let mutations: Vec<(&str, Mutation)> = vec![
        ("trainer_version", |s| s.trainer_version += 1),
        ("seed", |s| s.seed += 1),
        ("model", |s| s.model = crate::recipe::ModelName::Resnet14),
        ("data.name", |s| {
            s.data.name = crate::recipe::DatasetName::Cifar10
        }),
        ("data.classes", |s| s.data.classes += 1),
        ("data.resolution", |s| s.data.resolution += 1),
        ("data.synthetic.train", |s| {
            s.data.synthetic.as_mut().unwrap().train += 1
        }),
        ("data.synthetic.test", |s| {
            s.data.synthetic.as_mut().unwrap().test += 1
        }),
        ("data.synthetic.data_seed", |s| {
            s.data.synthetic.as_mut().unwrap().data_seed += 1
        }),
        ("data.train_limit", |s| s.data.train_limit = Some(10)),
        ("data.test_limit", |s| s.data.test_limit = Some(10)),
        ("data.validation", |s| s.data.validation = Some(10)),
        ("data.train_subset", |s| s.data.train_subset = Some(10)),
        ("transform.crop_padding", |s| s.transform.crop_padding += 1),
        ("transform.flip", |s| s.transform.flip = !s.transform.flip),
        ("transform.mean", |s| s.transform.mean[2] += 0.01),
        ("transform.std", |s| s.transform.std[0] += 0.01),
        ("schedule.lr", |s| s.schedule.lr *= 2.0),
        ("schedule.momentum", |s| s.schedule.momentum = 0.8),
        ("schedule.weight_decay", |s| s.schedule.weight_decay = 1e-4),
        ("schedule.batch", |s| s.schedule.batch = 32),
        ("schedule.epochs", |s| s.schedule.epochs += 1),
        ("schedule.milestones", |s| s.schedule.milestones.push(2)),
        ("schedule.gamma", |s| s.schedule.gamma = 0.2),
        ("method", |s| s.method = Method::Smoothed { epsilon: 0.1 }),
        ("augment", |s| s.augment = AugmentSpec::Mixup { alpha: 1.0 }),
        ("teachers", |s| {
            s.teachers.push(TeacherRef::Run { id: "x".into() })
        }),
        ("scale", |s| s.scale = "smoke".into()),
    ];
    let mut seen = std::collections::BTreeSet::new();
    seen.insert(base.id());
    for (name, m) in mutations {
        let mut s = base.clone();
        m(&mut s);
        assert!(seen.insert(s.id()), "changing {name} kept the id");
    }
    // Method parameters count too.
    let eps = |e| RunSpec {
        method: Method::Smoothed { epsilon: e },
        ..base.clone()
    };
    assert_ne!(eps(0.1).id(), eps(0.2).id());
}

#[test]
fn teachers_resolve_to_the_vanilla_runs_and_are_deduped() {
    // The Vanilla ResNet14 cell's runs double as the KD cell's teachers.
    let vanilla14 = VANILLA
        .replace("\"ResNet8\"", "\"ResNet14\"")
        .replace("student = \"resnet8\"", "student = \"resnet14\"");
    let kd = VANILLA.replace("\"Vanilla\"", "\"KD\"").replace(
        "method = \"vanilla\"",
        "method = \"kd\"\nteachers = [ { model = \"resnet14\", seeds = [0, 1] } ]",
    );
    let (_d, s) = set(&[("v14.toml", &vanilla14), ("kd.toml", &kd)]);
    let p = build(&s, &full()).unwrap();
    assert_eq!(
        p.runs.len(),
        4,
        "2 KD students + 2 vanilla teachers, no extra"
    );
    let kd_runs: Vec<_> = p.runs.iter().filter(|r| !r.deps.is_empty()).collect();
    assert_eq!(kd_runs.len(), 2);
    let teachers = &kd_runs[0].deps;
    assert_eq!(teachers.len(), 2);
    for t in teachers {
        let tr = p.get(t).unwrap();
        assert_eq!(tr.spec.method, Method::Hard);
        assert_eq!(
            tr.cells[0].0.row, "Vanilla",
            "the teacher is the Vanilla cell's run"
        );
        assert_eq!(tr.teacher_of.len(), 2);
        // Dependency order: the teacher comes first.
        let ti = p.runs.iter().position(|r| &r.id == t).unwrap();
        let si = p.runs.iter().position(|r| r.id == kd_runs[0].id).unwrap();
        assert!(ti < si);
    }
    // The student spec names its teachers by id.
    assert_eq!(
        kd_runs[0].spec.teachers,
        teachers
            .iter()
            .map(|t| TeacherRef::Run { id: t.clone() })
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_scaled_plan_has_its_own_ids_and_fewer_epochs() {
    let text = VANILLA.replace(
        "schedule = { epochs = 2, milestones = [1] }",
        "schedule = \"default\"",
    );
    let (_d, s) = set(&[("r.toml", &text)]);
    let full_plan = build(&s, &full()).unwrap();
    let smoke = build(&s, &Scale::named("smoke").unwrap()).unwrap();
    assert_ne!(full_plan.runs[0].id, smoke.runs[0].id);
    assert_eq!(smoke.runs[0].spec.schedule.epochs, 2);
    assert!(smoke.runs[0].spec.schedule.milestones.is_empty());
    let quick = build(&s, &Scale::named("quick").unwrap()).unwrap();
    assert_eq!(quick.runs[0].spec.schedule.epochs, 24);
    assert_eq!(quick.runs[0].spec.schedule.milestones, vec![15, 18, 21]);
    assert_eq!(quick.runs[0].spec.data.train_limit, Some(13));
    assert!(Scale::named("huge").is_err());
}

#[test]
fn lr_steps_after_each_milestone() {
    let s = Schedule::preset(crate::recipe::SchedulePreset::Default);
    assert_eq!(s.lr_at(1), 0.05);
    assert_eq!(s.lr_at(150), 0.05);
    assert!((s.lr_at(151) - 0.005).abs() < 1e-12);
    assert!((s.lr_at(180) - 0.005).abs() < 1e-12);
    assert!((s.lr_at(181) - 0.0005).abs() < 1e-12);
    assert!((s.lr_at(240) - 0.00005).abs() < 1e-12);
    let l = Schedule::preset(crate::recipe::SchedulePreset::Long);
    assert_eq!((l.epochs, l.milestones.len()), (350, 4));
    let i = Schedule::preset(crate::recipe::SchedulePreset::Imagenet);
    assert_eq!((i.lr, i.batch, i.epochs), (0.1, 256, 100));
}

#[test]
fn bad_schedules_and_unimplemented_parts_are_errors_naming_the_file() {
    let t = VANILLA.replace("milestones = [1]", "milestones = [3]");
    let (_d, s) = set(&[("r.toml", &t)]);
    let e = build(&s, &full()).unwrap_err().to_string();
    assert!(e.contains("r.toml") && e.contains("milestone 3"), "{e}");
    // Augmentation parameters default as in methods.md.
    let t = VANILLA.replace(
        "seeds = [0, 1]",
        "seeds = [0]\naugment = { kind = \"ricap\" }",
    );
    let (_d, s) = set(&[("r.toml", &t)]);
    let spec = &build(&s, &full()).unwrap().runs[0].spec;
    assert_eq!(spec.augment, AugmentSpec::Ricap { beta: 0.3 });
}

#[test]
fn stl10_imagenet_and_torchvision_models_plan_with_their_transforms() {
    // torchvision's ResNets plan on any dataset, as teachers too.
    let t = VANILLA.replace("\"resnet8\"", "\"resnet18\"")
        + "teachers = [ { model = \"resnet50\", seeds = [0] } ]\nmethod = \"sl\"\n";
    let t = t.replacen("method = \"vanilla\"\n", "", 1);
    let (_d, s) = set(&[("r.toml", &t)]);
    let p = build(&s, &full()).unwrap();
    assert_eq!(p.runs.len(), 3, "two students and their teacher");
    assert!(p.runs.iter().any(|r| r.spec.model == ModelName::Resnet50));
    let t = VANILLA.replace(
        "\"synthetic\"\nsynthetic = { train = 64, test = 32, resolution = 8 }",
        "\"stl10\"",
    );
    let (_d, s) = set(&[("r.toml", &t)]);
    let stl = &build(&s, &full()).unwrap().runs[0].spec;
    assert_eq!((stl.data.classes, stl.data.resolution), (10, 96));
    assert_eq!(stl.transform.crop_padding, 12, "an eighth of the side");
    let (_d, s) = set(&[("r.toml", &format!("{t}resolution = 32\n"))]);
    let stl32 = &build(&s, &full()).unwrap().runs[0].spec;
    assert_eq!(
        (stl32.data.resolution, stl32.transform.crop_padding),
        (32, 4)
    );
    assert_ne!(stl.id(), stl32.id());
    let (_d, s) = set(&[("r.toml", &format!("{t}resolution = 40\n"))]);
    let e = build(&s, &full()).unwrap_err().to_string();
    assert!(e.contains("r.toml") && e.contains("not 40"), "{e}");
    let (_d, s) = set(&[("r.toml", &format!("{VANILLA}resolution = 32\n"))]);
    let e = build(&s, &full()).unwrap_err().to_string();
    assert!(e.contains("applies to stl10 and imagenet only"), "{e}");
    // ImageNet: 1000 classes, torchvision's crops at 224 (or a smaller crop for smoke runs).
    let (_d, s) = set(&[("r.toml", &t.replace("stl10", "imagenet"))]);
    let inet = &build(&s, &full()).unwrap().runs[0].spec;
    assert_eq!((inet.data.classes, inet.data.resolution), (1000, 224));
    let crop = inet.transform.resized_crop.as_ref().unwrap();
    assert_eq!(
        (crop.size, crop.resize, crop.scale),
        (224, 256, [0.08, 1.0])
    );
    assert_eq!(inet.transform.mean, [0.485, 0.456, 0.406]);
    let (_d, s) = set(&[(
        "r.toml",
        &format!("{}resolution = 64\n", t.replace("stl10", "imagenet")),
    )]);
    let small = &build(&s, &full()).unwrap().runs[0].spec;
    let crop = small.transform.resized_crop.as_ref().unwrap();
    assert_eq!((crop.size, crop.resize), (64, 73));
    // An ImageNet cell's teachers train on the ImageNet schedule.
    let (_d, s) = set(&[(
        "r.toml",
        &(t.replace("stl10", "imagenet")
            .replace(
                "schedule = { epochs = 2, milestones = [1] }",
                "schedule = \"imagenet\"",
            )
            .replace("method = \"vanilla\"", "method = \"sl\"")
            + "teachers = [ { model = \"resnet50\", seeds = [0] } ]\n"),
    )]);
    let p = build(&s, &full()).unwrap();
    let teacher = p
        .runs
        .iter()
        .find(|r| r.spec.model == ModelName::Resnet50)
        .unwrap();
    assert_eq!(
        teacher.spec.schedule,
        Schedule::preset(SchedulePreset::Imagenet)
    );
    let (_d, s) = set(&[(
        "r.toml",
        &format!("{}resolution = 8\n", t.replace("stl10", "imagenet")),
    )]);
    let e = build(&s, &full()).unwrap_err().to_string();
    assert!(e.contains("16 to 512 pixels"), "{e}");
}

#[test]
fn a_method_must_fit_its_teachers_and_use_every_field_it_sets() {
    let teachers = "teachers = [ { model = \"resnet14\", seeds = [0] } ]";
    let recipe = |method: &str, with_teachers: bool| {
        let extra = if with_teachers { teachers } else { "" };
        VANILLA.replace(
            "method = \"vanilla\"",
            &format!("method = {method}\n{extra}"),
        )
    };
    let error = |text: &str| {
        let (_d, s) = set(&[("r.toml", text)]);
        build(&s, &full()).unwrap_err().to_string()
    };
    let e = error(&recipe("\"kd\"", false));
    assert!(e.contains("r.toml") && e.contains("needs teachers"), "{e}");
    let e = error(&recipe("\"vanilla\"", true));
    assert!(
        e.contains("r.toml") && e.contains("key `teachers`") && e.contains("does not use them"),
        "{e}"
    );
    let e = error(&recipe(
        "{ preset = \"smoothing\", temperature = 2.0 }",
        false,
    ));
    assert!(e.contains("`temperature` would have no effect"), "{e}");
    let e = error(&recipe(
        "{ preset = \"en-sl\", kl_reduction = \"element-mean\" }",
        true,
    ));
    assert!(e.contains("`kl_reduction` would have no effect"), "{e}");
    // ε needs a hard-label term to smooth: KD has one, KD-SL none.
    let e = error(&recipe("{ preset = \"kd-sl\", epsilon = 0.1 }", true));
    assert!(e.contains("`epsilon` would have no effect"), "{e}");
    let method = |m: &str| last_spec(&recipe(m, true));
    let (kd, ls_kd) = (
        method("\"kd\""),
        method("{ preset = \"kd\", epsilon = 0.1 }"),
    );
    assert!(matches!(ls_kd.method, Method::Teachers { epsilon, .. } if epsilon == 0.1));
    assert_ne!(kd.id(), ls_kd.id());
    // ε = 0 is left out of the spec: runs without it keep their ids.
    assert!(!toml::to_string(&kd).unwrap().contains("epsilon"));

    // Keys a preset brings that the recipe's own keys make moot are dropped, not errors,
    // and take their defaults, so the run is the one written without them.
    let kd_as_ensl = method("{ preset = \"kd\", combine = \"mean-softmax\" }");
    let written_out = method(
        "{ label = \"teachers\", combine = \"mean-softmax\", temperature = 3.0, hard_weight = 1.0, teacher_weight = 0.1 }",
    );
    assert_eq!(kd_as_ensl.id(), written_out.id());
    let (_d, s) = set(&[(
        "r.toml",
        &recipe("{ preset = \"sl\", label = \"hard\" }", false),
    )]);
    let hard = build(&s, &full()).unwrap().runs[0].spec.clone();
    let (_d, s) = set(&[("r.toml", &recipe("\"vanilla\"", false))]);
    assert_eq!(hard.id(), build(&s, &full()).unwrap().runs[0].spec.id());
}

#[test]
fn a_checkpoint_teacher_is_known_by_its_content_not_its_path() {
    let kd = VANILLA.replace("\"Vanilla\"", "\"KD\"").replace(
        "method = \"vanilla\"",
        "method = \"kd\"\nteachers = [ { model = \"resnet8\", checkpoint = \"t.safetensors\" } ]",
    );
    let dir = crate::recipe::tests::folder(&[("r.toml", &kd)]);
    std::fs::create_dir(dir.path().join("x")).unwrap();
    let id = |root: std::path::PathBuf| {
        let s = load(&[root]).unwrap();
        build(&s, &full()).map(|p| p.runs[0].id.clone())
    };
    let e = id(dir.path().to_path_buf()).unwrap_err().to_string();
    assert!(
        e.contains("r.toml") && e.contains("teachers.checkpoint") && e.contains("t.safetensors"),
        "{e}"
    );
    std::fs::write(dir.path().join("t.safetensors"), b"one").unwrap();
    let a = id(dir.path().to_path_buf()).unwrap();
    // The same folder reached another way, and a copy elsewhere: the same runs.
    assert_eq!(id(dir.path().join("x").join("..")).unwrap(), a);
    let copy = crate::recipe::tests::folder(&[("r.toml", &kd)]);
    std::fs::write(copy.path().join("t.safetensors"), b"one").unwrap();
    assert_eq!(id(copy.path().to_path_buf()).unwrap(), a);
    // Without the file, its SHA-256 in the recipe plans the same runs.
    let sha = crate::hash::file_sha256(&copy.path().join("t.safetensors")).unwrap();
    std::fs::remove_file(copy.path().join("t.safetensors")).unwrap();
    let pinned = kd.replace(
        "checkpoint = \"t.safetensors\"",
        &format!("checkpoint = \"t.safetensors\", sha256 = \"{sha}\""),
    );
    std::fs::write(copy.path().join("r.toml"), &pinned).unwrap();
    assert_eq!(id(copy.path().to_path_buf()).unwrap(), a);
    std::fs::write(copy.path().join("r.toml"), pinned.replace(&sha, "abc")).unwrap();
    let e = id(copy.path().to_path_buf()).unwrap_err().to_string();
    assert!(e.contains("teachers.sha256"), "{e}");
    // New weights at the same path: a new run.
    std::fs::write(dir.path().join("t.safetensors"), b"two").unwrap();
    assert_ne!(id(dir.path().to_path_buf()).unwrap(), a);
}

#[test]
fn issue_15_cohorts_share_batches_and_never_hold_a_student_with_its_teacher() {
    let set = load(&[std::path::PathBuf::from("recipes/cifar100")]).unwrap();
    let p = build(&set, &full()).unwrap();
    let cs = cohorts(&p);
    let mut sizes: Vec<usize> = cs.iter().map(|c| c.runs.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 2, 2, 10, 10, 10, 26, 26, 26, 30, 30, 30]);
    assert_eq!(sizes.iter().sum::<usize>(), p.runs.len());
    for c in &cs {
        let runs: Vec<&PlannedRun> = c.runs.iter().map(|id| p.get(id).unwrap()).collect();
        let s = &runs[0].spec;
        for r in &runs {
            assert_eq!(
                (
                    &r.spec.data,
                    r.spec.seed,
                    r.spec.schedule.batch,
                    &r.spec.transform,
                    &r.spec.augment
                ),
                (&s.data, s.seed, s.schedule.batch, &s.transform, &s.augment),
                "{} does not see the batches of {}",
                r.id,
                runs[0].id
            );
            assert!(
                !r.deps.iter().any(|d| c.runs.contains(d)),
                "{} with its teacher",
                r.id
            );
        }
    }
    // The "+" rows (350 epochs) share the batches of the 240-epoch rows of their seed.
    assert!(cs.iter().any(|c| {
        let epochs: std::collections::BTreeSet<usize> = c
            .runs
            .iter()
            .map(|id| p.get(id).unwrap().spec.schedule.epochs)
            .collect();
        epochs.len() == 2
    }));
}

#[test]
fn issue_15_estimate_counts_a_shared_teacher_pass_once_per_cohort_batch() {
    let kd = |row: &str, model: &str| {
        VANILLA
            .replace("\"Vanilla\"", &format!("\"{row}\""))
            .replace("seeds = [0, 1]", "seeds = [0]")
            .replace("student = \"resnet8\"", &format!("student = \"{model}\""))
            .replace(
                "method = \"vanilla\"",
                "method = \"kd\"\nteachers = [{ model = \"resnet8\", seeds = [0] }]",
            )
    };
    let a = kd("KD", "resnet8");
    let b = kd("KD", "resnet14").replace("\"ResNet8\"", "\"ResNet14\"");
    let (_d, s) = set(&[("a.toml", &a), ("b.toml", &b)]);
    let p = build(&s, &full()).unwrap();
    assert_eq!(p.runs.len(), 3);
    let cs = cohorts(&p);
    assert_eq!(cs.len(), 2, "the teacher, then both students");
    // ResNet8: a step at 100 img/s, a forward pass at 300; ResNet14 costs twice as much.
    let rates = resnet8_rates();
    let all: std::collections::BTreeSet<&str> = p.runs.iter().map(|r| r.id.as_str()).collect();
    let e = estimate(&p, &all, &cs, &rates);
    // 8×8 images cost 1/16 of 32×32: 64 training images are 4 units, 32 test images 2.
    let teacher = 2.0 * (4.0 / 100.0 + 2.0 / 300.0);
    let kd8 = 2.0 * (4.0 * (1.0 / 100.0 + 1.0 / 300.0) + 2.0 / 300.0);
    let kd14 = 2.0 * (4.0 * (1.0 / 50.0 + 1.0 / 300.0) + 2.0 / 150.0);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * b.abs();
    assert_eq!((e.runs, e.epochs, e.images), (3, 6, 3 * 2 * 64));
    assert!(close(e.alone_hours * 3600.0, teacher + kd8 + kd14), "{e:?}");
    // As a cohort the two students run their one teacher's pass once per batch.
    let shared = 2.0 * 4.0 / 300.0;
    assert!(
        close(e.cohort_hours * 3600.0, teacher + kd8 + kd14 - shared),
        "{e:?}"
    );
}

#[test]
fn issue_15_parameter_counts_match_the_built_models() {
    for m in ModelName::CIFAR.into_iter().chain(ModelName::IMAGENET) {
        for k in [10, 100, 1000] {
            let built = crate::model::parameters_of(m, k).unwrap() as u64;
            assert_eq!(parameters(m, k), built, "{} with {k} classes", m.as_str());
        }
    }
}

#[test]
fn issue_15_a_cohort_over_its_memory_budget_is_split_in_order() {
    let set = load(&[std::path::PathBuf::from("recipes/cifar100")]).unwrap();
    let p = build(&set, &full()).unwrap();
    let whole = cohorts(&p);
    let gib = 1u64 << 30;
    // Table 1's cohorts fit the default budget as they are.
    assert_eq!(
        within_budget(&p, whole.clone(), crate::exec::DEFAULT_COHORT_MEMORY, false),
        whole
    );
    let biggest = whole
        .iter()
        .map(|c| memory(&p, &c.runs, false))
        .max()
        .unwrap();
    // The largest: an SSKD cohort, whose batches hold four copies of each image.
    assert!(biggest > 3 * gib && biggest < 6 * gib, "{biggest}");
    // At 1.2 GiB the larger cohorts split; every part fits or is a run alone, and the
    // parts hold the same runs in the same order.
    let budget = gib + gib / 5;
    let parts = within_budget(&p, whole.clone(), budget, false);
    assert!(parts.len() > whole.len(), "{} parts", parts.len());
    for c in &parts {
        assert!(c.runs.len() == 1 || memory(&p, &c.runs, false) <= budget);
    }
    let flat = |cs: &[Cohort]| -> Vec<String> { cs.iter().flat_map(|c| c.runs.clone()).collect() };
    assert_eq!(flat(&parts), flat(&whole));
    // A budget smaller than any run: every run alone.
    let alone = within_budget(&p, whole, 1, false);
    assert_eq!(alone.len(), p.runs.len());
    // Memory grows with members and with the model.
    let r20 = p
        .runs
        .iter()
        .find(|r| r.spec.model == ModelName::Resnet20)
        .unwrap();
    let r110 = p
        .runs
        .iter()
        .find(|r| r.spec.model == ModelName::Resnet110)
        .unwrap();
    let (a, b) = (
        memory(&p, std::slice::from_ref(&r20.id), false),
        memory(&p, std::slice::from_ref(&r110.id), false),
    );
    assert!(a < b && b < memory(&p, &[r20.id.clone(), r110.id.clone()], false));
}

#[test]
fn issue_15_the_batch_key_ignores_model_method_and_learning_rate_only() {
    let base = VANILLA.replace("seeds = [0, 1]", "seeds = [0]");
    let (_d, s) = set(&[("a.toml", &base)]);
    let a = build(&s, &full()).unwrap().runs[0].spec.clone();
    let mut same = a.clone();
    same.model = ModelName::Resnet14;
    same.schedule.lr = 0.3;
    same.schedule.epochs += 5;
    same.method = crate::spec::Method::Smoothed { epsilon: 0.1 };
    assert_eq!(a.batch_key(), same.batch_key());
    let mut seed = a.clone();
    seed.seed = 1;
    let mut batch = a.clone();
    batch.schedule.batch += 1;
    let mut aug = a.clone();
    aug.augment = crate::spec::AugmentSpec::Ricap { beta: 0.3 };
    let mut flip = a.clone();
    flip.transform.flip = !flip.transform.flip;
    let mut data = a.clone();
    data.data.train_limit = Some(10);
    for other in [seed, batch, aug, flip, data] {
        assert_ne!(a.batch_key(), other.batch_key());
    }
}

#[test]
fn synthetic_confusion_is_a_share_and_zero_keeps_the_ids() {
    let with = |c: &str| VANILLA.replace("resolution = 8 }", &format!("resolution = 8{c} }}"));
    let id = |text: &str| {
        let (_d, s) = set(&[("r.toml", text)]);
        build(&s, &full()).map(|p| p.runs[0].id.clone())
    };
    assert_eq!(
        id(&with(", confusion = 0.0")).unwrap(),
        id(VANILLA).unwrap()
    );
    assert_ne!(
        id(&with(", confusion = 0.3")).unwrap(),
        id(VANILLA).unwrap()
    );
    let e = id(&with(", confusion = 1.5")).unwrap_err().to_string();
    assert!(
        e.contains("r.toml") && e.contains("synthetic.confusion"),
        "{e}"
    );
}
