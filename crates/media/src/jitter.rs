//! An adaptive jitter buffer for one incoming RTP audio stream, feeding the room one frame
//! per tick.
//!
//! * Packets are placed by RTP timestamp (extended past the 32-bit wrap), so reordering and
//!   any packet size work; duplicates are ignored.
//! * Playout starts once the target delay has been waited out after the first packet, then
//!   advances one frame per pull, driven by the media clock (not by arrivals).
//! * The target delay follows the interarrival jitter (RFC 3550 §6.4.1 estimate): one frame
//!   plus three times the jitter, between 40 and 200 ms. When more than the target plus two
//!   frames is buffered, a frame is dropped to bring the delay back down.
//! * A frame that is missing while later audio is waiting is *lost*: it is concealed by
//!   repeating the last frame, fading (×0.6 each time), and silence after five. Playout moves
//!   on with the clock through gaps (RTP timestamps are time: a sender that pauses, as with
//!   voice activity detection, resumes in step). A packet that arrives after its time has
//!   played is *late* and dropped — unless it is the newest and nothing else waits: then
//!   playout ran ahead of the stream (the media thread caught up on several ticks at once),
//!   and playout starts again from it, so the rest of the stream is not lost as late. A jump in the timestamps far
//!   beyond the buffer (the sender paused, or restarted its clock) resynchronises playout.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub duplicates: u64,
    /// Arrived after their playout time: dropped.
    pub late: u64,
    /// Frames concealed because their audio never arrived though later audio had.
    pub lost: u64,
    /// Frames dropped to bring the delay back to the target.
    pub dropped: u64,
    pub resyncs: u64,
    /// Interarrival jitter and target delay, in samples.
    pub jitter: u64,
    pub target: u64,
}

pub struct JitterBuffer {
    frame: u64,
    min_target: u64,
    max_target: u64,
    /// Waiting packets by extended timestamp, ascending. Packets nearly always arrive in
    /// order, so this is a queue: pushed at the back, played from the front.
    packets: VecDeque<(u64, Vec<i16>)>,
    /// Extended timestamp of the last packet, and its 32-bit form.
    last_ts: Option<(u64, u32)>,
    /// Next timestamp to play; None until playout starts.
    playout: Option<u64>,
    /// Pulls to wait before playout starts.
    warmup: Option<u64>,
    jitter: f64,
    last_transit: Option<i64>,
    target: u64,
    last_frame: Vec<i16>,
    concealed_run: u32,
    stats: JitterStats,
}

/// Concealment fades the repeated frame by this much each time.
const FADE: f32 = 0.6;
const MAX_CONCEALED: u32 = 5;

impl JitterBuffer {
    /// `clock_rate` samples per second; `frame` samples pulled per tick.
    pub fn new(clock_rate: u32, frame: usize) -> JitterBuffer {
        let ms = |m: u64| m * clock_rate as u64 / 1000;
        JitterBuffer {
            frame: frame as u64,
            min_target: ms(40),
            max_target: ms(200),
            packets: VecDeque::new(),
            last_ts: None,
            playout: None,
            warmup: None,
            jitter: 0.0,
            last_transit: None,
            target: ms(40),
            last_frame: vec![0; frame],
            concealed_run: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats {
            jitter: self.jitter as u64,
            target: self.target,
            ..self.stats
        }
    }

    fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last_ts {
            None => ts as u64 + (1 << 32),
            Some((prev_ext, prev)) => {
                (prev_ext as i64 + ts.wrapping_sub(prev) as i32 as i64).max(0) as u64
            }
        };
        self.last_ts = Some((ext, ts));
        ext
    }

