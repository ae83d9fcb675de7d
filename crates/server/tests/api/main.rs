//! Black-box HTTP scenarios against a real ringside (sockets, SQLite, webhooks).

mod bad_input;
mod calls;
mod cluster;
mod common;
mod console;
mod delivery;
mod media;
mod meetings;
mod operator;
mod process;
mod sip;
mod stock_clients;
mod streams;
mod transcripts;
mod trust;
mod webphone;
