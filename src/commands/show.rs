//! `lecal show RUN`: one run as its folder tells it: its state, its numbers, its files,
//! its failure, and its resolved spec and provenance. Reads everything through the store.

use crate::store::{RunDir, RunState, Store, Summary, Weights, REBUILD};
use anyhow::bail;
use std::path::Path;

/// `lecal show`: `run` is a run id, a unique prefix of one (or of its hash), or a path
/// to a run folder.
pub fn show(run: &str, store: &Store) -> anyhow::Result<()> {
    let dir = resolve(run, store)?;
    let record = dir.record();
    let epochs = record.as_ref().map(|r| r.spec.schedule.epochs);
    outln!("run {}", dir.id());
    outln!("folder: {}", dir.path().display());
    let state = dir.state();
    outln!("state: {}", state_text(&dir, &state, epochs));
    if let Some(r) = &record {
        let cells = &r.provenance.cells;
        if !cells.is_empty() {
            outln!("cells: {}", cells.join(", "));
        }
    }
    match &state {
        RunState::Done => {
            if let Ok(Some(s)) = dir.summary() {
                numbers(&s)?;
            }
            let weights = match dir.weights() {
                Weights::Sound => "sound".to_string(),
                Weights::Missing => "not here (never committed)".to_string(),
                Weights::Damaged(why) => format!("damaged: {why}"),
            };
            outln!("weights: {weights}");
        }
        _ => {
            if let Some(last) = dir.epochs().ok().and_then(|e| e.last().cloned()) {
                outln!(
                    "last epoch {}: test accuracy {:.2} %, ECE {:.4}, NLL {:.4}",
                    last.epoch,
                    last.test_acc,
                    last.ece,
                    last.nll
                );
            }
        }
    }
    if let Some(f) = dir.failure() {
        outln!("failure: epoch {}: {}", f.epoch, f.reason);
    }
    outln!("files:");
    for e in dir.entries() {
        match e.bytes {
            Some(b) => outln!("  {:<22} {b} bytes", e.name),
            None => outln!("  {}/", e.name),
        }
    }
    match &record {
        Some(r) => {
            if let Some(w) = r.provenance.wall_seconds {
                outln!("wall time: {w:.1} s (training and evaluation)");
            }
            outln!("\n# run.toml: the resolved spec and the provenance");
            out!("{}", toml::to_string(r)?);
        }
        None => outln!("\nrun.toml: missing or unreadable"),
    }
    Ok(())
}

/// The run `arg` names: an existing folder, else an id or a unique prefix of one among
/// the results folder's runs, or of the hash that ends an id.
fn resolve(arg: &str, store: &Store) -> anyhow::Result<RunDir> {
    let path = Path::new(arg);
    if path.is_dir() {
        let mut name = path.file_name().and_then(|n| n.to_str());
        // A done teacher's `rebuild/` folder holds the same run.
        if name == Some(REBUILD) {
            name = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str());
        }
        let Some(id) = name.filter(|n| looks_like_run_id(n)) else {
            bail!(
                "{} is not a run folder (its name is no run id, `<dataset>-<model>-<12 hex \
                 digits>`)",
                path.display()
            );
        };
        let dir = RunDir::new(id, path.to_path_buf());
        if !dir.holds_a_run() {
            bail!(
                "{} is not a run folder: it holds none of the files a run writes first",
                path.display()
            );
        }
        return Ok(dir);
    }
    if let Some(why) = (!arg.contains('/'))
        .then(|| store.run(arg).misplaced())
        .flatten()
    {
        bail!("{why}");
    }
    if arg.contains('/') || arg.is_empty() {
        bail!("no run folder {arg}");
    }
    let ids = store.run_ids();
    if ids.iter().any(|i| i == arg) {
        return Ok(store.run(arg));
    }
    let mut found: Vec<&String> = ids.iter().filter(|i| i.starts_with(arg)).collect();
    if found.is_empty() {
        found = ids
            .iter()
            .filter(|i| i.rsplit('-').next().is_some_and(|h| h.starts_with(arg)))
            .collect();
    }
    match found.as_slice() {
        [one] => Ok(store.run(one)),
        [] => bail!(
            "no run `{arg}` in {} (give a run id, a unique prefix of one, or a run folder)",
            store.runs_dir().display()
        ),
        many => {
            let shown: Vec<&str> = many.iter().take(5).map(|s| s.as_str()).collect();
            let more = many.len().saturating_sub(shown.len());
            bail!(
                "run `{arg}` is ambiguous in {}: {} runs match ({}{})",
                store.runs_dir().display(),
                many.len(),
                shown.join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            )
        }
    }
}

/// `<dataset>-<model>-<12 hex digits>`.
fn looks_like_run_id(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '-');
    let hash = parts.next().unwrap_or("");
    hash.len() == 12
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.next().is_some_and(|m| !m.is_empty())
        && parts.next().is_some_and(|d| !d.is_empty())
}

/// done, failed, running, partial, pending or damaged, with what it means.
fn state_text(dir: &RunDir, state: &RunState, epochs: Option<usize>) -> String {
    let of = epochs.map_or_else(String::new, |n| format!(" of {n}"));
    let running = match (state, dir.holder()) {
        (RunState::Done | RunState::Damaged(_), _) | (_, None) => None,
        (_, Some(Some(h))) => Some(format!("running ({h})")),
        (_, Some(None)) => Some("running".to_string()),
    };
    match (state, running) {
        (RunState::Done, _) => "done".into(),
        (RunState::Damaged(why), _) => format!("damaged: {why}"),
        (RunState::Partial(k), Some(r)) => format!("{r}: {k}{of} epochs finished"),
        (_, Some(r)) => format!("{r}: no epoch finished yet"),
        (RunState::Partial(k), None) => {
            format!("partial: {k}{of} epochs, stopped (`lecal run` resumes it)")
        }
        (RunState::Failed { epoch, .. }, None) => format!("failed in epoch {epoch}"),
        (RunState::Pending, None) => "pending".into(),
    }
}

fn numbers(s: &Summary) -> anyhow::Result<()> {
    let top5 = s
        .top5
        .map_or_else(String::new, |t| format!(", top-5 {t:.2} %"));
    outln!(
        "test: accuracy {:.2} %{top5}, ECE {:.4}, NLL {:.4}, Brier {:.4} (after {} epochs; \
         train accuracy {:.2} %)",
        s.accuracy,
        s.ece,
        s.nll,
        s.brier,
        s.epochs,
        s.train_accuracy
    );
    if let Some(acc) = s.val_accuracy {
        let f = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.4}"));
        outln!(
            "validation: accuracy {acc:.2} %, ECE {}, NLL {}, Brier {}",
            f(s.val_ece),
            f(s.val_nll),
            f(s.val_brier)
        );
    }
    Ok(())
}
