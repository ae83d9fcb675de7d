//! Configuration and directory: the server settings and the tenants, applications, users,
//! resource accounts, SIP settings and trunks of one TOML file, and the [`Directory`] service
//! through which they are read and changed. Knows nothing of HTTP: the admin API calls it.

pub mod behaviour;
pub mod config;
pub mod directory;
pub mod entries;
pub mod settings;
pub mod telephony;

pub use behaviour::{Behaviour, DtmfPress, Speech};
pub use config::Config;
pub use directory::{Directory, Error};
pub use entries::{App, ApplicationInstance, SipHa1, Tenant, User, default_permissions};
pub use settings::{AdminConfig, ClusterConfig, ServerConfig, StoreConfig, TranscriptionConfig};
pub use telephony::{DEFAULT_SIP_LISTEN, SipConfig, Trunk, WebRtcConfig, normalize_number};
