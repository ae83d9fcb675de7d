//! The store test suite, run against every backend: SQLite always, PostgreSQL when
//! `RINGSIDE_TEST_POSTGRES` names a server (`scripts/postgres.sh` starts one; the README's
//! test command sets it and `RINGSIDE_REQUIRE_POSTGRES=1`, so there it cannot be skipped).

use engine::{Effect, Notification, ObjKind, Transcript, TranscriptLine};
use serde_json::json;
use store::{Backend, OutboxChange, Recording, Store};

/// Where one backend's store for one test lives; `open` can be called again (a restart).
enum Place {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Place {
    fn open(&self) -> Store {
        match self {
            Place::Sqlite(p) => Store::open(p).unwrap(),
            Place::Postgres(u) => Store::connect_postgres(u).unwrap(),
        }
    }
}

/// A fresh store on each backend for the test `name`.
fn places(name: &str) -> Vec<Place> {
    let dir = std::env::temp_dir().join(format!("ringside-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    let mut out = vec![Place::Sqlite(path)];
    out.extend(store::testing::fresh_postgres(name).map(Place::Postgres));
    out
}

fn note(call: &str, n: i64) -> Notification {
    Notification {
        call_id: call.into(),
        tenant_id: "t".into(),
        app_id: "a".into(),
        url: "http://x/cb".into(),
        body: json!({ "n": n }),
        incoming: false,
    }
}

#[test]
fn objects_and_outbox_survive_reopen_in_one_transaction() {
    for place in places("reopen") {
        {
            let mut s = place.open();
            let rows = s
                .commit(
                    &[(ObjKind::Call, "c1".into(), Some(json!({"id":"c1"})))],
                    &[note("c1", 1), note("c1", 2)],
                    &[],
                )
                .unwrap();
            assert_eq!(rows.len(), 2);
            assert!(rows[0].seq < rows[1].seq);
            s.commit(&[], &[], &[OutboxChange::Delivered(rows[0].seq)])
                .unwrap();
        }
        let mut s = place.open();
        assert_eq!(
            s.load_objects().unwrap(),
            vec![(ObjKind::Call, json!({"id":"c1"}))]
        );
        let pending = s.pending_outbox().unwrap();
        assert_eq!(pending.len(), 1, "{:?}", s.backend());
        assert_eq!(pending[0].body, json!({"n":2}).to_string());
        // An update replaces; a delete removes.
        s.commit(
            &[
                (ObjKind::Call, "c1".into(), Some(json!({"id":"c1","v":2}))),
                (ObjKind::Call, "c2".into(), Some(json!({"id":"c2"}))),
            ],
            &[],
            &[],
        )
        .unwrap();
        s.commit(&[(ObjKind::Call, "c2".into(), None)], &[], &[])
            .unwrap();
        assert_eq!(
            s.load_objects().unwrap(),
            vec![(ObjKind::Call, json!({"id":"c1","v":2}))]
        );
    }
}

#[test]
fn dead_letters_can_be_redelivered_in_their_original_place() {
    for place in places("dead") {
        let mut s = place.open();
        let rows = s.commit(&[], &[note("c1", 1), note("c1", 2)], &[]).unwrap();
        s.commit(
            &[],
            &[],
            &[OutboxChange::Dead {
                seq: rows[0].seq,
                error: "HTTP 500".into(),
                now_ms: 5,
            }],
        )
        .unwrap();
        assert_eq!(s.pending_outbox().unwrap().len(), 1);
        let dead = s.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].row.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(dead[0].row.attempts, 1);
        assert_eq!(dead[0].died_ms, 5);
        let back = s.redeliver(rows[0].seq).unwrap().unwrap();
        assert_eq!(back.seq, rows[0].seq);
        assert!(s.dead_letters().unwrap().is_empty());
        let seqs: Vec<i64> = s.pending_outbox().unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [rows[0].seq, rows[1].seq], "back in its place");
        assert!(s.redeliver(999).unwrap().is_none());
        // New notifications still come after everything before.
        let next = s.commit(&[], &[note("c1", 3)], &[]).unwrap();
        assert!(next[0].seq > rows[1].seq, "{:?}", s.backend());
        s.commit(
            &[],
            &[],
            &[OutboxChange::Retry {
                seq: next[0].seq,
                attempts: 2,
                next_attempt_ms: 77,
                error: "timeout".into(),
            }],
        )
        .unwrap();
        let r = s.pending_outbox().unwrap().pop().unwrap();
        assert_eq!(
            (r.attempts, r.next_attempt_ms, r.last_error.as_deref()),
            (2, 77, Some("timeout"))
        );
    }
}

#[test]
fn a_call_recording_is_listed_while_in_progress_and_completed_in_place() {
    for place in places("recordings") {
        let mut s = place.open();
        let mut r = Recording {
            id: "r1".into(),
            call_id: "c1".into(),
            tenant_id: "t".into(),
            app_id: "a".into(),
            kind: "call".into(),
            token: String::new(),
            path: "/tmp/r1.wav".into(),
            created_ms: 1000,
            expires_ms: i64::MAX,
            duration_ms: None,
            parent_id: None,
            participant_id: None,
        };
        s.save_recording(&r).unwrap();
        assert_eq!(s.recordings_of_call("c1").unwrap(), [r.clone()]);
        assert_eq!(s.unfinished_recordings().unwrap(), [r.clone()]);
        let done = Recording {
            tenant_id: String::new(),
            app_id: String::new(),
            created_ms: 5000,
            expires_ms: 9000,
            duration_ms: Some(4000),
            ..r.clone()
        };
        s.save_recording(&done).unwrap();
        r.expires_ms = 9000;
        r.duration_ms = Some(4000);
        assert_eq!(
            s.recording("r1").unwrap(),
            Some(r.clone()),
            "owner and start are kept"
        );
        assert!(s.unfinished_recordings().unwrap().is_empty());
        let track = Recording {
            id: "r2".into(),
            kind: "track".into(),
            parent_id: Some("r1".into()),
            participant_id: Some("p1".into()),
            created_ms: 2000,
            ..r.clone()
        };
        s.save_recording(&track).unwrap();
        assert_eq!(
            s.recent_recordings(1).unwrap(),
            std::slice::from_ref(&track)
        );
        assert_eq!(s.recordings_of_call("c1").unwrap(), [r, track]);
        assert!(s.recordings_of_call("c2").unwrap().is_empty());
        let mut gone = s.expire_recordings(9000).unwrap();
        gone.sort();
        assert_eq!(gone, ["/tmp/r1.wav", "/tmp/r1.wav"]);
        assert_eq!(s.recording("r1").unwrap(), None);
    }
}

#[test]
fn device_quality_reports_are_kept_per_tenant_in_order() {
    for place in places("quality") {
        let mut s = place.open();
        let a = s
            .log_device_quality("t1", "app", 10, &json!({"a":1}))
            .unwrap();
        let b = s
            .log_device_quality("t1", "app", 20, &json!({"b":2}))
            .unwrap();
        s.log_device_quality("t2", "app", 30, &json!({})).unwrap();
        assert!(a < b);
        assert_eq!(
            s.device_quality("t1").unwrap(),
            [
                (a, "app".into(), 10, json!({"a":1})),
                (b, "app".into(), 20, json!({"b":2}))
            ]
        );
    }
}

#[test]
fn a_transcript_and_its_lines_are_kept_in_spoken_order_and_its_end_is_recorded() {
    for place in places("transcripts") {
        let mut s = place.open();
        let t = Transcript {
            id: "t1".into(),
            call_id: "c1".into(),
            meeting_id: Some("m1".into()),
            tenant_id: "ten".into(),
            app_id: "app".into(),
            created_ms: 1000,
            ended_ms: None,
        };
        let line = |who: &str, start: u64, text: &str| {
            Effect::TranscriptLine(TranscriptLine {
                transcript_id: "t1".into(),
                call_id: "c1".into(),
                participant_id: who.into(),
                speaker: who.to_uppercase(),
                start_ms: start,
                end_ms: start + 900,
                text: text.into(),
                gap: who == "b",
            })
        };
        s.commit_with(
            &[],
            &[],
            &[],
            &[Effect::Transcript(t.clone()), line("b", 5000, "later")],
        )
        .unwrap();
        // A line transcribed later that was said earlier sorts before.
        let ended = Transcript {
            ended_ms: Some(9000),
            meeting_id: None,
            ..t
        };
        s.commit_with(
            &[],
            &[],
            &[],
            &[line("a", 2000, "first"), Effect::Transcript(ended)],
        )
        .unwrap();
        let got = s.transcript("t1").unwrap().unwrap();
        assert_eq!(got.ended_ms, Some(9000));
        assert_eq!(
            got.meeting_id.as_deref(),
            Some("m1"),
            "the end keeps the meeting"
        );
        assert_eq!(
            s.transcripts_of("m1", true).unwrap(),
            std::slice::from_ref(&got)
        );
        assert_eq!(s.transcripts_of("c1", false).unwrap(), [got]);
        let lines: Vec<_> = s
            .transcript_lines("t1")
            .unwrap()
            .into_iter()
            .map(|l| (l.speaker, l.text, l.gap))
            .collect();
        assert_eq!(
            lines,
            [
                ("A".into(), "first".into(), false),
                ("B".into(), "later".into(), true)
            ]
        );
        assert!(s.transcript("nope").unwrap().is_none());
    }
}

#[test]
fn the_wal_is_copied_into_the_database_beside_the_writer() {
    let Place::Sqlite(path) = places("wal").remove(0) else {
        unreachable!()
    };
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    let big = json!({ "id": "c1", "pad": "x".repeat(100_000) });
    s.commit(&[(ObjKind::Call, "c1".into(), Some(big))], &[], &[])
        .unwrap();
    // The commit went to the WAL; the checkpointer, not the writer, moves it over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while size() < before + 100_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(size() >= before + 100_000, "{} -> {}", before, size());
    drop(s);
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.load_objects().unwrap().len(), 1);
}

