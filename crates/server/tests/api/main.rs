//! Black-box HTTP scenarios against a real ringside (sockets, SQLite, webhooks).

mod calls;
mod common;
mod media;
mod meetings;
