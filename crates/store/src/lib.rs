//! Durable state: engine objects and the notification outbox, written in one transaction
//! per batch so nothing acknowledged is lost. Two backends speak the same statements: SQLite
//! in WAL mode, embedded (a process crash keeps every committed transaction), and PostgreSQL
//! for nodes that share their state.

mod lite;
mod nodes;
mod pg;
mod records;
mod sql;
mod store;
pub mod testing;

pub use nodes::{Adopted, NOW_MS};
pub use records::{Recording, StoredLine, StoredTranscript};
pub use sql::{Result, StoreError};
pub use store::{Backend, DeadLetter, OutboxChange, OutboxRow, Store};
