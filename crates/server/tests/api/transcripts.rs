//! Transcription with the real model: a simulated user speaks (espeak-ng), the bot's
//! transcript holds the words with the right speaker, line by line as notifications and as
//! WebVTT under the call; without a model, startTranscription fails saying why.

use crate::common::*;
use serde_json::{Value, json};

/// The model is installed (scripts/models.sh), or the test command insists it be.
fn have_model() -> bool {
    let found = asr::find_model(None).is_some();
    if !found {
        assert!(
            std::env::var_os("RINGSIDE_REQUIRE_WHISPER").is_none(),
            "no Whisper model: run scripts/models.sh"
        );
        eprintln!("skipped: no Whisper model (scripts/models.sh installs it)");
    }
    found
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Word error rate of `heard` against `said`: word-level edit distance over the words said.
pub fn wer(said: &str, heard: &str) -> f64 {
    let (a, b) = (words(said), words(heard));
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, wa) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(wa != wb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()] as f64 / a.len().max(1) as f64
}

const FIRST: &str = "Thank you for calling the support line.";
const SECOND: &str = "I would like to change the address on my account please.";

fn say_url(h: &Harness, text: &str) -> String {
    let t: String =
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string();
    format!("{}/say/{t}.wav", h.hooks.url)
}

async fn call_speaking_alice(h: &Harness, speak: Value) -> String {
    let mut body = p2p_body(&h.callback(), ALICE);
    body["targets"][0]["ringside"] = json!({ "speak": speak });
    body["targets"][0]["identity"]["user"]["displayName"] = json!("Alice");
    let (s, v, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    id
}

#[test]
fn word_error_rate_counts_substitutions_insertions_and_deletions() {
    assert_eq!(wer("a b c d", "a b c d"), 0.0);
    assert_eq!(wer("a b c d", "a x c"), 0.5);
    assert_eq!(wer("Hello, world!", "hello world"), 0.0);
    assert_eq!(wer("a b", "a b c d"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_simulated_user_says_is_transcribed_line_by_line_with_the_speaker() {
    if !have_model() {
        return;
    }
    let h = Harness::start().await;
    let speak = json!([
        {"uri": say_url(&h, FIRST), "atMs": 1500},
        {"uri": say_url(&h, SECOND), "atMs": 6000},
    ]);
    let id = call_speaking_alice(&h, speak).await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/microsoft.graph.StartTranscription"),
            Some(json!({"language": "en-us"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    h.until(&id, "transcription active", |n| {
        n.data["transcription"]["state"] == "active"
    })
    .await;
    let is_line = |n: &Note| n.data["@odata.type"] == "#ringside.transcriptLine";
    let mut lines = vec![];
    for _ in 0..2 {
        let got = h.until(&id, "a transcript line", is_line).await;
        lines.push(got.last().unwrap().clone());
    }
    let alice = &lines[0].data["participantId"];
    for (n, said) in lines.iter().zip([FIRST, SECOND]) {
        let d = &n.data;
        assert!(n.resource.contains("/transcripts/"), "{}", n.resource);
        assert_eq!(n.change, "updated");
        assert_eq!(d["speaker"], "Alice", "{d}");
        assert_eq!(&d["participantId"], alice);
        let w = wer(said, d["text"].as_str().unwrap());
        assert!(w <= 0.25, "WER {w:.2}: said {said:?}, heard {d}");
    }
    let offset = |n: &Note, k: &str| {
        let s = n.data[k].as_str().unwrap();
        s.trim_start_matches("PT")
            .trim_end_matches('S')
            .parse::<f64>()
            .unwrap()
    };
    assert!(offset(&lines[0], "endOffset") > offset(&lines[0], "startOffset"));
    assert!(offset(&lines[1], "startOffset") > offset(&lines[0], "endOffset"));

    let (s, _, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/microsoft.graph.StopTranscription"),
            Some(json!({"language": "en-us"})),
        )
        .await;
    assert_eq!(s, 202);
    let (s, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/transcripts"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let list = v["value"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["callId"], id.as_str());
    assert!(list[0]["endDateTime"].is_string(), "stopped: {v}");
    let url = list[0]["transcriptContentUrl"].as_str().unwrap();
    let r = h
        .client
        .get(url)
        .bearer_auth(h.token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/vtt")
    );
    let vtt = r.text().await.unwrap();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert_eq!(vtt.matches("<v Alice>").count(), 2, "{vtt}");
    let spoken: String = vtt
        .lines()
        .filter_map(|l| l.strip_prefix("<v Alice>"))
        .collect::<Vec<_>>()
        .join(" ");
    let w = wer(&format!("{FIRST} {SECOND}"), &spoken);
    assert!(w <= 0.25, "WER {w:.2}: {vtt}");

    let (_, m) = h.admin("GET", "/media", None).await;
    let t = &m["transcription"];
    assert_eq!(t["available"], true, "{m}");
    assert!(t["transcribed"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["gaps"], 0, "{t}");
}

#[tokio::test]
async fn without_a_model_start_transcription_fails_saying_why_and_nothing_changes() {
    let h = Harness::start_with("\n[transcription]\nmodel = \"/nonexistent/whisper\"\n").await;
    let (_, m) = h.admin("GET", "/media", None).await;
    assert_eq!(m["transcription"]["available"], false, "{m}");
    let reason = m["transcription"]["unavailableReason"].as_str().unwrap();
    assert!(
        reason.contains("/nonexistent/whisper/model.bin"),
        "{reason}"
    );

    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/startTranscription"),
            Some(json!({"language": "en-us"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let op = v["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "the operation fails", |n| {
            n.resource.ends_with(&op) && n.data["status"] == "failed"
        })
        .await;
    let r = &notes.last().unwrap().data["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(503), Some(8511))
    );
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("Transcription is unavailable"),
        "{r}"
    );
    assert!(
        !notes
            .iter()
            .any(|n| n.data["transcription"]["state"] == "active"),
        "transcription never became active"
    );
    let (s, v, _) = h
        .req("GET", &format!("/beta/communications/calls/{id}"), None)
        .await;
    assert_eq!(s, 200);
    assert!(v["transcription"].is_null(), "{v}");
    let (s, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/transcripts"),
            None,
        )
        .await;
    assert_eq!(
        (s, v["value"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meetings_transcript_names_who_spoke_and_is_filed_under_the_meeting() {
    if !have_model() {
        return;
    }
    use crate::meetings::{create_meeting, join_body};
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let meeting_id = m["id"].as_str().unwrap().to_string();
    let (s, v, _) = h
        .req(
            "POST",
            "/beta/communications/calls",
            Some(join_body(&h, &m, "chat")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/startTranscription"),
            Some(json!({"language": "en-us"})),
        )
        .await;
    assert_eq!(s, 202);
    h.until(&id, "transcription active", |n| {
        n.data["transcription"]["state"] == "active"
    })
    .await;
    let script =
        json!({"speak": [{"uri": say_url(&h, SECOND), "atMs": 500}], "hangupAfterMs": 7000});
    let (s, v) = h
        .admin(
            "POST",
            &format!("/users/{GINA}/join"),
            Some(json!({"joinWebUrl": m["joinWebUrl"], "script": script})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let got = h
        .until(&id, "Gina's words", |n| {
            n.data["@odata.type"] == "#ringside.transcriptLine"
        })
        .await;
    let line = &got.last().unwrap().data;
    assert_eq!(line["speaker"], "Gina", "{line}");
    let w = wer(SECOND, line["text"].as_str().unwrap());
    assert!(w <= 0.25, "WER {w:.2}: {line}");

    for owner in [
        format!("/beta/communications/onlineMeetings/{meeting_id}"),
        format!("/v1.0/users/organizer-1/onlineMeetings/{meeting_id}"),
    ] {
        let (s, v, _) = h.req("GET", &format!("{owner}/transcripts"), None).await;
        assert_eq!(s, 200, "{v}");
        let list = v["value"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{v}");
        assert_eq!(list[0]["meetingId"], meeting_id.as_str());
        let tid = list[0]["id"].as_str().unwrap();
        let (s, one, _) = h
            .req("GET", &format!("{owner}/transcripts/{tid}"), None)
            .await;
        assert_eq!((s, &one["id"]), (200, &list[0]["id"]));
        let r = h
            .client
            .get(format!("{}{owner}/transcripts/{tid}/content", h.base))
            .bearer_auth(h.token().await)
            .send()
            .await
            .unwrap();
        let vtt = r.text().await.unwrap();
        assert!(vtt.contains("<v Gina>"), "{vtt}");
    }
    let (s, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/onlineMeetings/{meeting_id}/transcripts/nope"),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("ItemNotFound")),
        "{v}"
    );
    let (s, _, _) = h
        .req(
            "DELETE",
            &format!("/beta/communications/calls/{id}/transcripts"),
            None,
        )
        .await;
    assert_eq!(s, 405);
}