    /// A packet: its RTP timestamp, when it arrived (in the same clock's units, any origin),
    /// and its decoded samples.
    pub fn push(&mut self, ts: u32, arrival: u64, samples: Vec<i16>) {
        if samples.is_empty() {
            return;
        }
        self.stats.received += 1;
        let ext = self.extend(ts);
        let end = ext + samples.len() as u64;
        if let Some(p) = self.playout {
            if end <= p && self.packets.is_empty() && self.last_ts.is_some_and(|(l, _)| l == ext) {
                // The newest audio, already behind playout, with nothing else waiting:
                // playout ran ahead of the stream (the media thread caught up on several
                // ticks at once), not the packet behind it. Start again from here, as at
                // the start, rather than drop everything that follows as late.
                self.stats.resyncs += 1;
                self.playout = None;
                self.warmup = Some(self.target.div_ceil(self.frame));
                self.last_transit = None;
            } else if end <= p {
                self.stats.late += 1;
                return;
            }
            // Far ahead of anything buffered: the sender paused or jumped; start again there,
            // and do not count the jump as jitter.
            if ext > p + self.max_target + self.buffered(p) {
                self.stats.resyncs += 1;
                self.packets.clear();
                self.last_transit = None;
                self.playout = Some(ext.saturating_sub(self.target.saturating_sub(self.frame)));
            }
        }
        let transit = arrival as i64 - ext as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.target = (self.frame + 3 * self.jitter as u64).clamp(self.min_target, self.max_target);
        if self.playout.is_none() && self.warmup.is_none() {
            self.warmup = Some(self.target.div_ceil(self.frame));
        }
        match self.packets.back() {
            Some(&(last, _)) if last >= ext => {
                match self.packets.binary_search_by_key(&ext, |(s, _)| *s) {
                    Ok(_) => self.stats.duplicates += 1,
                    Err(at) => self.packets.insert(at, (ext, samples)),
                }
            }
            _ => self.packets.push_back((ext, samples)),
        }
    }

    /// Samples buffered from `p` on.
    fn buffered(&self, p: u64) -> u64 {
        self.packets
            .back()
            .map(|(s, v)| (s + v.len() as u64).saturating_sub(p))
            .unwrap_or(0)
    }

