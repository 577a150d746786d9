//! `lecal data fetch`: a dataset's official archive, downloaded (resumably, with HTTP
//! Range), checked against the MD5 pinned here (the values torchvision publishes), and
//! extracted into a temporary folder that is renamed into place only when complete.
//!
//! - The download goes to `<dir>/.fetch/<archive>.part`; a cut transfer leaves it there
//!   and the next fetch asks for the rest (`Range: bytes=<have>-`), or starts again when
//!   the server does not do ranges.
//! - A finished download whose MD5 differs is removed, so the next fetch starts clean.
//! - A server that does not answer is given up on: `Patience` bounds the wait to connect
//!   and for each read; a stalled, refused or cut transfer is tried again with a doubling
//!   pause (resuming where it stopped), and each try says what it waits for.
//! - Extraction goes to `<dir>/.fetch/extract-<pid>/`; only the dataset's folder is
//!   renamed into `<dir>`, so a failure leaves nothing half-extracted where the loaders
//!   look.

use anyhow::{bail, Context};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a download waits, and how often it tries.
#[derive(Debug, Clone, PartialEq)]
pub struct Patience {
    /// To open the connection.
    pub connect: Duration,
    /// For the response's headers, then for each piece of its body.
    pub read: Duration,
    /// Tries in all (the first included).
    pub attempts: u32,
    /// The pause before the second try; it doubles for each later one, up to a minute.
    pub pause: Duration,
}

impl Default for Patience {
    /// 30 s to connect, 60 s without data, 5 tries, pauses of 2, 4, 8 and 16 s.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            read: Duration::from_secs(60),
            attempts: 5,
            pause: Duration::from_secs(2),
        }
    }
}

impl Patience {
    fn pause_before(&self, attempt: u32) -> Duration {
        let doubled = self.pause.saturating_mul(1 << (attempt - 2).min(16));
        doubled.min(Duration::from_secs(60))
    }
}

/// Why one try of a download failed, and whether another try may do better.
#[derive(Debug)]
struct Failed {
    why: String,
    again: bool,
}

fn failed(why: String, again: bool) -> Failed {
    Failed { why, again }
}

/// Whether an error is a read or connect timeout (ureq reports both as I/O errors).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return true;
            }
        }
        cur = err.source();
    }
    e.to_string().contains("timed out")
}

/// A dataset's official archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    /// The name `lecal data fetch` takes.
    pub name: &'static str,
    pub url: &'static str,
    /// MD5 of the archive, as torchvision pins it.
    pub md5: &'static str,
    /// The folder the archive holds, which the loader reads.
    pub folder: &'static str,
}

pub const ARCHIVES: [Archive; 3] = [
    Archive {
        name: "cifar10",
        url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        md5: "c32a1d4ab5d03f1284b67883e8d87530",
        folder: "cifar-10-batches-bin",
    },
    Archive {
        name: "cifar100",
        url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        md5: "03b5dce01913d631647c71ecec9e9cb8",
        folder: "cifar-100-binary",
    },
    Archive {
        name: "stl10",
        url: "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
        md5: "91f7769df0f17e558f3565bffb0c7dfb",
        folder: "stl10_binary",
    },
];

/// The archive named `name`.
pub fn archive(name: &str) -> anyhow::Result<&'static Archive> {
    ARCHIVES.iter().find(|a| a.name == name).with_context(|| {
        let names: Vec<&str> = ARCHIVES.iter().map(|a| a.name).collect();
        format!(
            "unknown dataset `{name}`, expected one of: {}",
            names.join(", ")
        )
    })
}

/// Where to download an archive from, and what it must be.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub md5: String,
    pub folder: String,
}

impl Source {
    /// The official archive, from `url` instead when given (a mirror), or from
    /// `mirror` + the archive's file name (`LECAL_DATA_MIRROR`).
    pub fn of(a: &Archive, url: Option<&str>, mirror: Option<&str>) -> Self {
        let file = a.url.rsplit('/').next().unwrap_or(a.url);
        let url = match (url, mirror) {
            (Some(u), _) => u.to_string(),
            (None, Some(m)) => format!("{}/{file}", m.trim_end_matches('/')),
            (None, None) => a.url.to_string(),
        };
        Self {
            url,
            md5: a.md5.into(),
            folder: a.folder.into(),
        }
    }

    fn file(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or("archive")
    }
}

