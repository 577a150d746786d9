//! The planner: a pure function from validated recipes to the run graph.
//!
//! Each recipe seed becomes one fully resolved [`RunSpec`]; teacher references become the
//! vanilla runs they name, as dependencies. Runs are keyed by content id, so a run asked
//! for by several cells (or serving as a teacher) appears once.

mod cohort;
mod data;
mod estimate;
mod method;
mod scale;

pub use cohort::{cohorts, fused_groups, fused_text, memory, parameters, within_budget, Cohort};
pub use data::SYNTHETIC_DEFAULTS;
use data::{data_spec, teacher_data, transform_spec};
pub use estimate::{estimate, images, Estimate, Rates};
use method::{distiller_checks, method_spec};
pub use scale::Scale;

use crate::recipe::{
    Augment, CellRef, ModelName, Recipe, RecipeError, RecipeErrors, RecipeSet, ScheduleChoice,
    SchedulePreset, ScheduleTable, TeacherDecl,
};
use crate::spec::{AugmentSpec, Method, RunSpec, Schedule, TeacherRef, TRAINER_VERSION};
use std::collections::BTreeMap;

/// A run and why it is in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    pub id: String,
    pub spec: RunSpec,
    /// The table cells (and seed) this run reports into.
    pub cells: Vec<(CellRef, u64)>,
    /// Runs that must be complete before this one starts (its teachers).
    pub deps: Vec<String>,
    /// Runs that use this one as a teacher.
    pub teacher_of: Vec<String>,
}

/// What one recipe cell asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct CellPlan {
    pub recipe: std::path::PathBuf,
    /// One run id per seed, in the recipe's seed order.
    pub runs: Vec<(u64, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// In dependency order: every run comes after the runs it depends on.
    pub runs: Vec<PlannedRun>,
    pub cells: BTreeMap<CellRef, CellPlan>,
}

impl Plan {
    pub fn get(&self, id: &str) -> Option<&PlannedRun> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// The runs a table needs: those of its cells and, transitively, their teachers.
    pub fn runs_of_table(&self, table: &str) -> std::collections::BTreeSet<&str> {
        let mut out = std::collections::BTreeSet::new();
        let mut todo: Vec<&str> = self
            .cells
            .iter()
            .filter(|(c, _)| c.table == table)
            .flat_map(|(_, c)| c.runs.iter().map(|(_, id)| id.as_str()))
            .collect();
        while let Some(id) = todo.pop() {
            if out.insert(id) {
                if let Some(r) = self.get(id) {
                    todo.extend(r.deps.iter().map(String::as_str));
                }
            }
        }
        out
    }

    /// The recipe files that ask for `run`, as text ("a.toml, b.toml"): its cells'
    /// recipes, or for a teacher run those of its students; sorted, each once.
    pub fn recipes_of(&self, run: &PlannedRun) -> String {
        let mut out: Vec<&std::path::Path> = run
            .cells
            .iter()
            .chain(
                run.teacher_of
                    .iter()
                    .filter_map(|s| self.get(s))
                    .flat_map(|s| &s.cells),
            )
            .filter_map(|(c, _)| self.cells.get(c))
            .map(|c| c.recipe.as_path())
            .collect();
        out.sort();
        out.dedup();
        let text: Vec<String> = out.iter().map(|p| p.display().to_string()).collect();
        text.join(", ")
    }

    /// Epochs over every run; saturates rather than wrapping (recipes bound each run's
    /// epochs, so it never does for a plan that loads).
    pub fn total_epochs(&self) -> usize {
        self.runs
            .iter()
            .fold(0usize, |t, r| t.saturating_add(r.spec.schedule.epochs))
    }
}

/// The most epochs a run may have: 400 times the paper's longest schedule.
pub const MAX_EPOCHS: usize = 100_000;

/// Builds the plan of a recipe set at a scale. Pure: reads no file.
pub fn build(set: &RecipeSet, scale: &Scale) -> Result<Plan, RecipeErrors> {
    let mut plan = Plan::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors = Vec::new();
    for recipe in &set.recipes {
        match resolve_recipe(recipe, scale) {
            Ok(resolved) => {
                let mut cell_runs = Vec::new();
                for (seed, spec, teachers) in resolved {
                    let mut deps = Vec::new();
                    for t in teachers {
                        let tid = t.id();
                        add_run(&mut plan, &mut index, tid.clone(), t, Vec::new());
                        deps.push(tid);
                    }
                    let id = spec.id();
                    add_run(&mut plan, &mut index, id.clone(), spec, deps.clone());
                    let run = &mut plan.runs[index[&id]];
                    run.cells.push((recipe.cell().clone(), seed));
                    for d in deps {
                        let t = &mut plan.runs[index[&d]];
                        if !t.teacher_of.contains(&id) {
                            t.teacher_of.push(id.clone());
                        }
                    }
                    cell_runs.push((seed, id));
                }
                plan.cells.insert(
                    recipe.cell().clone(),
                    CellPlan {
                        recipe: recipe.path.clone(),
                        runs: cell_runs,
                    },
                );
            }
            Err(mut es) => errors.append(&mut es),
        }
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(RecipeErrors(errors))
    }
}

