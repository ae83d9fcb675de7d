//! The CTranslate2 model file (`model.bin`, format version 6): a spec name, a list of named
//! tensors, and aliases. Little-endian throughout:
//!
//! ```text
//! u32 version · str spec · u32 revision · u32 n_vars ·
//!   n_vars × (str name · u8 rank · rank × u32 dim · u8 dtype · u32 n_bytes · bytes) ·
//! u32 n_aliases · n_aliases × (str alias · str name)
//! str = u16 length (counting a trailing NUL) · bytes
//! ```

use crate::types::Error;

/// Element types a CT2 file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(c: u8) -> Option<DType> {
        Some(match c {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One tensor, borrowing its bytes from the file.
#[derive(Debug)]
pub struct Var<'a> {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: DType,
    pub data: &'a [u8],
}

impl Var<'_> {
    /// A scalar integer (CT2 stores model options such as `num_heads` this way).
    pub fn scalar(&self) -> Option<i64> {
        let d = self.data;
        Some(match (self.dtype, d.len()) {
            (DType::I8, 1) => d[0] as i8 as i64,
            (DType::I16, 2) => i16::from_le_bytes([d[0], d[1]]) as i64,
            (DType::I32, 4) => i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub struct File<'a> {
    pub spec: String,
    pub revision: u32,
    pub vars: Vec<Var<'a>>,
    /// (alias, name of the variable it stands for).
    pub aliases: Vec<(String, String)>,
}

impl<'a> File<'a> {
    pub fn var(&self, name: &str) -> Option<&Var<'a>> {
        self.vars.iter().find(|v| v.name == name)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Error::Model(format!(
                "model.bin ends inside {what} (offset {})",
                self.at
            )));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str(&mut self, what: &str) -> Result<String, Error> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::Model(format!("{what} is not UTF-8 (offset {})", self.at)))
    }
}

/// Parse a whole `model.bin`.
pub fn parse(bytes: &[u8]) -> Result<File<'_>, Error> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u32("the version")?;
    if version != 6 {
        return Err(Error::Model(format!(
            "model.bin is CTranslate2 format {version}; ringside reads format 6"
        )));
    }
    let spec = r.str("the spec name")?;
    let revision = r.u32("the revision")?;
    let n = r.u32("the variable count")? as usize;
    let mut vars = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let name = r.str("a variable name")?;
        let rank = r.u8("a rank")? as usize;
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            dims.push(r.u32("a dimension")? as usize);
        }
        let code = r.u8("a dtype")?;
        let dtype = DType::from_code(code)
            .ok_or_else(|| Error::Model(format!("{name}: unknown dtype {code}")))?;
        let nbytes = r.u32("a byte count")? as usize;
        let elems = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|e| e.checked_mul(dtype.size()));
        if elems != Some(nbytes) {
            return Err(Error::Model(format!(
                "{name}: {nbytes} bytes do not hold {dims:?} of {dtype:?}"
            )));
        }
        let data = r.take(nbytes, &name)?;
        vars.push(Var {
            name,
            dims,
            dtype,
            data,
        });
    }
    let mut aliases = vec![];
    if r.at < bytes.len() {
        let n = r.u32("the alias count")? as usize;
        for _ in 0..n {
            let alias = r.str("an alias")?;
            let name = r.str("an alias target")?;
            aliases.push((alias, name));
        }
    }
    Ok(File {
        spec,
        revision,
        vars,
        aliases,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn str(out: &mut Vec<u8>, s: &str) {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    /// A tiny file: one f32 matrix, one i16 scalar, one alias.
    pub fn tiny() -> Vec<u8> {
        let mut f = vec![];
        f.extend(6u32.to_le_bytes());
        str(&mut f, "WhisperSpec");
        f.extend(3u32.to_le_bytes());
        f.extend(2u32.to_le_bytes());
        str(&mut f, "encoder/conv1/weight");
        f.push(2);
        f.extend(2u32.to_le_bytes());
        f.extend(3u32.to_le_bytes());
        f.push(0);
        f.extend(24u32.to_le_bytes());
        for x in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            f.extend(x.to_le_bytes());
        }
        str(&mut f, "encoder/num_heads");
        f.push(0);
        f.push(2);
        f.extend(2u32.to_le_bytes());
        f.extend(6i16.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        str(&mut f, "decoder/projection/weight");
        str(&mut f, "encoder/conv1/weight");
        f
    }

    #[test]
    fn a_tiny_file_reads_back_its_tensors_scalars_and_aliases() {
        let bytes = tiny();
        let f = parse(&bytes).unwrap();
        assert_eq!(f.spec, "WhisperSpec");
        assert_eq!(f.revision, 3);
        let w = f.var("encoder/conv1/weight").unwrap();
        assert_eq!(
            (w.dims.clone(), w.dtype, w.data.len()),
            (vec![2, 3], DType::F32, 24)
        );
        assert_eq!(f32::from_le_bytes(w.data[20..24].try_into().unwrap()), 6.0);
        assert_eq!(f.var("encoder/num_heads").unwrap().scalar(), Some(6));
        assert_eq!(
            f.aliases,
            vec![(
                "decoder/projection/weight".into(),
                "encoder/conv1/weight".into()
            )]
        );
    }

    #[test]
    fn a_cut_or_inconsistent_file_is_an_error_that_says_where() {
        let bytes = tiny();
        for cut in [0, 3, 10, 40, 70] {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = bytes.clone();
        wrong[0] = 5;
        let e = parse(&wrong).unwrap_err().to_string();
        assert!(e.contains("format 5"), "{e}");
        // The byte count of the matrix no longer matches its shape.
        let mut wrong = bytes.clone();
        let at = 4 + 2 + 12 + 4 + 4 + 2 + 21 + 1 + 8 + 1;
        wrong[at] = 20;
        let e = parse(&wrong).unwrap_err().to_string();
        assert!(e.contains("do not hold"), "{e}");
    }
}
