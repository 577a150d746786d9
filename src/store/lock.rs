//! One trainer per run, across processes and machines that share a results folder.
//!
//! A run is locked by `<run>/lock`, held with the kernel's `flock`, which also works on
//! NFS (v4, or v3 with lockd) and on Lustre mounted with `-o flock`. The kernel drops the
//! lock when its process dies, however it dies, so a lock is never left held by a dead
//! process; the file's content (pid, host, start) only says who holds it. A lock file
//! still there with another process's details was left by a process that died: the next
//! process takes it over and says so. A holder removes the file before it lets go.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const LOCK: &str = "lock";

/// Who holds (or held) a run's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started_unix: u64,
}

impl Holder {
    pub fn me() -> Self {
        Self {
            pid: std::process::id(),
            host: hostname(),
            started_unix: super::now_unix(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// A held run lock; dropping it removes the lock file and releases it.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held, so no other process can have locked this file.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[derive(Debug)]
pub enum Acquired {
    /// The lock is ours; `took_over` names the dead process that left the file behind.
    Held {
        lock: RunLock,
        took_over: Option<Holder>,
    },
    /// Another live process holds it (`None` when it has not written its details yet).
    Busy(Option<Holder>),
}

fn read_holder(f: &mut File) -> Option<Holder> {
    let mut s = String::new();
    f.seek(std::io::SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut s).ok()?;
    toml::from_str(&s).ok()
}

/// Tries to lock the run folder `run_dir` without waiting.
pub fn try_lock(run_dir: &Path) -> anyhow::Result<Acquired> {
    use anyhow::Context;
    super::real_folder(run_dir)?;
    let path = run_dir.join(LOCK);
    loop {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        let mut file = crate::links::open_nofollow(&path, &mut options)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Acquired::Busy(read_holder(&mut file))),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        // The holder before us may have removed the file between our open and our lock:
        // then we hold a lock on a file nobody else will see. Start again.
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            continue;
        }
        let took_over = read_holder(&mut file);
        let me = toml::to_string(&Holder::me())?;
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        file.write_all(me.as_bytes())?;
        file.sync_all()?;
        return Ok(Acquired::Held {
            lock: RunLock { file, path },
            took_over,
        });
    }
}

/// Whether a live process holds the lock of `run_dir`, and who (`Some(None)`: one that
/// has not written its details yet), without taking it or writing anything: a shared
/// lock on a read-only handle, released at once, fails only while the lock is held.
pub fn holder(run_dir: &Path) -> Option<Option<Holder>> {
    let mut file = File::open(run_dir.join(LOCK)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(read_holder(&mut file)),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_busy_for_others_and_gone_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let Acquired::Held { lock, took_over } = try_lock(d.path()).unwrap() else {
            panic!("first lock")
        };
        assert_eq!(took_over, None);
        // flock locks belong to an open file, so a second open in this process conflicts
        // as another process would.
        match try_lock(d.path()).unwrap() {
            Acquired::Busy(Some(h)) => assert_eq!(h.pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        assert_eq!(holder(d.path()).unwrap().unwrap().pid, std::process::id());
        drop(lock);
        assert!(!d.path().join(LOCK).exists());
        assert_eq!(holder(d.path()), None);
        assert!(matches!(
            try_lock(d.path()).unwrap(),
            Acquired::Held {
                took_over: None,
                ..
            }
        ));
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let dead = Holder {
            pid: 999_999,
            host: "node7".into(),
            started_unix: 1,
        };
        std::fs::write(d.path().join(LOCK), toml::to_string(&dead).unwrap()).unwrap();
        // Its file is there, but nobody holds it.
        assert_eq!(holder(d.path()), None);
        match try_lock(d.path()).unwrap() {
            Acquired::Held { took_over, .. } => assert_eq!(took_over, Some(dead)),
            other => panic!("{other:?}"),
        }
    }
}
