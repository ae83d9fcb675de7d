//! This node among others (docs/cluster.md): the lease it renews in PostgreSQL, the watch for
//! nodes whose lease ran out (their calls are adopted through the driver), where a call or
//! meeting lives, and the NATS link requests for another node's calls travel over.

use crate::inputs::Msg;
use base64::Engine as _;
use directory::ClusterConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The calls and meetings this node's engine holds, kept by the driver after every commit
/// (before any reply goes out), so a request for one of them never leaves the node.
#[derive(Default)]
pub struct Owned(RwLock<HashSet<String>>);

impl Owned {
    fn key(kind: engine::ObjKind, id: &str) -> String {
        format!("{}:{id}", kind.as_str())
    }
    pub fn contains(&self, kind: engine::ObjKind, id: &str) -> bool {
        self.0.read().expect("owned").contains(&Self::key(kind, id))
    }
    /// Take note of objects written (`Some`) or removed (`None`); other kinds are ignored.
    pub fn update<'a, V: 'a>(
        &self,
        changes: impl IntoIterator<Item = (engine::ObjKind, &'a str, Option<&'a V>)>,
    ) {
        let mut set = self.0.write().expect("owned");
        for (kind, id, v) in changes {
            if !matches!(kind, engine::ObjKind::Call | engine::ObjKind::Meeting) {
                continue;
            }
            match v {
                Some(_) => set.insert(Self::key(kind, id)),
                None => set.remove(&Self::key(kind, id)),
            };
        }
    }
    pub fn len(&self) -> usize {
        self.0.read().expect("owned").len()
    }
    /// How many of them are calls.
    pub fn calls(&self) -> usize {
        let prefix = format!("{}:", engine::ObjKind::Call.as_str());
        self.0
            .read()
            .expect("owned")
            .iter()
            .filter(|k| k.starts_with(&prefix))
            .count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request carried to the node that owns its call.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forwarded {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub tls: bool,
    pub peer: String,
}

/// The owner's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("not base64: {e}"))
}

/// The header a forwarded request carries, so it is never forwarded again.
pub const FORWARDED_HEADER: &str = "x-ringside-forwarded-by";

pub struct Cluster {
    pub node_id: String,
    pub lease_ms: u64,
    /// How old the shared signing key may get before a node rotates it.
    pub key_rotation_ms: u64,
    pub nats: async_nats::Client,
    pg: tokio_postgres::Client,
    pub owned: std::sync::Arc<Owned>,
    /// Every node's registered SIP contacts (user → (contact, expires at ms)), mirrored from
    /// PostgreSQL: a bot's call to a user rings phones that registered through any node.
    bindings: RwLock<std::collections::HashMap<String, Vec<(String, u64)>>>,
}

/// Where a node says "this user's contacts changed" (the payload is the user name).
const BINDINGS_SUBJECT: &str = "ringside.sip.bindings";

/// The NATS subject a node takes requests on.
pub fn subject(node: &str) -> String {
    format!("ringside.node.{node}.http")
}

impl Cluster {
    /// Connect to NATS and open a PostgreSQL connection of the cluster's own (leases,
    /// lookups); the driver keeps its store connection for batches.
    pub async fn connect(
        cfg: &ClusterConfig,
        store_url: &str,
        owned: std::sync::Arc<Owned>,
        key_rotation_ms: u64,
    ) -> Result<Cluster, String> {
        let nats = async_nats::ConnectOptions::new()
            .name(format!("ringside {}", cfg.node_id))
            .request_timeout(Some(Duration::from_secs(30)))
            .connect(cfg.nats.as_str())
            .await
            .map_err(|e| format!("[cluster] nats {}: {e}", cfg.nats))?;
        let (pg, conn) = tokio_postgres::connect(store_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("[store] url: {}", pg_error(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::error!(error = %e, "the cluster's PostgreSQL connection ended");
            }
        });
        Ok(Cluster {
            node_id: cfg.node_id.clone(),
            lease_ms: cfg.lease_ms,
            key_rotation_ms,
            nats,
            pg,
            owned,
            bindings: Default::default(),
        })
    }

