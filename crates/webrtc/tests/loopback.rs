//! A WebRTC client (str0m, as a browser would: full ICE, DTLS-SRTP, Opus) calls ringside's
//! endpoint over real UDP sockets on loopback: the tone it sends arrives in the leg's port,
//! and the tone the room writes to the port arrives at the client.

use media::FRAME;
use std::sync::mpsc;
use std::time::Duration;
use webrtc::client::{Browser, Codec, frequency, tone};
use webrtc::{LegEvent, WebRtc};

#[test]
fn a_browser_and_the_room_hear_each_other_through_dtls_srtp_and_opus() {
    both_ways(&[Codec::Opus], "opus/48000");
}

#[test]
fn in_low_delay_mode_the_browser_still_hears_the_room() {
    let opts = webrtc::endpoint::Options {
        shards: 1,
        opus: webrtc::opus::Tuning {
            complexity: 0,
            low_delay: true,
            ..Default::default()
        },
        realtime: true,
    };
    both_ways_with(&[Codec::Opus], "opus/48000", opts);
}

#[test]
fn a_browser_that_offers_only_g711_is_heard_and_hears_in_g711() {
    both_ways(&[Codec::PCMU], "PCMU/8000");
    both_ways(&[Codec::PCMA], "PCMA/8000");
}

/// A browser offering `codecs` and the room hear each other's tones; the answer names `expect`.
fn both_ways(codecs: &[Codec], expect: &str) {
    both_ways_with(codecs, expect, Default::default())
}

fn both_ways_with(codecs: &[Codec], expect: &str, opts: webrtc::endpoint::Options) {
    let (events_tx, events) = mpsc::channel();
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), events_tx, opts).unwrap();
    let (mut browser, offer) = Browser::offering(codecs).unwrap();
    let (answer, port) = server.accept("leg-1", &offer).unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains(expect), "{answer}");
    browser.accept_answer(&answer).unwrap();

    // Every 20 ms the browser speaks 440 Hz, and the room reads the port and writes 1 kHz.
    let mut heard_by_room: Vec<i16> = vec![];
    let mut speak = |n: usize| {
        let mut frame = [0i16; FRAME];
        let mut p = port.lock().unwrap();
        if p.read(&mut frame) {
            heard_by_room.extend_from_slice(&frame);
        }
        p.write(&tone(1000.0, n));
        Some(tone(440.0, n))
    };
    browser
        .run(Duration::from_secs(8), &mut speak, &mut |b| {
            b.heard.len() >= 24_000 && b.sent >= 75
        })
        .unwrap();
    assert!(browser.connected, "ICE and DTLS came up");
    assert_eq!(
        events.recv_timeout(Duration::from_secs(1)).unwrap(),
        LegEvent::Connected {
            leg_id: "leg-1".into()
        }
    );
    // Skip the codecs' start-up, then judge a second of each direction.
    let judge = |s: &[i16]| frequency(&s[s.len().saturating_sub(16_000)..]);
    assert!(
        heard_by_room.len() >= 16_000,
        "the room heard {} samples",
        heard_by_room.len()
    );
    let room = judge(&heard_by_room);
    let heard = judge(&browser.heard);
    assert!(
        (room - 440.0).abs() < 30.0,
        "the room hears the browser's 440 Hz: {room:.0} Hz"
    );
    assert!(
        (heard - 1000.0).abs() < 50.0,
        "the browser hears the room's 1 kHz: {heard:.0} Hz"
    );
    server.hangup("leg-1");
}

#[test]
fn a_malformed_offer_is_refused_with_a_reason_and_the_endpoint_carries_on() {
    let (tx, _events) = mpsc::channel();
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx, Default::default()).unwrap();
    for bad in [
        "",
        "v=0\r\nthis is not sdp",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
    ] {
        let e = server.accept("leg-x", bad).err().expect("refused");
        assert!(!e.is_empty());
        assert!(webrtc::endpoint::check_offer(bad).is_err());
    }
    // A good offer still gets an answer.
    let (_, offer) = Browser::offer().unwrap();
    assert!(webrtc::endpoint::check_offer(&offer).is_ok());
    assert!(server.accept("leg-y", &offer).is_ok());
}

