//! One SIP leg's media, sans-IO: RTP in through a jitter buffer to 16 kHz frames for the room,
//! the room's frames out as G.711 RTP paced by the media clock, and DTMF both ways as RFC 4733
//! telephone-events. The RTP socket code feeds `receive` and sends what `send_frame` returns.
//!
//! * **Symmetric RTP:** the first valid RTP packet fixes where the far end really is (it may
//!   be behind NAT, not where its SDP said); packets from anywhere else are dropped.
//! * **Telephone-events in:** one key per event (RFC 4733 §2.5.1.3: the event's RTP timestamp
//!   identifies it; retransmitted end packets are ignored).
//! * **Telephone-events out:** a key is sent as a start packet (marker set), updates every
//!   20 ms, then three end packets (§2.5.1.4), replacing the audio while it lasts.

use crate::rtcp::{self, Reception, ReportBlock, SenderInfo};
use crate::rtp::{Rtp, TelephoneEvent, is_rtcp};
use media::FRAME;
use media::g711::Law;
use media::jitter::{JitterBuffer, JitterStats};
use media::rate::{Downsampler, Upsampler};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Samples per 20 ms at 8 kHz.
const NARROW: usize = FRAME / 2;
/// How long a key the bot sends lasts, in 8 kHz samples (100 ms).
const KEY_SAMPLES: u16 = 800;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub octets_out: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// Not RTP, wrong payload type, or from an address other than the latched one.
    pub dropped: u64,
    pub jitter: JitterStats,
}

struct OutEvent {
    event: u8,
    start_ts: u32,
    duration: u16,
}

pub struct RtpSession {
    law: Law,
    payload_type: u8,
    dtmf_payload_type: Option<u8>,
    jitter: JitterBuffer,
    up: Upsampler,
    /// Frames were skipped since the upsampler last ran.
    up_stale: bool,
    down: Downsampler,
    /// The last frame sent was all zeros (so is everything in the downsampler's history).
    down_silent: bool,
    ssrc: u32,
    seq: u16,
    ts: u32,
    remote: SocketAddr,
    latched: bool,
    /// Before latching: the last source (not the signalled address) and sequence number seen.
    /// A source latches with its second packet in sequence (RFC 3550 A.1's probation), so a
    /// single stray datagram does not take the leg; the signalled address latches at once.
    candidate: Option<(SocketAddr, u16)>,
    /// False while the far end does not want media (it offered `sendonly` or `inactive`).
    sending: bool,
    /// Late offer: the answer was never seen, so the first G.711 packet sets the codec.
    learn_codec: bool,
    keys_in: VecDeque<char>,
    last_event_ts: Option<u32>,
    keys_out: VecDeque<char>,
    active: Option<OutEvent>,
    /// Silence gap after a sent key before the next (8 kHz samples left).
    gap: u32,
    stats: SessionStats,
    scratch: Vec<i16>,
    /// The incoming stream's statistics, for our report blocks.
    reception: Reception,
    /// How the far end says it hears us (the block about our SSRC in its last report).
    far_report: Option<ReportBlock>,
}

impl RtpSession {
    /// `remote`: where the SDP says to send until RTP arrives; `ssrc`/`seq`/`ts`: random
    /// starting points (RFC 3550 §5.1).
    pub fn new(
        law: Law,
        payload_type: u8,
        dtmf_payload_type: Option<u8>,
        remote: SocketAddr,
        ssrc: u32,
        seq: u16,
        ts: u32,
    ) -> RtpSession {
        RtpSession {
            law,
            payload_type,
            dtmf_payload_type,
            jitter: JitterBuffer::new(8000, NARROW),
            up: Upsampler::default(),
            up_stale: false,
            down: Downsampler::default(),
            down_silent: false,
            ssrc,
            seq,
            ts,
            remote,
            latched: false,
            candidate: None,
            sending: true,
            learn_codec: false,
            keys_in: VecDeque::new(),
            last_event_ts: None,
            keys_out: VecDeque::new(),
            active: None,
            gap: 0,
            stats: SessionStats::default(),
            scratch: Vec::with_capacity(FRAME),
            reception: Reception::default(),
            far_report: None,
        }
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The far end's address once RTP from it has been latched onto.
    pub fn latched_remote(&self) -> Option<SocketAddr> {
        self.latched.then_some(self.remote)
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            jitter: self.jitter.stats(),
            ..self.stats
        }
    }