    /// This node's contacts for `user` (from its registrar) become the cluster's: written to
    /// PostgreSQL, then announced so the others read them.
    pub async fn share_bindings(&self, user: &str, held: &[(String, u64)]) {
        let write = async {
            self.pg
                .execute(
                    "DELETE FROM sip_bindings WHERE user_name = $1 AND node = $2",
                    &[&user, &self.node_id],
                )
                .await?;
            for (uri, expires) in held {
                self.pg
                    .execute(
                        "INSERT INTO sip_bindings(user_name, uri, expires_at_ms, node) VALUES($1, $2, $3, $4)
                         ON CONFLICT(user_name, uri) DO UPDATE SET expires_at_ms = excluded.expires_at_ms, node = excluded.node",
                        &[&user, uri, &(*expires as i64), &self.node_id],
                    )
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        if let Err(e) = write.await {
            tracing::warn!(user, error = %pg_error(e), "cannot share SIP contacts");
            return;
        }
        self.reload_bindings(Some(user)).await;
        let _ = self
            .nats
            .publish(BINDINGS_SUBJECT, user.to_string().into())
            .await;
    }

    /// Read one user's contacts (or everyone's) from PostgreSQL into the mirror.
    async fn reload_bindings(&self, user: Option<&str>) {
        let now = crate::clock::now_ms() as i64;
        let rows = match user {
            Some(u) => {
                self.pg
                    .query(
                        "SELECT user_name, uri, expires_at_ms FROM sip_bindings WHERE user_name = $1 AND expires_at_ms > $2",
                        &[&u, &now],
                    )
                    .await
            }
            None => {
                self.pg
                    .query(
                        "SELECT user_name, uri, expires_at_ms FROM sip_bindings WHERE expires_at_ms > $1",
                        &[&now],
                    )
                    .await
            }
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %pg_error(e), "cannot read shared SIP contacts");
                return;
            }
        };
        let mut fresh: std::collections::HashMap<String, Vec<(String, u64)>> = Default::default();
        for r in rows {
            let (u, uri, exp): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            fresh.entry(u).or_default().push((uri, exp as u64));
        }
        let mut m = self.bindings.write().expect("bindings");
        match user {
            Some(u) => {
                m.remove(u);
                m.extend(fresh);
            }
            None => *m = fresh,
        }
    }

    /// The live contacts of `user` registered through any node.
    pub fn contacts(&self, user: &str) -> Vec<String> {
        let now = crate::clock::now_ms();
        self.bindings
            .read()
            .expect("bindings")
            .get(user)
            .map(|l| {
                l.iter()
                    .filter(|(_, exp)| *exp > now)
                    .map(|(uri, _)| uri.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keep the mirror current: everything now, then each user another node announces.
    pub async fn follow_bindings(self: std::sync::Arc<Self>) {
        self.reload_bindings(None).await;
        let mut sub = match self.nats.subscribe(BINDINGS_SUBJECT).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow shared SIP contacts");
                return;
            }
        };
        use futures_util::StreamExt;
        while let Some(msg) = sub.next().await {
            if let Ok(user) = std::str::from_utf8(&msg.payload) {
                self.reload_bindings(Some(user)).await;
            }
        }
    }

    /// The node that owns a call or meeting, if any node does.
    pub async fn owner_of(
        &self,
        kind: engine::ObjKind,
        id: &str,
    ) -> Result<Option<String>, String> {
        let row = self
            .pg
            .query_opt(
                "SELECT owner FROM objects WHERE kind = $1 AND id = $2",
                &[&kind.as_str(), &id],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get::<_, String>(0)))
    }

    /// The node that owns the meeting a new call's body asks to join (by its chat thread,
    /// its join meeting id, or its token / join URL), if another node holds it.
    pub async fn meeting_owner(&self, body: &serde_json::Value) -> Result<Option<String>, String> {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let mi = &body["meetingInfo"];
        let (thread, join_id, token) = (
            text(&body["chatInfo"]["threadId"]),
            text(&mi["joinMeetingId"]),
            text(&mi["token"]),
        );
        if thread.is_empty() && join_id.is_empty() && token.is_empty() {
            return Ok(None);
        }
        let row = self
            .pg
            .query_opt(
                "SELECT owner FROM objects WHERE kind = 'meeting' AND (
                    ($1 <> '' AND json::jsonb ->> 'thread_id' = $1)
                    OR ($2 <> '' AND json::jsonb ->> 'join_meeting_id' = $2)
                    OR ($3 <> '' AND (id = $3 OR json::jsonb ->> 'join_web_url' = $3)))
                 LIMIT 1",
                &[&thread, &join_id, &token],
            )
            .await
            .map_err(pg_error)?;
        Ok(row
            .map(|r| r.get::<_, String>(0))
            .filter(|o| *o != self.node_id && !o.is_empty()))
    }

    /// Carry a request to `owner` and bring back its answer.
    pub async fn forward(&self, owner: &str, req: &Forwarded) -> Result<ForwardedReply, String> {
        let payload = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        let msg = self
            .nats
            .request(subject(owner), payload.into())
            .await
            .map_err(|e| format!("node {owner} did not answer over NATS: {e}"))?;
        serde_json::from_slice(&msg.payload).map_err(|e| format!("node {owner} answered: {e}"))
    }

    /// The cluster's signing keys: this node's become everyone's if none are shared yet;
    /// otherwise it takes the shared ones, so a token from any node is good on every node.
    pub async fn share_keys(&self, keys: &identity::KeyRing) -> Result<(), String> {
        let pg = |e| format!("shared signing keys: {}", pg_error(e));
        self.pg
            .execute(
                "INSERT INTO ringside_keys(id, json, version) VALUES(1, $1, 1) ON CONFLICT(id) DO NOTHING",
                &[&keys.to_json()],
            )
            .await
            .map_err(pg)?;
        self.refresh_keys(keys).await.map(|_| ())
    }

