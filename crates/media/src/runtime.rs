//! The media runtime: one thread per core, each owning a shard of the rooms (by conference id)
//! and ticking them on absolute 20 ms deadlines, so lateness never accumulates into drift.
//! Commands come in on bounded channels (a full channel makes the sender wait for one tick:
//! back-pressure on the control plane, never on media). Events leave through a callback that
//! must not block. Recording files are written by a separate writer thread, so a slow disk
//! never delays a tick; a recording's event is sent only once its file is complete.

use crate::port::Ports;
use crate::room::{Out, Room};
use crate::{Cmd, Event, TICK_MS};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// Work on a media thread taking longer than this is logged: a tick has 20 ms for every room.
const SLOW: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct Config {
    /// Media threads (0: one per core).
    pub threads: usize,
    /// Where recordings are written, as `<id>.wav`.
    pub recordings_dir: PathBuf,
    /// Commands each thread's channel holds.
    pub queue: usize,
    /// Ask for realtime scheduling for the media threads ([`crate::sched`]).
    pub realtime: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 0,
            recordings_dir: PathBuf::from("recordings"),
            queue: 8192,
            realtime: false,
        }
    }
}

/// Tick timing, across all media threads.
#[derive(Default)]
pub struct Stats {
    pub ticks: AtomicU64,
    /// Ticks that started more than 5 ms after their deadline.
    pub late_5ms: AtomicU64,
    pub max_late_us: AtomicU64,
    /// Times a thread fell so far behind that it skipped ahead.
    pub resyncs: AtomicU64,
    /// Leg frames those skips never produced (ticks skipped × the thread's legs): RTP that
    /// was never sent, unlike a late tick's, which goes out late.
    pub skipped_frames: AtomicU64,
    /// Microseconds spent ticking rooms.
    pub busy_us: AtomicU64,
    pub rooms: AtomicU64,
    pub members: AtomicU64,
    /// How the media threads are scheduled.
    pub sched: crate::sched::SchedStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub ticks: u64,
    pub late_5ms: u64,
    pub max_late_us: u64,
    pub resyncs: u64,
    pub skipped_frames: u64,
    pub busy_us: u64,
    pub rooms: u64,
    pub members: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            ticks: self.ticks.load(Ordering::Relaxed),
            late_5ms: self.late_5ms.load(Ordering::Relaxed),
            max_late_us: self.max_late_us.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            skipped_frames: self.skipped_frames.load(Ordering::Relaxed),
            busy_us: self.busy_us.load(Ordering::Relaxed),
            rooms: self.rooms.load(Ordering::Relaxed),
            members: self.members.load(Ordering::Relaxed),
        }
    }
    /// Forget timing so far (rooms and members are kept).
    pub fn reset_timing(&self) {
        for a in [
            &self.ticks,
            &self.late_5ms,
            &self.max_late_us,
            &self.resyncs,
            &self.skipped_frames,
            &self.busy_us,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

pub struct Media {
    senders: Vec<SyncSender<Cmd>>,
    pub ports: Arc<Ports>,
    pub stats: Arc<Stats>,
    pub recordings_dir: PathBuf,
}

enum WriterJob {
    Chunk {
        recording_id: String,
        audio: Vec<i16>,
        close: bool,
        then: Option<Event>,
    },
}

impl Media {
    pub fn start(cfg: Config, sink: Sink) -> Media {
        let threads = if cfg.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.threads
        };
        let _ = std::fs::create_dir_all(&cfg.recordings_dir);
        let ports: Arc<Ports> = Default::default();
        let stats: Arc<Stats> = Default::default();
        let (wtx, wrx) = mpsc::channel::<WriterJob>();
        {
            let dir = cfg.recordings_dir.clone();
            let sink = sink.clone();
            std::thread::Builder::new()
                .name("media-writer".into())
                .spawn(move || writer(dir, wrx, sink))
                .expect("spawn media writer");
        }
        let mut senders = vec![];
        for n in 0..threads {
            let (tx, rx) = mpsc::sync_channel::<Cmd>(cfg.queue);
            senders.push(tx);
            let ports = ports.clone();
            let stats = stats.clone();
            let sink = sink.clone();
            let wtx = wtx.clone();
            let realtime = cfg.realtime;
            std::thread::Builder::new()
                .name(format!("media-{n}"))
                .spawn(move || run_thread(rx, ports, stats, sink, wtx, realtime))
                .expect("spawn media thread");
        }
        Media {
            senders,
            ports,
            stats,
            recordings_dir: cfg.recordings_dir,
        }
    }

    /// Send a command to the thread that owns its room.
    pub fn send(&self, cmd: Cmd) {
        let shard = shard_of(cmd.conf_id(), self.senders.len());
        match self.senders[shard].try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => {
                let _ = self.senders[shard].send(cmd);
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("media thread {shard} has stopped");
            }
        }
    }

    pub fn threads(&self) -> usize {
        self.senders.len()
    }
}

