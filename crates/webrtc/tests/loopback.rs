//! A WebRTC client (str0m, as a browser would: full ICE, DTLS-SRTP, Opus) calls ringside's
//! endpoint over real UDP sockets on loopback: the tone it sends arrives in the leg's port,
//! and the tone the room writes to the port arrives at the client.

use media::FRAME;
use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use webrtc::opus::{Decoder, Encoder};
use webrtc::{LegEvent, WebRtc};

fn tone(hz: f64, n: usize) -> [i16; FRAME] {
    let mut f = [0i16; FRAME];
    for (i, s) in f.iter_mut().enumerate() {
        let t = (n * FRAME + i) as f64 / 16_000.0;
        *s = ((t * hz * std::f64::consts::TAU).sin() * 8000.0) as i16;
    }
    f
}

/// The dominant frequency of audio, from its zero crossings.
fn frequency(samples: &[i16]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / 16_000.0)
}

#[test]
fn a_browser_and_the_room_hear_each_other_through_dtls_srtp_and_opus() {
    let (events_tx, events) = mpsc::channel();
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), events_tx).unwrap();

    // The "browser": full ICE, an audio m-line, Opus.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();

    let (answer, port) = server.accept("leg-1", &offer.to_sdp_string()).unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let mut enc = Encoder::new().unwrap();
    let mut dec = Decoder::new().unwrap();
    let mut heard_by_browser: Vec<i16> = vec![];
    let mut heard_by_room: Vec<i16> = vec![];
    let mut connected = false;
    let mut sent = 0usize;
    let start = Instant::now();
    let mut next_tick = Instant::now();
    let mut buf = vec![0u8; 2000];
    while start.elapsed() < Duration::from_secs(8)
        && (heard_by_browser.len() < 16_000 || heard_by_room.len() < 16_000)
    {
        // The browser's session.
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    sock.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(Event::MediaData(d)) => {
                    if let Ok(s) = dec.decode(&d.data) {
                        heard_by_browser.extend(s);
                    }
                }
                Output::Event(_) => {}
            }
        };
        // Every 20 ms: the browser speaks 440 Hz; the room reads its port and writes 1 kHz.
        if Instant::now() >= next_tick {
            next_tick += Duration::from_millis(20);
            if connected {
                let params = rtc
                    .writer(mid)
                    .unwrap()
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .cloned()
                    .unwrap();
                let packet = enc.encode(&tone(440.0, sent)).unwrap();
                let t = MediaTime::new(sent as u64 * 960, Frequency::FORTY_EIGHT_KHZ);
                rtc.writer(mid)
                    .unwrap()
                    .write(params.pt(), Instant::now(), t, packet)
                    .unwrap();
                let mut frame = [0i16; FRAME];
                let mut p = port.lock().unwrap();
                if p.read(&mut frame) {
                    heard_by_room.extend_from_slice(&frame);
                }
                p.write(&tone(1000.0, sent));
                sent += 1;
            }
        }
        let wait = timeout
            .min(next_tick)
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, source)) => {
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents: buf[..n].try_into().unwrap(),
                    },
                );
                rtc.handle_input(input).unwrap();
            }
            Err(_) => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }
    assert!(connected, "ICE and DTLS came up");
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
    assert!(
        heard_by_browser.len() >= 16_000,
        "the browser heard {} samples",
        heard_by_browser.len()
    );
    let room = judge(&heard_by_room);
    let browser = judge(&heard_by_browser);
    assert!(
        (room - 440.0).abs() < 30.0,
        "the room hears the browser's 440 Hz: {room:.0} Hz"
    );
    assert!(
        (browser - 1000.0).abs() < 50.0,
        "the browser hears the room's 1 kHz: {browser:.0} Hz"
    );

    server.hangup("leg-1");
}

#[test]
fn a_malformed_offer_is_refused_with_a_reason_and_the_endpoint_carries_on() {
    let (tx, _events) = mpsc::channel();
    let server = WebRtc::start("127.0.0.1:0".parse().unwrap(), tx).unwrap();
    for bad in [
        "",
        "v=0\r\nthis is not sdp",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
    ] {
        let e = server.accept("leg-x", bad).err().expect("refused");
        assert!(!e.is_empty());
    }
    // A good offer still gets an answer.
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, _) = change.apply().unwrap();
    assert!(server.accept("leg-y", &offer.to_sdp_string()).is_ok());
}