    /// A datagram from the RTP socket; `arrival` in 8 kHz samples of the receiver's clock.
    pub fn receive(&mut self, from: SocketAddr, packet: &[u8], arrival: u64) {
        if is_rtcp(packet) {
            // RTCP multiplexed on the RTP port (RFC 5761).
            self.receive_rtcp(packet, arrival / 8);
            return;
        }
        let Ok(p) = Rtp::parse(packet) else {
            self.stats.dropped += 1;
            return;
        };
        if self.latched && from != self.remote {
            self.stats.dropped += 1;
            return;
        }
        if self.learn_codec && matches!(p.payload_type, 0 | 8) {
            self.learn_codec = false;
            self.payload_type = p.payload_type;
            self.law = if p.payload_type == 8 { Law::A } else { Law::Mu };
        }
        if p.payload_type == self.payload_type {
            let mut pcm = Vec::with_capacity(p.payload.len());
            self.law.decode(p.payload, &mut pcm);
            self.jitter.push(p.timestamp, arrival, pcm);
        } else if Some(p.payload_type) == self.dtmf_payload_type {
            if let Some(e) = TelephoneEvent::parse(p.payload)
                && self.last_event_ts != Some(p.timestamp)
                && let Some(k) = e.key()
            {
                self.last_event_ts = Some(p.timestamp);
                self.keys_in.push_back(k);
            }
        } else {
            self.stats.dropped += 1;
            return;
        }
        self.stats.packets_in += 1;
        self.reception
            .packet(p.ssrc, p.sequence, p.timestamp, arrival);
        if !self.latched {
            let follows = matches!(self.candidate,
                Some((source, seq)) if source == from && p.sequence == seq.wrapping_add(1));
            // Nothing signalled yet (a late offer): the first packet is all there is to go on.
            if from == self.remote || self.remote.ip().is_unspecified() || follows {
                self.latched = true;
                self.remote = from;
                self.candidate = None;
            } else {
                self.candidate = Some((from, p.sequence));
            }
        }
    }

    /// The next 20 ms for the room (16 kHz); false until audio has arrived.
    pub fn next_frame(&mut self, out: &mut [i16; FRAME]) -> bool {
        let mut narrow = [0i16; NARROW];
        if !self.jitter.pop(&mut narrow) {
            return false;
        }
        if self.up_stale {
            // Frames were skipped: start the filter afresh rather than from old history.
            self.up = Upsampler::default();
            self.up_stale = false;
        }
        self.scratch.clear();
        self.up.process(&narrow, &mut self.scratch);
        out.copy_from_slice(&self.scratch[..FRAME]);
        true
    }

    /// The next frame's playout without its audio (nobody listens): the jitter buffer moves on,
    /// nothing is resampled.
    pub fn skip_frame(&mut self) -> bool {
        let mut narrow = [0i16; NARROW];
        let got = self.jitter.pop(&mut narrow);
        self.up_stale |= got;
        got
    }

    /// A key the far end pressed (out of band).
    pub fn take_key(&mut self) -> Option<char> {
        self.keys_in.pop_front()
    }

    /// Send a key as a telephone-event; false when none was negotiated.
    pub fn queue_key(&mut self, key: char) -> bool {
        if self.dtmf_payload_type.is_none() || TelephoneEvent::event_of(key).is_none() {
            return false;
        }
        self.keys_out.push_back(key);
        true
    }

    /// An RTCP datagram from the far end; `now_ms` on the receiver's clock.
    pub fn receive_rtcp(&mut self, packet: &[u8], now_ms: u64) {
        let Ok(c) = rtcp::parse(packet) else {
            self.stats.dropped += 1;
            return;
        };
        self.stats.rtcp_in += 1;
        if let Some(sr) = c.sender {
            self.reception.sender_report(sr.ntp, now_ms);
        }
        if let Some(b) = c.reports.iter().find(|b| b.ssrc == self.ssrc) {
            self.far_report = Some(*b);
        }
    }

