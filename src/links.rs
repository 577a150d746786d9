//! Writing without following symbolic links: a link planted where lecal writes (a run
//! folder, a report's folder, a download's partial file) must never send a write
//! elsewhere. A floor below every stage: it imports nothing of lecal.
//!
//! - A file is written only into a real folder (`real_folder`): the folder that holds it
//!   is not a link. Folders above it may be links (`results/runs` on another disk).
//! - A file is opened without following a link at its own name (`open_nofollow`): a link
//!   there is not lecal's, and is removed first.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether `p` is itself a symbolic link (not what it points to).
pub fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Creates `dir` (and its parents) and checks that `dir` is a real folder, not a link.
pub fn real_folder(dir: &Path) -> io::Result<()> {
    let refused = || {
        io::Error::other(
            "it is a symbolic link: lecal writes files only into real folders; remove the link",
        )
    };
    if is_link(dir) {
        return Err(refused());
    }
    std::fs::create_dir_all(dir)?;
    if is_link(dir) {
        return Err(refused());
    }
    Ok(())
}

/// Opens `path` with `options`, without following a link at its own name (a link there
/// is removed first).
pub fn open_nofollow(path: &Path, options: &mut std::fs::OpenOptions) -> io::Result<std::fs::File> {
    if is_link(path) {
        std::fs::remove_file(path)?;
    }
    options.custom_flags(libc::O_NOFOLLOW).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_or_replaced_and_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), "precious").unwrap();
        // A folder that is a link is refused, before and after creating its parents.
        let link = d.path().join("runs/r1");
        std::fs::create_dir_all(d.path().join("runs")).unwrap();
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(real_folder(&link)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert!(real_folder(&d.path().join("runs/r2/checkpoint")).is_ok());
        // A file that is a link is replaced by a real file; its target is untouched.
        let file = d.path().join("runs/r2/lock");
        std::os::unix::fs::symlink(outside.join("victim"), &file).unwrap();
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        std::io::Write::write_all(&mut open_nofollow(&file, &mut o).unwrap(), b"mine").unwrap();
        assert!(!is_link(&file));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "precious"
        );
    }
}
