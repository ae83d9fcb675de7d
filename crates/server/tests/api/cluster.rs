//! Three ringside nodes sharing one PostgreSQL store and one NATS server (docs/cluster.md):
//! a call is answered for by whichever node a request lands on, and a node that dies has
//! its calls ended, with their notifications, by a survivor. Needs `RINGSIDE_TEST_POSTGRES`
//! and `nats-server` (the README's test command provides both).

use crate::common::*;
use crate::process::{Process, free_port};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Nats {
    child: std::process::Child,
    url: String,
}

/// Send an OPTIONS to a node's SIP port; the status code of its answer.
async fn sip_options(port: u16) -> u16 {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap().port();
    let msg = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-probe-{local}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{local}\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{local}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), ("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("an answer to OPTIONS")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kamailio in front of the nodes (scripts/kamailio.sh), stopped when dropped.
struct Kamailio {
    dir: std::path::PathBuf,
    port: u16,
}

impl Kamailio {
    fn start(nodes: &[u16]) -> Kamailio {
        let port = free_udp_port();
        let dir = std::env::temp_dir().join(format!("ringside-kamailio-{port}"));
        let mut args = vec![dir.display().to_string(), format!("127.0.0.1:{port}")];
        args.extend(nodes.iter().map(|p| format!("127.0.0.1:{p}")));
        let out = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/kamailio.sh"
        ))
        .args(&args)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "kamailio: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Up when its UDP port is taken.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not start: {}",
                std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Kamailio { dir, port }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("kamailio.pid")) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A NATS server of the test's own, or None (then the test has nothing to run against)
/// unless `RINGSIDE_REQUIRE_POSTGRES` says the cluster suite must run.
fn nats() -> Option<Nats> {
    let bin = [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ]
    .into_iter()
    .find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok()
    });
    let Some(bin) = bin else {
        assert!(
            std::env::var("RINGSIDE_REQUIRE_POSTGRES").is_err(),
            "nats-server is not installed (apt-get install nats-server)"
        );
        eprintln!("nats-server missing: the cluster test does not run");
        return None;
    };
    let port = free_port();
    let child = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Nats {
        child,
        url: format!("nats://127.0.0.1:{port}"),
    })
}

struct Cluster {
    /// The webhook receiver (its own ringside is not part of the cluster).
    hooks: Harness,
    nodes: Vec<Process>,
    /// Each node's SIP UDP port.
    sip_ports: Vec<u16>,
    token: String,
    http: reqwest::Client,
    _nats: Nats,
}