#[test]
fn keys_pressed_in_the_browser_arrive_once_each_as_events() {
    let (tx, _events) = mpsc::channel();
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx, Default::default()).unwrap();
    let (mut browser, port) = answered(&server, "leg-k", "telephone-event/48000");
    browser.keys.extend("12#*9".chars());
    let mut keys = String::new();
    let mut speak = |n: usize| {
        let mut frame = [0i16; FRAME];
        let mut p = port.lock().unwrap();
        p.read(&mut frame);
        while let Some(k) = p.take_tone() {
            keys.push(k);
        }
        Some(tone(440.0, n))
    };
    browser
        .run(Duration::from_secs(6), &mut speak, &mut |b| {
            b.keys.is_empty() && b.sent > 60
        })
        .unwrap();
    assert_eq!(keys, "12#*9");
}

#[test]
fn browsers_hearing_the_same_common_mix_share_one_encoding_and_each_hears_it() {
    use media::port::Common;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (tx, _events) = mpsc::channel();
    let opts = webrtc::endpoint::Options {
        shards: 1,
        ..Default::default()
    };
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx, opts).unwrap();
    let mut browsers = vec![];
    let mut ports = vec![];
    for leg in ["leg-a", "leg-b"] {
        let (b, port) = answered(&server, leg, "opus/48000");
        browsers.push(b);
        ports.push(port);
    }
    // The room: every 20 ms both legs hear its common mix, a 1 kHz tone, tagged alike.
    let stop = Arc::new(AtomicBool::new(false));
    let room = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick += 1;
                let frame = tone(1000.0, tick as usize);
                let tag = Common { mix: 7, tick };
                for p in &ports {
                    p.lock().unwrap().write_common(&frame, tag);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let listeners: Vec<_> = browsers
        .into_iter()
        .map(|mut b| {
            std::thread::spawn(move || {
                b.run(Duration::from_secs(8), &mut |_| None, &mut |b| {
                    b.heard.len() >= 32_000
                })
                .unwrap();
                b
            })
        })
        .collect();
    let heard: Vec<f64> = listeners
        .into_iter()
        .map(|t| {
            let b = t.join().unwrap();
            assert!(b.heard.len() >= 16_000, "heard {} samples", b.heard.len());
            frequency(&b.heard[b.heard.len() - 16_000..])
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    room.join().unwrap();
    for f in heard {
        assert!(
            (f - 1000.0).abs() < 50.0,
            "each browser hears 1 kHz: {f:.0} Hz"
        );
    }
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (encodes, frames) = (
        get(&server.stats.common_encodes),
        get(&server.stats.common_frames),
    );
    assert_eq!(
        get(&server.stats.own_encodes),
        0,
        "no leg encoded on its own"
    );
    assert!(
        encodes > 50 && 2 * frames >= 3 * encodes,
        "one encoding served both legs: {encodes} encodes, {frames} frames"
    );
}

#[test]
fn a_muted_browsers_silence_is_not_decoded_when_only_the_mix_takes_it() {
    use std::sync::atomic::Ordering;
    let (tx, _events) = mpsc::channel();
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx, Default::default()).unwrap();
    let (mut browser, port) = answered(&server, "leg-m", "ssrc-audio-level");
    // The browser is muted for its first 60 frames (digital silence, marked -127 dBov), then
    // speaks 440 Hz. The room needs its silence for the first 30 ticks only (say, a bot was
    // recording), then takes its audio for the mix alone.
    let mut heard_by_room: Vec<i16> = vec![];
    let mut ticks = 0;
    let mut speak = |n: usize| {
        let mut frame = [0i16; FRAME];
        let mut p = port.lock().unwrap();
        ticks += 1;
        p.silence_needed(ticks <= 30);
        if p.read(&mut frame) {
            heard_by_room.extend_from_slice(&frame);
        }
        Some(if n < 60 { [0; FRAME] } else { tone(440.0, n) })
    };
    browser
        .run(Duration::from_secs(8), &mut speak, &mut |b| b.sent >= 130)
        .unwrap();
    let undecoded = server.stats.undecoded.load(Ordering::Relaxed);
    assert!(
        (10..=40).contains(&undecoded),
        "the silence after the room stopped needing it was left undecoded: {undecoded}"
    );
    let spoken = &heard_by_room[heard_by_room.len() - 16_000..];
    let f = frequency(spoken);
    assert!(
        (f - 440.0).abs() < 30.0,
        "the room hears the browser's voice once it speaks: {f:.0} Hz"
    );
}

#[test]
fn the_answer_takes_the_audio_level_and_mid_extensions_but_not_congestion_feedback() {
    let (tx, _events) = mpsc::channel();
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx, Default::default()).unwrap();
    let (_browser, offer) = Browser::offer().unwrap();
    for ext in [
        "ssrc-audio-level",
        "sdes:mid",
        "transport-wide-cc",
        "abs-send-time",
    ] {
        assert!(offer.contains(ext), "a browser offers {ext}: {offer}");
    }
    let (answer, _port) = server.accept("leg-x", &offer).unwrap();
    for ext in ["ssrc-audio-level", "sdes:mid"] {
        assert!(answer.contains(ext), "ringside reads {ext}: {answer}");
    }
    for unused in ["transport-wide-cc", "transport-cc", "abs-send-time"] {
        assert!(
            !answer.contains(unused),
            "{unused} is not asked for: {answer}"
        );
    }
}

