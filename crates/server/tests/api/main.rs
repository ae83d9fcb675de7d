//! Black-box HTTP scenarios against a real ringside (sockets, SQLite, webhooks).

mod bad_input;
mod calls;
mod common;
mod delivery;
mod media;
mod meetings;
mod sip;
mod stock_clients;
mod trust;
mod webphone;
