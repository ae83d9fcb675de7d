//! Test harness: a real ringside (in-process, real sockets, real SQLite file) with a known
//! directory, and a real webhook receiver that records every notification in arrival order.
#![allow(dead_code)]

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const TENANT: &str = "11111111-1111-1111-1111-111111111111";
pub const TENANT2: &str = "22222222-2222-2222-2222-222222222222";
pub const APP: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const APP2: &str = "aaaaaaaa-0000-0000-0000-000000000002";
pub const APP3: &str = "aaaaaaaa-0000-0000-0000-000000000003";
pub const SECRET: &str = "secret-one";
pub const ADMIN: &str = "admin-token";

pub const ALICE: &str = "a11ce000-0000-0000-0000-000000000001";
pub const BOB_BUSY: &str = "b0b00000-0000-0000-0000-000000000002";
pub const CAROL_NO_ANSWER: &str = "ca401000-0000-0000-0000-000000000003";
pub const DAVE_DECLINE: &str = "da5e0000-0000-0000-0000-000000000004";
pub const ERIN_DTMF: &str = "e4140000-0000-0000-0000-000000000005";
pub const FRANK_HANGS_UP: &str = "f4a40000-0000-0000-0000-000000000006";
pub const GINA: &str = "91a40000-0000-0000-0000-000000000007";
/// A SIP user: calls to Hank ring the phones registered as `hank`.
pub const HANK_SIP: &str = "4a4c0000-0000-0000-0000-000000000008";
pub const HANK_PASSWORD: &str = "hank-sip-secret";

/// One commsNotification item as the bot received it.
#[derive(Debug, Clone)]
pub struct Note {
    pub path: String,
    pub change: String,
    pub resource: String,
    pub data: Value,
    /// The Authorization header the notification came with.
    pub auth: Option<String>,
}

impl Note {
    pub fn state(&self) -> Option<&str> {
        self.data.get("state").and_then(Value::as_str)
    }
    pub fn is_call(&self) -> bool {
        !self.resource.contains("/participants") && !self.resource.contains("/operations")
    }
}

#[derive(Clone)]
pub struct Hooks {
    pub url: String,
    pub notes: Arc<Mutex<VecDeque<Note>>>,
    /// Status the webhook answers with; 0 = 202.
    pub status: Arc<AtomicU16>,
    /// Answer this many requests with 500 before accepting.
    pub fail_next: Arc<AtomicUsize>,
    pub received: Arc<AtomicUsize>,
}

pub struct Harness {
    pub base: String,
    pub hooks: Hooks,
    pub client: reqwest::Client,
    pub dir: PathBuf,
    pub running: server::Running,
    token: std::sync::Mutex<Option<String>>,
}

