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
        },
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
    let (mut browser, offer) = Browser::offer().unwrap();
    let (answer, port) = server.accept("leg-k", &offer).unwrap();
    assert!(answer.contains("telephone-event/48000"), "{answer}");
    browser.accept_answer(&answer).unwrap();
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