impl Cluster {
    /// Nodes "a", "b", "c" on one fresh database (they share node a's signing keys through
    /// it: a token from any node is good on all).
    async fn start(name: &str) -> Option<Cluster> {
        let url = store::testing::fresh_postgres(name)?;
        let nats = nats()?;
        let hooks = Harness::start().await;
        let sip_ports: Vec<u16> = (0..3).map(|_| free_udp_port()).collect();
        let config = |i: usize, id: &str| {
            format!(
                "\n[store]\nurl = \"{url}\"\n\n[cluster]\nnode_id = \"{id}\"\nnats = \"{}\"\nlease_ms = 1500\ndrain_seconds = 3\n\n[sip]\nudp = [\"127.0.0.1:{}\"]\nrtp_ports = [{}, {}]\ndigest = [\"MD5\", \"SHA-256\"]\n",
                nats.url,
                sip_ports[i],
                44000 + i * 200,
                44000 + i * 200 + 198,
            )
        };
        let mut nodes = vec![];
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            nodes.push(Process::start(&hooks.hooks.url, 100, &config(i, id)).await);
        }
        let token = nodes[2].token().await;
        Some(Cluster {
            hooks,
            nodes,
            sip_ports,
            token,
            http: reqwest::Client::new(),
            _nats: nats,
        })
    }

    async fn req(
        &self,
        node: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.nodes[node].base),
            )
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A call from the bot to `user` created through `node`: its id.
    async fn create_call(&self, node: usize, user: &str) -> String {
        let (s, v) = self
            .req(
                node,
                "POST",
                "/v1.0/communications/calls",
                Some(p2p_body(&self.hooks.callback(), user)),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// A call from the bot to Alice through `node`, established.
    async fn established_call(&self, node: usize) -> String {
        let id = self.create_call(node, ALICE).await;
        self.hooks.until_state(&id, "established").await;
        id
    }
}

#[tokio::test]
async fn a_call_created_through_one_node_is_controlled_through_the_others() {
    let Some(c) = Cluster::start("cluster_control").await else {
        return;
    };
    let id = c.established_call(0).await;
    let path = format!("/v1.0/communications/calls/{id}");
    // b and c answer for a's call exactly as a would.
    let (s, v) = c.req(1, "GET", &path, None).await;
    assert_eq!(
        (s, v["id"].as_str(), v["state"].as_str()),
        (200, Some(id.as_str()), Some("established")),
        "{v}"
    );
    let (s_a, mut v_a) = c.req(0, "GET", &path, None).await;
    assert_eq!(s_a, 200);
    // The same answer, but for the links, which follow the host the request came to.
    let (ctx_a, mut v_b) = (v_a["@odata.context"].take(), v.clone());
    let ctx_b = v_b["@odata.context"].take();
    assert_eq!(v_a, v_b);
    assert!(
        ctx_b.as_str().unwrap().starts_with(&c.nodes[1].base),
        "{ctx_b} vs {ctx_a}"
    );
    let (s, op) = c
        .req(
            2,
            "POST",
            &format!("{path}/subscribeToTone"),
            Some(json!({"clientContext": "via-c"})),
        )
        .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["clientContext"], "via-c");
    // Bad input is refused by the owner with its own error, carried back unchanged.
    let (s, e) = c
        .req(
            1,
            "POST",
            &format!("{path}/playPrompt"),
            Some(json!({"prompts": "nope"})),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["message"].as_str().is_some(), "{e}");
    // A new call's body over the size limit is refused before it is routed.
    let big = json!({"callbackUri": "https://x/cb", "pad": "x".repeat(2 * 1024 * 1024)});
    let (s, e) = c
        .req(1, "POST", "/v1.0/communications/calls", Some(big))
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (413, Some("RequestEntityTooLarge")),
        "{e}"
    );
    // An unknown call is 404 on any node.
    let (s, e) = c
        .req(
            2,
            "GET",
            "/v1.0/communications/calls/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(s, 404, "{e}");
    // Hang up through c; the notifications keep their order.
    let (s, _) = c.req(2, "DELETE", &path, None).await;
    assert_eq!(s, 204);
    let notes = c.hooks.until_state(&id, "terminated").await;
    assert_eq!(
        states(&notes).last().map(String::as_str),
        Some("terminated")
    );
    let (s, _) = c.req(1, "GET", &path, None).await;
    assert_eq!(s, 404, "gone everywhere");
}

#[tokio::test]
async fn a_node_killed_with_calls_up_has_them_ended_by_a_survivor_and_the_others_untouched() {
    let Some(mut c) = Cluster::start("cluster_kill").await else {
        return;
    };
    let mut on_a = vec![];
    for _ in 0..100 {
        on_a.push(c.established_call(0).await);
    }
    let mut on_b = vec![];
    for _ in 0..10 {
        on_b.push(c.established_call(1).await);
    }
    c.nodes[0].kill(); // SIGKILL
    let killed = Instant::now();
    // Every call of the dead node ends, notified, in order, with why.
    for id in &on_a {
        let notes = c.hooks.until_state(id, "terminated").await;
        let last = notes.last().unwrap();
        let info = &last.data["resultInfo"];
        assert_eq!(info["code"], 410, "{}", last.data);
        assert!(
            info["message"].as_str().unwrap().contains("node a stopped"),
            "resultInfo says why: {}",
            last.data
        );
    }
    eprintln!(
        "100 calls of the dead node ended {:?} after the kill",
        killed.elapsed()
    );
    for id in &on_a {
        let (s, _) = c
            .req(2, "GET", &format!("/v1.0/communications/calls/{id}"), None)
            .await;
        assert_eq!(s, 404, "{id} ended");
    }
    // The survivors' own calls did not notice.
    for id in &on_b {
        let (s, v) = c
            .req(2, "GET", &format!("/v1.0/communications/calls/{id}"), None)
            .await;
        assert_eq!((s, v["state"].as_str()), (200, Some("established")), "{v}");
    }
    let q = c.hooks.hooks.notes.lock().await;
    let stray: Vec<_> = q
        .iter()
        .filter(|n| on_b.iter().any(|id| n.resource.contains(id.as_str())))
        .map(|n| n.data.to_string())
        .collect();
    assert!(stray.is_empty(), "nothing happened to b's calls: {stray:?}");
}

