//! The room mixer: each tick, every member receives the mix of what it may hear, never itself.
//!
//! Who hears whom (reference §2.4): everyone in the default audio routing group hears everyone
//! else in it; a routing group carries its sources to its receivers (a oneToOne group whose
//! source left the default group is a whisper); a muted member is heard by nobody; a held
//! member is heard by nobody and hears only hold music (mixed elsewhere). Only the loudest
//! four speakers are forwarded, as in Teams, and only frames above a noise floor
//! ([`NOISE_FLOOR`]) are mixed at all: a listener's silence is nobody's to hear.

use crate::FRAME;

/// How many speakers a listener hears at most.
pub const MAX_SPEAKERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberState {
    pub muted: bool,
    pub held: bool,
    pub in_default_group: bool,
}

impl Default for MemberState {
    fn default() -> Self {
        MemberState {
            muted: false,
            held: false,
            in_default_group: true,
        }
    }
}

/// A routing group by member index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub sources: Vec<usize>,
    pub receivers: Vec<usize>,
}

/// May `listener` hear `speaker`?
pub fn hears(members: &[MemberState], routes: &[Route], listener: usize, speaker: usize) -> bool {
    let (l, s) = (members[listener], members[speaker]);
    if listener == speaker || s.muted || s.held || l.held {
        return false;
    }
    (l.in_default_group && s.in_default_group)
        || routes
            .iter()
            .any(|r| r.sources.contains(&speaker) && r.receivers.contains(&listener))
}

/// Mean square of a frame: the loudness used to pick the forwarded speakers.
pub fn energy(frame: &[i16]) -> u64 {
    if frame.is_empty() {
        return 0;
    }
    frame
        .iter()
        .map(|&s| (s as i64 * s as i64) as u64)
        .sum::<u64>()
        / frame.len() as u64
}

/// The loudness (mean square) at or below which a frame is not mixed: RMS 16, about -66 dBov.
/// Below it is a decoder's rendering of digital silence (±1), a browser's comfort noise while
/// its microphone is quiet, a quiet room after noise suppression; speech, even whispered, is
/// well above it. A conference mixer gates such frames out (FreeSWITCH's `energy-level` does,
/// higher): mixed, they would fill the speaker slots a quiet meeting leaves free, and each
/// listener taking one would lose the common mix and need an encoder of its own, for nothing
/// anyone can hear.
pub const NOISE_FLOOR: u64 = 16 * 16;

/// Is there anything to hear in a frame?
fn audible(frame: &[i16]) -> bool {
    energy(frame) > NOISE_FLOOR
}