    /// Take the shared keys if another node changed them; their version.
    async fn refresh_keys(&self, keys: &identity::KeyRing) -> Result<i64, String> {
        let row = self
            .pg
            .query_one("SELECT json, version FROM ringside_keys WHERE id = 1", &[])
            .await
            .map_err(|e| format!("shared signing keys: {}", pg_error(e)))?;
        if keys.replace_from_json(row.get(0))? {
            tracing::info!("took the cluster's signing keys");
        }
        Ok(row.get(1))
    }

    /// Keep the shared keys current, rotating them when due: one node's rotation wins (the
    /// version must not have moved), the others take it.
    async fn keep_keys(&self, keys: &identity::KeyRing) -> Result<(), String> {
        let version = self.refresh_keys(keys).await?;
        if keys.rotate_if_older(crate::clock::now_ms(), self.key_rotation_ms)? {
            let won = self
                .pg
                .execute(
                    "UPDATE ringside_keys SET json = $1, version = version + 1 WHERE id = 1 AND version = $2",
                    &[&keys.to_json(), &version],
                )
                .await
                .map_err(|e| format!("shared signing keys: {}", pg_error(e)))?;
            if won == 0 {
                self.refresh_keys(keys).await?;
            }
        }
        Ok(())
    }

    /// Give up the lease at once (a drained node leaving): a survivor adopts what is left
    /// within a third of a lease instead of a whole one.
    pub async fn release(&self) -> Result<(), String> {
        self.pg
            .execute(
                "UPDATE ringside_nodes SET lease_until_ms = 0 WHERE id = $1",
                &[&self.node_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// NATS and the cluster's PostgreSQL connection are up.
    pub fn connected(&self) -> bool {
        self.nats.connection_state() == async_nats::connection::State::Connected
            && !self.pg.is_closed()
    }

    /// Renew the lease every third of it, and look for nodes whose lease ran out (the driver
    /// adopts them). A node that cannot renew for a whole lease, or finds it was taken over,
    /// stops: its calls are someone else's now.
    pub async fn watch(
        self: std::sync::Arc<Self>,
        epoch: i64,
        driver: mpsc::Sender<Msg>,
        keys: std::sync::Arc<identity::KeyRing>,
    ) {
        let every = Duration::from_millis(self.lease_ms / 3);
        let mut renewed = Instant::now();
        let renew = format!(
            "UPDATE ringside_nodes SET lease_until_ms = {} + $3 WHERE id = $1 AND epoch = $2 AND state <> 'gone'",
            store::NOW_MS
        );
        let expired = format!(
            "SELECT id FROM ringside_nodes WHERE state <> 'gone' AND id <> $1 AND lease_until_ms < {}",
            store::NOW_MS
        );
        let mut keys_checked = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            if keys_checked.elapsed() >= KEYS_EVERY {
                keys_checked = Instant::now();
                if let Err(e) = self.keep_keys(&keys).await {
                    tracing::warn!(error = %e, "cannot keep the signing keys in step");
                }
                // A safety net under the announcements: a missed one is caught up here.
                self.reload_bindings(None).await;
            }
            let lease = self.lease_ms as i64;
            match self
                .pg
                .execute(&renew, &[&self.node_id, &epoch, &lease])
                .await
            {
                Ok(1) => renewed = Instant::now(),
                Ok(_) => fenced(&self.node_id, "another node took over its calls"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the node's lease");
                    if renewed.elapsed() > Duration::from_millis(self.lease_ms) {
                        fenced(&self.node_id, "its lease ran out without being renewed");
                    }
                    continue;
                }
            }
            match self.pg.query(&expired, &[&self.node_id]).await {
                Ok(rows) => {
                    for r in rows {
                        let node: String = r.get(0);
                        tracing::warn!(node = %node, "a node's lease ran out; taking over its calls");
                        let _ = driver.send(Msg::Adopt { node });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for stopped nodes"),
            }
        }
    }
}

/// How often a node looks for signing keys another node published (well inside the time a
/// new key is published before it signs: `signing_key_activation_seconds`, 300 by default).
const KEYS_EVERY: Duration = Duration::from_secs(30);

/// What PostgreSQL said, in its words (tokio-postgres' own text is only "db error").
fn pg_error(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => format!("PostgreSQL: {e}"),
    }
}

/// This node may no longer act for its calls: say why and stop at once.
fn fenced(node: &str, why: &str) -> ! {
    tracing::error!(node = %node, "stopping: {why}");
    eprintln!("ringside node {node} stops: {why}");
    std::process::exit(75)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::ObjKind;
    use serde_json::Value;

    #[test]
    fn the_owned_set_follows_calls_and_meetings_written_and_removed() {
        let o = Owned::default();
        let v = Value::Null;
        o.update([
            (ObjKind::Call, "c1", Some(&v)),
            (ObjKind::Meeting, "m1", Some(&v)),
            (ObjKind::Leg, "l1", Some(&v)),
        ]);
        assert!(o.contains(ObjKind::Call, "c1"));
        assert!(o.contains(ObjKind::Meeting, "m1"));
        assert!(!o.contains(ObjKind::Meeting, "c1"));
        assert_eq!(o.len(), 2, "legs are not routed to");
        o.update([(ObjKind::Call, "c1", None::<&Value>)]);
        assert!(!o.contains(ObjKind::Call, "c1"));
    }
}