fn add_run(
    plan: &mut Plan,
    index: &mut BTreeMap<String, usize>,
    id: String,
    spec: RunSpec,
    deps: Vec<String>,
) {
    if index.contains_key(&id) {
        return;
    }
    index.insert(id.clone(), plan.runs.len());
    plan.runs.push(PlannedRun {
        id,
        spec,
        cells: Vec::new(),
        deps,
        teacher_of: Vec::new(),
    });
}

type Resolved = Vec<(u64, RunSpec, Vec<RunSpec>)>;

// Long: every check of a recipe pushes to one list, so that a user sees all of a
// recipe's problems at once; split, each part would thread that list through.
fn resolve_recipe(r: &Recipe, scale: &Scale) -> Result<Resolved, Vec<RecipeError>> {
    let mut errors = Vec::new();
    let raw = &r.raw;
    let model = *raw.student.get_ref();
    let data = match data_spec(r, scale) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let inline = raw.method.as_ref().map(|m| &m.get_ref().0);
    let method = match method_spec(&r.method, inline, !raw.teachers.get_ref().is_empty()) {
        Ok(m) => Some(m),
        Err((key, msg)) => {
            let span = match key {
                "teachers" => raw.teachers.span(),
                _ => raw.method.as_ref().map_or(0..0, |m| m.span()),
            };
            errors.push(r.error(span, key, msg));
            None
        }
    };
    let schedule_choice = raw
        .schedule
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or(ScheduleChoice::Preset(SchedulePreset::Default));
    let schedule = match schedule_spec(&schedule_choice, scale) {
        Ok(s) => Some(s),
        Err(msg) => {
            let span = raw.schedule.as_ref().map_or(0..0, |s| s.span());
            errors.push(r.error(span, "schedule", msg));
            None
        }
    };
    let (Some(data), Some(method), Some(schedule)) = (data, method, schedule) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let transform = transform_spec(r, &data);
    let augment = match raw.augment.as_ref().map(|a| a.get_ref()) {
        None | Some(Augment::None) => AugmentSpec::None,
        Some(Augment::Mixup { alpha }) => AugmentSpec::Mixup {
            alpha: alpha.map_or(1.0, |a| a.0),
        },
        Some(Augment::Cutmix { alpha }) => AugmentSpec::Cutmix {
            alpha: alpha.map_or(1.0, |a| a.0),
        },
        Some(Augment::Ricap { beta }) => AugmentSpec::Ricap {
            beta: beta.map_or(0.3, |b| b.0),
        },
    };
    let base = RunSpec {
        trainer_version: TRAINER_VERSION,
        seed: 0,
        model,
        data,
        transform,
        schedule,
        method,
        augment,
        teachers: Vec::new(),
        scale: scale.name.clone(),
    };
    // Teacher runs: vanilla runs of the named model on the same data (all of its training
    // images when the student trains on a subset).
    let mut teacher_specs = Vec::new();
    let mut teacher_refs = Vec::new();
    for t in raw.teachers.get_ref() {
        match teacher(r, t, &base, &schedule_choice, scale) {
            Ok((specs, refs)) => {
                teacher_specs.extend(specs);
                teacher_refs.extend(refs);
            }
            Err(e) => errors.push(e),
        }
    }
    errors.extend(distiller_checks(r, teacher_refs.len(), &base));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(raw
        .seeds
        .get_ref()
        .iter()
        .map(|&seed| {
            let spec = RunSpec {
                seed,
                teachers: teacher_refs.clone(),
                ..base.clone()
            };
            (seed, spec, teacher_specs.clone())
        })
        .collect())
}