#[tokio::test]
async fn a_drained_node_takes_no_new_calls_lets_its_calls_end_then_hands_over_the_rest_and_exits() {
    let Some(mut c) = Cluster::start("cluster_drain").await else {
        return;
    };
    let mut on_b = vec![];
    for _ in 0..4 {
        on_b.push(c.established_call(1).await);
    }
    let (s, r) = c.req(1, "GET", "/readyz", None).await;
    assert_eq!((s, r["status"].as_str()), (200, Some("ready")), "{r}");
    assert_eq!(
        (r["store"].as_str(), r["bus"].as_str()),
        (Some("ok"), Some("ok"))
    );
    assert_eq!(sip_options(c.sip_ports[1]).await, 200);
    c.nodes[1].terminate();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, r) = c.req(1, "GET", "/readyz", None).await;
        if s == 503 {
            assert_eq!(r["draining"], true, "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "b never said it was draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = p2p_body(&c.hooks.callback(), ALICE);
    let (s, e) = c
        .req(1, "POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 503, "no new calls on a draining node: {e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("stopping"),
        "{e}"
    );
    // SIP too: a dispatcher's OPTIONS probe gets 503, so Kamailio sends new calls elsewhere.
    assert_eq!(sip_options(c.sip_ports[1]).await, 503);
    // The other nodes still take calls.
    let fresh = c.established_call(0).await;
    // Two of b's calls end while it drains (hung up through c, answered by b).
    for id in &on_b[..2] {
        let (s, _) = c
            .req(
                2,
                "DELETE",
                &format!("/v1.0/communications/calls/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 204);
        let notes = c.hooks.until_state(id, "terminated").await;
        assert_eq!(
            notes.last().unwrap().data["resultInfo"]["code"],
            200,
            "hung up by the bot"
        );
    }
    // After drain_seconds b hands the other two over and exits cleanly.
    let code = c.nodes[1].exited(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "b exits by itself after draining");
    for id in &on_b[2..] {
        let notes = c.hooks.until_state(id, "terminated").await;
        let info = &notes.last().unwrap().data["resultInfo"];
        assert_eq!(
            info["code"], 410,
            "ended by the node that took it over: {info}"
        );
    }
    let (s, v) = c
        .req(
            2,
            "GET",
            &format!("/v1.0/communications/calls/{fresh}"),
            None,
        )
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("established")));
}

#[tokio::test]
async fn bots_joining_a_meeting_through_any_node_land_on_the_node_that_holds_it() {
    let Some(c) = Cluster::start("cluster_meeting").await else {
        return;
    };
    let (s, m) = c
        .req(
            0,
            "POST",
            "/beta/communications/onlineMeetings",
            Some(json!({"subject": "Standup"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let media = json!({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"});
    let by_id = json!({
        "callbackUri": c.hooks.callback(), "requestedModalities": ["audio"], "mediaConfig": media,
        "meetingInfo": {"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": m["joinMeetingIdSettings"]["joinMeetingId"], "passcode": m["joinMeetingIdSettings"]["passcode"]},
    });
    let by_chat = json!({
        "callbackUri": c.hooks.callback(), "requestedModalities": ["audio"], "mediaConfig": media,
        "chatInfo": {"threadId": m["chatInfo"]["threadId"], "messageId": "0"},
        "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo", "organizer": {"user": {"id": "organizer-1", "tenantId": TENANT}}},
    });
    // Two bots (one app each: an app has one call in a meeting).
    let second_bot: Value = c
        .http
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", c.nodes[2].base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP2),
            ("client_secret", "secret-two"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second_token = second_bot["access_token"].as_str().unwrap().to_string();
    let mut ids = vec![];
    for (node, body, token) in [(1, by_id, &c.token), (2, by_chat, &second_token)] {
        let r = c
            .http
            .post(format!("{}/beta/communications/calls", c.nodes[node].base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        c.hooks.until_state(id, "established").await;
    }
    // Both calls are held by node a, with the meeting: one conference, one roster.
    let held: Value = c
        .http
        .get(format!("{}/admin/calls", c.nodes[0].base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let on_a: Vec<&str> = held["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in &ids {
        assert!(on_a.contains(&id.as_str()), "{id} is on node a: {held}");
    }
    let confs: std::collections::HashSet<&str> = held["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["conference"].as_str())
        .collect();
    assert_eq!(confs.len(), 1, "one conference for the meeting: {held}");
    // The meeting itself answers through any node.
    let (s, got) = c
        .req(
            2,
            "GET",
            &format!(
                "/beta/communications/onlineMeetings/{}",
                m["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!((s, &got["id"]), (200, &m["id"]), "{got}");
}

#[tokio::test]
async fn phones_call_the_app_through_kamailio_and_each_call_stays_on_the_node_that_took_it() {
    let Some(c) = Cluster::start("cluster_kamailio").await else {
        return;
    };
    let k = Kamailio::start(&c.sip_ports);
    let dir = std::env::temp_dir().join(format!("ringside-sipp-k{}", k.port));
    std::fs::create_dir_all(&dir).unwrap();
    let calls = 8;
    // SIPp's own caller: INVITE, 100/180/200, ACK, 1 s of call, BYE (all through Kamailio).
    let sipp = tokio::process::Command::new("sipp")
        .current_dir(&dir)
        .args([
            &format!("127.0.0.1:{}", k.port),
            "-sn",
            "uac",
            "-s",
            "bot",
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-d",
            "1000",
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
            "-timeout",
            "30s",
            "-nostdin",
            "-trace_err",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian: sip-tester)");
    // The bot answers each through node c, whichever node the call is on.
    for _ in 0..calls {
        let incoming = c.hooks.next_incoming().await;
        let id = incoming.data["id"].as_str().unwrap().to_string();
        let (s, v) = c
            .req(
                2,
                "POST",
                &format!("/v1.0/communications/calls/{id}/answer"),
                Some(json!({
                    "callbackUri": c.hooks.callback(),
                    "acceptedModalities": ["audio"],
                    "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
                })),
            )
            .await;
        assert_eq!(s, 202, "{v}");
    }
    let status = tokio::time::timeout(Duration::from_secs(30), sipp.wait_with_output())
        .await
        .expect("sipp finished")
        .unwrap()
        .status;
    let errors: String = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        status.success(),
        "every call went through Kamailio: {errors}"
    );
    // The calls were spread over the nodes, and each node saw its calls whole: an INVITE
    // answered 200 and the BYE that ended it, on the same node.
    let mut took = vec![];
    for n in &c.nodes {
        let text = c
            .http
            .get(format!("{}/metrics", n.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let ok = text
            .lines()
            .find_map(|l| l.strip_prefix("ringside_sip_responses_total{code=\"200\"} "))
            .map_or(0, |v| v.parse::<u64>().unwrap());
        took.push(ok);
    }
    assert!(
        took.iter().filter(|&&n| n > 0).count() >= 2,
        "spread over the nodes: {took:?}"
    );
    assert!(
        took.iter().all(|n| n % 2 == 0),
        "INVITE and BYE on the same node: {took:?}"
    );
    assert_eq!(took.iter().sum::<u64>(), 2 * calls as u64, "{took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_phone_registered_through_one_node_rings_when_a_bot_calls_its_user_through_another() {
    let Some(c) = Cluster::start("cluster_registrar").await else {
        return;
    };
    let k = Kamailio::start(&c.sip_ports);
    // Hank's phone registers through Kamailio; one node takes the REGISTER.
    let phone = crate::sip::Phone::register_and_run(k.port, "uas-answer.xml", &[]).await;
    let mut registrar = None;
    for (i, n) in c.nodes.iter().enumerate() {
        let text = c
            .http
            .get(format!("{}/metrics", n.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text
            .lines()
            .any(|l| l.starts_with("ringside_sip_responses_total{code=\"200\"}"))
        {
            registrar = Some(i);
        }
    }
    let registrar = registrar.expect("a node took the REGISTER");
    // The bot calls Hank through another node: the call is that node's, and Hank's phone
    // rings from there, found through the shared bindings.
    let other = (registrar + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(5);
    let id = loop {
        let id = c.create_call(other, HANK_SIP).await;
        let notes = c
            .hooks
            .until(&id, "established or failed", |n| {
                n.is_call() && matches!(n.state(), Some("established") | Some("terminated"))
            })
            .await;
        if notes.last().unwrap().state() == Some("established") {
            break id;
        }
        // The announcement may still be on its way (it is, for a few milliseconds).
        assert!(
            Instant::now() < deadline,
            "Hank's phone never rang: {:?}",
            notes.last().unwrap().data
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (s, _) = c
        .req(
            registrar,
            "DELETE",
            &format!("/v1.0/communications/calls/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone answered and got the bot's BYE: {errors}");
}

#[tokio::test]
async fn what_a_dead_node_committed_and_did_not_deliver_is_delivered_by_the_survivor_in_order() {
    let Some(mut c) = Cluster::start("cluster_outbox").await else {
        return;
    };
    // The bot's endpoint is down: a's notifications are committed and wait in the outbox.
    c.hooks
        .hooks
        .status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let mut ids = vec![];
    for _ in 0..20 {
        ids.push(c.create_call(0, ALICE).await);
    }
    // Alice answers (50 ms); `established` is committed too, and not delivered.
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.nodes[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.hooks
        .hooks
        .status
        .store(0, std::sync::atomic::Ordering::SeqCst);
    for id in &ids {
        let notes = c.hooks.until_state(id, "terminated").await;
        let mut seen = states(&notes);
        seen.dedup(); // at least once: a POST the dead node made may come again
        assert_eq!(
            seen,
            ["establishing", "ringing", "established", "terminated"],
            "{id}: everything a committed, then the end, in order"
        );
    }
}
