//! What lecal hands to Slurm, written so that it reads back as meant: `lecal submit`'s
//! option values checked before anything is written, words quoted for the `#SBATCH` lines
//! of a job script (sbatch's own rules) and for bash (the job script's commands and
//! `submit.sh`).
//!
//! sbatch reads an `#SBATCH` line as words split at blanks, where `'…'` and `"…"` quote,
//! a backslash escapes the next character and an unquoted `#` starts a comment; a line
//! ends at its newline, so no value may hold one. Control characters are refused
//! everywhere.

/// Refuses control characters (a newline would end an `#SBATCH` line or a command).
fn printable(what: &str, v: &str) -> Result<(), String> {
    match v.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{what}: `{}` holds a control character ({c:?})",
            v.escape_debug()
        )),
        None => Ok(()),
    }
}

/// A Slurm name (`--partition`, `--account`, `--qos`): printable, without blanks.
pub fn name(v: &str) -> Result<String, String> {
    printable("name", v)?;
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{v}` is not a Slurm name: it is empty or has blanks"
        ));
    }
    Ok(v.to_string())
}

/// A memory size in Slurm's format: digits and an optional unit K, M, G or T.
pub fn mem(v: &str) -> Result<String, String> {
    let digits = v.trim_end_matches(|c: char| "KMGTkmgt".contains(c));
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && v.len() - digits.len() <= 1
        && digits.parse::<u64>().is_ok_and(|n| n > 0);
    if !ok {
        return Err(format!(
            "`{}` is not a memory size in Slurm's format (e.g. 16G, 500M)",
            v.escape_debug()
        ));
    }
    Ok(v.to_string())
}

/// A time limit in one of Slurm's formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`,
/// `D-H:M:S`, or `infinite`/`UNLIMITED`.
pub fn time(v: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`{}` is not a time limit in Slurm's format (minutes, H:M:S, D-H:M:S)",
            v.escape_debug()
        )
    };
    if v.eq_ignore_ascii_case("infinite") || v.eq_ignore_ascii_case("unlimited") {
        return Ok(v.to_string());
    }
    let numbers = |s: &str, most: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= most
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let ok = match v.split_once('-') {
        Some((d, rest)) => numbers(d, 1) && numbers(rest, 3),
        None => numbers(v, 3),
    };
    if !ok {
        return Err(bad());
    }
    Ok(v.to_string())
}

/// `--device` of every job: `auto`, `cpu` or `cuda:N`.
pub fn device(v: &str) -> Result<String, String> {
    v.parse::<crate::device::DeviceChoice>()?;
    Ok(v.to_string())
}

/// The sbatch options of one `--extra-sbatch` value, split into words as a shell would
/// (quotes and backslashes), each an option (`-x`, `--name`, `--name=value`).
pub fn options(v: &str) -> Result<Vec<String>, String> {
    printable("--extra-sbatch", v)?;
    let mut words = Vec::new();
    let (mut word, mut any) = (String::new(), false);
    let mut quote: Option<char> = None;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(e) => word.push(e),
                None => return Err(format!("--extra-sbatch: `{v}` ends in a backslash")),
            },
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!(
            "--extra-sbatch: `{v}` has a quote that is not closed"
        ));
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    if let Some(w) = words.iter().find(|w| !w.starts_with('-') || w.len() < 2) {
        return Err(format!(
            "--extra-sbatch: `{w}` is not an sbatch option (e.g. '--constraint=a100 --nice=10')"
        ));
    }
    Ok(words)
}

/// One word of an `#SBATCH` line: as it is when sbatch reads it so, else in double quotes
/// with `"` and `\` escaped.
pub fn sbatch_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
    if plain {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One word for bash: as it is when plain, else in single quotes.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A path in a Slurm filename pattern (`--output`): `%` is Slurm's placeholder sign, so a
/// literal one is written `%%`.
pub fn pattern_path(p: &std::path::Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("the results folder {} is not valid UTF-8", p.display()))?;
    printable("the results folder", s)?;
    Ok(s.replace('%', "%%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sbatch's reading of an `#SBATCH` line's words (Slurm's `_get_argument`): blanks
    /// split, quotes group, a backslash escapes, an unquoted `#` ends the line.
    fn slurm_reads(line: &str) -> Vec<String> {
        let (mut out, mut word, mut any) = (Vec::new(), String::new(), false);
        let (mut quote, mut escape) = (None, false);
        for c in line.chars() {
            if escape {
                word.push(c);
                escape = false;
                any = true;
            } else if c == '\\' {
                escape = true;
            } else if let Some(q) = quote {
                if c == q {
                    quote = None;
                } else {
                    word.push(c);
                }
            } else if c == '"' || c == '\'' {
                quote = Some(c);
                any = true;
            } else if c == '#' {
                break;
            } else if c.is_whitespace() {
                if any {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            } else {
                word.push(c);
                any = true;
            }
        }
        if any {
            out.push(word);
        }
        out
    }

    #[test]
    fn sbatch_words_read_back_as_written() {
        for w in [
            "--output=/tmp/a b/$(touch x)/slurm/%x-%j.out",
            "--comment=it's \"quoted\" # not a comment",
            "--constraint=a100",
            "--comment=back\\slash",
        ] {
            assert_eq!(slurm_reads(&sbatch_word(w)), [w], "{w}");
        }
    }

    #[test]
    fn extra_options_split_as_a_shell_would_and_must_be_options() {
        assert_eq!(
            options("--constraint=a100 --nice=10").unwrap(),
            ["--constraint=a100", "--nice=10"]
        );
        assert_eq!(
            options("--comment='a b' --x=\"c d\"").unwrap(),
            ["--comment=a b", "--x=c d"]
        );
        assert!(options("--a\n--b")
            .unwrap_err()
            .contains("control character"));
        assert!(options("--comment='open")
            .unwrap_err()
            .contains("not closed"));
        assert!(options("constraint=a100")
            .unwrap_err()
            .contains("not an sbatch option"));
    }

    #[test]
    fn values_in_slurms_formats_pass_and_others_are_named() {
        for t in [
            "30",
            "30:00",
            "2:00:00",
            "1-0",
            "1-12:00",
            "1-12:00:00",
            "infinite",
        ] {
            assert!(time(t).is_ok(), "{t}");
        }
        for t in ["garbage", "1:2:3:4", "", "-5", "1-", "12h"] {
            assert!(time(t).is_err(), "{t}");
        }
        for m in ["16G", "500M", "16000", "1t"] {
            assert!(mem(m).is_ok(), "{m}");
        }
        for m in ["16GB", "G", "0", "16 G", "16G\n#SBATCH --x"] {
            assert!(mem(m).is_err(), "{m}");
        }
        assert!(name("gpu\necho pwned")
            .unwrap_err()
            .contains("control character"));
        assert!(name("a b").is_err());
        assert!(device("tpu").is_err());
        assert!(device("cuda:1").is_ok());
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(
            pattern_path(std::path::Path::new("/r/100%")).unwrap(),
            "/r/100%%"
        );
    }
}