#[test]
fn postgres_nodes_starting_together_migrate_once_and_share_one_outbox_sequence() {
    let Some(Place::Postgres(url)) = places("shared").into_iter().nth(1) else {
        return;
    };
    let stores: Vec<Store> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| Store::connect_postgres(&url).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seqs = vec![];
    for mut s in stores {
        assert_eq!(s.backend(), Backend::Postgres);
        seqs.push(s.commit(&[], &[note("c1", 1)], &[]).unwrap()[0].seq);
    }
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(sorted, seqs, "every node's notification has its own place");
    let mut s = Store::connect_postgres(&url).unwrap();
    assert_eq!(s.pending_outbox().unwrap().len(), 4);
}

#[test]
fn an_unreachable_postgres_is_a_clear_error() {
    let e = Store::connect_postgres("postgres://nobody@127.0.0.1:1/none")
        .err()
        .expect("nothing listens on port 1");
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
}

#[test]
fn a_postgres_connection_cut_by_the_server_fails_one_batch_and_the_next_reconnects() {
    let Some(url) = store::testing::fresh_postgres("reconnect") else {
        return;
    };
    let mut s = Store::connect_postgres(&url).unwrap();
    s.commit(&[], &[note("c1", 1)], &[]).unwrap();
    // The server ends every session of this database (a restart or failover looks the same).
    let db = url.rsplit_once('/').unwrap().1.to_string();
    let admin_url = std::env::var("RINGSIDE_TEST_POSTGRES").unwrap();
    store::testing::admin_exec(
        &admin_url,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"),
    )
    .unwrap();
    let first = s.commit(&[], &[note("c1", 2)], &[]);
    let second = s.commit(&[], &[note("c1", 3)], &[]);
    assert!(second.is_ok(), "the next batch reconnects: {second:?}");
    let bodies: Vec<String> = s
        .pending_outbox()
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    let expect: Vec<String> = if first.is_ok() {
        vec![1, 2, 3]
    } else {
        vec![1, 3]
    }
    .into_iter()
    .map(|n| json!({ "n": n }).to_string())
    .collect();
    assert_eq!(bodies, expect, "a failed batch left nothing behind");
}

