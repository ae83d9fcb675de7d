//! The store: one connection to a backend, and what a batch writes in one transaction.

use crate::lite::Lite;
use crate::pg::Pg;
use crate::sql::{Result, Row, Sql, StoreError, V};
use engine::{Notification, ObjKind};
use serde_json::Value;
use std::path::Path;

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

/// Which backend a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Store {
    pub(crate) db: Box<dyn Sql>,
    backend: Backend,
    /// The node this store writes for: its objects and notifications carry this owner, and
    /// it loads only its own ('' on a single node).
    owner: String,
}

pub(crate) const OUTBOX_FIELDS: &str =
    "seq,call_id,tenant_id,app_id,url,body,incoming,attempts,next_attempt_ms,last_error";

impl Store {
    /// The embedded store in a file (created if missing).
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Self::of(Box::new(Lite::open(path)?), Backend::Sqlite))
    }

    pub fn open_in_memory() -> Result<Store> {
        Ok(Self::of(Box::new(Lite::open_in_memory()?), Backend::Sqlite))
    }

    /// A PostgreSQL database (`postgres://user:password@host:port/db`), migrated to the
    /// current schema. Do not call from inside an async task; the store blocks.
    pub fn connect_postgres(url: &str) -> Result<Store> {
        Ok(Self::of(Box::new(Pg::connect(url)?), Backend::Postgres))
    }

    /// `postgres://…` or `postgresql://…` connects to PostgreSQL; anything else is a SQLite
    /// file path.
    pub fn open_url(url: &str) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url)
        } else {
            Self::open(Path::new(url))
        }
    }

    fn of(db: Box<dyn Sql>, backend: Backend) -> Store {
        Store {
            db,
            backend,
            owner: String::new(),
        }
    }

    /// Write and load as node `id` of a cluster.
    pub fn set_owner(&mut self, id: &str) {
        self.owner = id.to_string();
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A trivial query: the database answers.
    pub fn ping(&mut self) -> Result<()> {
        self.db.one("SELECT 1", &[]).map(|_| ())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// fsync every commit (power-loss durability) at the cost of commit latency. SQLite
    /// only: PostgreSQL's durability is the server's `synchronous_commit`.
    pub fn set_fsync(&mut self, on: bool) -> Result<()> {
        if self.backend == Backend::Sqlite {
            self.db.batch(if on {
                "PRAGMA synchronous=FULL"
            } else {
                "PRAGMA synchronous=NORMAL"
            })?;
        }
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
        // One list of statements, sent together where the backend can (PostgreSQL).
        let mut stmts = Statements::new();
        write_transcripts(&mut stmts, effects);
        write_objects(&mut stmts, &self.owner, objects);
        let first_note = stmts.len();
        write_notes(&mut stmts, &self.owner, notes);
        write_changes(&mut stmts, changes);
        self.db.transaction(|db| {
            let results = db.query_all(&stmts)?;
            noted(notes, &results[first_note..first_note + notes.len()])
        })
    }

    pub fn load_objects(&mut self) -> Result<Vec<(ObjKind, Value)>> {
        let rows = self.db.query(
            "SELECT kind, id, json FROM objects WHERE owner=?1 ORDER BY kind, id",
            &[(&self.owner).into()],
        )?;
        objects_of(rows)
    }

    /// The committed versions of these objects (`None`: not stored), as a failed batch left
    /// them: what the engine goes back to when its changes could not be committed.
    pub fn committed_objects(
        &mut self,
        keys: &[(ObjKind, String)],
    ) -> Result<Vec<(ObjKind, String, Option<Value>)>> {
        let mut out = Vec::with_capacity(keys.len());
        for (kind, id) in keys {
            let rows = self.db.query(
                "SELECT json FROM objects WHERE kind=?1 AND id=?2",
                &[kind.as_str().into(), id.into()],
            )?;
            let v = match rows.first() {
                Some(r) => Some(
                    serde_json::from_str(&r.s(0)?)
                        .map_err(|e| StoreError::Corrupt(id.clone(), e.to_string()))?,
                ),
                None => None,
            };
            out.push((*kind, id.clone(), v));
        }
        Ok(out)
    }

    pub fn pending_outbox(&mut self) -> Result<Vec<OutboxRow>> {
        self.db
            .query(
                &format!("SELECT {OUTBOX_FIELDS} FROM outbox WHERE owner=?1 ORDER BY seq"),
                &[(&self.owner).into()],
            )?
            .iter()
            .map(outbox_row)
            .collect()
    }

    pub fn dead_letters(&mut self) -> Result<Vec<DeadLetter>> {
        self.db
            .query(
                "SELECT seq,call_id,tenant_id,app_id,url,body,incoming,attempts,0,last_error,died_ms FROM dead_letters ORDER BY seq",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(DeadLetter {
                    seq: r.i(0)?,
                    row: outbox_row(r)?,
                    died_ms: r.i(10)?,
                })
            })
            .collect()
    }

    /// Move a dead letter back into the outbox (keeping its place in its call's order).
    pub fn redeliver(&mut self, seq: i64) -> Result<Option<OutboxRow>> {
        let owner = &self.owner;
        self.db.transaction(|db| {
            // The node that redelivers it delivers it.
            let n = db.exec(
                "INSERT INTO outbox(seq,call_id,tenant_id,app_id,url,body,incoming,attempts,next_attempt_ms,last_error,owner)
                 SELECT seq,call_id,tenant_id,app_id,url,body,incoming,0,0,last_error,CAST(?2 AS TEXT) FROM dead_letters WHERE seq=?1",
                &[seq.into(), owner.into()],
            )?;
            if n == 0 {
                return Ok(None);
            }
            db.exec("DELETE FROM dead_letters WHERE seq=?1", &[seq.into()])?;
            db.one(
                &format!("SELECT {OUTBOX_FIELDS} FROM outbox WHERE seq=?1"),
                &[seq.into()],
            )?
            .map(|r| outbox_row(&r))
            .transpose()
        })
    }
}

