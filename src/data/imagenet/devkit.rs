//! ILSVRC2012's development kit as validation ground truth: the classes of
//! `data/meta.mat` and the labels of `data/ILSVRC2012_validation_ground_truth.txt`, read
//! from the extracted `ILSVRC2012_devkit_t12/` folder or straight from
//! `ILSVRC2012_devkit_t12.tar.gz` (the archive torchvision's `ImageNet` takes).
//!
//! Line i of the ground truth is the ILSVRC2012_ID (1–1000) of image
//! `ILSVRC2012_val_{i:08}.JPEG`; meta.mat's struct array `synsets` maps an ID to its
//! wnid, the classes being the synsets without children. IDs are not in sorted-wnid
//! order, so a label still comes from the sorted training folders, through the wnid.
//!
//! meta.mat is a MATLAB version 5 MAT-file (`mat.rs` reads it). Both files are read
//! whole, from the archive in memory; a damaged one is an error naming it (and the
//! archive member), never a panic.

use super::mat::{read_mat, Array, Value, MAX_BYTES};
use anyhow::Context;
use flate2::read::GzDecoder;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The extracted devkit folder in the ImageNet root.
pub const DEVKIT_DIR: &str = "ILSVRC2012_devkit_t12";
/// The devkit archive in the ImageNet root.
pub const DEVKIT_ARCHIVE: &str = "ILSVRC2012_devkit_t12.tar.gz";
const GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
const META: &str = "meta.mat";

/// One entry of meta.mat's `synsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synset {
    pub id: u32,
    pub wnid: String,
    /// Zero for the classes (leaves of the hierarchy).
    pub num_children: u32,
}

/// meta.mat's `synsets` in file order; every error starts with `name`, the file.
pub fn synsets(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<Synset>> {
    synsets_of(bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

fn synsets_of(bytes: &[u8]) -> Result<Vec<Synset>, String> {
    let vars = read_mat(bytes)?;
    let Some(var) = vars.iter().find(|v| v.name == "synsets") else {
        return Err("no variable `synsets`".into());
    };
    let Value::Struct { fields, elements } = &var.value else {
        return Err("`synsets` is not a struct array".into());
    };
    let field = |f: &str| {
        fields
            .iter()
            .position(|x| x == f)
            .ok_or_else(|| format!("`synsets` has no field `{f}`"))
    };
    let (id_at, wnid_at) = (field("ILSVRC2012_ID")?, field("WNID")?);
    let children_at = field("num_children")?;
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for (k, e) in elements.iter().enumerate() {
        let at = |f: &str, what: String| format!("synsets({}).{f}: {what}", k + 1);
        let id = whole(&e[id_at]).map_err(|w| at("ILSVRC2012_ID", w))?;
        let num_children = whole(&e[children_at]).map_err(|w| at("num_children", w))?;
        let wnid = match &e[wnid_at].value {
            Value::Char(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                s.clone()
            }
            v => return Err(at("WNID", format!("not a wnid: {}", describe(v)))),
        };
        if id == 0 {
            return Err(at("ILSVRC2012_ID", "0 (IDs start at 1)".into()));
        }
        if let Some(first) = seen.insert(id, k + 1) {
            let twice = format!("{id} is also synsets({first})'s");
            return Err(at("ILSVRC2012_ID", twice));
        }
        out.push(Synset {
            id,
            wnid,
            num_children,
        });
    }
    Ok(out)
}

/// The one whole number in a numeric array.
fn whole(a: &Array) -> Result<u32, String> {
    match &a.value {
        Value::Numeric(v) if v.len() == 1 => {
            let x = v[0];
            if x.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&x) {
                Ok(x as u32)
            } else {
                Err(format!("{x} is not a whole number"))
            }
        }
        Value::Numeric(v) => Err(format!("{} values where one is expected", v.len())),
        v => Err(format!("not a number: {}", describe(v))),
    }
}

/// A value in a few words, for errors.
fn describe(v: &Value) -> String {
    match v {
        Value::Numeric(n) => format!("{} numbers", n.len()),
        Value::Char(s) if s.chars().count() <= 40 => format!("text `{s}`"),
        Value::Char(s) => format!("{} characters of text", s.chars().count()),
        Value::Struct { .. } => "a struct array".into(),
        Value::Cell(_) => "a cell array".into(),
        Value::Other(class) => format!("an array of class {class}"),
    }
}

/// Validation image file name → wnid from the devkit in `root`, extracted (used first)
/// or as its archive, with the file that labels them (the ground-truth file, or the
/// archive); `None` when there is neither.
pub fn ground_truth(root: &Path) -> anyhow::Result<Option<(PathBuf, BTreeMap<String, String>)>> {
    let data = root.join(DEVKIT_DIR).join("data");
    let txt = data.join(GROUND_TRUTH);
    if txt.is_file() {
        let meta = data.join(META);
        let read =
            |p: &Path| std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()));
        let (gt, m) = (read(&txt)?, read(&meta)?);
        let names = (txt.display().to_string(), meta.display().to_string());
        return Ok(Some((txt, val_wnids((&names.0, &gt), (&names.1, &m))?)));
    }
    let archive = root.join(DEVKIT_ARCHIVE);
    if archive.is_file() {
        let (gt, m) = read_archive(&archive)?;
        let name = |member: &str| format!("{}: {DEVKIT_DIR}/data/{member}", archive.display());
        let map = val_wnids((&name(GROUND_TRUTH), &gt), (&name(META), &m))?;
        return Ok(Some((archive, map)));
    }
    Ok(None)
}