#[test]
fn a_browser_asked_for_dtx_pauses_between_talk_spurts_and_the_room_hears_silence_there() {
    let (tx, _events) = mpsc::channel();
    let quiet = webrtc::endpoint::Options {
        opus: webrtc::opus::Tuning {
            dtx: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let plain = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx.clone(), quiet).unwrap();
    let (_, offer) = Browser::offer().unwrap();
    let (answer, _) = plain.accept("leg-p", &offer).unwrap();
    assert!(!answer.contains("usedtx"), "{answer}");

    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx, Default::default()).unwrap();
    let (mut browser, port) = answered(&server, "leg-d", "usedtx=1");
    // As a browser with DTX: 440 Hz for 40 frames; then silence, sent for 10 frames (the
    // encoder's hangover) and then not at all bar one comfort-noise packet, until frame 90;
    // then 440 Hz again.
    let mut heard_by_room: Vec<[i16; FRAME]> = vec![];
    let mut speak = |n: usize| {
        let mut frame = [0i16; FRAME];
        let mut p = port.lock().unwrap();
        p.read(&mut frame);
        heard_by_room.push(frame);
        match n {
            40..=49 | 65 => Some([0; FRAME]),
            50..=89 => None,
            _ => Some(tone(440.0, n)),
        }
    };
    browser
        .run(Duration::from_secs(8), &mut speak, &mut |b| b.sent >= 150)
        .unwrap();
    let loud =
        |f: &[i16; FRAME]| f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / FRAME as f64 > 1e6;
    // The room's reads lag the browser's sends by the jitter buffer's delay: find the pause
    // as the longest quiet run after the first spurt was heard.
    let first = heard_by_room
        .iter()
        .position(loud)
        .expect("the first spurt is heard");
    let mut longest = 0;
    let mut run = 0;
    for f in &heard_by_room[first..] {
        run = if loud(f) { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    assert!(
        (40..=60).contains(&longest),
        "the pause is heard as silence, not filled with the last spurt: {longest} quiet frames"
    );
    let last: Vec<i16> = heard_by_room[heard_by_room.len() - 40..]
        .iter()
        .flatten()
        .copied()
        .collect();
    let f = frequency(&last);
    assert!(
        (f - 440.0).abs() < 30.0,
        "the room hears the browser again after the pause: {f:.0} Hz"
    );
}

#[test]
fn the_legs_of_one_room_share_a_shard_until_it_is_much_busier_than_the_others() {
    let (tx, _events) = mpsc::channel();
    let opts = webrtc::endpoint::Options {
        shards: 2,
        ..Default::default()
    };
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx, opts).unwrap();
    let mut n = 0;
    let mut join = |room: &str, legs: usize| {
        for _ in 0..legs {
            let (_, offer) = Browser::offer().unwrap();
            n += 1;
            server.accept_in(&format!("leg-{n}"), &offer, room).unwrap();
        }
        let mut l = server.legs_per_shard();
        l.sort();
        l
    };
    assert_eq!(join("meeting-a", 4), [0, 4], "one room, one shard");
    assert_eq!(
        join("meeting-b", 4),
        [4, 4],
        "the next room, the other shard"
    );
    assert_eq!(join("meeting-a", 3), [4, 7], "more of a room, its shard");
    // A room far bigger than the rest spills over once its shard holds 16 more legs than the
    // least loaded.
    assert_eq!(join("meeting-b", 20), [8, 23]);
}

/// A browser offering Opus, answered by `server` as leg `leg` with an answer naming `expect`.
fn answered(server: &WebRtc, leg: &str, expect: &str) -> (Browser, media::port::PortRef) {
    let (mut browser, offer) = Browser::offer().unwrap();
    let (answer, port) = server.accept(leg, &offer).unwrap();
    assert!(answer.contains(expect), "{answer}");
    browser.accept_answer(&answer).unwrap();
    (browser, port)
}
