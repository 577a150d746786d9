//! Errors a user fixes by editing a recipe: each names the file, the line and column, the
//! key, and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one recipe, table spec or method preset file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecipeError {
    pub path: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub at: Option<(usize, usize)>,
    /// The key the problem is about, when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl RecipeError {
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            at: None,
            key: None,
            message: message.into(),
        }
    }

    /// An error at a byte span of `source`.
    pub fn at_span(
        path: &Path,
        source: &str,
        span: std::ops::Range<usize>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        let (line, col) = line_col(source, span.start);
        Self {
            path: path.to_path_buf(),
            at: Some((line, col)),
            key: key
                .map(str::to_owned)
                .or_else(|| key_at(source, span.start)),
            message: message.into(),
        }
    }

    /// An error about `key` (dotted: `paper.Vanilla.ResNet8`), placed where the key is
    /// written in `source`, or on the file when it cannot be found.
    pub fn at_key(path: &Path, source: &str, key: &str, message: impl Into<String>) -> Self {
        let at = key_offset(source, key).map(|o| line_col(source, o));
        Self {
            path: path.to_path_buf(),
            at,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// Converts a TOML deserialisation error of `source` (read from `path`).
    pub fn from_toml(path: &Path, source: &str, err: &toml::de::Error) -> Self {
        let message = err.message().trim().to_string();
        match err.span() {
            Some(span) => Self::at_span(path, source, span, None, message),
            None => Self::file(path, message),
        }
    }
}

/// Where dotted `key` is written: each part found after the previous one, as a whole
/// name in key position (at the start of a line, or inside a `[table.header]`), never
/// inside a value or a comment.
fn key_offset(source: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    for part in key.split('.') {
        let (i, _) = source[from..].match_indices(part).find(|&(i, _)| {
            let at = from + i;
            let line_start = source[..at].rfind('\n').map_or(0, |n| n + 1);
            let prefix = source[line_start..at].trim_start();
            let in_key =
                prefix.is_empty() || (prefix.starts_with('[') && !prefix.contains(['=', '#', ']']));
            let before = source[..at].chars().next_back();
            let after = source[at + part.len()..].chars().next();
            in_key
                && matches!(before, None | Some('\n' | ' ' | '\t' | '[' | '.' | '"'))
                && matches!(after, Some(' ' | '\t' | '=' | ']' | '.' | '"'))
        })?;
        from += i;
    }
    Some(from)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The key assigned on the line holding `offset` (`key = value`), for messages where the
/// TOML library names only the value ("invalid type: string, expected an integer").
fn key_at(source: &str, offset: usize) -> Option<String> {
    let offset = offset.min(source.len());
    let start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let line = &source[start..end];
    // Within an inline table, the nearest `name =` before the offset names the key.
    let upto = &source[start..offset];
    let eq = upto.rfind('=').or_else(|| line.find('='))?;
    let head = &line[..eq];
    let key = head.rsplit(['{', ',']).next()?.trim().trim_matches('"');
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.\" ".contains(c));
    ok.then(|| key.to_string())
}

/// A list of errors shown one per line.
#[derive(Debug, thiserror::Error)]
pub struct RecipeErrors(pub Vec<RecipeError>);

impl fmt::Display for RecipeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the recipes (nothing was written):",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if i + 1 < n {
                writeln!(f, "  {e}")?;
            } else {
                write!(f, "  {e}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let s = "a = 1\nbb = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        assert_eq!(line_col(s, 11), (2, 6));
    }

    #[test]
    fn key_is_found_on_plain_and_inline_lines() {
        let s = "student = 3\ncell = { table = \"t\", row = 5 }\n";
        assert_eq!(key_at(s, 10).as_deref(), Some("student"));
        let off = s.find("5").unwrap();
        assert_eq!(key_at(s, off).as_deref(), Some("row"));
    }
}
