//! The seam between the scheduler and what trains: a backend only runs a unit of work
//! on one of its slots and says how each of its runs ended. The scheduler has already
//! decided the unit is ready and taken its runs' locks, which travel with the jobs.

use super::driver::{self, Driver};
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
    /// Runs `unit` on `slot` to its end: one result per job, in the unit's order.
    fn run(
        &self,
        slot: usize,
        unit: Vec<Job>,
        progress: &Mutex<Progress>,
    ) -> Vec<anyhow::Result<()>>;
}

/// Trains in this process on one device, `slots` runs at once sharing its threads.
pub struct InProcess<'a> {
    driver: Driver<'a>,
    slots: usize,
}

impl<'a> InProcess<'a> {
    pub fn new(plan: &'a Plan, store: &'a Store, trainer: &'a dyn Trainer, slots: usize) -> Self {
        Self {
            driver: Driver {
                plan,
                store,
                trainer,
                commit: driver::git_commit(),
            },
            slots: slots.max(1),
        }
    }
}

impl Backend for InProcess<'_> {
    fn slots(&self) -> usize {
        self.slots
    }

    fn run(
        &self,
        _slot: usize,
        unit: Vec<Job>,
        progress: &Mutex<Progress>,
    ) -> Vec<anyhow::Result<()>> {
        self.driver.train_unit(unit, progress)
    }
}
