//! lecal regenerates the tables of "Label Enhancement for Better Model Generalization and
//! Calibration" from committed TOML recipes.
//!
//! The pipeline, one module per stage: [`recipe`] (parse and validate TOML) → [`plan`]
//! (resolve recipes into content-addressed runs and their dependency graph) → [`exec`]
//! (train pending runs with [`train`], [`model`], [`data`], [`method`], [`metrics`]) →
//! [`store`] (the results folder) → [`report`] (the paper's tables).

pub mod bench;
pub mod cli;
pub mod commands;
pub mod data;
pub mod device;
pub mod exec;
pub mod hash;
pub mod interrupt;
pub mod links;
pub mod method;
pub mod metrics;
pub mod model;
pub mod parity;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod rng;
pub mod spec;
pub mod store;
pub mod train;