pub fn wav_bytes(ms: u64) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
    for i in 0..(ms * 16) {
        w.write_sample(((i as f32 * 0.05).sin() * 8000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    buf.into_inner()
}

async fn start_hooks() -> Hooks {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hooks = Hooks {
        url: format!("http://{addr}"),
        notes: Default::default(),
        status: Arc::new(AtomicU16::new(0)),
        fail_next: Arc::new(AtomicUsize::new(0)),
        received: Arc::new(AtomicUsize::new(0)),
    };
    let h = hooks.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let h = h.clone();
            async move {
                let path = uri.path().to_string();
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if method == axum::http::Method::GET {
                    // Prompts: /prompt/<ms>.wav serves a WAV of that length; /notwav serves text.
                    if let Some(ms) = path
                        .strip_prefix("/prompt/")
                        .and_then(|p| p.strip_suffix(".wav"))
                        .and_then(|p| p.parse::<u64>().ok())
                    {
                        return (StatusCode::OK, wav_bytes(ms)).into_response_parts();
                    }
                    // Speech: /say/<text>.wav is <text> spoken by espeak-ng (16 kHz mono).
                    if let Some(text) = path
                        .strip_prefix("/say/")
                        .and_then(|p| p.strip_suffix(".wav"))
                    {
                        let text = percent_encoding::percent_decode_str(text)
                            .decode_utf8_lossy()
                            .into_owned();
                        let wav = tokio::task::spawn_blocking(move || say(&text))
                            .await
                            .expect("espeak-ng ran");
                        return (StatusCode::OK, wav).into_response_parts();
                    }
                    if path == "/redirect-to-metadata" {
                        use axum::response::IntoResponse;
                        return (
                            StatusCode::FOUND,
                            [("location", "http://169.254.169.254/latest/meta-data")],
                        )
                            .into_response();
                    }
                    if path == "/notwav" {
                        return (StatusCode::OK, b"hello".to_vec()).into_response_parts();
                    }
                    // A prompt server that never finishes answering.
                    if path == "/slow.wav" {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        return (StatusCode::OK, wav_bytes(100)).into_response_parts();
                    }
                    // Ten seconds of audio: larger than a small prompt_max_bytes.
                    if path == "/big.wav" {
                        return (StatusCode::OK, wav_bytes(10_000)).into_response_parts();
                    }
                    // A WAV in an encoding ringside does not play (G.711 mu-law, tag 7).
                    if path == "/mulaw.wav" {
                        let mut w = wav_bytes(500);
                        w[20] = 7;
                        return (StatusCode::OK, w).into_response_parts();
                    }
                    return (StatusCode::NOT_FOUND, vec![]).into_response_parts();
                }
                h.received.fetch_add(1, Ordering::SeqCst);
                if h.fail_next.load(Ordering::SeqCst) > 0 {
                    h.fail_next.fetch_sub(1, Ordering::SeqCst);
                    return (StatusCode::INTERNAL_SERVER_ERROR, vec![]).into_response_parts();
                }
                let st = h.status.load(Ordering::SeqCst);
                if st != 0 && st != 202 {
                    return (StatusCode::from_u16(st).unwrap(), vec![]).into_response_parts();
                }
                let v: Value = serde_json::from_slice(&body).expect("notification is JSON");
                assert_eq!(v["@odata.type"], "#microsoft.graph.commsNotifications");
                let mut q = h.notes.lock().await;
                for item in v["value"].as_array().expect("value array") {
                    q.push_back(Note {
                        path: path.clone(),
                        change: item["changeType"].as_str().unwrap().to_string(),
                        resource: item["resourceUrl"].as_str().unwrap().to_string(),
                        data: item["resourceData"].clone(),
                        auth: auth.clone(),
                    });
                }
                (StatusCode::ACCEPTED, vec![]).into_response_parts()
            }
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    hooks
}

trait Parts {
    fn into_response_parts(self) -> axum::response::Response;
}
impl Parts for (StatusCode, Vec<u8>) {
    fn into_response_parts(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        self.into_response()
    }
}

/// `text` spoken by espeak-ng, as a 16 kHz mono WAV.
pub fn say(text: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("ringside-say-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let (raw, out) = (dir.join("raw.wav"), dir.join("16k.wav"));
    let ok = std::process::Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .expect("espeak-ng runs")
        .success()
        && std::process::Command::new("sox")
            .arg(&raw)
            .args(["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(&out)
            .args(["norm", "-3"])
            .status()
            .expect("sox runs")
            .success();
    assert!(ok, "espeak-ng and sox make speech");
    let wav = std::fs::read(&out).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    wav
}

pub fn config_text(hook: &str, extra_server: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
notification_backoff_ms = 50
notification_max_attempts = 4
signing_key_activation_seconds = 0
{extra_server}

[admin]
token = "{ADMIN}"

[webrtc]
udp = "127.0.0.1:0"

[[tenants]]
id = "{TENANT}"
name = "Contoso"

[[tenants]]
id = "{TENANT2}"
name = "Fabrikam"

[[apps]]
id = "{APP}"
tenant = "{TENANT}"
name = "Test bot"
secret = "{SECRET}"
webhook = "{hook}/incoming"
addresses = ["sip:bot@contoso.example", "+15550100"]

[[apps]]
id = "{APP2}"
tenant = "{TENANT}"
name = "Second bot"
secret = "secret-two"
webhook = "{hook}/incoming2"

[[apps]]
id = "{APP3}"
tenant = "{TENANT2}"
name = "Other tenant bot"
secret = "secret-three"
webhook = "{hook}/incoming3"

[[users]]
id = "{ALICE}"
tenant = "{TENANT}"
display_name = "Alice"
behaviour = {{ action = "answer", answerAfterMs = 50 }}

[[users]]
id = "{BOB_BUSY}"
tenant = "{TENANT}"
display_name = "Bob"
behaviour = {{ action = "busy", answerAfterMs = 50 }}

[[users]]
id = "{CAROL_NO_ANSWER}"
tenant = "{TENANT}"
display_name = "Carol"
behaviour = {{ action = "noAnswer" }}

[[users]]
id = "{DAVE_DECLINE}"
tenant = "{TENANT}"
display_name = "Dave"
behaviour = {{ action = "decline", answerAfterMs = 50 }}

[[users]]
id = "{ERIN_DTMF}"
tenant = "{TENANT}"
display_name = "Erin"
behaviour = {{ action = "answer", answerAfterMs = 50, dtmf = [{{ atMs = 600, digits = "12#", gapMs = 100 }}] }}

[[users]]
id = "{FRANK_HANGS_UP}"
tenant = "{TENANT}"
display_name = "Frank"
behaviour = {{ action = "answer", answerAfterMs = 50, hangupAfterMs = 300 }}

[[users]]
id = "{GINA}"
tenant = "{TENANT}"
display_name = "Gina"
behaviour = {{ action = "answer", answerAfterMs = 50 }}

[[users]]
id = "{HANK_SIP}"
tenant = "{TENANT}"
display_name = "Hank"
endpoint = "sip"
sip_user = "hank"
sip_password = "{HANK_PASSWORD}"

[[application_instances]]
id = "ri-1"
app = "{APP}"
display_name = "Main line"
phone = "+15550199"

[[application_instances]]
id = "instance-2"
app = "{APP}"
display_name = "Second seat"
phone = "+15550198"

[[application_instances]]
id = "ri-other-app"
app = "{APP2}"
display_name = "Second bot's line"
phone = "+15550197"
"#
    )
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with("").await
    }

    pub async fn start_with(extra_server: &str) -> Harness {
        let hooks = start_hooks().await;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "ringside-test-{}-{n}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ringside.toml"),
            config_text(&hooks.url, extra_server),
        )
        .unwrap();
        let running = server::start(server::Options {
            data_dir: dir.clone(),
            config: None,
            listen: None,
        })
        .await
        .expect("ringside starts");
        let base = format!("http://{}", running.addr);
        Harness {
            base,
            hooks,
            client: reqwest::Client::new(),
            dir,
            running,
            token: Default::default(),
        }
    }

    pub async fn token_for(&self, tenant: &str, app: &str, secret: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", app),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self) -> String {
        if let Some(t) = self.token.lock().unwrap().clone() {
            return t;
        }
        let v: Value = self
            .token_for(TENANT, APP, SECRET)
            .await
            .json()
            .await
            .unwrap();
        let t = v["access_token"].as_str().unwrap().to_string();
        *self.token.lock().unwrap() = Some(t.clone());
        t
    }

    pub async fn app_token(&self, tenant: &str, app: &str, secret: &str) -> String {
        let v: Value = self
            .token_for(tenant, app, secret)
            .await
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let t = self.token().await;
        self.req_as(&t, method, path, body).await
    }

    pub async fn req_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut r = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v, headers)
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, v, _) = self
            .req_as(ADMIN, method, &format!("/admin{path}"), body)
            .await;
        (s, v)
    }

    pub fn callback(&self) -> String {
        format!("{}/callback", self.hooks.url)
    }

    /// Create a P2P call from the bot to a user; returns the call id.
    pub async fn call_user(&self, user: &str) -> String {
        let (s, v, _) = self
            .req(
                "POST",
                "/v1.0/communications/calls",
                Some(p2p_body(&self.callback(), user)),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Wait until a notification for `call` matches; return every notification for that call
    /// received so far (in order), consuming them.
    pub async fn until(&self, call: &str, what: &str, pred: impl Fn(&Note) -> bool) -> Vec<Note> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut q = self.hooks.notes.lock().await;
                let mine: Vec<usize> = q
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.resource.contains(call))
                    .map(|(i, _)| i)
                    .collect();
                if let Some(pos) = mine.iter().position(|&i| pred(&q[i])) {
                    let take: Vec<usize> = mine[..=pos].to_vec();
                    let mut out = vec![];
                    for (k, i) in take.iter().enumerate() {
                        out.push(q.remove(*i - k).unwrap());
                    }
                    return out;
                }
            }
            if Instant::now() > deadline {
                let q = self.hooks.notes.lock().await;
                let mine: Vec<String> = q
                    .iter()
                    .filter(|n| n.resource.contains(call))
                    .map(|n| format!("{} {} {}", n.change, n.resource, n.data))
                    .collect();
                panic!(
                    "timed out waiting for {what} on call {call}; got:\n{}",
                    mine.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn until_state(&self, call: &str, state: &str) -> Vec<Note> {
        self.until(call, state, |n| n.is_call() && n.state() == Some(state))
            .await
    }

    /// The next incoming-call notification (created) at the app webhook.
    pub async fn next_incoming(&self) -> Note {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut q = self.hooks.notes.lock().await;
                if let Some(i) = q.iter().position(|n| n.change == "created") {
                    return q.remove(i).unwrap();
                }
            }
            assert!(Instant::now() < deadline, "no incoming call notification");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn leg_log(&self, leg: &str) -> Value {
        self.admin("GET", &format!("/legs/{leg}"), None).await.1
    }
}

pub fn p2p_body(callback: &str, user: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": callback,
        "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": user, "displayName": "Target"}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    })
}

pub fn states(notes: &[Note]) -> Vec<String> {
    notes
        .iter()
        .filter(|n| n.is_call())
        .filter_map(|n| n.state().map(str::to_string))
        .collect()
}

pub fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server-sent event stream, read as a browser would (keep-alive comments skipped).
pub struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

impl EventStream {
    /// Open `url` (with `bearer` as the Authorization, if given); it must be an event stream.
    pub async fn open(h: &Harness, url: &str, bearer: Option<&str>) -> EventStream {
        let mut req = h.client.get(url);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        EventStream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event's data, as JSON.
    pub async fn next(&mut self) -> Value {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    return serde_json::from_str(data.trim()).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skip events until one matches; it is returned.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(Instant::now() < deadline, "no event: {what}");
            let e = self.next().await;
            if pred(&e) {
                return e;
            }
        }
    }
}