/// Mix one tick. `inputs[i]` is what member `i` sent when `has[i]` (otherwise it sent nothing
/// this tick and `inputs[i]` is not looked at); `outputs[i]` receives what member `i` hears,
/// and `heard[i]` says whether it heard anyone: when false, member `i` hears silence and
/// `outputs[i]` is left as it was (most listeners of a quiet room cost no writes).
///
/// `common[i]` says whether member `i` heard the room's common mix: exactly the speakers the
/// default group forwards (what everyone hears who did not speak this tick and has no
/// whisper), so that its output is, sample for sample, every other such member's. Encoders
/// may encode it once for all of them (as Asterisk's softmix does for its listeners).
pub fn mix(
    members: &[MemberState],
    routes: &[Route],
    inputs: &[[i16; FRAME]],
    has: &[bool],
    outputs: &mut [[i16; FRAME]],
    heard: &mut [bool],
    common: &mut [bool],
) {
    let n = members.len();
    assert!(
        inputs.len() == n
            && has.len() == n
            && outputs.len() == n
            && heard.len() == n
            && common.len() == n,
        "one input and one output per member"
    );
    // Who can be heard by anyone this tick. Up to MAX_SPEAKERS of them, all are forwarded and
    // their order does not matter; past that, only the loudest (a listener who is one of them
    // still hears four others).
    let candidate = |s: usize| has[s] && !members[s].muted && !members[s].held;
    let mut few = [0usize; MAX_SPEAKERS];
    let mut count = 0;
    for s in (0..n).filter(|&s| candidate(s) && audible(&inputs[s])) {
        if count < MAX_SPEAKERS {
            few[count] = s;
        }
        count += 1;
    }
    let loudest: Vec<usize>;
    let speakers: &[usize] = if count <= MAX_SPEAKERS {
        &few[..count]
    } else {
        let mut by_energy: Vec<(u64, usize)> = (0..n)
            .filter(|&s| candidate(s))
            .map(|s| (energy(&inputs[s]), s))
            .filter(|(e, _)| *e > NOISE_FLOOR)
            .collect();
        by_energy.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        loudest = by_energy
            .iter()
            .take(MAX_SPEAKERS + 1)
            .map(|&(_, s)| s)
            .collect();
        &loudest
    };
    let mut everyone = [0usize; MAX_SPEAKERS];
    let mut shared = 0;
    for &s in speakers.iter().filter(|&&s| members[s].in_default_group) {
        if shared == MAX_SPEAKERS {
            break;
        }
        everyone[shared] = s;
        shared += 1;
    }
    for (listener, out) in outputs.iter_mut().enumerate() {
        let mut from = [0usize; MAX_SPEAKERS];
        let mut k = 0;
        for &s in speakers {
            if k == MAX_SPEAKERS {
                break;
            }
            if hears(members, routes, listener, s) {
                from[k] = s;
                k += 1;
            }
        }
        heard[listener] = k > 0;
        // The same speakers in the same order: the same sum, sample for sample.
        common[listener] = from[..k] == everyone[..shared];
        match from[..k] {
            [] => {}
            [s] => out.copy_from_slice(&inputs[s]),
            ref several => {
                let mut acc = [0i32; FRAME];
                for &s in several {
                    for (a, &x) in acc.iter_mut().zip(&inputs[s]) {
                        *a += x as i32;
                    }
                }
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = a.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What level 1 is in the tests' frames: just above the noise floor, so that levels 1, 2,
    /// 4… are all heard and their sums stay within 16 bits.
    const UNIT: i16 = 17;

    /// A frame holding a constant (`v` units): makes "who is in this mix" readable as a sum.
    fn frame(v: i16) -> [i16; FRAME] {
        [v * UNIT; FRAME]
    }

    /// The first sample of each frame, in units.
    fn units(out: &[[i16; FRAME]]) -> Vec<i16> {
        out.iter().map(|f| f[0] / UNIT).collect()
    }

    fn run(members: &[MemberState], routes: &[Route], levels: &[i16]) -> Vec<i16> {
        mixed(members, routes, levels).0
    }

    /// What each member hears (a frame's first sample) and whether it is the common mix.
    fn mixed(members: &[MemberState], routes: &[Route], levels: &[i16]) -> (Vec<i16>, Vec<bool>) {
        let frames: Vec<[i16; FRAME]> = levels.iter().map(|&v| frame(v)).collect();
        let mut out = vec![[7i16; FRAME]; members.len()];
        let mut heard = vec![true; members.len()];
        let mut common = vec![false; members.len()];
        mix(
            members,
            routes,
            &frames,
            &vec![true; levels.len()],
            &mut out,
            &mut heard,
            &mut common,
        );
        let firsts = units(&out)
            .into_iter()
            .zip(heard)
            .map(|(f, h)| if h { f } else { 0 })
            .collect();
        (firsts, common)
    }

    #[test]
    fn listeners_who_hear_the_same_speakers_are_marked_as_hearing_the_common_mix() {
        // Seven members, six speak: the loudest four are what everyone hears; the two quietest
        // speakers and the silent member hear those four (the common mix); each of the four
        // hears the other three and the fifth loudest.
        let m = vec![MemberState::default(); 7];
        let (out, common) = mixed(&m, &[], &[1, 2, 4, 8, 16, 32, 0]);
        assert_eq!(common, [true, true, false, false, false, false, true]);
        assert_eq!((out[0], out[1], out[6]), (60, 60, 60));
        assert_eq!(out[2], 2 + 8 + 16 + 32);
        // A quiet room: everyone hears the same silence.
        let (_, common) = mixed(&m, &[], &[0; 7]);
        assert_eq!(common, [true; 7]);
        // Member 0 left the default group and whispers to member 2, whose mix is its own; the
        // muted member 3 hears the common mix (member 1); member 1 hears nobody, unlike the rest.
        let mut m = vec![MemberState::default(); 4];
        m[0].in_default_group = false;
        m[3].muted = true;
        let whisper = Route {
            sources: vec![0],
            receivers: vec![2],
        };
        let (out, common) = mixed(&m, &[whisper], &[1, 10, 0, 1000]);
        assert_eq!(out, [0, 0, 11, 10]);
        assert_eq!(common, [false, false, false, true]);
    }

    #[test]
    fn each_member_hears_the_others_and_never_itself() {
        let m = vec![MemberState::default(); 3];
        assert_eq!(run(&m, &[], &[1, 10, 100]), [110, 101, 11]);
    }

    #[test]
    fn muted_members_are_heard_by_nobody_but_still_hear() {
        let mut m = vec![MemberState::default(); 3];
        m[1].muted = true;
        assert_eq!(run(&m, &[], &[1, 10, 100]), [100, 101, 1]);
    }

    #[test]
    fn a_held_member_neither_hears_nor_is_heard() {
        let mut m = vec![MemberState::default(); 3];
        m[2].held = true;
        assert_eq!(run(&m, &[], &[1, 10, 100]), [10, 1, 0]);
    }

    #[test]
    fn a_one_to_one_group_whispers_to_its_receiver_only() {
        // Member 0 (the bot) left the default group and whispers to member 2.
        let mut m = vec![MemberState::default(); 3];
        m[0].in_default_group = false;
        let whisper = Route {
            sources: vec![0],
            receivers: vec![2],
        };
        assert_eq!(run(&m, &[whisper], &[1, 10, 100]), [0, 100, 11]);
    }

    #[test]
    fn a_multicast_group_reaches_all_its_receivers() {
        let mut m = vec![MemberState::default(); 4];
        m[0].in_default_group = false;
        let group = Route {
            sources: vec![0],
            receivers: vec![1, 3],
        };
        assert_eq!(run(&m, &[group], &[1, 10, 100, 1000]), [0, 1101, 1010, 111]);
    }

    #[test]
    fn only_the_loudest_four_speakers_are_forwarded() {
        let m = vec![MemberState::default(); 7];
        // Quietest is member 0; member 6 is silent.
        let out = run(&m, &[], &[1, 2, 4, 8, 16, 32, 0]);
        assert_eq!(
            out[6],
            4 + 8 + 16 + 32,
            "the silent listener hears the four loudest"
        );
        assert_eq!(out[5], 2 + 4 + 8 + 16, "a loud speaker hears the next four");
        assert_eq!(out[0], 4 + 8 + 16 + 32);
    }

    #[test]
    fn a_member_who_sent_nothing_this_tick_is_not_heard_whatever_its_frame_holds() {
        let m = vec![MemberState::default(); 3];
        let frames = [frame(1), frame(10), frame(100)];
        let mut out = vec![[7i16; FRAME]; 3];
        let (mut heard, mut common) = ([false; 3], [false; 3]);
        mix(
            &m,
            &[],
            &frames,
            &[true, false, true],
            &mut out,
            &mut heard,
            &mut common,
        );
        assert_eq!(units(&out), [100, 101, 1]);
        assert_eq!(heard, [true; 3]);
        // One speaker heard: the listener gets that frame exactly, sample for sample.
        let ramp: [i16; FRAME] = std::array::from_fn(|i| i as i16 - 160);
        let frames = [ramp, frame(0), frame(0)];
        mix(
            &m,
            &[],
            &frames,
            &[true, true, false],
            &mut out,
            &mut heard,
            &mut common,
        );
        assert_eq!(out[1], ramp);
        assert_eq!(
            heard,
            [false, true, true],
            "silence from the only other sender is not heard"
        );
    }

    #[test]
    fn five_speakers_each_hear_the_other_four_and_a_sixth_hears_the_loudest_four() {
        let m = vec![MemberState::default(); 6];
        let out = run(&m, &[], &[1, 2, 4, 8, 16, 0]);
        assert_eq!(out[0], 2 + 4 + 8 + 16);
        assert_eq!(out[4], 1 + 2 + 4 + 8);
        assert_eq!(out[5], 2 + 4 + 8 + 16, "the quietest of five is left out");
    }

    #[test]
    fn loud_sums_clip_instead_of_wrapping() {
        let m = vec![MemberState::default(); 3];
        for (loud, clipped) in [(30000, i16::MAX), (-30000, i16::MIN)] {
            let mut out = vec![[0i16; FRAME]; 3];
            let (mut heard, mut common) = ([false; 3], [false; 3]);
            mix(
                &m,
                &[],
                &[[loud; FRAME]; 3],
                &[true; 3],
                &mut out,
                &mut heard,
                &mut common,
            );
            assert_eq!(out, [[clipped; FRAME]; 3]);
        }
    }

    #[test]
    fn frames_at_or_below_the_noise_floor_are_not_mixed() {
        // A decoder's rendering of digital silence (±1), and faint noise at RMS 16: nobody
        // hears them, so the two quiet members hear the speaker alone, the common mix.
        let m = vec![MemberState::default(); 4];
        let dither: [i16; FRAME] = std::array::from_fn(|i| if i % 3 == 0 { 1 } else { -1 });
        let faint: [i16; FRAME] = std::array::from_fn(|i| if i % 2 == 0 { 16 } else { -16 });
        let voice: [i16; FRAME] = std::array::from_fn(|i| ((i as i16) % 40 - 20) * 50);
        let mut out = vec![[7i16; FRAME]; 4];
        let (mut heard, mut common) = ([false; 4], [false; 4]);
        mix(
            &m,
            &[],
            &[dither, faint, voice, [0; FRAME]],
            &[true; 4],
            &mut out,
            &mut heard,
            &mut common,
        );
        assert_eq!((out[0], out[1], out[3]), (voice, voice, voice));
        assert_eq!(heard, [true, true, false, true], "the speaker hears nobody");
        assert_eq!(common, [true, true, false, true]);
        // Just above the floor, the same noise is heard.
        let noise: [i16; FRAME] = std::array::from_fn(|i| if i % 2 == 0 { 17 } else { -17 });
        mix(
            &m,
            &[],
            &[dither, noise, voice, [0; FRAME]],
            &[true; 4],
            &mut out,
            &mut heard,
            &mut common,
        );
        assert_eq!(out[3][0], voice[0] + noise[0]);
    }
}