// Long: a teacher is a checkpoint or runs of a model, each with its own checks, and
// every error points at the recipe's `teachers` span.
fn teacher(
    r: &Recipe,
    t: &TeacherDecl,
    student: &RunSpec,
    cell_schedule: &ScheduleChoice,
    scale: &Scale,
) -> Result<(Vec<RunSpec>, Vec<TeacherRef>), RecipeError> {
    let span = r.raw.teachers.span();
    if t.checkpoint.is_some() {
        if t.seeds.is_some() {
            return Err(r.error(
                span,
                "teachers.seeds",
                "a checkpoint teacher takes no seeds",
            ));
        }
    } else if t.sha256.is_some() {
        return Err(r.error(
            span,
            "teachers.sha256",
            "`sha256` identifies a `checkpoint`; this teacher has none",
        ));
    }
    if let Some(written) = &t.checkpoint {
        let file = r
            .checkpoints
            .get(written)
            .expect("the recipe loader resolves every checkpoint it names");
        let full = &file.path;
        let sha256 = match (&t.sha256, &file.sha256) {
            (Some(h), _) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                h.to_ascii_lowercase()
            }
            (Some(h), _) => {
                return Err(r.error(
                    span,
                    "teachers.sha256",
                    format!("`{h}` is not a SHA-256: expected 64 hex digits"),
                ))
            }
            (None, Some(Ok(found))) => found.clone(),
            (None, found) => {
                let e = match found {
                    Some(Err(e)) => e.as_str(),
                    _ => "not read",
                };
                return Err(r.error(
                    span.clone(),
                    "teachers.checkpoint",
                    format!(
                        "cannot read `{}`: {e} (a `sha256` beside `checkpoint` plans without the file)",
                        full.display()
                    ),
                ));
            }
        };
        return Ok((
            Vec::new(),
            vec![TeacherRef::Checkpoint {
                model: t.model,
                path: full.to_string_lossy().into_owned(),
                sha256,
            }],
        ));
    }
    // A teacher trains on its cell's schedule family: `default` for CIFAR and STL-10 cells
    // (the "+" rows' long schedule included), `imagenet` for ImageNet cells.
    let family = |p: Option<SchedulePreset>| match p {
        Some(SchedulePreset::Imagenet) => SchedulePreset::Imagenet,
        _ => SchedulePreset::Default,
    };
    let choice = match (&t.schedule, cell_schedule) {
        (Some(s), _) => s.clone(),
        (None, ScheduleChoice::Preset(p)) => ScheduleChoice::Preset(family(Some(*p))),
        (None, ScheduleChoice::Explicit(table)) => ScheduleChoice::Explicit(ScheduleTable {
            base: Some(family(table.base)),
            ..table.clone()
        }),
    };
    let schedule =
        schedule_spec(&choice, scale).map_err(|m| r.error(span.clone(), "teachers.schedule", m))?;
    let mut specs = Vec::new();
    let mut refs = Vec::new();
    for &seed in t.seeds.as_deref().unwrap_or(&[0]) {
        let spec = RunSpec {
            seed,
            model: t.model,
            data: teacher_data(&student.data, scale),
            schedule: schedule.clone(),
            method: Method::Hard,
            augment: AugmentSpec::None,
            teachers: Vec::new(),
            ..student.clone()
        };
        refs.push(TeacherRef::Run { id: spec.id() });
        specs.push(spec);
    }
    Ok((specs, refs))
}

fn schedule_spec(choice: &ScheduleChoice, scale: &Scale) -> Result<Schedule, String> {
    let s = match choice {
        ScheduleChoice::Preset(p) => Schedule::preset(*p),
        ScheduleChoice::Explicit(t) => {
            let b = Schedule::preset(t.base.unwrap_or(SchedulePreset::Default));
            Schedule {
                lr: t.lr.map_or(b.lr, |v| v.0),
                momentum: t.momentum.map_or(b.momentum, |v| v.0),
                weight_decay: t.weight_decay.map_or(b.weight_decay, |v| v.0),
                batch: t.batch.map_or(b.batch, |v| v.0),
                epochs: t.epochs.map_or(b.epochs, |v| v.0),
                milestones: t
                    .milestones
                    .as_ref()
                    .map_or(b.milestones, |m| m.iter().map(|v| v.0).collect()),
                gamma: t.gamma.map_or(b.gamma, |v| v.0),
            }
        }
    };
    if s.milestones.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "milestones must increase, found {:?}",
            s.milestones
        ));
    }
    if let Some(&m) = s.milestones.iter().find(|&&m| m >= s.epochs) {
        return Err(format!(
            "milestone {m} is not before the last epoch ({})",
            s.epochs
        ));
    }
    if s.momentum >= 1.0 {
        return Err(format!("momentum must be below 1, found {}", s.momentum));
    }
    if s.batch < 2 {
        return Err("batch must be at least 2 (BatchNorm needs two samples)".into());
    }
    if s.epochs > MAX_EPOCHS {
        return Err(format!(
            "epochs must be at most {MAX_EPOCHS}, found {}",
            s.epochs
        ));
    }
    Ok(scale.schedule(s))
}

/// Display name of a model as in the paper's column headers.
pub fn model_title(m: ModelName) -> String {
    let s = m.as_str();
    format!("ResNet{}", s.trim_start_matches("resnet"))
}

#[cfg(test)]
mod tests;
