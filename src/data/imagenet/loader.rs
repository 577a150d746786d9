//! The streaming loader: an epoch's batches decoded and transformed by worker threads a
//! few batches ahead of the trainer, handed out in order.
//!
//! Work is handed out in chunks of a few images, so that every worker is busy even when
//! only a couple of batches may be in flight. A worker claims a chunk only of the batches
//! within `ahead` of the one the trainer waits for, so memory stays at about `ahead`
//! batches whatever the speeds. Each image's result depends only on its file, the
//! transform and its position in the epoch, so the batches are bit-identical for any
//! number of workers. Dropping the loader stops the workers and joins them.

use super::decode;
use super::scan::Sample;
use super::transform::Transform;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Images a worker transforms in one claim.
const CHUNK: usize = 8;

/// How many workers and how far ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Worker threads (default: the available cores).
    pub workers: usize,
    /// Batches made ahead of the one being read (at least 1).
    pub ahead: usize,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ahead: 3,
        }
    }
}

/// One batch: `len × 3 × size × size` normalised floats and the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u16>,
}

/// The claims: the next chunk to hand out and the batch the trainer reads next.
struct Claims {
    batch: usize,
    chunk: usize,
    reading: usize,
    stop: bool,
}

struct Shared {
    samples: Arc<[Sample]>,
    batches: Vec<Vec<usize>>,
    /// Position in the epoch of each batch's first image.
    first: Vec<u64>,
    transform: Transform,
    ahead: usize,
    claims: Mutex<Claims>,
    wake: Condvar,
}

/// A chunk's result: (batch, chunk index, floats or the error naming the file).
type Done = (usize, usize, anyhow::Result<Vec<f32>>);

impl Shared {
    /// The next chunk a worker may make, waiting while it would run too far ahead;
    /// `None` when the epoch is handed out or the loader is dropped.
    fn claim(&self) -> Option<(usize, usize)> {
        let mut c = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while c.batch < self.batches.len() && self.batches[c.batch].is_empty() {
                c.batch += 1;
            }
            if c.stop || c.batch >= self.batches.len() {
                return None;
            }
            if c.batch < c.reading + self.ahead {
                let got = (c.batch, c.chunk);
                c.chunk += 1;
                if c.chunk * CHUNK >= self.batches[c.batch].len() {
                    c.batch += 1;
                    c.chunk = 0;
                }
                return Some(got);
            }
            c = self.wake.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn make(&self, batch: usize, chunk: usize) -> anyhow::Result<Vec<f32>> {
        let idx = &self.batches[batch];
        let part = &idx[chunk * CHUNK..((chunk + 1) * CHUNK).min(idx.len())];
        let n = self.transform.image_len();
        let mut out = vec![0f32; part.len() * n];
        for (k, (&i, o)) in part.iter().zip(out.chunks_exact_mut(n)).enumerate() {
            let sample = self.samples.get(i).ok_or_else(|| {
                anyhow::anyhow!(
                    "batch {batch}: index {i} beyond the {} images",
                    self.samples.len()
                )
            })?;
            let img = decode::load(&sample.path)?;
            let position = self.first[batch] + (chunk * CHUNK + k) as u64;
            self.transform.apply(&img, position, o);
        }
        Ok(out)
    }
}

fn work(shared: Arc<Shared>, tx: Sender<Done>) {
    while let Some((b, c)) = shared.claim() {
        // A panic in a decoder becomes this chunk's error rather than a batch that never
        // arrives.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.make(b, c)))
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "batch {b}: a worker panicked while decoding"
                ))
            });
        if tx.send((b, c, r)).is_err() {
            return;
        }
    }
}

/// The batches of an epoch, in order, as an iterator of `Result<Batch>`.
pub struct Loader {
    shared: Arc<Shared>,
    rx: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    /// Chunks received for batches not yet handed out.
    pending: BTreeMap<usize, BTreeMap<usize, Vec<f32>>>,
    /// The first error of each batch, reported when that batch is due, so the batches
    /// before a bad image arrive whatever the workers' timing.
    errors: BTreeMap<usize, anyhow::Error>,
    next: usize,
    failed: bool,
}

impl Loader {
    /// Starts the workers on `batches` (indices into `samples`, in the epoch's order);
    /// image `k` of the epoch (counting through the batches) is transformed at position
    /// `k`, which keys its random crop and flip.
    pub fn new(
        samples: Arc<[Sample]>,
        batches: Vec<Vec<usize>>,
        transform: Transform,
        o: LoaderOptions,
    ) -> Self {
        let mut first = Vec::with_capacity(batches.len());
        let mut at = 0u64;
        for b in &batches {
            first.push(at);
            at += b.len() as u64;
        }
        let shared = Arc::new(Shared {
            samples,
            batches,
            first,
            transform,
            ahead: o.ahead.max(1),
            claims: Mutex::new(Claims {
                batch: 0,
                chunk: 0,
                reading: 0,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel();
        let workers = (0..o.workers.max(1))
            .map(|i| {
                let (s, tx) = (Arc::clone(&shared), tx.clone());
                std::thread::Builder::new()
                    .name(format!("imagenet-{i}"))
                    .spawn(move || work(s, tx))
                    .expect("spawning a loader thread")
            })
            .collect();
        Self {
            shared,
            rx,
            workers,
            pending: BTreeMap::new(),
            errors: BTreeMap::new(),
            next: 0,
            failed: false,
        }
    }

    fn chunks(&self, batch: usize) -> usize {
        self.shared.batches[batch].len().div_ceil(CHUNK)
    }

    fn assemble(&mut self, batch: usize) -> Batch {
        let parts = self.pending.remove(&batch).unwrap_or_default();
        let idx = &self.shared.batches[batch];
        let mut images = Vec::with_capacity(idx.len() * self.shared.transform.image_len());
        for p in parts.into_values() {
            images.extend_from_slice(&p);
        }
        let labels = idx.iter().map(|&i| self.shared.samples[i].label).collect();
        Batch { images, labels }
    }
}

impl Iterator for Loader {
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.shared.batches.len() {
            return None;
        }
        let b = self.next;
        let want = self.chunks(b);
        while self.pending.get(&b).map_or(0, |p| p.len()) < want {
            if let Some(e) = self.errors.remove(&b) {
                // The epoch ends here: this batch cannot be complete.
                self.failed = true;
                return Some(Err(e));
            }
            match self.rx.recv() {
                Ok((batch, chunk, Ok(v))) => {
                    self.pending.entry(batch).or_default().insert(chunk, v);
                }
                Ok((batch, _, Err(e))) => {
                    self.errors.entry(batch).or_insert(e);
                }
                Err(_) => {
                    self.failed = true;
                    return Some(Err(anyhow::anyhow!("the loader's workers stopped")));
                }
            }
        }
        let out = self.assemble(b);
        self.next += 1;
        let mut c = self.shared.claims.lock().unwrap_or_else(|e| e.into_inner());
        c.reading = self.next;
        drop(c);
        self.shared.wake.notify_all();
        Some(Ok(out))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared
            .claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop = true;
        self.shared.wake.notify_all();
        // A worker finishes the chunk it holds (its send cannot block) and then finds
        // `stop`.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
