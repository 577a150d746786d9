//! A MATLAB version 5 MAT-file reader that knows just enough of the format for
//! ILSVRC2012's `meta.mat` (read by `devkit.rs`): the 128-byte header, data elements in
//! both tag formats, zlib-compressed variables, and numeric, char, struct and cell
//! arrays; other classes are skipped. Little-endian files only, as MATLAB writes on every
//! platform it runs on today: a big-endian file is refused by name.
//!
//! Every length is checked against the bytes there are, compressed data is inflated up
//! to a bound, and nesting is bounded, so a damaged file is an error, never a panic or an
//! allocation the file does not pay for. Errors say what is wrong without the file's
//! name, which the caller adds.

use flate2::read::ZlibDecoder;
use std::io::Read;

/// More than any MAT-file this reader is for (meta.mat is 2.5 MB unpacked): the bound
/// that keeps a damaged or hostile compressed variable from filling memory.
pub(super) const MAX_BYTES: u64 = 256 << 20;
/// Arrays in arrays deeper than this are refused rather than recursed into.
const MAX_DEPTH: usize = 16;

// MAT-file data types and array classes (MATLAB's "MAT-File Format", version 5).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;
const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;

/// A MAT-file array, as much of it as meta.mat needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Array {
    pub name: String,
    pub dims: Vec<usize>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// Any numeric or logical class, whatever type it is stored in; the real part.
    Numeric(Vec<f64>),
    /// The rows of a char array, joined by newlines.
    Char(String),
    /// Column-major elements, each with one array per field.
    Struct {
        fields: Vec<String>,
        elements: Vec<Vec<Array>>,
    },
    Cell(Vec<Array>),
    /// A class this reader skips (sparse, object, function handle, opaque), by number.
    Other(u8),
}

/// The bytes of a buffer read front to back; every read is bound-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.left()
            ));
        }
        self.pos += n;
        Ok(&self.buf[self.pos - n..self.pos])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// One data element: its type and data. A tag whose upper 16 bits are set is the
    /// small format, type and size packed in 4 bytes with up to 4 data bytes after.
    /// Data is padded to 8 bytes, except a compressed element's.
    fn element(&mut self, what: &str) -> Result<(u32, &'a [u8]), String> {
        let first = self.u32(what)?;
        if first >> 16 != 0 {
            let n = (first >> 16) as usize;
            if n > 4 {
                return Err(format!(
                    "{what}: a small data element of {n} bytes (at most 4)"
                ));
            }
            let data = self.take(4, what)?;
            return Ok((first & 0xFFFF, &data[..n]));
        }
        let n = self.u32(what)? as usize;
        let data = self.take(n, what)?;
        if first != MI_COMPRESSED {
            self.take((8 - n % 8) % 8, what)?;
        }
        Ok((first, data))
    }
}

/// The variables of a version 5 MAT-file; a message without the file name on error.
pub(super) fn read_mat(bytes: &[u8]) -> Result<Vec<Array>, String> {
    if bytes.starts_with(b"MATLAB 7.3 MAT-file") {
        return Err("a MATLAB 7.3 (HDF5) MAT-file: only version 5 MAT-files are read".into());
    }
    if bytes.len() < 128 || !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        return Err("not a MAT-file: no `MATLAB 5.0 MAT-file` header".into());
    }
    match &bytes[126..128] {
        b"IM" => {}
        b"MI" => return Err("a big-endian MAT-file: only little-endian files are read".into()),
        e => return Err(format!("bad endian indicator {e:?} (expected `IM`)")),
    }
    let version = u16::from_le_bytes([bytes[124], bytes[125]]);
    if version != 0x0100 {
        return Err(format!("MAT-file version {version:#06x} (expected 0x0100)"));
    }
    let mut c = Cursor {
        buf: bytes,
        pos: 128,
    };
    let mut vars = Vec::new();
    while c.left() > 0 {
        let at = c.pos;
        let var = c.element("a variable").and_then(|(ty, data)| match ty {
            MI_MATRIX => matrix(data, 0),
            MI_COMPRESSED => inflate(data).and_then(|inner| {
                let mut ic = Cursor::new(&inner);
                match ic.element("a compressed variable")? {
                    (MI_MATRIX, d) => matrix(d, 0),
                    (t, _) => Err(format!(
                        "a compressed element of type {t} (expected a matrix)"
                    )),
                }
            }),
            t => Err(format!("a data element of type {t} (expected a matrix)")),
        });
        vars.push(var.map_err(|e| format!("the variable at byte {at}: {e}"))?);
    }
    Ok(vars)
}