/// Downloads, checks and extracts `src` into `dir`; returns the extracted folder.
pub fn fetch(src: &Source, dir: &Path, bar: bool, p: &Patience) -> anyhow::Result<PathBuf> {
    let target = dir.join(&src.folder);
    if target.exists() {
        bail!(
            "{} exists but is not complete: remove it and fetch again",
            target.display()
        );
    }
    let work = dir.join(".fetch");
    crate::links::real_folder(&work)
        .with_context(|| format!("cannot create {}", work.display()))?;
    let part = work.join(format!("{}.part", src.file()));
    download_patiently(&src.url, &part, bar, p)?;
    let got = md5_hex(&part)?;
    if got != src.md5 {
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::remove_dir(&work);
        bail!(
            "{} is not the expected archive: its MD5 is {got}, expected {} (a corrupt \
             download or a wrong mirror); it was removed, the next fetch downloads it again",
            src.url,
            src.md5
        );
    }
    let tmp = work.join(format!("extract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let extracted = extract(&part, &tmp).and_then(|_| {
        let inner = tmp.join(&src.folder);
        if !inner.is_dir() {
            bail!("the archive holds no folder `{}`", src.folder);
        }
        std::fs::rename(&inner, &target)
            .with_context(|| format!("cannot move the data to {}", target.display()))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    extracted.with_context(|| format!("extracting {}", part.display()))?;
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_dir(&work);
    Ok(target)
}

/// `download`, tried again after a pause while tries remain and the failure may pass.
fn download_patiently(url: &str, part: &Path, bar: bool, p: &Patience) -> anyhow::Result<()> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(p.connect)
        .timeout_read(p.read)
        .build();
    for attempt in 1..=p.attempts.max(1) {
        if attempt > 1 {
            let pause = p.pause_before(attempt);
            eprintln!(
                "trying again in {} s (try {attempt} of {})",
                pause.as_secs_f64(),
                p.attempts
            );
            std::thread::sleep(pause);
        }
        eprintln!(
            "connecting to {url} (waiting up to {} s to connect and {} s for each answer)",
            p.connect.as_secs_f64(),
            p.read.as_secs_f64()
        );
        match download(&agent, url, part, bar, p) {
            Ok(()) => return Ok(()),
            Err(f) if f.again && attempt < p.attempts => eprintln!("{}", f.why),
            Err(f) if f.again => bail!(
                "{} (gave up after {} tries); run the same command again to resume it",
                f.why,
                p.attempts
            ),
            Err(f) => bail!("{}", f.why),
        }
    }
    unreachable!("the last try returns")
}

// Long: one request and the copy of its body, each failure worded for where it happened;
// split, the byte counts and the progress bar would be threaded through three functions.
/// Downloads `url` to `part`, continuing a partial file with a range request.
fn download(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    bar: bool,
    p: &Patience,
) -> Result<(), Failed> {
    let wait = p.read.as_secs_f64();
    // Only a regular file is a partial download to resume; a link there is not one, and
    // is replaced (never written through).
    let have = std::fs::symlink_metadata(part)
        .ok()
        .filter(|m| m.file_type().is_file())
        .map_or(0, |m| m.len());
    let mut req = agent.get(url);
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        // The partial file is already whole.
        Err(ureq::Error::Status(416, _)) if have > 0 => return Ok(()),
        // Busy or failing servers may recover; a missing file does not.
        Err(ureq::Error::Status(code, _)) => {
            let again = code == 429 || code >= 500;
            return Err(failed(
                format!("cannot download {url}: HTTP status {code}"),
                again,
            ));
        }
        Err(e) if timed_out(&e) => {
            return Err(failed(
                format!(
                    "no answer from {url}: it sent no response within {wait} s of the request \
                     (or the connection could not be opened)"
                ),
                true,
            ))
        }
        Err(e) => return Err(failed(format!("cannot download {url}: {e}"), true)),
    };
    let resumed = resp.status() == 206;
    let mut options = std::fs::OpenOptions::new();
    options
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed);
    let cannot_write =
        |e: std::io::Error| failed(format!("cannot write {}: {e}", part.display()), false);
    let mut file = crate::links::open_nofollow(part, &mut options).map_err(cannot_write)?;
    let start = if resumed { have } else { 0 };
    let total = resp
        .header("Content-Length")
        .and_then(|l| l.parse::<u64>().ok())
        .map(|l| l + start);
    let progress = bar.then(|| {
        let b = indicatif::ProgressBar::new(total.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "  {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_position(start);
        b
    });
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if timed_out(&e) => {
                return Err(failed(
                    format!(
                        "the download of {url} stalled: no data for {wait} s after {done} bytes"
                    ),
                    true,
                ))
            }
            Err(e) => {
                return Err(failed(
                    format!("the download of {url} was cut after {done} bytes ({e})"),
                    true,
                ))
            }
        };
        file.write_all(&buf[..n]).map_err(cannot_write)?;
        done += n as u64;
        if let Some(b) = &progress {
            b.set_position(done);
        }
    }
    file.sync_all().map_err(cannot_write)?;
    if let Some(b) = progress {
        b.finish_and_clear();
    }
    if let Some(t) = total.filter(|&t| done < t) {
        return Err(failed(
            format!("the download of {url} was cut after {done} of {t} bytes"),
            true,
        ));
    }
    Ok(())
}

fn md5_hex(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Md5::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(crate::hash::hex(&h.finalize()))
}

/// Unpacks a `.tar.gz` into `into` (the tar crate refuses entries outside it).
fn extract(archive: &Path, into: &Path) -> anyhow::Result<()> {
    crate::links::real_folder(into)?;
    let f = std::fs::File::open(archive)?;
    tar::Archive::new(flate2::read::GzDecoder::new(f)).unpack(into)?;
    Ok(())
}