    /// The compound RTCP packet to send now: an SR while ringside sends audio (an RR when it
    /// does not), a report block on the far end's stream once it has sent any, and SDES
    /// CNAME. `unix_ms` for the SR's NTP time, `now_ms` on the receiver's clock.
    pub fn rtcp_report(&mut self, unix_ms: u64, now_ms: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        let block: Vec<ReportBlock> = self.reception.report(now_ms).into_iter().collect();
        let sender = (self.stats.packets_out > 0 && self.sending).then(|| SenderInfo {
            ntp: rtcp::ntp_from_unix_ms(unix_ms),
            rtp_ts: self.ts,
            packets: self.stats.packets_out as u32,
            octets: self.stats.octets_out as u32,
        });
        rtcp::write_report(&mut out, self.ssrc, sender.as_ref(), &block);
        rtcp::write_sdes(&mut out, self.ssrc, &format!("ringside-{:08x}", self.ssrc));
        self.stats.rtcp_out += 1;
        out
    }

    /// The RTCP BYE to send when the leg ends (RR + BYE, RFC 3550 §6.6).
    pub fn rtcp_bye(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        rtcp::write_report(&mut out, self.ssrc, None, &[]);
        rtcp::write_bye(&mut out, self.ssrc);
        out
    }

    /// RTP packets expected from the far end (by sequence number) and received.
    pub fn reception_totals(&self) -> (u64, u64) {
        self.reception.totals()
    }

    /// How the far end last said it hears ringside (loss, jitter), if it sent RTCP.
    pub fn far_report(&self) -> Option<ReportBlock> {
        self.far_report
    }

    /// A new offer/answer in the dialog (re-INVITE or UPDATE): the codec may change, a new
    /// media address is latched afresh (a transfer, a move to another device), and the far
    /// end's direction says whether it wants ringside's audio (RFC 3264 §8.4: nothing is
    /// sent to a `sendonly` or `inactive` side). `c=0.0.0.0` keeps the old address (RFC 2543
    /// hold).
    pub fn renegotiate(&mut self, n: &crate::sdp::Negotiated) {
        self.law = match n.codec {
            crate::sdp::Codec::Pcmu => Law::Mu,
            crate::sdp::Codec::Pcma => Law::A,
        };
        self.payload_type = n.payload_type;
        self.dtmf_payload_type = n.dtmf_payload_type;
        self.sending = !n.remote_direction.is_hold();
        if !n.remote.ip().is_unspecified() && n.remote != self.remote {
            self.remote = n.remote;
            self.latched = false;
            self.candidate = None;
        }
    }

    /// Whether audio goes out (false while the far end holds the call).
    pub fn sending(&self) -> bool {
        self.sending
    }

    /// For a late offer: take the codec (PCMU or PCMA) from the first audio packet.
    pub fn learning_codec(mut self) -> RtpSession {
        self.learn_codec = true;
        self
    }

    /// A key the far end sent in the signalling (SIP INFO): into the same path as RFC 4733.
    pub fn key_from_signalling(&mut self, key: char) {
        self.keys_in.push_back(key);
    }