/// A zlib stream inflated, at most [`MAX_BYTES`] of it.
fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ZlibDecoder::new(data)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("compressed data does not inflate: {e}"))?;
    if out.len() as u64 > MAX_BYTES {
        return Err(format!(
            "compressed data inflates to over {MAX_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// One miMATRIX element's data: flags, dimensions, name, then the class's own parts.
fn matrix(data: &[u8], depth: usize) -> Result<Array, String> {
    if depth > MAX_DEPTH {
        return Err(format!("arrays nested more than {MAX_DEPTH} deep"));
    }
    if data.is_empty() {
        // A matrix element of no bytes is an empty array (as SciPy reads it).
        let (name, dims) = (String::new(), vec![0, 0]);
        let value = Value::Numeric(Vec::new());
        return Ok(Array { name, dims, value });
    }
    let mut c = Cursor::new(data);
    let flags = match c.element("array flags")? {
        (MI_UINT32, f) if f.len() == 8 => f,
        (t, f) => return Err(format!("array flags of type {t}, {} bytes", f.len())),
    };
    let (class, complex) = (flags[0], flags[1] & 0x08 != 0);
    let dims: Vec<usize> = match c.element("dimensions")? {
        (MI_INT32, d) if d.len() >= 8 && d.len() % 4 == 0 => d
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|v| usize::try_from(v).map_err(|_| format!("negative dimension {v}")))
            .collect::<Result<_, _>>()?,
        (t, d) => return Err(format!("dimensions of type {t}, {} bytes", d.len())),
    };
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let name = match c.element("array name")? {
        (MI_INT8 | MI_UINT8 | MI_UTF8, n) => String::from_utf8_lossy(n).into_owned(),
        (t, _) => return Err(format!("an array name of type {t}")),
    };
    let named = |e: String| match name.as_str() {
        "" => e,
        n => format!("`{n}`: {e}"),
    };
    let value = match class {
        MX_CELL => {
            enough(&c, count, 1)?;
            let cells = (0..count)
                .map(|k| sub_matrix(&mut c, depth).map_err(|e| format!("cell {}: {e}", k + 1)));
            Value::Cell(cells.collect::<Result<_, _>>().map_err(named)?)
        }
        MX_STRUCT => structure(&mut c, count, depth).map_err(named)?,
        MX_CHAR => chars(&mut c, &dims, count).map_err(named)?,
        6..=15 => {
            let real = numbers(&mut c, count).map_err(named)?;
            if complex {
                numbers(&mut c, count).map_err(named)?;
            }
            Value::Numeric(real)
        }
        other => Value::Other(other),
    };
    Ok(Array { name, dims, value })
}

/// Refuses `count` parts of at least one 8-byte tag each where the bytes cannot hold
/// them, before anything is allocated for them.
fn enough(c: &Cursor, count: usize, per: usize) -> Result<(), String> {
    match count.checked_mul(per).and_then(|n| n.checked_mul(8)) {
        Some(n) if n <= c.left() => Ok(()),
        _ => Err(format!(
            "truncated: {count}×{per} arrays in {} bytes",
            c.left()
        )),
    }
}

/// An array inside a cell or struct.
fn sub_matrix(c: &mut Cursor, depth: usize) -> Result<Array, String> {
    match c.element("an array element")? {
        (MI_MATRIX, d) => matrix(d, depth + 1),
        (t, _) => Err(format!("an array element of type {t} (expected a matrix)")),
    }
}

/// A struct array's field names, then one array per field of each element.
fn structure(c: &mut Cursor, count: usize, depth: usize) -> Result<Value, String> {
    let len = match c.element("field name length")? {
        (MI_INT32, b) if b.len() == 4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        (t, b) => return Err(format!("field name length of type {t}, {} bytes", b.len())),
    };
    let names = match c.element("field names")? {
        (MI_INT8 | MI_UINT8 | MI_UTF8, n) => n,
        (t, _) => return Err(format!("field names of type {t}")),
    };
    let len = usize::try_from(len).unwrap_or(0);
    if (len == 0 && !names.is_empty()) || (len > 0 && names.len() % len != 0) {
        return Err(format!(
            "{} bytes of field names for names of {len} bytes",
            names.len()
        ));
    }
    let fields: Vec<String> = names
        .chunks(len.max(1))
        .map(|n| {
            let end = n.iter().position(|&b| b == 0).unwrap_or(n.len());
            String::from_utf8_lossy(&n[..end]).into_owned()
        })
        .collect();
    if fields.is_empty() && count > 1 << 16 {
        return Err(format!("a struct array of {count} elements without fields"));
    }
    enough(c, count, fields.len())?;
    let mut elements = Vec::new();
    for k in 0..count {
        let mut one = Vec::new();
        for f in &fields {
            let a =
                sub_matrix(c, depth).map_err(|e| format!("element {}, field `{f}`: {e}", k + 1))?;
            one.push(a);
        }
        elements.push(one);
    }
    Ok(Value::Struct { fields, elements })
}

/// A numeric array's values as f64, from whichever type MATLAB stored them in (it
/// stores a double array of small whole numbers as miUINT8, for one).
fn numbers(c: &mut Cursor, count: usize) -> Result<Vec<f64>, String> {
    if count == 0 && c.left() == 0 {
        return Ok(Vec::new());
    }
    let (ty, d) = c.element("numeric data")?;
    let size = match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        t => return Err(format!("numeric data of type {t}")),
    };
    if Some(d.len()) != count.checked_mul(size) {
        return Err(format!(
            "{} bytes of numeric data for {count} values of {size} bytes",
            d.len()
        ));
    }
    Ok(d.chunks_exact(size)
        .map(|b| {
            let mut w = [0u8; 8];
            w[..size].copy_from_slice(b);
            match ty {
                MI_INT8 => f64::from(b[0] as i8),
                MI_UINT8 => f64::from(b[0]),
                MI_INT16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
                MI_UINT16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
                MI_INT32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                MI_UINT32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                MI_SINGLE => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                MI_INT64 => i64::from_le_bytes(w) as f64,
                MI_UINT64 => u64::from_le_bytes(w) as f64,
                _ => f64::from_le_bytes(w),
            }
        })
        .collect())
}

/// A char array's text: UTF-16 units (MATLAB), UTF-8 (SciPy), Latin-1 bytes or UTF-32,
/// stored column by column; several rows come back joined by newlines.
fn chars(c: &mut Cursor, dims: &[usize], count: usize) -> Result<Value, String> {
    if count == 0 && c.left() == 0 {
        return Ok(Value::Char(String::new()));
    }
    let (ty, d) = c.element("char data")?;
    let text: Vec<char> = match ty {
        MI_UINT16 | MI_UTF16 => {
            let units = d.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
            char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        MI_UTF8 => std::str::from_utf8(d)
            .map_err(|e| format!("char data is not UTF-8: {e}"))?
            .chars()
            .collect(),
        MI_INT8 | MI_UINT8 => d.iter().map(|&b| char::from(b)).collect(),
        MI_UTF32 => d
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|u| char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
        t => return Err(format!("char data of type {t}")),
    };
    // The dimensions count UTF-16 units (a surrogate pair is two); UTF-8 data may be
    // counted in characters (SciPy) or in bytes.
    let fits = match ty {
        MI_UINT16 | MI_UTF16 => Some(d.len()) == count.checked_mul(2),
        MI_UTF32 => Some(d.len()) == count.checked_mul(4),
        MI_UTF8 => text.len() == count || d.len() == count,
        _ => d.len() == count,
    };
    if !fits {
        return Err(format!(
            "{} bytes of char data (type {ty}) for {count} characters",
            d.len()
        ));
    }
    let rows = dims.first().copied().unwrap_or(1);
    if rows <= 1 || text.len() != count {
        return Ok(Value::Char(text.into_iter().collect()));
    }
    let cols = count / rows;
    let lines: Vec<String> = (0..rows)
        .map(|r| (0..cols).map(|k| text[k * rows + r]).collect())
        .collect();
    Ok(Value::Char(lines.join("\n")))
}
