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
    pub nats: async_nats::Client,
    pg: tokio_postgres::Client,
    pub owned: std::sync::Arc<Owned>,
}

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
    ) -> Result<Cluster, String> {
        let nats = async_nats::ConnectOptions::new()
            .name(format!("ringside {}", cfg.node_id))
            .request_timeout(Some(Duration::from_secs(30)))
            .connect(cfg.nats.as_str())
            .await
            .map_err(|e| format!("[cluster] nats {}: {e}", cfg.nats))?;
        let (pg, conn) = tokio_postgres::connect(store_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("[store] url: PostgreSQL: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::error!(error = %e, "the cluster's PostgreSQL connection ended");
            }
        });
        Ok(Cluster {
            node_id: cfg.node_id.clone(),
            lease_ms: cfg.lease_ms,
            nats,
            pg,
            owned,
        })
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
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        Ok(row.map(|r| r.get::<_, String>(0)))
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

    /// Renew the lease every third of it, and look for nodes whose lease ran out (the driver
    /// adopts them). A node that cannot renew for a whole lease, or finds it was taken over,
    /// stops: its calls are someone else's now.
    pub async fn watch(self: std::sync::Arc<Self>, epoch: i64, driver: mpsc::Sender<Msg>) {
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
        loop {
            tokio::time::sleep(every).await;
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
