//! The real model on speech espeak-ng makes. Needs the weights (`scripts/models.sh` installs
//! them; the test command sets RINGSIDE_REQUIRE_WHISPER=1 so that a missing model fails
//! rather than skips).
#![cfg(feature = "whisper")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RINGSIDE_WHISPER_DIR")
        .map(PathBuf::from)
        .or_else(|| asr::find_model(None));
    if dir.is_none() {
        assert!(
            std::env::var_os("RINGSIDE_REQUIRE_WHISPER").is_none(),
            "no Whisper model found: run scripts/models.sh"
        );
        eprintln!("skipped: no Whisper model (scripts/models.sh installs it)");
    }
    dir
}

/// `text` spoken by espeak-ng, as 16 kHz mono PCM.
fn speak(text: &str, dir: &Path) -> Vec<i16> {
    let raw = dir.join("raw.wav");
    let out = dir.join("16k.wav");
    let ok = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .expect("espeak-ng runs")
        .success();
    assert!(ok);
    let ok = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&out)
        .status()
        .expect("sox runs")
        .success();
    assert!(ok);
    hound::WavReader::open(&out)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[test]
fn whisper_writes_down_what_espeak_says() {
    let Some(dir) = model_dir() else { return };
    let tmp = std::env::temp_dir().join(format!("asr-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut model = asr::Model::load(&dir).expect("the model loads");
    let said = "thank you for calling, please hold the line for the operator";
    let pcm = speak(said, &tmp);
    let t = std::time::Instant::now();
    let heard = model.transcribe(&pcm).unwrap();
    eprintln!("{:?} in {:?}", heard, t.elapsed());
    let got = words(&heard.text);
    let want = words(said);
    let hits = want.iter().filter(|w| got.contains(w)).count();
    assert!(hits * 4 >= want.len() * 3, "heard {got:?}");
    assert!(heard.is_speech());
    // Silence is not speech.
    let quiet = model.transcribe(&vec![0i16; 16_000]).unwrap();
    assert!(!quiet.is_speech() || quiet.text.len() < 12, "{quiet:?}");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn a_folder_without_a_model_is_a_clear_error() {
    let e = asr::Model::load(Path::new("/nonexistent/whisper"))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("/nonexistent/whisper/model.bin"),
        "{e}"
    );
}