pub(crate) fn objects_of(rows: Vec<Row>) -> Result<Vec<(ObjKind, Value)>> {
    let mut out = vec![];
    for row in rows {
        let (kind, id, json) = (row.s(0)?, row.s(1)?, row.s(2)?);
        let k = ObjKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(id.clone(), format!("unknown kind {kind}")))?;
        let v = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(id.clone(), e.to_string()))?;
        out.push((k, v));
    }
    Ok(out)
}

/// Statements of one batch, in order, with their parameters.
type Statements = Vec<(&'static str, Vec<V>)>;

fn write_objects(out: &mut Statements, owner: &str, objects: &[(ObjKind, String, Option<Value>)]) {
    for (kind, id, v) in objects {
        match v {
            Some(v) => out.push((
                "INSERT INTO objects(kind,id,json,owner) VALUES(?1,?2,?3,?4) ON CONFLICT(kind,id) DO UPDATE SET json=excluded.json, owner=excluded.owner",
                vec![kind.as_str().into(), id.into(), v.to_string().into(), owner.into()],
            )),
            None => out.push((
                "DELETE FROM objects WHERE kind=?1 AND id=?2",
                vec![kind.as_str().into(), id.into()],
            )),
        };
    }
}

fn write_notes(out: &mut Statements, owner: &str, notes: &[Notification]) {
    for n in notes {
        out.push((
            "INSERT INTO outbox(call_id,tenant_id,app_id,url,body,incoming,owner) VALUES(?1,?2,?3,?4,?5,?6,?7) RETURNING seq",
            vec![
                (&n.call_id).into(),
                (&n.tenant_id).into(),
                (&n.app_id).into(),
                (&n.url).into(),
                n.body.to_string().into(),
                n.incoming.into(),
                owner.into(),
            ],
        ));
    }
}

/// The outbox rows the notes became, with the sequence numbers their inserts returned.
fn noted(notes: &[Notification], seqs: &[Vec<Row>]) -> Result<Vec<OutboxRow>> {
    notes
        .iter()
        .zip(seqs)
        .map(|(n, rows)| {
            let seq = rows
                .first()
                .ok_or_else(|| StoreError::Db("an outbox insert returned no sequence".into()))?
                .i(0)?;
            Ok(OutboxRow {
                seq,
                call_id: n.call_id.clone(),
                tenant_id: n.tenant_id.clone(),
                app_id: n.app_id.clone(),
                url: n.url.clone(),
                body: n.body.to_string(),
                incoming: n.incoming,
                attempts: 0,
                next_attempt_ms: 0,
                last_error: None,
            })
        })
        .collect()
}

fn write_changes(out: &mut Statements, changes: &[OutboxChange]) {
    const DONE: &str = "DELETE FROM outbox WHERE seq=?1";
    for c in changes {
        match c {
            OutboxChange::Delivered(seq) => {
                out.push((DONE, vec![(*seq).into()]));
            }
            OutboxChange::Retry {
                seq,
                attempts,
                next_attempt_ms,
                error,
            } => {
                out.push((
                    "UPDATE outbox SET attempts=?2, next_attempt_ms=?3, last_error=?4 WHERE seq=?1",
                    vec![
                        (*seq).into(),
                        (*attempts).into(),
                        (*next_attempt_ms).into(),
                        error.into(),
                    ],
                ));
            }
            OutboxChange::Dead { seq, error, now_ms } => {
                out.push((
                    "INSERT INTO dead_letters(seq,call_id,tenant_id,app_id,url,body,incoming,attempts,last_error,died_ms)
                     SELECT seq,call_id,tenant_id,app_id,url,body,incoming,attempts+1,CAST(?2 AS TEXT),CAST(?3 AS BIGINT) FROM outbox WHERE seq=?1",
                    vec![(*seq).into(), error.into(), (*now_ms).into()],
                ));
                out.push((DONE, vec![(*seq).into()]));
            }
        }
    }
}

/// The transcripts and transcript lines among a batch's effects (in its transaction).
fn write_transcripts(out: &mut Statements, effects: &[engine::Effect]) {
    for e in effects {
        match e {
            engine::Effect::Transcript(t) => {
                out.push((
                    "INSERT INTO transcripts(id,call_id,meeting_id,tenant_id,app_id,created_ms,ended_ms)
                     VALUES(?1,?2,?3,?4,?5,?6,?7)
                     ON CONFLICT(id) DO UPDATE SET ended_ms=excluded.ended_ms",
                    vec![
                        (&t.id).into(),
                        (&t.call_id).into(),
                        t.meeting_id.as_ref().into(),
                        (&t.tenant_id).into(),
                        (&t.app_id).into(),
                        (t.created_ms as i64).into(),
                        t.ended_ms.map(|m| m as i64).into(),
                    ],
                ));
            }
            engine::Effect::TranscriptLine(l) => {
                out.push((
                    "INSERT INTO transcript_lines(transcript_id,participant_id,speaker,start_ms,end_ms,text,gap)
                     VALUES(?1,?2,?3,?4,?5,?6,?7)",
                    vec![
                        (&l.transcript_id).into(),
                        (&l.participant_id).into(),
                        (&l.speaker).into(),
                        (l.start_ms as i64).into(),
                        (l.end_ms as i64).into(),
                        (&l.text).into(),
                        l.gap.into(),
                    ],
                ));
            }
            _ => {}
        }
    }
}

pub(crate) fn outbox_row(r: &Row) -> Result<OutboxRow> {
    Ok(OutboxRow {
        seq: r.i(0)?,
        call_id: r.s(1)?,
        tenant_id: r.s(2)?,
        app_id: r.s(3)?,
        url: r.s(4)?,
        body: r.s(5)?,
        incoming: r.b(6)?,
        attempts: r.i(7)?,
        next_attempt_ms: r.i(8)?,
        last_error: r.os(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A batch that fails part-way leaves nothing behind, on either backend (PostgreSQL when
    /// `RINGSIDE_TEST_POSTGRES` names a server).
    #[test]
    fn a_batch_that_fails_part_way_changes_nothing() {
        let mut stores = vec![Store::open_in_memory().unwrap()];
        if let Ok(url) = std::env::var("RINGSIDE_TEST_POSTGRES") {
            stores.push(Store::connect_postgres(&url).unwrap());
        }
        for mut s in stores {
            let id = format!("half-{}", std::process::id());
            let before = s.pending_outbox().unwrap().len();
            // The failing statement is last, after the others were sent (pipelined).
            let mut stmts = Statements::new();
            write_objects(
                &mut stmts,
                "",
                &[(ObjKind::Call, id.clone(), Some(json!({})))],
            );
            write_notes(
                &mut stmts,
                "",
                &[Notification {
                    call_id: id.clone(),
                    tenant_id: "t".into(),
                    app_id: "a".into(),
                    url: "http://x".into(),
                    body: json!({}),
                    incoming: false,
                }],
            );
            stmts.push(("INSERT INTO no_such_table VALUES(1)", vec![]));
            let r: Result<()> = s.db.transaction(|db| db.query_all(&stmts).map(|_| ()));
            let e = r.unwrap_err().to_string();
            assert!(e.contains("no_such_table"), "{e}");
            assert!(
                !s.load_objects()
                    .unwrap()
                    .iter()
                    .any(|(_, v)| *v == json!({}))
            );
            assert_eq!(s.pending_outbox().unwrap().len(), before);
            // The connection is usable after the rollback.
            s.commit(&[], &[], &[]).unwrap();
        }
    }
}
