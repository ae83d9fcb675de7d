//! The room mixer: each tick, every member receives the mix of what it may hear, never itself.
//!
//! Who hears whom (reference §2.4): everyone in the default audio routing group hears everyone
//! else in it; a routing group carries its sources to its receivers (a oneToOne group whose
//! source left the default group is a whisper); a muted member is heard by nobody; a held
//! member is heard by nobody and hears only hold music (mixed elsewhere). Only the loudest
//! four speakers are forwarded, as in Teams.

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

/// Mix one tick. `inputs[i]` is what member `i` sent (None: nothing this tick);
/// `outputs[i]` receives what member `i` hears.
pub fn mix(
    members: &[MemberState],
    routes: &[Route],
    inputs: &[Option<&[i16]>],
    outputs: &mut [[i16; FRAME]],
) {
    let n = members.len();
    assert!(
        inputs.len() == n && outputs.len() == n,
        "one input and one output per member"
    );
    // The loudest speakers who can be heard by anyone this tick.
    let mut speakers: Vec<(u64, usize)> = (0..n)
        .filter(|&s| inputs[s].is_some() && !members[s].muted && !members[s].held)
        .map(|s| (energy(inputs[s].unwrap_or(&[])), s))
        .filter(|(e, _)| *e > 0)
        .collect();
    speakers.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    speakers.truncate(MAX_SPEAKERS + 1); // a listener who is one of them still hears four others
    for (listener, out) in outputs.iter_mut().enumerate() {
        let mut acc = [0i32; FRAME];
        let mut heard = 0;
        for &(_, s) in &speakers {
            if heard == MAX_SPEAKERS {
                break;
            }
            if !hears(members, routes, listener, s) {
                continue;
            }
            heard += 1;
            for (a, &x) in acc.iter_mut().zip(inputs[s].unwrap_or(&[])) {
                *a += x as i32;
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame holding a constant: makes "who is in this mix" readable as a sum.
    fn frame(v: i16) -> [i16; FRAME] {
        [v; FRAME]
    }

    fn run(members: &[MemberState], routes: &[Route], levels: &[i16]) -> Vec<i16> {
        let frames: Vec<[i16; FRAME]> = levels.iter().map(|&v| frame(v)).collect();
        let inputs: Vec<Option<&[i16]>> = frames.iter().map(|f| Some(&f[..])).collect();
        let mut out = vec![[0i16; FRAME]; members.len()];
        mix(members, routes, &inputs, &mut out);
        out.iter().map(|f| f[0]).collect()
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
    fn loud_sums_clip_instead_of_wrapping() {
        let m = vec![MemberState::default(); 3];
        assert_eq!(run(&m, &[], &[30000, 30000, 30000]), [32767, 32767, 32767]);
        assert_eq!(
            run(&m, &[], &[-30000, -30000, -30000]),
            [-32768, -32768, -32768]
        );
    }
}
