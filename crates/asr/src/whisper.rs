//! Whisper on candle: the CT2 tensors renamed to the layout candle's model loads, the log-mel
//! front end, and a greedy decoder.

use crate::ct2::{self, DType};
use crate::types::{Error, Transcript};
use crate::vocab::{Specials, Vocab};
use candle_core::{D, DType as T, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{self as w, audio, model::Whisper};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[cfg(test)]
mod tests {
    #[test]
    fn a_decode_that_starts_repeating_itself_is_cut_after_the_first_time() {
        let t = [1, 2, 3, 4, 5, 6, 3, 4, 5, 6];
        assert_eq!(super::repeats(&t), Some(6));
        assert_eq!(super::repeats(&[1, 2, 3, 4, 1, 2, 3]), None);
        assert_eq!(
            super::repeats(&[7, 7, 7]),
            None,
            "short runs are words, not loops"
        );
    }
}

fn err(e: candle_core::Error) -> Error {
    Error::Model(e.to_string())
}

#[derive(Clone)]
pub struct Inner {
    model: Whisper,
    shared: Arc<Shared>,
}

struct Shared {
    vocab: Vocab,
    specials: Specials,
    filters: Vec<f32>,
    /// Added to the logits of every step: −∞ where a token may never come.
    suppress: Tensor,
    /// Added at the first step: no blank and no end before any word.
    suppress_begin: Tensor,
}

/// The CT2 variable for one HF-named tensor, with the part of a fused matrix it is.
fn rename(name: &str) -> Vec<(String, usize, usize)> {
    // (hf name, part, parts)
    let (side, rest) = match name.split_once('/') {
        Some(x) => x,
        None => return vec![],
    };
    let hf = format!("model.{side}");
    fn leaf(s: &str) -> &str {
        match s {
            "gamma" => "weight",
            "beta" => "bias",
            x => x,
        }
    }
    let p: Vec<&str> = rest.split('/').collect();
    let one = |n: String| vec![(n, 0, 1)];
    match p.as_slice() {
        ["conv1" | "conv2", l] => one(format!("{hf}.{}.{l}", p[0])),
        ["layer_norm", l] => one(format!("{hf}.layer_norm.{}", leaf(l))),
        ["embeddings", "weight"] => one(format!("{hf}.embed_tokens.weight")),
        ["position_encodings", "encodings"] if side == "decoder" => {
            one(format!("{hf}.embed_positions.weight"))
        }
        [layer, block, part, l] if layer.starts_with("layer_") => {
            let i = &layer[6..];
            let base = format!("{hf}.layers.{i}");
            let l = leaf(l);
            match (*block, *part) {
                ("self_attention", "layer_norm") => one(format!("{base}.self_attn_layer_norm.{l}")),
                ("attention", "layer_norm") => one(format!("{base}.encoder_attn_layer_norm.{l}")),
                ("ffn", "layer_norm") => one(format!("{base}.final_layer_norm.{l}")),
                ("ffn", "linear_0") => one(format!("{base}.fc1.{l}")),
                ("ffn", "linear_1") => one(format!("{base}.fc2.{l}")),
                ("self_attention", "linear_0") => ["q_proj", "k_proj", "v_proj"]
                    .iter()
                    .enumerate()
                    .map(|(k, n)| (format!("{base}.self_attn.{n}.{l}"), k, 3))
                    .collect(),
                ("self_attention", "linear_1") => one(format!("{base}.self_attn.out_proj.{l}")),
                ("attention", "linear_0") => one(format!("{base}.encoder_attn.q_proj.{l}")),
                ("attention", "linear_1") => ["k_proj", "v_proj"]
                    .iter()
                    .enumerate()
                    .map(|(k, n)| (format!("{base}.encoder_attn.{n}.{l}"), k, 2))
                    .collect(),
                ("attention", "linear_2") => one(format!("{base}.encoder_attn.out_proj.{l}")),
                _ => vec![],
            }
        }
        _ => vec![],
    }
}

fn tensors(file: &ct2::File, dev: &Device) -> Result<HashMap<String, Tensor>, Error> {
    let mut out = HashMap::new();
    for v in &file.vars {
        let targets = rename(&v.name);
        if targets.is_empty() {
            continue;
        }
        let dtype = match v.dtype {
            DType::F32 => T::F32,
            DType::F16 => T::F16,
            DType::BF16 => T::BF16,
            d => return Err(Error::Model(format!("{}: {d:?} weights", v.name))),
        };
        let t = Tensor::from_raw_buffer(v.data, dtype, &v.dims, dev)
            .and_then(|t| t.to_dtype(T::F32))
            .map_err(err)?;
        for (name, part, parts) in targets {
            let rows = v.dims[0] / parts;
            let t = t.narrow(0, part * rows, rows).map_err(err)?;
            out.insert(name, t);
        }
    }
    Ok(out)
}

fn config(file: &ct2::File) -> Result<w::Config, Error> {
    let heads = |side: &str| {
        file.var(&format!("{side}/num_heads"))
            .and_then(|v| v.scalar())
            .ok_or_else(|| Error::Model(format!("model.bin has no {side}/num_heads")))
    };
    let layers = |side: &str| {
        (0..)
            .take_while(|i| {
                file.var(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
                    .is_some()
            })
            .count()
    };
    let dims = |name: &str| {
        file.var(name)
            .map(|v| v.dims.clone())
            .ok_or_else(|| Error::Model(format!("model.bin has no {name}")))
    };
    let conv = dims("encoder/conv1/weight")?;
    let emb = dims("decoder/embeddings/weight")?;
    let pos = dims("decoder/position_encodings/encodings")?;
    let enc_pos = dims("encoder/position_encodings/encodings").unwrap_or(vec![1500]);
    if conv.len() != 3 || emb.len() != 2 || pos.len() != 2 {
        return Err(Error::Model("model.bin's shapes are not Whisper's".into()));
    }
    Ok(w::Config {
        num_mel_bins: conv[1],
        max_source_positions: enc_pos[0],
        d_model: conv[0],
        encoder_attention_heads: heads("encoder")? as usize,
        encoder_layers: layers("encoder"),
        vocab_size: emb[0],
        max_target_positions: pos[0],
        decoder_attention_heads: heads("decoder")? as usize,
        decoder_layers: layers("decoder"),
        suppress_tokens: vec![],
    })
}

/// `"suppress_ids": [..]` from config.json, without a JSON parser: the ids are plain numbers.
fn id_list(config_json: &str, key: &str) -> Vec<u32> {
    let Some(at) = config_json.find(&format!("\"{key}\"")) else {
        return vec![];
    };
    let rest = &config_json[at..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        return vec![];
    };
    if close < open {
        return vec![];
    }
    rest[open + 1..close]
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn mask(vocab: usize, ids: impl Iterator<Item = u32>, dev: &Device) -> Result<Tensor, Error> {
    let mut m = vec![0f32; vocab];
    for id in ids {
        if let Some(x) = m.get_mut(id as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    Tensor::new(m.as_slice(), dev).map_err(err)
}

/// Mel frames the encoder sees at least (10 s).
const MIN_FRAMES: usize = 1000;

/// Where a decode started looping: the length to keep when its last run of 4 or more tokens
/// repeats the run just before it (and would go on repeating).
fn repeats(t: &[u32]) -> Option<usize> {
    (4..=t.len() / 2).find_map(|k| {
        let n = t.len();
        (t[n - k..] == t[n - 2 * k..n - k]).then_some(n - k)
    })
}

impl Inner {
    pub fn load(dir: &Path) -> Result<Inner, Error> {
        let read = |f: &str| {
            std::fs::read(dir.join(f))
                .map_err(|e| Error::Model(format!("{}: {e}", dir.join(f).display())))
        };
        let bytes = read("model.bin")?;
        let vocab_text = String::from_utf8_lossy(&read("vocabulary.txt")?).into_owned();
        let config_json =
            String::from_utf8_lossy(&read("config.json").unwrap_or_default()).into_owned();
        let file = ct2::parse(&bytes)?;
        if file.spec != "WhisperSpec" {
            return Err(Error::Model(format!(
                "model.bin holds a {}, not a Whisper model",
                file.spec
            )));
        }
        let cfg = config(&file)?;
        let dev = Device::Cpu;
        let map = tensors(&file, &dev)?;
        drop(file);
        drop(bytes);
        let vb = VarBuilder::from_tensors(map, T::F32, &dev);
        let model = Whisper::load(&vb, cfg.clone()).map_err(err)?;
        let vocab = Vocab::parse(&vocab_text)?;
        let specials = vocab.specials()?;
        let n = cfg.vocab_size;
        let suppress = mask(
            n,
            id_list(&config_json, "suppress_ids")
                .into_iter()
                .chain((specials.eot + 1)..n as u32),
            &dev,
        )?;
        let mut begin = id_list(&config_json, "suppress_ids_begin");
        if begin.is_empty() {
            begin.push(specials.eot);
        }
        let suppress_begin = mask(n, begin.into_iter(), &dev)?;
        Ok(Inner {
            model,
            shared: Arc::new(Shared {
                vocab,
                specials,
                filters: crate::mel::filters(),
                suppress,
                suppress_begin,
            }),
        })
    }

    pub fn transcribe(&mut self, pcm: &[i16]) -> Result<Transcript, Error> {
        let s = self.shared.clone();
        let samples: Vec<f32> = pcm.iter().map(|&x| x as f32 / 32768.0).collect();
        let cfg = self.model.config.clone();
        let mel = audio::pcm_to_mel(&cfg, &samples, &s.filters);
        let total = mel.len() / cfg.num_mel_bins;
        // The encoder sees the audio plus a second of padding, and at least 10 s: a third of
        // the cost of always padding to the 30 s window. (With much less than 10 s, tiny.en
        // tends to repeat a short sentence until it runs out of tokens.)
        let frames = (samples.len() / w::HOP_LENGTH + 100)
            .max(MIN_FRAMES)
            .div_ceil(2)
            .saturating_mul(2)
            .min(w::N_FRAMES)
            .min(total);
        let mel = Tensor::from_vec(mel, (1, cfg.num_mel_bins, total), &Device::Cpu)
            .and_then(|m| m.narrow(2, 0, frames))
            .map_err(err)?;
        let features = self.model.encoder.forward(&mel, true).map_err(err)?;
        let sp = s.specials;
        let mut tokens = vec![sp.sot, sp.no_timestamps];
        let limit = 8 + (pcm.len() / crate::types::RATE * 6).min(200);
        let mut no_speech = 0f32;
        let mut logprob = 0f32;
        for i in 0..limit {
            let t = Tensor::new(tokens.as_slice(), &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .map_err(err)?;
            let ys = self
                .model
                .decoder
                .forward(&t, &features, i == 0)
                .map_err(err)?;
            let seq = tokens.len();
            if i == 0
                && let Some(ns) = sp.no_speech
            {
                let first = self
                    .model
                    .decoder
                    .final_linear(&ys.i((..1, ..1)).map_err(err)?)
                    .and_then(|l| l.i(0)?.i(0))
                    .and_then(|l| candle_nn::ops::softmax(&l, D::Minus1))
                    .map_err(err)?;
                no_speech = first
                    .i(ns as usize)
                    .and_then(|p| p.to_scalar::<f32>())
                    .map_err(err)?;
            }
            let mut logits = self
                .model
                .decoder
                .final_linear(&ys.i((..1, seq - 1..)).map_err(err)?)
                .and_then(|l| l.i(0)?.i(0))
                .and_then(|l| l.broadcast_add(&s.suppress))
                .map_err(err)?;
            if i == 0 {
                logits = logits.broadcast_add(&s.suppress_begin).map_err(err)?;
            }
            let next = logits
                .argmax(D::Minus1)
                .and_then(|t| t.to_scalar::<u32>())
                .map_err(err)?;
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)
                .and_then(|l| l.i(next as usize)?.to_scalar::<f32>())
                .map_err(err)?;
            if next == sp.eot {
                break;
            }
            logprob += lp;
            tokens.push(next);
            if let Some(cut) = repeats(&tokens[2..]) {
                tokens.truncate(2 + cut);
                break;
            }
        }
        self.model.reset_kv_cache();
        let words = &tokens[2..];
        Ok(Transcript {
            text: s.vocab.decode(words),
            no_speech,
            avg_logprob: logprob / words.len().max(1) as f32,
        })
    }
}
