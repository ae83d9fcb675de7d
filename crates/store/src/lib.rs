//! Durable state: engine objects and the notification outbox, written in one transaction
//! per batch so nothing acknowledged is lost (SQLite in WAL mode; a process crash keeps
//! every committed transaction).

use engine::{Notification, ObjKind};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("corrupt stored object {0}: {1}")]
    Corrupt(String, String),
    #[error("cannot start the WAL checkpoint thread: {0}")]
    Checkpointer(std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One notification waiting for (re)delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: i64,
    pub call_id: String,
    pub tenant_id: String,
    pub app_id: String,
    pub url: String,
    pub body: String,
    pub incoming: bool,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub seq: i64,
    pub row: OutboxRow,
    pub died_ms: i64,
}

/// What a batch changes besides engine objects.
#[derive(Debug, Clone)]
pub enum OutboxChange {
    Delivered(i64),
    Retry {
        seq: i64,
        attempts: i64,
        next_attempt_ms: i64,
        error: String,
    },
    Dead {
        seq: i64,
        error: String,
        now_ms: i64,
    },
}

pub struct Store {
    conn: Connection,
    /// Checkpoints the WAL for a file-backed store (none in memory).
    _checkpointer: Option<Checkpointer>,
}

/// How often the background connection copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Checkpoints the WAL from a connection of its own, on a thread of its own. SQLite would
/// otherwise run them inside whichever commit crosses 1,000 pages of WAL, fsync included, on
/// the thread that owns the engine: on a slow disk every request then waits for that fsync
/// (call setup at 500 calls/s measured p99 72-308 ms on this VM's disk against 12-36 ms with
/// the database in memory-backed tmpfs). A PASSIVE checkpoint never blocks the writer.
struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                let checkpoint = || {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                };
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    checkpoint();
                }
                checkpoint();
            })
            .map_err(StoreError::Checkpointer)?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS transcripts (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    meeting_id TEXT,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    ended_ms INTEGER
);
CREATE INDEX IF NOT EXISTS transcripts_by_call ON transcripts(call_id);
CREATE INDEX IF NOT EXISTS transcripts_by_meeting ON transcripts(meeting_id);
CREATE TABLE IF NOT EXISTS transcript_lines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    transcript_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    speaker TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    text TEXT NOT NULL,
    gap INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transcript_lines_in_order ON transcript_lines(transcript_id, start_ms);
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    incoming INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    incoming INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    died_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS device_quality (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    token TEXT NOT NULL,
    path TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
"#;

/// Columns added to `recordings` after its first release (call recordings).
const RECORDING_COLUMNS: [&str; 6] = [
    "tenant_id TEXT NOT NULL DEFAULT ''",
    "app_id TEXT NOT NULL DEFAULT ''",
    "duration_ms INTEGER",
    "kind TEXT NOT NULL DEFAULT 'response'",
    "parent_id TEXT",
    "participant_id TEXT",
];

/// A recording: a recordResponse result (`kind` "response", downloaded with its token), a
/// call recording ("call", listed and downloaded with the app's Graph token) or one
/// participant's track of a call recording ("track", with `parent_id`). `duration_ms` is None
/// while recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub id: String,
    pub call_id: String,
    pub tenant_id: String,
    pub app_id: String,
    pub kind: String,
    pub token: String,
    pub path: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub duration_ms: Option<i64>,
    pub parent_id: Option<String>,
    pub participant_id: Option<String>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        let mut store = Self::init(conn)?;
        // The writer never checkpoints; the checkpointer does, beside it.
        store.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        store._checkpointer = Some(Checkpointer::start(path)?);
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode NORMAL survives a process crash (kill -9); only power loss can drop
        // the last transactions. FULL is available through `set_fsync`.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        for col in RECORDING_COLUMNS {
            let name = col.split(' ').next().unwrap_or_default();
            let has: bool = conn.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('recordings') WHERE name=?1",
                params![name],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE recordings ADD COLUMN {col}"))?;
            }
        }
        Ok(Store {
            conn,
            _checkpointer: None,
        })
    }

    /// fsync every commit (power-loss durability) at the cost of commit latency.
    pub fn set_fsync(&self, on: bool) -> Result<()> {
        self.conn
            .pragma_update(None, "synchronous", if on { "FULL" } else { "NORMAL" })?;
        Ok(())
    }

    /// Persist a batch: object upserts/deletes, new notifications, outbox progress. Returns
    /// the outbox rows created, in order, with their sequence numbers.
    pub fn commit(
        &mut self,
        objects: &[(ObjKind, String, Option<Value>)],
        notes: &[Notification],
        changes: &[OutboxChange],
    ) -> Result<Vec<OutboxRow>> {
        self.commit_with(objects, notes, changes, &[])
    }

    /// [`Store::commit`], plus the transcripts and transcript lines among `effects`.
    pub fn commit_with(
        &mut self,
        objects: &[(ObjKind, String, Option<Value>)],
        notes: &[Notification],
        changes: &[OutboxChange],
        effects: &[engine::Effect],
    ) -> Result<Vec<OutboxRow>> {
        let tx = self.conn.transaction()?;
        write_transcripts(&tx, effects)?;
        let mut rows = Vec::with_capacity(notes.len());
        {
            let mut up = tx.prepare_cached("INSERT INTO objects(kind,id,json) VALUES(?1,?2,?3) ON CONFLICT(kind,id) DO UPDATE SET json=excluded.json")?;
            let mut del = tx.prepare_cached("DELETE FROM objects WHERE kind=?1 AND id=?2")?;
            for (kind, id, v) in objects {
                match v {
                    Some(v) => {
                        up.execute(params![kind.as_str(), id, v.to_string()])?;
                    }
                    None => {
                        del.execute(params![kind.as_str(), id])?;
                    }
                }
            }
            let mut ins = tx.prepare_cached("INSERT INTO outbox(call_id,tenant_id,app_id,url,body,incoming) VALUES(?1,?2,?3,?4,?5,?6)")?;
            for n in notes {
                let body = n.body.to_string();
                ins.execute(params![
                    n.call_id,
                    n.tenant_id,
                    n.app_id,
                    n.url,
                    body,
                    n.incoming as i64
                ])?;
                rows.push(OutboxRow {
                    seq: tx.last_insert_rowid(),
                    call_id: n.call_id.clone(),
                    tenant_id: n.tenant_id.clone(),
                    app_id: n.app_id.clone(),
                    url: n.url.clone(),
                    body,
                    incoming: n.incoming,
                    attempts: 0,
                    next_attempt_ms: 0,
                    last_error: None,
                });
            }
            let mut done = tx.prepare_cached("DELETE FROM outbox WHERE seq=?1")?;
            let mut retry = tx.prepare_cached(
                "UPDATE outbox SET attempts=?2, next_attempt_ms=?3, last_error=?4 WHERE seq=?1",
            )?;
            let mut dead = tx.prepare_cached(
                "INSERT INTO dead_letters(seq,call_id,tenant_id,app_id,url,body,incoming,attempts,last_error,died_ms)
                 SELECT seq,call_id,tenant_id,app_id,url,body,incoming,attempts+1,?2,?3 FROM outbox WHERE seq=?1",
            )?;
            for c in changes {
                match c {
                    OutboxChange::Delivered(seq) => {
                        done.execute(params![seq])?;
                    }
                    OutboxChange::Retry {
                        seq,
                        attempts,
                        next_attempt_ms,
                        error,
                    } => {
                        retry.execute(params![seq, attempts, next_attempt_ms, error])?;
                    }
                    OutboxChange::Dead { seq, error, now_ms } => {
                        dead.execute(params![seq, error, now_ms])?;
                        done.execute(params![seq])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(rows)
    }

    pub fn load_objects(&self) -> Result<Vec<(ObjKind, Value)>> {
        let mut st = self
            .conn
            .prepare("SELECT kind, id, json FROM objects ORDER BY kind, id")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (kind, id, json) = row?;
            let k = ObjKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(id.clone(), format!("unknown kind {kind}")))?;
            let v = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(id.clone(), e.to_string()))?;
            out.push((k, v));
        }
        Ok(out)
    }

    pub fn pending_outbox(&self) -> Result<Vec<OutboxRow>> {
        let mut st = self.conn.prepare(
            "SELECT seq,call_id,tenant_id,app_id,url,body,incoming,attempts,next_attempt_ms,last_error FROM outbox ORDER BY seq",
        )?;
        let rows = st.query_map([], row_of)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut st = self.conn.prepare(
            "SELECT seq,call_id,tenant_id,app_id,url,body,incoming,attempts,0,last_error,died_ms FROM dead_letters ORDER BY seq",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DeadLetter {
                seq: r.get(0)?,
                row: row_of(r)?,
                died_ms: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Move a dead letter back into the outbox (keeping its place in its call's order).
    pub fn redeliver(&mut self, seq: i64) -> Result<Option<OutboxRow>> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "INSERT INTO outbox(seq,call_id,tenant_id,app_id,url,body,incoming,attempts,next_attempt_ms,last_error)
             SELECT seq,call_id,tenant_id,app_id,url,body,incoming,0,0,last_error FROM dead_letters WHERE seq=?1",
            params![seq],
        )?;
        if n == 0 {
            return Ok(None);
        }
        tx.execute("DELETE FROM dead_letters WHERE seq=?1", params![seq])?;
        let row = tx
            .query_row(
                "SELECT seq,call_id,tenant_id,app_id,url,body,incoming,attempts,next_attempt_ms,last_error FROM outbox WHERE seq=?1",
                params![seq],
                row_of,
            )
            .optional()?;
        tx.commit()?;
        Ok(row)
    }

    pub fn log_device_quality(
        &self,
        tenant: &str,
        app: &str,
        now_ms: i64,
        json: &Value,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO device_quality(tenant_id,app_id,received_ms,json) VALUES(?1,?2,?3,?4)",
            params![tenant, app, now_ms, json.to_string()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn device_quality(&self, tenant: &str) -> Result<Vec<(i64, String, i64, Value)>> {
        let mut st = self.conn.prepare("SELECT id, app_id, received_ms, json FROM device_quality WHERE tenant_id=?1 ORDER BY id")?;
        let rows = st.query_map(params![tenant], |r| {
            let json: String = r.get(3)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                serde_json::from_str(&json).unwrap_or(Value::Null),
            ))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Add a recording, or complete one already listed (a call recording that was in
    /// progress): its duration is set and its retention starts again.
    pub fn save_recording(&self, r: &Recording) -> Result<()> {
        self.conn.execute(
            "INSERT INTO recordings(id,call_id,token,path,created_ms,expires_ms,tenant_id,app_id,duration_ms,kind,parent_id,participant_id)
             VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)
             ON CONFLICT(id) DO UPDATE SET duration_ms=excluded.duration_ms, expires_ms=excluded.expires_ms",
            params![
                r.id,
                r.call_id,
                r.token,
                r.path,
                r.created_ms,
                r.expires_ms,
                r.tenant_id,
                r.app_id,
                r.duration_ms,
                r.kind,
                r.parent_id,
                r.participant_id
            ],
        )?;
        Ok(())
    }

    pub fn recording(&self, id: &str) -> Result<Option<Recording>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {RECORDING_FIELDS} FROM recordings WHERE id=?1"),
                params![id],
                recording_of,
            )
            .optional()?)
    }

    /// Recordings that were in progress when the process stopped.
    pub fn unfinished_recordings(&self) -> Result<Vec<Recording>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {RECORDING_FIELDS} FROM recordings WHERE duration_ms IS NULL"
        ))?;
        let rows = st.query_map([], recording_of)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The call recordings of a call and their tracks, oldest first.
    pub fn recordings_of_call(&self, call_id: &str) -> Result<Vec<Recording>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {RECORDING_FIELDS} FROM recordings WHERE call_id=?1 AND kind IN ('call','track') ORDER BY created_ms, id"
        ))?;
        let rows = st.query_map(params![call_id], recording_of)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The most recent recordings of every kind, newest first (the admin console's list).
    pub fn recent_recordings(&self, limit: usize) -> Result<Vec<Recording>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {RECORDING_FIELDS} FROM recordings ORDER BY created_ms DESC, id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map(params![limit as i64], recording_of)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Forget expired recordings; returns their file paths for deletion.
    pub fn expire_recordings(&self, now_ms: i64) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT path FROM recordings WHERE expires_ms <= ?1")?;
        let paths: Vec<String> = st
            .query_map(params![now_ms], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        self.conn.execute(
            "DELETE FROM recordings WHERE expires_ms <= ?1",
            params![now_ms],
        )?;
        Ok(paths)
    }
}