    /// The room's 20 ms for the far end: the RTP packets to send now.
    pub fn send_frame(&mut self, frame: &[i16; FRAME], packets: &mut Vec<Vec<u8>>) {
        if !self.sending {
            // The media clock runs on, so the timestamps stay right when sending resumes.
            self.ts = self.ts.wrapping_add(NARROW as u32);
            return;
        }
        let before = packets.len();
        // Silence after silence: the filter holds only zeros, so its output is zeros too.
        // (An OR over the whole frame: no early exit, so it vectorises.)
        let silent = frame.iter().fold(0, |a, &x| a | x) == 0;
        let quiet = silent && self.down_silent;
        if !quiet {
            self.scratch.clear();
            self.down.process(frame, &mut self.scratch);
        }
        self.down_silent = silent;
        let ts = self.ts;
        self.ts = self.ts.wrapping_add(NARROW as u32);
        if self.active.is_none() && self.gap == 0 {
            if let Some(ev) = self.keys_out.pop_front().and_then(TelephoneEvent::event_of) {
                self.active = Some(OutEvent {
                    event: ev,
                    start_ts: ts,
                    duration: 0,
                });
            }
        } else {
            self.gap = self.gap.saturating_sub(NARROW as u32);
        }
        if let (Some(a), Some(pt)) = (&mut self.active, self.dtmf_payload_type) {
            a.duration = a.duration.saturating_add(NARROW as u16).min(KEY_SAMPLES);
            let end = a.duration >= KEY_SAMPLES;
            let marker = a.duration as usize == NARROW;
            // The end is sent three times (RFC 4733 §2.5.1.4), in case one is lost.
            let repeats = if end { 3 } else { 1 };
            let payload = TelephoneEvent {
                event: a.event,
                end,
                volume: 10,
                duration: a.duration,
            }
            .write();
            for _ in 0..repeats {
                let mut b = Vec::with_capacity(16);
                Rtp {
                    marker,
                    payload_type: pt,
                    sequence: self.seq,
                    timestamp: a.start_ts,
                    ssrc: self.ssrc,
                    payload: &payload,
                }
                .write(&mut b);
                self.seq = self.seq.wrapping_add(1);
                packets.push(b);
            }
            if end {
                self.active = None;
                self.gap = 2 * NARROW as u32;
            }
        } else {
            let mut b = Vec::with_capacity(12 + NARROW);
            Rtp {
                marker: false,
                payload_type: self.payload_type,
                sequence: self.seq,
                timestamp: ts,
                ssrc: self.ssrc,
                payload: &[],
            }
            .write(&mut b);
            if quiet {
                b.resize(12 + NARROW, self.law.silence());
            } else {
                self.law.encode(&self.scratch, &mut b);
            }
            self.seq = self.seq.wrapping_add(1);
            packets.push(b);
        }
        self.stats.packets_out += (packets.len() - before) as u64;
        self.stats.octets_out += packets[before..]
            .iter()
            .map(|p| p.len().saturating_sub(12) as u64)
            .sum::<u64>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> SocketAddr {
        "10.0.0.5:5004".parse().unwrap()
    }

    fn session() -> RtpSession {
        RtpSession::new(Law::Mu, 0, Some(101), far(), 0x1234, 100, 1000)
    }

    fn tone16(freq: f32, ms: u64) -> Vec<i16> {
        (0..media::samples(ms))
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * freq * i as f32 / 16000.0).sin()) as i16
            })
            .collect()
    }

    /// Loop one session's output into another's input, as if over a network.
    #[test]
    fn audio_survives_the_round_trip_through_g711_rtp() {
        let (mut a, mut b) = (session(), session());
        let audio = tone16(700.0, 1000);
        let mut heard = vec![];
        for (n, chunk) in audio.chunks(FRAME).enumerate() {
            let frame: [i16; FRAME] = chunk.try_into().unwrap();
            let mut packets = vec![];
            a.send_frame(&frame, &mut packets);
            assert_eq!(packets.len(), 1);
            let p = Rtp::parse(&packets[0]).unwrap();
            assert_eq!((p.payload_type, p.payload.len()), (0, 160));
            b.receive(
                "10.0.0.9:7000".parse().unwrap(),
                &packets[0],
                n as u64 * 160,
            );
            let mut out = [0; FRAME];
            if b.next_frame(&mut out) {
                heard.extend_from_slice(&out);
            }
        }
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let tail = &heard[heard.len() - 8000..];
        let ratio = rms(tail) / rms(&audio);
        assert!((0.85..1.15).contains(&ratio), "level kept: {ratio}");
        assert_eq!(
            b.remote(),
            "10.0.0.9:7000".parse().unwrap(),
            "latched to where RTP came from"
        );
        assert_eq!(b.stats().packets_in, 50);
    }

    /// Silence sent after silence skips the filter and is still exact µ-law silence; a tone
    /// after it comes out as before. Frames nobody listens to are skipped, not decoded, and the
    /// playout clock goes on.
    #[test]
    fn silence_and_skipped_frames_cost_little_and_change_nothing_heard() {
        let (mut a, mut b) = (session(), session());
        let mut frames: Vec<[i16; FRAME]> = vec![[0; FRAME]; 6];
        for chunk in tone16(700.0, 400).chunks(FRAME) {
            frames.push(chunk.try_into().unwrap());
        }
        let (mut skipped, mut loud) = (0, 0);
        for (n, frame) in frames.iter().enumerate() {
            let mut packets = vec![];
            a.send_frame(frame, &mut packets);
            let payload = Rtp::parse(&packets[0]).unwrap().payload.to_vec();
            if n < 6 {
                assert!(payload.iter().all(|&x| x == 0xFF), "µ-law silence");
            } else {
                assert!(payload.iter().any(|&x| x != 0xFF), "the tone is sent");
            }
            b.receive(
                "10.0.0.9:7000".parse().unwrap(),
                &packets[0],
                n as u64 * 160,
            );
            if n < 6 {
                skipped += b.skip_frame() as usize;
            } else {
                let mut out = [0; FRAME];
                b.next_frame(&mut out);
                loud += out.iter().filter(|x| x.abs() > 2000).count();
            }
        }
        assert!(skipped > 0, "playout started on skipped frames");
        assert!(
            loud > 2000,
            "the tone after the skipped silence is heard: {loud}"
        );
    }

    fn pcmu(sequence: u16) -> Vec<u8> {
        let mut pkt = vec![];
        Rtp {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp: sequence as u32 * 160,
            ssrc: 9,
            payload: &[0xFF; 160],
        }
        .write(&mut pkt);
        pkt
    }

    #[test]
    fn after_latching_other_sources_and_junk_are_dropped() {
        let mut s = session();
        // A phone behind NAT: not the signalled address, so it latches with its second
        // packet in sequence.
        s.receive("10.0.0.9:7000".parse().unwrap(), &pcmu(1), 0);
        assert_eq!(s.latched_remote(), None, "one packet is not enough");
        s.receive("10.0.0.9:7000".parse().unwrap(), &pcmu(2), 160);
        assert_eq!(s.latched_remote(), Some("10.0.0.9:7000".parse().unwrap()));
        s.receive("10.6.6.6:7000".parse().unwrap(), &pcmu(3), 320);
        s.receive("10.0.0.9:7000".parse().unwrap(), b"garbage", 320);
        let mut wrong_pt = pcmu(3);
        wrong_pt[1] = 18;
        s.receive("10.0.0.9:7000".parse().unwrap(), &wrong_pt, 320);
        let st = s.stats();
        assert_eq!((st.packets_in, st.dropped), (2, 3));
    }

    #[test]
    fn a_stray_packet_before_the_phones_rtp_does_not_take_the_leg() {
        let mut s = session();
        s.receive("10.6.6.6:7000".parse().unwrap(), &pcmu(40_000), 0);
        assert_eq!(s.latched_remote(), None);
        assert_eq!(s.remote(), far(), "still sending to the signalled address");
        // The phone's RTP from the address it signalled latches at once.
        s.receive(far(), &pcmu(1), 160);
        assert_eq!(s.latched_remote(), Some(far()));
        s.receive("10.6.6.6:7000".parse().unwrap(), &pcmu(40_001), 320);
        assert_eq!(s.latched_remote(), Some(far()), "the stranger stays out");
        assert_eq!(s.stats().dropped, 1);
        // Nor do packets out of sequence from one source latch it.
        let mut t = session();
        t.receive("10.6.6.6:7000".parse().unwrap(), &pcmu(7), 0);
        t.receive("10.6.6.6:7000".parse().unwrap(), &pcmu(9), 160);
        assert_eq!(t.latched_remote(), None);
    }

    #[test]
    fn keys_arrive_once_per_event_and_are_sent_as_events() {
        let mut s = session();
        let from: SocketAddr = "10.0.0.9:7000".parse().unwrap();
        let mut send = |ts: u32, seq: u16, end: bool, key: char| {
            let payload = TelephoneEvent {
                event: TelephoneEvent::event_of(key).unwrap(),
                end,
                volume: 10,
                duration: 400,
            }
            .write();
            let mut b = vec![];
            Rtp {
                marker: !end,
                payload_type: 101,
                sequence: seq,
                timestamp: ts,
                ssrc: 9,
                payload: &payload,
            }
            .write(&mut b);
            s.receive(from, &b, 0);
        };
        send(8000, 1, false, '5');
        send(8000, 2, false, '5');
        send(8000, 3, true, '5');
        send(8000, 4, true, '5');
        send(9600, 5, false, '#');
        assert_eq!(
            (s.take_key(), s.take_key(), s.take_key()),
            (Some('5'), Some('#'), None)
        );

        assert!(s.queue_key('9'));
        let mut all = vec![];
        for _ in 0..8 {
            let mut packets = vec![];
            s.send_frame(&[0; FRAME], &mut packets);
            all.extend(packets);
        }
        let events: Vec<TelephoneEvent> = all
            .iter()
            .map(|b| Rtp::parse(b).unwrap())
            .filter(|p| p.payload_type == 101)
            .map(|p| TelephoneEvent::parse(p.payload).unwrap())
            .collect();
        assert_eq!(events.first().map(|e| (e.event, e.end)), Some((9, false)));
        assert_eq!(
            events.iter().filter(|e| e.end).count(),
            3,
            "three end packets"
        );
        assert_eq!(events.last().unwrap().duration, KEY_SAMPLES);
        let mut no_dtmf = RtpSession::new(Law::A, 8, None, far(), 1, 1, 1);
        assert!(
            !no_dtmf.queue_key('1'),
            "no telephone-event negotiated: in-band only"
        );
    }

    fn negotiated(remote: &str, direction: crate::sdp::Direction) -> crate::sdp::Negotiated {
        crate::sdp::Negotiated {
            remote: remote.parse().unwrap(),
            codec: crate::sdp::Codec::Pcma,
            payload_type: 8,
            dtmf_payload_type: Some(101),
            remote_direction: direction,
            ptime_ms: 20,
        }
    }

    #[test]
    fn a_hold_offer_stops_sending_and_a_resume_starts_again_with_the_new_codec() {
        use crate::sdp::Direction;
        let mut s = session();
        let frame = [0i16; FRAME];
        let mut packets = vec![];
        s.renegotiate(&negotiated("0.0.0.0:5004", Direction::SendRecv));
        assert_eq!(s.remote(), far(), "c=0.0.0.0 keeps the old address");
        s.renegotiate(&negotiated("10.0.0.5:5004", Direction::SendOnly));
        assert!(!s.sending());
        s.send_frame(&frame, &mut packets);
        assert!(packets.is_empty(), "nothing is sent to a held phone");
        s.renegotiate(&negotiated("10.0.0.7:6000", Direction::SendRecv));
        s.send_frame(&frame, &mut packets);
        let p = Rtp::parse(&packets[0]).unwrap();
        assert_eq!(p.payload_type, 8, "PCMA now");
        assert_eq!(
            p.timestamp,
            1000 + NARROW as u32,
            "the clock ran on while held"
        );
        assert_eq!(s.remote(), "10.0.0.7:6000".parse().unwrap(), "moved");
    }

    #[test]
    fn keys_from_sip_info_join_the_key_path() {
        let mut s = session();
        s.key_from_signalling('7');
        assert_eq!(s.take_key(), Some('7'));
    }

    #[test]
    fn a_late_offer_session_takes_its_codec_and_address_from_the_first_packet() {
        let mut s = RtpSession::new(Law::Mu, 0, Some(101), "0.0.0.0:0".parse().unwrap(), 1, 1, 1)
            .learning_codec();
        let mut b = vec![];
        Rtp {
            marker: false,
            payload_type: 8,
            sequence: 1,
            timestamp: 160,
            ssrc: 9,
            payload: &[0xd5; 160],
        }
        .write(&mut b);
        s.receive("10.0.0.7:4000".parse().unwrap(), &b, 0);
        assert_eq!(s.remote(), "10.0.0.7:4000".parse().unwrap());
        let mut packets = vec![];
        s.send_frame(&[0; FRAME], &mut packets);
        assert_eq!(
            Rtp::parse(&packets[0]).unwrap().payload_type,
            8,
            "answers in PCMA"
        );
    }
}
