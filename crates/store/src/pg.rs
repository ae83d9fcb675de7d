//! The shared backend: PostgreSQL, for more than one node. The same statements as SQLite
//! (placeholders rewritten), BIGINT for every integer, and numbered migrations applied under
//! an advisory lock so nodes starting together do not race.
//!
//! The client is tokio-postgres driven by a small runtime of the store's own: the store lives
//! on the driver thread, which is not an async task (it must not be used from inside a tokio
//! runtime's thread). A batch's statements are sent together (pipelined), so a commit costs
//! about one round trip rather than one per statement.

use crate::sql::{Result, Row, Sql, StoreError, V, dollar_placeholders};
use bytes::BytesMut;
use std::collections::HashMap;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        match e.as_db_error() {
            Some(db) => StoreError::Db(format!(
                "PostgreSQL: {} ({})",
                db.message(),
                db.code().code()
            )),
            None => StoreError::Db(format!("PostgreSQL: {e}")),
        }
    }
}

impl ToSql for V {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            V::I(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            V::I(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            V::I(v) => v.to_sql(ty, out),
            V::T(v) => v.to_sql(ty, out),
            V::Null => Ok(IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

pub struct Pg {
    url: String,
    /// Runs the client's requests and its connection (only while the store waits on them).
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The last error said the session is gone (the client may not know yet).
    broken: bool,
    statements: HashMap<String, Statement>,
}

impl Pg {
    /// Connect and bring the schema up to date.
    pub fn connect(url: &str) -> Result<Pg> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Db(format!("cannot start the PostgreSQL client: {e}")))?;
        let client = outside_async(|| connect(&rt, url))?;
        let mut pg = Pg {
            url: url.to_string(),
            rt,
            client,
            broken: false,
            statements: HashMap::new(),
        };
        pg.migrate()?;
        Ok(pg)
    }

    fn migrate(&mut self) -> Result<()> {
        let db: &mut dyn Sql = self;
        db.transaction(|db| {
            // One node migrates at a time; the others wait here, then find nothing to do.
            db.batch("SELECT pg_advisory_xact_lock(7468329)")?;
            db.batch(
                "CREATE TABLE IF NOT EXISTS ringside_migrations (
                    version BIGINT PRIMARY KEY,
                    applied_ms BIGINT NOT NULL
                )",
            )?;
            let done = db
                .one(
                    "SELECT COALESCE(MAX(version), 0) FROM ringside_migrations",
                    &[],
                )?
                .map(|r| r.i(0))
                .transpose()?
                .unwrap_or(0);
            for (version, sql) in MIGRATIONS.iter().enumerate() {
                let version = version as i64 + 1;
                if version > done {
                    db.batch(sql)?;
                    db.exec(
                        "INSERT INTO ringside_migrations(version, applied_ms) VALUES(?1, ?2)",
                        &[version.into(), now_ms().into()],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// A new connection after the server closed the last one (restart, failover).
    fn ensure_open(&mut self) -> Result<()> {
        if self.broken || self.client.is_closed() {
            let (rt, url) = (&self.rt, &self.url);
            self.client = outside_async(|| connect(rt, url))?;
            self.statements.clear();
            self.broken = false;
        }
        Ok(())
    }

    /// Note an error that ended the session, so the next call reconnects.
    fn seen<T>(&mut self, r: std::result::Result<T, tokio_postgres::Error>) -> Result<T> {
        r.map_err(|e| {
            // Class 08: connection exception; 57P01-57P03: the server is shutting down or
            // ended this session.
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            if e.is_closed() || code.starts_with("08") || code.starts_with("57P0") {
                self.broken = true;
            }
            e.into()
        })
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        self.ensure_open()?;
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let r = self
            .rt
            .block_on(self.client.prepare(&dollar_placeholders(sql)));
        let s = self.seen(r)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// A session that keeps PostgreSQL's notices ("already exists, skipping") to itself; its
/// connection runs on `rt` whenever the store waits on it.
fn connect(
    rt: &tokio::runtime::Runtime,
    url: &str,
) -> std::result::Result<Client, tokio_postgres::Error> {
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.batch_execute("SET client_min_messages TO warning")
            .await?;
        Ok(c)
    })
}

fn params(p: &[V]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Sql for Pg {
    fn exec(&mut self, sql: &str, p: &[V]) -> Result<u64> {
        let st = self.statement(sql)?;
        let r = self.rt.block_on(self.client.execute(&st, &params(p)));
        self.seen(r)
    }

    fn query(&mut self, sql: &str, p: &[V]) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        let r = self.rt.block_on(self.client.query(&st, &params(p)));
        let rows = self.seen(r)?;
        rows.iter().map(row_of).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.ensure_open()?;
        let r = self.rt.block_on(self.client.batch_execute(sql));
        self.seen(r)
    }

    /// Every statement sent before the first answer is read: one round trip for the lot.
    fn query_all(&mut self, stmts: &[(&str, Vec<V>)]) -> Result<Vec<Vec<Row>>> {
        let mut prepared = Vec::with_capacity(stmts.len());
        for (sql, _) in stmts {
            prepared.push(self.statement(sql)?);
        }
        let client = &self.client;
        let all = futures_util::future::try_join_all(
            prepared
                .iter()
                .zip(stmts)
                .map(|(st, (_, p))| async move { client.query(st, &params(p)).await }),
        );
        let r = self.rt.block_on(all);
        let results = self.seen(r)?;
        results
            .iter()
            .map(|rows| rows.iter().map(row_of).collect())
            .collect()
    }
}

fn row_of(r: &tokio_postgres::Row) -> Result<Row> {
    let mut out = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let ty = c.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(V::I)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| V::I(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|v| V::I(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(|v| V::I(v.into()))
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
            r.try_get::<_, Option<String>>(i)?.map(V::T)
        } else {
            return Err(StoreError::Db(format!(
                "column {} has an unexpected type {ty}",
                c.name()
            )));
        };
        out.push(v.unwrap_or(V::Null));
    }
    Ok(Row(out))
}

/// The blocking client runs a runtime of its own, which tokio forbids inside another one's
/// thread: connecting from async start-up code happens on a short-lived plain thread.
fn outside_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join().expect("connect thread"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The schema, one step per release that changed it. Never edit a step once released; add
/// one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE outbox (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    call_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    incoming BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX outbox_by_call ON outbox(call_id, seq);
CREATE TABLE dead_letters (
    seq BIGINT PRIMARY KEY,
    call_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    incoming BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    died_ms BIGINT NOT NULL
);
CREATE TABLE device_quality (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    token TEXT NOT NULL,
    path TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    tenant_id TEXT NOT NULL DEFAULT '',
    app_id TEXT NOT NULL DEFAULT '',
    duration_ms BIGINT,
    kind TEXT NOT NULL DEFAULT 'response',
    parent_id TEXT,
    participant_id TEXT
);
CREATE INDEX recordings_by_call ON recordings(call_id);
CREATE TABLE transcripts (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    meeting_id TEXT,
    tenant_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    ended_ms BIGINT
);
CREATE INDEX transcripts_by_call ON transcripts(call_id);
CREATE INDEX transcripts_by_meeting ON transcripts(meeting_id);
CREATE TABLE transcript_lines (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    transcript_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    speaker TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    text TEXT NOT NULL,
    gap BIGINT NOT NULL
);
CREATE INDEX transcript_lines_in_order ON transcript_lines(transcript_id, start_ms);
"#,
    r#"
ALTER TABLE objects ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX objects_by_owner ON objects(owner);
ALTER TABLE outbox ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_by_owner ON outbox(owner, seq);
CREATE TABLE ringside_nodes (
    id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    state TEXT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    taken_by TEXT,
    http TEXT NOT NULL DEFAULT ''
);
"#,
    r#"
CREATE TABLE ringside_keys (
    id BIGINT PRIMARY KEY,
    json TEXT NOT NULL,
    version BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE sip_bindings (
    user_name TEXT NOT NULL,
    uri TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (user_name, uri)
);
"#,
];