const RECORDING_FIELDS: &str = "id, call_id, tenant_id, app_id, kind, token, path, created_ms, expires_ms, duration_ms, parent_id, participant_id";

fn recording_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Recording> {
    Ok(Recording {
        id: r.get(0)?,
        call_id: r.get(1)?,
        tenant_id: r.get(2)?,
        app_id: r.get(3)?,
        kind: r.get(4)?,
        token: r.get(5)?,
        path: r.get(6)?,
        created_ms: r.get(7)?,
        expires_ms: r.get(8)?,
        duration_ms: r.get(9)?,
        parent_id: r.get(10)?,
        participant_id: r.get(11)?,
    })
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        seq: r.get(0)?,
        call_id: r.get(1)?,
        tenant_id: r.get(2)?,
        app_id: r.get(3)?,
        url: r.get(4)?,
        body: r.get(5)?,
        incoming: r.get::<_, i64>(6)? != 0,
        attempts: r.get(7)?,
        next_attempt_ms: r.get(8)?,
        last_error: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_recording_is_listed_while_in_progress_and_completed_in_place() {
        let s = Store::open_in_memory().unwrap();
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
            Some(r),
            "owner and start are kept"
        );
        assert!(s.recordings_of_call("c2").unwrap().is_empty());
        assert_eq!(s.expire_recordings(9000).unwrap(), ["/tmp/r1.wav"]);
        assert_eq!(s.recording("r1").unwrap(), None);
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

    /// A database path of this test process with no database there yet.
    fn fresh_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ringside-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.db"));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn the_wal_is_copied_into_the_database_beside_the_writer() {
        let path = fresh_db("wal");
        let mut s = Store::open(&path).unwrap();
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
        let s = Store::open(&path).unwrap();
        assert_eq!(s.load_objects().unwrap().len(), 1);
    }

    #[test]
    fn objects_and_outbox_survive_reopen_in_one_transaction() {
        let path = fresh_db("reopen");
        {
            let mut s = Store::open(&path).unwrap();
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
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.load_objects().unwrap(),
            vec![(ObjKind::Call, json!({"id":"c1"}))]
        );
        let pending = s.pending_outbox().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].body, json!({"n":2}).to_string());
    }

    #[test]
    fn dead_letters_can_be_redelivered_in_their_original_place() {
        let mut s = Store::open_in_memory().unwrap();
        let rows = s.commit(&[], &[note("c1", 1)], &[]).unwrap();
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
        assert!(s.pending_outbox().unwrap().is_empty());
        let dead = s.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].row.last_error.as_deref(), Some("HTTP 500"));
        let back = s.redeliver(rows[0].seq).unwrap().unwrap();
        assert_eq!(back.seq, rows[0].seq);
        assert!(s.dead_letters().unwrap().is_empty());
        assert!(s.redeliver(999).unwrap().is_none());
    }
}

