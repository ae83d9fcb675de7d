//! The node runtime: one ringside process's moving parts around the engine.
//!
//! * [`boot`] — starting a node (restore from the store, media, SIP, tasks);
//! * [`driver`] — the thread that owns the engine and the store (group commit);
//! * [`notifier`] — delivering notifications, in order per call, at least once;
//! * [`fetch`] and [`prompts`] — downloading and caching prompts;
//! * [`endpoints`] — the legs' far ends: simulated users, SIP, other apps;
//! * [`journal`] — recent calls and deliveries, and the console's live feed;
//! * [`outbound`] — where outbound requests may go;
//! * [`node`] — what all of them share; [`inputs`] — the messages between them.

pub mod boot;
pub mod clock;
pub mod cluster;
pub mod driver;
pub mod endpoints;
pub mod fetch;
pub mod inputs;
pub mod journal;
pub mod metrics;
pub mod node;
pub mod notifier;
pub mod outbound;
pub mod prompts;
pub mod registry;
pub mod speech;
pub mod stats;
pub mod streams;
pub mod tabs;
pub mod tls;

pub use boot::{Boot, start};
pub use clock::now_ms;
pub use inputs::{ApiResult, Control, Msg, NewLeg};
pub use node::Node;