    /// The next frame into `out` (`frame` samples). False while playout has not started.
    pub fn pop(&mut self, out: &mut [i16]) -> bool {
        out.fill(0);
        let p = match self.playout {
            Some(p) => p,
            None => {
                let Some(w) = self.warmup.as_mut() else {
                    return false;
                };
                if *w > 0 {
                    *w -= 1;
                    return false;
                }
                let Some(first) = self.packets.front().map(|(s, _)| *s) else {
                    return false;
                };
                self.playout = Some(first);
                first
            }
        };
        // Too much delay: drop a frame's worth first.
        let mut p = p;
        if self.buffered(p) > self.target + 2 * self.frame {
            self.stats.dropped += 1;
            p += self.frame;
        }
        let end = p + self.frame;
        let mut covered = 0u64;
        for (s, v) in self.packets.iter() {
            let (s, e) = (*s, *s + v.len() as u64);
            if s >= end {
                break;
            }
            if e <= p {
                continue;
            }
            let from = s.max(p);
            let to = e.min(end);
            out[(from - p) as usize..(to - p) as usize]
                .copy_from_slice(&v[(from - s) as usize..(to - s) as usize]);
            covered += to - from;
        }
        // Forget what has been played.
        while self
            .packets
            .front()
            .is_some_and(|(s, v)| s + v.len() as u64 <= end)
        {
            self.packets.pop_front();
        }
        self.playout = Some(end);
        if covered >= self.frame {
            self.last_frame.copy_from_slice(out);
            self.concealed_run = 0;
            return true;
        }
        if covered == 0 {
            if !self.packets.is_empty() {
                self.stats.lost += 1;
            }
            self.concealed_run += 1;
            if self.concealed_run <= MAX_CONCEALED {
                let gain = FADE.powi(self.concealed_run as i32);
                for (o, &l) in out.iter_mut().zip(&self.last_frame) {
                    *o = (l as f32 * gain) as i16;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: usize = 160;

    fn packet(n: u32) -> Vec<i16> {
        (0..F)
            .map(|i| ((n as usize * F + i) % 30_000) as i16 + 1)
            .collect()
    }

    /// Pull `n` frames, concatenated.
    fn pull(j: &mut JitterBuffer, n: usize) -> Vec<i16> {
        let mut all = vec![];
        for _ in 0..n {
            let mut f = [0i16; F];
            j.pop(&mut f);
            all.extend_from_slice(&f);
        }
        all
    }

    /// The output, with the warm-up silence removed.
    fn played(out: &[i16]) -> &[i16] {
        let start = out.iter().position(|&s| s != 0).unwrap_or(out.len());
        &out[start..]
    }

    #[test]
    fn in_order_packets_come_out_unchanged_after_the_target_delay() {
        let mut j = JitterBuffer::new(8000, F);
        let mut out = vec![];
        for n in 0..50u32 {
            j.push(1000 + n * F as u32, n as u64 * F as u64, packet(n));
            out.extend(pull(&mut j, 1));
        }
        let start = out.iter().position(|&s| s != 0).unwrap();
        assert_eq!(start, 2 * F, "40 ms of initial delay");
        let expect: Vec<i16> = (0..48).flat_map(packet).collect();
        assert_eq!(played(&out), &expect[..]);
        assert_eq!(j.stats().lost + j.stats().late + j.stats().dropped, 0);
    }

    #[test]
    fn reordered_packets_are_put_back_in_order() {
        let mut j = JitterBuffer::new(8000, F);
        let mut out = vec![];
        let order = [0u32, 2, 1, 3, 5, 4, 6, 7, 9, 8, 10, 11, 12, 13, 14, 15];
        for (t, n) in order.iter().enumerate() {
            j.push(n * F as u32, t as u64 * F as u64, packet(*n));
            out.extend(pull(&mut j, 1));
        }
        out.extend(pull(&mut j, 3));
        let expect: Vec<i16> = (0..16).flat_map(packet).collect();
        assert_eq!(&played(&out)[..expect.len()], &expect[..]);
        assert_eq!(j.stats().lost, 0);
    }

    #[test]
    fn a_lost_packet_is_concealed_and_the_stream_goes_on() {
        let mut j = JitterBuffer::new(8000, F);
        let mut out = vec![];
        for n in 0..20u32 {
            if n != 7 {
                j.push(n * F as u32, n as u64 * F as u64, packet(n));
            }
            out.extend(pull(&mut j, 1));
        }
        let p = played(&out);
        assert_eq!(
            &p[..7 * F],
            &(0..7).flat_map(packet).collect::<Vec<_>>()[..]
        );
        let concealed = &p[7 * F..8 * F];
        let faded: Vec<i16> = packet(6)
            .iter()
            .map(|&s| (s as f32 * FADE) as i16)
            .collect();
        assert_eq!(concealed, &faded[..], "the last frame, faded");
        assert_eq!(&p[8 * F..9 * F], &packet(8)[..]);
        assert_eq!(j.stats().lost, 1);
    }

    #[test]
    fn pulls_faster_than_the_stream_restart_playout_instead_of_making_it_late() {
        let mut j = JitterBuffer::new(8000, F);
        let mut out = vec![];
        for n in 0..10u32 {
            j.push(n * F as u32, n as u64 * F as u64, packet(n));
            out.extend(pull(&mut j, 1));
        }
        // The media thread runs five ticks back to back (it had fallen behind).
        out.extend(pull(&mut j, 5));
        for n in 10..30u32 {
            j.push(n * F as u32, n as u64 * F as u64, packet(n));
            out.extend(pull(&mut j, 1));
        }
        let s = j.stats();
        assert_eq!((s.late, s.lost, s.resyncs), (0, 0, 1), "{s:?}");
        let played: Vec<i16> = out
            .chunks(F)
            .filter(|f| f[0] != 0)
            .flatten()
            .copied()
            .collect();
        let expect: Vec<i16> = (0..28).flat_map(packet).collect();
        assert!(
            played.windows(F).any(|w| w == &packet(27)[..]),
            "the stream plays on after the underrun"
        );
        assert!(played.len() >= expect.len() - 2 * F);
    }

    /// A sender that stops sending in silence (VAD/DTX) and resumes with its timestamps
    /// moved on by the pause: playout kept time, so the audio after the pause plays whole,
    /// with nothing dropped or re-timed.
    #[test]
    fn a_sender_pausing_in_silence_resumes_in_step() {
        let mut j = JitterBuffer::new(8000, F);
        let mut out = vec![];
        for n in 0..40u32 {
            // Frames 10..17 are silence the sender does not send (160 ms).
            if !(10..17).contains(&n) {
                j.push(n * F as u32, n as u64 * F as u64, packet(n));
            }
            out.extend(pull(&mut j, 1));
        }
        let s = j.stats();
        assert_eq!((s.late, s.dropped, s.resyncs), (0, 0, 0), "{s:?}");
        let after: Vec<i16> = (17..38).flat_map(packet).collect();
        assert!(
            out.windows(after.len()).any(|w| w == &after[..]),
            "the audio after the pause plays whole"
        );
    }

    #[test]
    fn a_packet_after_its_time_is_late_and_dropped() {
        let mut j = JitterBuffer::new(8000, F);
        for n in 0..10u32 {
            j.push(n * F as u32, n as u64 * F as u64, packet(n));
            pull(&mut j, 1);
        }
        j.push(2 * F as u32, 10 * F as u64, packet(2));
        assert_eq!(j.stats().late, 1);
        j.push(9 * F as u32, 10 * F as u64, packet(9));
        assert_eq!(j.stats().duplicates, 1);
    }

    #[test]
    fn the_delay_grows_with_jitter_and_shrinks_when_too_much_is_buffered() {
        let mut j = JitterBuffer::new(8000, F);
        let mut x = 12345u64;
        for n in 0..500u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let delay = x % 480; // up to 60 ms of network jitter
            j.push(n * F as u32, n as u64 * F as u64 + delay, packet(n));
            pull(&mut j, 1);
        }
        let s = j.stats();
        assert!(s.target > 2 * F as u64, "target grew: {s:?}");
        assert!(
            s.late * 100 < s.received * 5,
            "few late after adapting: {s:?}"
        );
        // A burst of 20 packets at once (a network hiccup): the excess is dropped.
        let mut j = JitterBuffer::new(8000, F);
        for n in 0..30u32 {
            j.push(n * F as u32, 0, packet(n));
        }
        pull(&mut j, 30);
        assert!(j.stats().dropped > 0);
    }

    #[test]
    fn timestamps_wrap_and_pauses_resynchronise() {
        let mut j = JitterBuffer::new(8000, F);
        let mut out = vec![];
        let base = u32::MAX - 3 * F as u32;
        for n in 0..10u32 {
            j.push(
                base.wrapping_add(n * F as u32),
                n as u64 * F as u64,
                packet(n),
            );
            out.extend(pull(&mut j, 1));
        }
        out.extend(pull(&mut j, 2));
        let expect: Vec<i16> = (0..10).flat_map(packet).collect();
        assert_eq!(
            &played(&out)[..expect.len()],
            &expect[..],
            "across the wrap"
        );
        // The sender pauses for 10 s (its timestamps jump) and talks again.
        let later = base.wrapping_add(90_000);
        for n in 0..6u32 {
            j.push(
                later + n * F as u32,
                (20 + n) as u64 * F as u64,
                packet(100 + n),
            );
            out = pull(&mut j, 1);
        }
        assert_eq!(j.stats().resyncs, 1);
        assert_ne!(out, vec![0; F], "playing again soon after the pause");
    }
}
