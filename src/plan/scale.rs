//! `--scale`: shrink epochs and data for smoke checks. A scaled run records its scale and
//! its shrunk numbers in its spec, so it gets its own id and never stands in for a full run.

use super::Schedule;

#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub name: String,
    /// Epochs and milestones are multiplied by this and rounded (at least 1 epoch).
    pub epoch_factor: f64,
    /// Then capped at this many epochs.
    pub max_epochs: Option<usize>,
    /// Fraction of the training / test images used, and a cap on their number.
    pub data_fraction: f64,
    pub max_train: Option<usize>,
    pub max_test: Option<usize>,
}

impl Scale {
    pub const NAMES: [&'static str; 3] = ["full", "quick", "smoke"];

    /// `full`: as the recipe says. `quick`: a tenth of the epochs on a fifth of the data.
    /// `smoke`: at most 2 epochs on at most 512 training and 256 test images.
    pub fn named(name: &str) -> Result<Self, String> {
        let full = Scale {
            name: "full".into(),
            epoch_factor: 1.0,
            max_epochs: None,
            data_fraction: 1.0,
            max_train: None,
            max_test: None,
        };
        Ok(match name {
            "full" => full,
            "quick" => Scale {
                name: name.into(),
                epoch_factor: 0.1,
                data_fraction: 0.2,
                ..full
            },
            "smoke" => Scale {
                name: name.into(),
                max_epochs: Some(2),
                max_train: Some(512),
                max_test: Some(256),
                ..full
            },
            _ => {
                return Err(format!(
                    "unknown scale `{name}`, expected one of: {}",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }

    pub fn is_full(&self) -> bool {
        self.name == "full"
    }

    fn limit(&self, n: usize, cap: Option<usize>) -> Option<usize> {
        let mut m = ((n as f64) * self.data_fraction).round().max(1.0) as usize;
        if let Some(c) = cap {
            m = m.min(c);
        }
        (m < n).then_some(m)
    }

    pub fn train_limit(&self, n: usize) -> Option<usize> {
        self.limit(n, self.max_train)
    }

    pub fn test_limit(&self, n: usize) -> Option<usize> {
        self.limit(n, self.max_test)
    }

    pub fn schedule(&self, s: Schedule) -> Schedule {
        if self.is_full() {
            return s;
        }
        let scale = |e: usize| ((e as f64) * self.epoch_factor).round().max(1.0) as usize;
        let mut epochs = scale(s.epochs);
        if let Some(m) = self.max_epochs {
            epochs = epochs.min(m);
        }
        let mut milestones: Vec<usize> = s
            .milestones
            .iter()
            .map(|&m| scale(m))
            .filter(|&m| m < epochs)
            .collect();
        milestones.dedup();
        Schedule {
            epochs,
            milestones,
            ..s
        }
    }
}
