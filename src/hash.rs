//! SHA-256 in hex: the identity of run specs, checkpoints and external teacher files.
//! Imports nothing of lecal, so every layer may use it.

use sha2::{Digest, Sha256};
use std::path::Path;

/// Bytes as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The first `n` bytes of the SHA-256 of `bytes`, in hex (`2n` digits).
pub fn short_sha256_hex(bytes: &[u8], n: usize) -> String {
    let digest = Sha256::digest(bytes);
    hex(&digest[..n.min(digest.len())])
}

/// The SHA-256 of a file's bytes, in hex. Only plain files: a device or a pipe would
/// never end.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a file"));
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // FIPS 180-2's example "abc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert_eq!(short_sha256_hex(b"abc", 6), &abc[..12]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(file_sha256(&p).unwrap(), abc);
        assert!(file_sha256(dir.path()).is_err());
    }
}