fn shard_of(conf_id: &str, n: usize) -> usize {
    // FNV-1a: stable across runs, cheap.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in conf_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % n.max(1) as u64) as usize
}

fn run_thread(
    rx: mpsc::Receiver<Cmd>,
    ports: Arc<Ports>,
    stats: Arc<Stats>,
    sink: Sink,
    writer: mpsc::Sender<WriterJob>,
    realtime: bool,
) {
    let mut clock = crate::sched::Clock::start(
        realtime,
        "media",
        crate::sched::MIXING_PRIORITY,
        &stats.sched,
    );
    let tick = Duration::from_millis(TICK_MS);
    let mut rooms: HashMap<String, Room> = HashMap::new();
    let mut outs: Vec<Out> = vec![];
    let mut next = Instant::now() + tick;
    let (mut my_rooms, mut my_members) = (0u64, 0u64);
    // For the log of a late tick: what the thread did since the last one.
    let mut last_work = Duration::ZERO;
    loop {
        let (mut commands, mut commanding) = (0u32, Duration::ZERO);
        let mut woke_late = Duration::ZERO;
        let mut take = |cmd: Cmd, rooms: &mut HashMap<String, Room>, outs: &mut Vec<Out>| {
            let t = Instant::now();
            let kind = cmd.kind();
            apply(rooms, cmd, &ports, outs);
            let took = t.elapsed();
            if took > SLOW {
                tracing::warn!(
                    command = kind,
                    ms = took.as_millis() as u64,
                    "slow media command"
                );
            }
            commands += 1;
            commanding += took;
            clock.check(Instant::now());
        };
        // Take commands until the tick is due.
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            match rx.recv_timeout(next - now) {
                Ok(cmd) => take(cmd, &mut rooms, &mut outs),
                Err(RecvTimeoutError::Timeout) => {
                    woke_late = Instant::now().saturating_duration_since(next);
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            take(cmd, &mut rooms, &mut outs);
        }
        let start = Instant::now();
        let late = start.saturating_duration_since(next);
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        if late > Duration::from_millis(5) {
            stats.late_5ms.fetch_add(1, Ordering::Relaxed);
            // Logged as the tick starts, so the line's time is the end of the wait: the
            // stress soak lines it up with when the machine stopped running its CPUs.
            tracing::debug!(
                late_us = late.as_micros() as u64,
                woke_late_ms = woke_late.as_millis() as u64,
                commands,
                commands_ms = commanding.as_millis() as u64,
                last_tick_ms = last_work.as_millis() as u64,
                "late media tick"
            );
        }
        stats
            .max_late_us
            .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
        let count = rooms.len();
        let mut slowest: (Duration, Option<&str>) = (Duration::ZERO, None);
        for room in rooms.values_mut() {
            let t = Instant::now();
            room.tick(&ports, &mut outs);
            let took = t.elapsed();
            if took > slowest.0 {
                slowest = (took, Some(room.id.as_str()));
            }
        }
        if slowest.0 > SLOW {
            tracing::warn!(
                room = slowest.1.unwrap_or_default(),
                ms = slowest.0.as_millis() as u64,
                rooms = count,
                "slow room tick"
            );
        }
        let t = Instant::now();
        dispatch(&mut outs, &sink, &writer);
        if t.elapsed() > SLOW {
            tracing::warn!(ms = t.elapsed().as_millis() as u64, "slow media events");
        }
        let busy = start.elapsed();
        last_work = busy;
        stats
            .busy_us
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        clock.check(Instant::now());
        let members: u64 = rooms.values().map(|r| r.member_count() as u64).sum();
        let n = rooms.len() as u64;
        // Publish this thread's share of the totals as a difference.
        stats
            .rooms
            .fetch_add(n.wrapping_sub(my_rooms), Ordering::Relaxed);
        stats
            .members
            .fetch_add(members.wrapping_sub(my_members), Ordering::Relaxed);
        (my_rooms, my_members) = (n, members);
        next += tick;
        // Far behind (the machine stalled): start again from now rather than burst.
        let now = Instant::now();
        if now > next + Duration::from_millis(200) {
            stats.resyncs.fetch_add(1, Ordering::Relaxed);
            let skipped = (now - next).as_millis() as u64 / TICK_MS + 1;
            let legs: u64 = rooms.values().map(|r| r.leg_count() as u64).sum();
            stats
                .skipped_frames
                .fetch_add(skipped * legs, Ordering::Relaxed);
            next = now + tick;
        }
    }
}

fn apply(rooms: &mut HashMap<String, Room>, cmd: Cmd, ports: &Ports, outs: &mut Vec<Out>) {
    match cmd {
        Cmd::Room(spec) if spec.members.is_empty() => {
            if let Some(mut r) = rooms.remove(&spec.conf_id) {
                r.close(outs);
            }
        }
        Cmd::Room(spec) => {
            let id = spec.conf_id.clone();
            rooms
                .entry(id.clone())
                .or_insert_with(|| Room::new(&id))
                .apply(spec, ports);
        }
        cmd => {
            let id = cmd.conf_id().to_string();
            rooms
                .entry(id.clone())
                .or_insert_with(|| Room::new(&id))
                .command(cmd, outs);
        }
    }
}

fn dispatch(outs: &mut Vec<Out>, sink: &Sink, writer: &mpsc::Sender<WriterJob>) {
    for o in outs.drain(..) {
        match o {
            Out::Event(e) => sink(e),
            Out::Chunk {
                recording_id,
                audio,
                close,
                then,
            } => {
                if let Err(mpsc::SendError(WriterJob::Chunk { then: Some(e), .. })) =
                    writer.send(WriterJob::Chunk {
                        recording_id,
                        audio,
                        close,
                        then,
                    })
                {
                    sink(e);
                }
            }
        }
    }
}

type WavFile = hound::WavWriter<std::io::BufWriter<std::fs::File>>;

fn writer(dir: PathBuf, rx: mpsc::Receiver<WriterJob>, sink: Sink) {
    let mut files: HashMap<String, WavFile> = HashMap::new();
    let mut failed: HashMap<String, String> = HashMap::new();
    while let Ok(WriterJob::Chunk {
        recording_id,
        audio,
        close,
        then,
    }) = rx.recv()
    {
        let result = (|| -> Result<(), String> {
            if let Some(e) = failed.get(&recording_id) {
                return Err(e.clone());
            }
            if !files.contains_key(&recording_id) {
                let path = dir.join(format!("{recording_id}.wav"));
                let w = hound::WavWriter::create(&path, crate::wav::spec())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                files.insert(recording_id.clone(), w);
            }
            let w = files.get_mut(&recording_id).expect("just opened");
            let mut w16 = w.get_i16_writer(audio.len() as u32);
            for s in &audio {
                w16.write_sample(*s);
            }
            w16.flush().map_err(|e| e.to_string())?;
            // Keep the header's lengths current: a crash leaves a playable file.
            w.flush().map_err(|e| e.to_string())
        })();
        if let Err(e) = &result {
            tracing::error!(recording = %recording_id, error = %e, "cannot write recording");
            failed.insert(recording_id.clone(), e.clone());
        }
        if !close {
            continue;
        }
        let finished = files
            .remove(&recording_id)
            .map(|w| w.finalize().map_err(|e| e.to_string()))
            .unwrap_or(Ok(()));
        let error = failed.remove(&recording_id).or(finished.err());
        let Some(mut event) = then else {
            continue;
        };
        if let Some(e) = error {
            tracing::error!(recording = %recording_id, error = %e, "recording lost");
            let _ = std::fs::remove_file(dir.join(format!("{recording_id}.wav")));
            event = match event {
                Event::Done { call_id, op_id, .. } => Event::Done {
                    call_id,
                    op_id,
                    reason: "unspecifiedError",
                    recording: None,
                },
                other => other,
            };
        }
        sink(event);
    }
}
