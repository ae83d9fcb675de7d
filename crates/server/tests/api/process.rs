//! `ringside serve` as a child process of the test: killed, restarted, several at once.

use crate::common::*;
use serde_json::Value;
use std::time::Duration;

/// A `ringside serve` child process on a fixed port and data directory, to kill and restart.
pub struct Process {
    pub dir: std::path::PathBuf,
    pub base: String,
    child: Option<std::process::Child>,
}

impl Process {
    /// `extra`: more configuration after the generated file (a `[store]` table, say).
    pub async fn start(hook: &str, notification_attempts: u32, extra: &str) -> Process {
        let mut p = Self::new(hook, notification_attempts, extra);
        p.restart().await;
        p
    }

    /// The data folder and configuration, not started yet.
    pub fn new(hook: &str, notification_attempts: u32, extra: &str) -> Process {
        let dir = std::env::temp_dir().join(format!(
            "ringside-crash-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("ringside.toml"),
            config_text(hook, "")
                .replace(
                    "listen = \"127.0.0.1:0\"",
                    &format!("listen = \"127.0.0.1:{port}\""),
                )
                .replace(
                    "notification_max_attempts = 4",
                    &format!("notification_max_attempts = {notification_attempts}"),
                )
                + extra,
        )
        .unwrap();
        Process {
            dir,
            base: format!("http://127.0.0.1:{port}"),
            child: None,
        }
    }

    pub async fn restart(&mut self) {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringside"))
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("ringside.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("ringside did not start");
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// Wait for the process to exit by itself; its exit code, or None if it did not.
    pub async fn exited(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub async fn token(&self) -> String {
        let tok: Value = reqwest::Client::new()
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", SECRET),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tok["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The CLI drives a running ringside through its admin API.
#[tokio::test]
async fn cli_places_a_simulated_call_and_lists_what_the_user_heard() {
    let hooks_h = Harness::start().await;
    let dir = std::env::temp_dir().join(format!(
        "ringside-cli-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("ringside.toml"),
        config_text(&hooks_h.hooks.url, "").replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_ringside");
    let mut child = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(&dir)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let v = run(&["call", ALICE, APP, "--script", r#"{"hangupAfterMs":100}"#]);
    let call = v["callId"].as_str().unwrap().to_string();
    let incoming = hooks_h.next_incoming().await;
    assert_eq!(incoming.data["id"], call.as_str());
    let d = run(&["directory"]);
    assert_eq!(d["users"].as_array().unwrap().len(), 8);
    let legs = run(&["legs", "--user", ALICE]);
    assert_eq!(legs["value"].as_array().unwrap().len(), 1);
    // `ringside phone` signs a user in to the web phone: its address carries the token.
    let p = run(&["phone", ALICE]);
    let url = p["phone"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/phone?token=")),
        "{url}"
    );
    let page = client.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("ringside phone"));
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(&dir)
        .args(["call", "nobody", APP])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    child.kill().unwrap();
    child.wait().unwrap();
}