/// The ground truth's lines through meta.mat's classes; `(name, bytes)` of each file.
fn val_wnids(gt: (&str, &[u8]), meta: (&str, &[u8])) -> anyhow::Result<BTreeMap<String, String>> {
    let synsets = synsets(meta.0, meta.1)?;
    let by_id: BTreeMap<u32, &Synset> = synsets.iter().map(|s| (s.id, s)).collect();
    let text = std::str::from_utf8(gt.1).map_err(|e| anyhow::anyhow!("{}: not text: {e}", gt.0))?;
    let mut map = BTreeMap::new();
    for (n, line) in text.trim_end().lines().enumerate() {
        let (at, line) = (format!("{}:{}", gt.0, n + 1), line.trim());
        let Ok(id) = line.parse::<u32>() else {
            anyhow::bail!("{at}: expected an ILSVRC2012_ID (1 to 1000), found `{line}`");
        };
        let Some(s) = by_id.get(&id) else {
            anyhow::bail!("{at}: ILSVRC2012_ID {id} is not in {}", meta.0);
        };
        if s.num_children > 0 {
            anyhow::bail!(
                "{at}: ILSVRC2012_ID {id} is {} in {}, a synset with {} children, not a class",
                s.wnid,
                meta.0,
                s.num_children
            );
        }
        map.insert(format!("ILSVRC2012_val_{:08}.JPEG", n + 1), s.wnid.clone());
    }
    Ok(map)
}

/// The ground truth and meta.mat out of the devkit archive, read in memory.
fn read_archive(path: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let mut archive = tar::Archive::new(GzDecoder::new(std::io::BufReader::new(file)));
    let bad = |e: std::io::Error| anyhow::anyhow!("{name}: not a readable .tar.gz: {e}");
    let member = |f: &str| Path::new(DEVKIT_DIR).join("data").join(f);
    let (mut gt, mut meta) = (None, None);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let slot = if path.ends_with(member(GROUND_TRUTH)) {
            &mut gt
        } else if path.ends_with(member(META)) {
            &mut meta
        } else {
            continue;
        };
        if entry.size() > MAX_BYTES {
            anyhow::bail!(
                "{name}: {} is {} bytes, too large",
                path.display(),
                entry.size()
            );
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(bad)?;
        *slot = Some(bytes);
        if gt.is_some() && meta.is_some() {
            break;
        }
    }
    match (gt, meta) {
        (Some(g), Some(m)) => Ok((g, m)),
        (g, _) => {
            let missing = member(if g.is_none() { GROUND_TRUTH } else { META });
            anyhow::bail!("{name}: no {} in the archive", missing.display())
        }
    }
}

#[cfg(test)]
#[path = "devkit_tests.rs"]
mod tests;
