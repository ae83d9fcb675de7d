//! Whisper's vocabulary (`vocabulary.txt`: one token per line, line n is token id n), in
//! GPT-2's byte-level form: each byte of the text is one printable character. Decoding maps
//! the characters back to bytes.

use crate::types::Error;
use std::collections::HashMap;

pub struct Vocab {
    tokens: Vec<String>,
    /// GPT-2's printable character → the byte it stands for.
    bytes: HashMap<char, u8>,
}

/// The ids of the special tokens the decoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specials {
    pub eot: u32,
    pub sot: u32,
    pub no_timestamps: u32,
    pub no_speech: Option<u32>,
}

fn byte_chars() -> HashMap<char, u8> {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut map = HashMap::new();
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        map.insert(char::from_u32(c).expect("a valid char"), b);
    }
    map
}

impl Vocab {
    pub fn parse(text: &str) -> Result<Vocab, Error> {
        let tokens: Vec<String> = text.lines().map(str::to_string).collect();
        if tokens.len() < 2 {
            return Err(Error::Model("vocabulary.txt holds no tokens".into()));
        }
        Ok(Vocab {
            tokens,
            bytes: byte_chars(),
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == token)
            .map(|i| i as u32)
    }

    pub fn specials(&self) -> Result<Specials, Error> {
        let need = |t: &str| {
            self.id(t)
                .ok_or_else(|| Error::Model(format!("vocabulary.txt has no {t}")))
        };
        Ok(Specials {
            eot: need("<|endoftext|>")?,
            sot: need("<|startoftranscript|>")?,
            no_timestamps: need("<|notimestamps|>")?,
            no_speech: self.id("<|nospeech|>").or(self.id("<|nocaptions|>")),
        })
    }

    /// The text of `ids`; special tokens (`<|…|>`) and unknown ids are left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::new();
        for &id in ids {
            let Some(t) = self.tokens.get(id as usize) else {
                continue;
            };
            if t.starts_with("<|") && t.ends_with("|>") {
                continue;
            }
            for c in t.chars() {
                match self.bytes.get(&c) {
                    Some(&b) => out.push(b),
                    None => out.extend(c.to_string().as_bytes()),
                }
            }
        }
        String::from_utf8_lossy(&out).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_decode_to_text_and_specials_are_found_by_name() {
        let v = Vocab::parse(
            "Hello\n\u{120}world\n,\n\u{120}caf\u{c3}\u{a9}\n<|endoftext|>\n<|startoftranscript|>\n<|notimestamps|>\n",
        )
        .unwrap();
        assert_eq!(v.decode(&[0, 2, 1, 3, 4]), "Hello, world café");
        assert_eq!(
            v.specials().unwrap(),
            Specials {
                eot: 4,
                sot: 5,
                no_timestamps: 6,
                no_speech: None
            }
        );
        assert_eq!(
            v.decode(&[99, 5]),
            "",
            "unknown and special ids are left out"
        );
        assert!(Vocab::parse("").is_err());
        assert!(Vocab::parse("a\nb\n").unwrap().specials().is_err());
    }
}
