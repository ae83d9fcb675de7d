//! A cluster's nodes in PostgreSQL: each node holds a lease it renews; a node whose lease has
//! run out is taken over by one survivor, which becomes the owner of its objects and its
//! undelivered notifications in one transaction (docs/cluster.md).

use crate::sql::{Result, StoreError};
use crate::store::{Backend, OutboxRow, Store};
use engine::ObjKind;
use serde_json::Value;

/// PostgreSQL's clock in milliseconds: leases are judged by one clock, not by each node's.
pub const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// What a survivor took over from a node that stopped.
#[derive(Debug, Default)]
pub struct Adopted {
    pub objects: Vec<(ObjKind, Value)>,
    pub outbox: Vec<OutboxRow>,
}

impl Store {
    fn cluster_backend(&self) -> Result<()> {
        match self.backend() {
            Backend::Postgres => Ok(()),
            Backend::Sqlite => Err(StoreError::Db(
                "a cluster needs the PostgreSQL store ([store] url = \"postgres://…\")".into(),
            )),
        }
    }

    /// Join (or rejoin) the cluster as this store's owner with a lease of `lease_ms`; the
    /// new epoch. A node that restarts before its lease ran out keeps its calls; one whose
    /// calls were taken over finds none left.
    pub fn register_node(&mut self, lease_ms: i64, http: &str) -> Result<i64> {
        self.cluster_backend()?;
        let owner = self.owner().to_string();
        let row = self.db.one(
            &format!(
                "INSERT INTO ringside_nodes(id, epoch, state, lease_until_ms, started_ms, http)
                 VALUES(?1, 1, 'up', {NOW_MS} + ?2, {NOW_MS}, ?3)
                 ON CONFLICT(id) DO UPDATE SET epoch = ringside_nodes.epoch + 1, state = 'up',
                     lease_until_ms = excluded.lease_until_ms, started_ms = excluded.started_ms,
                     taken_by = NULL, http = excluded.http
                 RETURNING epoch"
            ),
            &[owner.into(), lease_ms.into(), http.into()],
        )?;
        row.ok_or_else(|| StoreError::Db("registering the node returned nothing".into()))?
            .i(0)
    }

    /// Take over `node` if its lease has run out and no one else has: its objects and its
    /// undelivered notifications become this store's owner's, all in one transaction. None
    /// when the node is alive, gone already, or unknown.
    pub fn adopt(&mut self, node: &str) -> Result<Option<Adopted>> {
        self.cluster_backend()?;
        let me = self.owner().to_string();
        if node == me {
            return Ok(None);
        }
        self.db.transaction(|db| {
            let Some(row) = db.one(
                &format!(
                    "SELECT state, CASE WHEN lease_until_ms < {NOW_MS} THEN 1 ELSE 0 END
                     FROM ringside_nodes WHERE id = ?1 FOR UPDATE"
                ),
                &[node.into()],
            )?
            else {
                return Ok(None);
            };
            if row.s(0)? == "gone" || row.i(1)? == 0 {
                return Ok(None);
            }
            db.exec(
                "UPDATE ringside_nodes SET state = 'gone', taken_by = ?2 WHERE id = ?1",
                &[node.into(), (&me).into()],
            )?;
            let objects = crate::store::objects_of(db.query(
                "SELECT kind, id, json FROM objects WHERE owner = ?1 ORDER BY kind, id",
                &[node.into()],
            )?)?;
            db.exec(
                "UPDATE objects SET owner = ?2 WHERE owner = ?1",
                &[node.into(), (&me).into()],
            )?;
            let outbox = db
                .query(
                    &format!(
                        "SELECT {} FROM outbox WHERE owner = ?1 ORDER BY seq",
                        crate::store::OUTBOX_FIELDS
                    ),
                    &[node.into()],
                )?
                .iter()
                .map(crate::store::outbox_row)
                .collect::<Result<Vec<_>>>()?;
            db.exec(
                "UPDATE outbox SET owner = ?2 WHERE owner = ?1",
                &[node.into(), (&me).into()],
            )?;
            Ok(Some(Adopted { objects, outbox }))
        })
    }
}