// ------------------------------------------------------------------ transcripts

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTranscript {
    pub id: String,
    pub call_id: String,
    pub meeting_id: Option<String>,
    pub tenant_id: String,
    pub app_id: String,
    pub created_ms: i64,
    pub ended_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    pub participant_id: String,
    pub speaker: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    pub gap: bool,
}

/// The transcripts and transcript lines among a batch's effects (in its transaction).
fn write_transcripts(tx: &rusqlite::Transaction<'_>, effects: &[engine::Effect]) -> Result<()> {
    for e in effects {
        match e {
            engine::Effect::Transcript(t) => {
                tx.prepare_cached(
                    "INSERT INTO transcripts(id,call_id,meeting_id,tenant_id,app_id,created_ms,ended_ms)
                     VALUES(?1,?2,?3,?4,?5,?6,?7)
                     ON CONFLICT(id) DO UPDATE SET ended_ms=excluded.ended_ms",
                )?
                .execute(params![
                    t.id,
                    t.call_id,
                    t.meeting_id,
                    t.tenant_id,
                    t.app_id,
                    t.created_ms as i64,
                    t.ended_ms.map(|m| m as i64)
                ])?;
            }
            engine::Effect::TranscriptLine(l) => {
                tx.prepare_cached(
                    "INSERT INTO transcript_lines(transcript_id,participant_id,speaker,start_ms,end_ms,text,gap)
                     VALUES(?1,?2,?3,?4,?5,?6,?7)",
                )?
                .execute(params![
                    l.transcript_id,
                    l.participant_id,
                    l.speaker,
                    l.start_ms as i64,
                    l.end_ms as i64,
                    l.text,
                    l.gap as i64
                ])?;
            }
            _ => {}
        }
    }
    Ok(())
}

