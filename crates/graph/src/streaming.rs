//! The messages a media-streaming app sends ringside over its WebSocket (the shape of Azure
//! Communication Services' media streaming; see docs/media-streaming.md). Parsed here, apart
//! from the socket, so the fuzz target reaches exactly what the server runs.

use base64::Engine as _;
use serde_json::Value;

/// A message from the app, understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// PCM 16 kHz mono to play.
    Audio(Vec<i16>),
    /// Drop what is still to be played.
    Stop,
}

/// Read one text message from the app (or say what is wrong with it).
pub fn parse_message(text: &str) -> Result<Incoming, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let get = |v: &Value, k: &str| -> Option<Value> {
        v.as_object()?
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let kind = get(&v, "kind")
        .and_then(|k| k.as_str().map(str::to_string))
        .ok_or("a message needs a \"kind\"")?;
    match kind.to_ascii_lowercase().as_str() {
        "audiodata" => {
            let data = get(&v, "audioData")
                .and_then(|a| get(&a, "data"))
                .and_then(|d| d.as_str().map(str::to_string))
                .ok_or("AudioData needs audioData.data (base64 PCM)")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|e| format!("audioData.data is not base64: {e}"))?;
            if bytes.len() % 2 != 0 {
                return Err("audioData.data is not whole 16-bit samples".into());
            }
            Ok(Incoming::Audio(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ))
        }
        "stopaudio" => Ok(Incoming::Stop),
        other => Err(format!(
            "unknown kind \"{other}\" (ringside takes AudioData and StopAudio)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_messages_are_read_in_either_case_and_nonsense_is_explained() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8, 0, 255, 255]);
        let m = format!(r#"{{"kind":"AudioData","audioData":{{"data":"{b64}"}}}}"#);
        assert_eq!(parse_message(&m), Ok(Incoming::Audio(vec![1, -1])));
        let m = format!(r#"{{"Kind":"audiodata","AudioData":{{"Data":"{b64}"}}}}"#);
        assert_eq!(parse_message(&m), Ok(Incoming::Audio(vec![1, -1])));
        assert_eq!(
            parse_message(r#"{"kind":"StopAudio","stopAudio":{}}"#),
            Ok(Incoming::Stop)
        );
        for (bad, says) in [
            ("{", "not JSON"),
            ("[]", "needs a \"kind\""),
            (r#"{"kind":"Dance"}"#, "unknown kind"),
            (r#"{"kind":"AudioData"}"#, "audioData.data"),
            (
                r#"{"kind":"AudioData","audioData":{"data":"***"}}"#,
                "not base64",
            ),
            (
                r#"{"kind":"AudioData","audioData":{"data":"AQ=="}}"#,
                "whole 16-bit",
            ),
        ] {
            let e = parse_message(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