#[test]
fn a_survivor_takes_over_a_node_whose_lease_ran_out_once_with_its_calls_and_notifications() {
    let mut lite = Store::open_in_memory().unwrap();
    let e = lite.register_node(1000, "").unwrap_err().to_string();
    assert!(e.contains("PostgreSQL"), "{e}");
    let Some(url) = store::testing::fresh_postgres("adopt") else {
        return;
    };
    let node = |id: &str| {
        let mut s = Store::connect_postgres(&url).unwrap();
        s.set_owner(id);
        s
    };
    let (mut a, mut b, mut c) = (node("a"), node("b"), node("c"));
    assert_eq!(a.register_node(300, "http://a").unwrap(), 1);
    b.register_node(60_000, "http://b").unwrap();
    c.register_node(60_000, "http://c").unwrap();
    a.commit(
        &[(ObjKind::Call, "c1".into(), Some(json!({"id":"c1"})))],
        &[note("c1", 1), note("c1", 2)],
        &[],
    )
    .unwrap();
    b.commit(
        &[(ObjKind::Call, "c2".into(), Some(json!({"id":"c2"})))],
        &[note("c2", 1)],
        &[],
    )
    .unwrap();
    assert_eq!(
        a.load_objects().unwrap().len(),
        1,
        "each node loads its own"
    );
    assert!(b.adopt("a").unwrap().is_none(), "a is alive");
    assert!(b.adopt("b").unwrap().is_none(), "not itself");
    assert!(b.adopt("nobody").unwrap().is_none());
    std::thread::sleep(std::time::Duration::from_millis(400));
    let got = b.adopt("a").unwrap().expect("a's lease ran out");
    assert!(
        c.adopt("a").unwrap().is_none(),
        "only one survivor takes it"
    );
    assert_eq!(got.objects, vec![(ObjKind::Call, json!({"id":"c1"}))]);
    let bodies: Vec<&str> = got.outbox.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#], "in order");
    assert_eq!(b.load_objects().unwrap().len(), 2);
    assert_eq!(b.pending_outbox().unwrap().len(), 3);
    // a comes back: its calls are b's now; it starts empty with a new epoch.
    assert_eq!(a.register_node(300, "http://a").unwrap(), 2);
    assert!(a.load_objects().unwrap().is_empty());
    assert!(a.pending_outbox().unwrap().is_empty());
}