const FIELDS: &str = "id, call_id, meeting_id, tenant_id, app_id, created_ms, ended_ms";

fn transcript_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredTranscript> {
    Ok(StoredTranscript {
        id: r.get(0)?,
        call_id: r.get(1)?,
        meeting_id: r.get(2)?,
        tenant_id: r.get(3)?,
        app_id: r.get(4)?,
        created_ms: r.get(5)?,
        ended_ms: r.get(6)?,
    })
}

impl Store {
    pub fn transcript(&self, id: &str) -> Result<Option<StoredTranscript>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {FIELDS} FROM transcripts WHERE id=?1"),
                params![id],
                transcript_of,
            )
            .optional()?)
    }

    /// A call's transcripts (`by_meeting` false) or a meeting's, oldest first.
    pub fn transcripts_of(&self, owner: &str, by_meeting: bool) -> Result<Vec<StoredTranscript>> {
        let col = if by_meeting { "meeting_id" } else { "call_id" };
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {FIELDS} FROM transcripts WHERE {col}=?1 ORDER BY created_ms, id"
        ))?;
        let rows = st.query_map(params![owner], transcript_of)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A transcript's lines in the order they were said.
    pub fn transcript_lines(&self, transcript_id: &str) -> Result<Vec<StoredLine>> {
        let mut st = self.conn.prepare_cached(
            "SELECT participant_id, speaker, start_ms, end_ms, text, gap FROM transcript_lines
             WHERE transcript_id=?1 ORDER BY start_ms, seq",
        )?;
        let rows = st.query_map(params![transcript_id], |r| {
            Ok(StoredLine {
                participant_id: r.get(0)?,
                speaker: r.get(1)?,
                start_ms: r.get(2)?,
                end_ms: r.get(3)?,
                text: r.get(4)?,
                gap: r.get::<_, i64>(5)? != 0,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod transcript_tests {
    use super::*;
    use engine::{Effect, Transcript, TranscriptLine};

    #[test]
    fn a_transcript_and_its_lines_are_kept_in_spoken_order_and_its_end_is_recorded() {
        let mut s = Store::open_in_memory().unwrap();
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
                gap: false,
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
            .map(|l| (l.speaker, l.text))
            .collect();
        assert_eq!(
            lines,
            [("A".into(), "first".into()), ("B".into(), "later".into())]
        );
        assert!(s.transcript("nope").unwrap().is_none());
    }
}
