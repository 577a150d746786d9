//! The seam between the scheduler and what trains: a backend only runs a unit of work
//! on one of its slots and says how each of its runs ended. The scheduler has already
//! decided the unit is ready and taken its runs' locks, which travel with the jobs.

use super::driver::Driver;
use super::Progress;
use crate::plan::{Plan, PlannedRun};
use crate::store::lock::RunLock;
use crate::store::Store;
use crate::train::Trainer;
use std::sync::Mutex;

/// What a job does with its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Train (or resume) the run in its own folder.
    Train,
    /// The run is done but its weights are missing: train it again in its `rebuild/`
    /// folder and keep only the weights.
    Rebuild,
}

/// One run of a unit of work, with its lock: whoever holds the job may train the run.
/// The lock is released when the job is dropped, or as soon as the run ends.
#[derive(Debug)]
pub struct Job<'a> {
    pub run: &'a PlannedRun,
    pub kind: JobKind,
    pub lock: RunLock,
}

/// Starts units of work. A unit is the runs that train together (one run today); each
/// ends with `Ok` or the error that ended it, which the scheduler sorts into failures and
/// halts.
pub trait Backend: Sync {
    /// How many units may run at once.
    fn slots(&self) -> usize;
    /// What `slot` runs on, when the backend has several (a device, a node), for the
    /// progress lines.
    fn slot_name(&self, _slot: usize) -> Option<String> {
        None
    }
    /// Runs `unit` on `slot` to its end: one result per job, in the unit's order.
    fn run(
        &self,
        slot: usize,
        unit: Vec<Job>,
        progress: &Mutex<Progress>,
    ) -> Vec<anyhow::Result<()>>;
}

/// Trains in this process: `slots` units at a time on each of its devices (one trainer
/// each), slot `i` on device `i % devices`. With more than one slot, each slot trains in
/// a thread pool of its own with an equal share of the CPU threads (the CPU kernels give
/// the same numbers with any number of threads).
pub struct InProcess<'a> {
    drivers: Vec<(String, Driver<'a>)>,
    slots: usize,
    pools: Vec<Option<rayon::ThreadPool>>,
}

impl<'a> InProcess<'a> {
    pub fn new(
        plan: &'a Plan,
        store: &'a Store,
        trainers: Vec<(String, &'a dyn Trainer)>,
        jobs: usize,
    ) -> Self {
        let drivers: Vec<(String, Driver)> = trainers
            .into_iter()
            .map(|(name, trainer)| {
                let d = Driver {
                    plan,
                    store,
                    trainer,
                };
                (name, d)
            })
            .collect();
        let slots = drivers.len().max(1) * jobs.max(1);
        let threads = rayon::current_num_threads();
        let pools = (0..slots)
            .map(|_| {
                (slots > 1).then(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads((threads / slots).max(1))
                        .build()
                        .ok()
                })?
            })
            .collect();
        Self {
            drivers,
            slots,
            pools,
        }
    }
}

impl Backend for InProcess<'_> {
    fn slots(&self) -> usize {
        self.slots
    }

    fn slot_name(&self, slot: usize) -> Option<String> {
        (self.drivers.len() > 1).then(|| self.drivers[slot % self.drivers.len()].0.clone())
    }

    fn run(
        &self,
        slot: usize,
        unit: Vec<Job>,
        progress: &Mutex<Progress>,
    ) -> Vec<anyhow::Result<()>> {
        let driver = &self.drivers[slot % self.drivers.len()].1;
        match &self.pools[slot] {
            Some(pool) => pool.install(|| driver.train_unit(unit, progress)),
            None => driver.train_unit(unit, progress),
        }
    }
}
