//! The registrar over a real UDP socket: a client that speaks SHA-256 digest (which SIPp 3.6
//! cannot) registers; malformed datagrams are dropped without harm.

use sip::digest::{self, Algorithm};
use sip::server::{Config, Directory, Sip};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

struct OneUser;

impl Directory for OneUser {
    fn ha1(&self, user: &str, realm: &str, alg: Algorithm) -> Option<String> {
        (user == "bob").then(|| digest::ha1(alg, "bob", realm, "builder"))
    }
}

async fn exchange(sock: &UdpSocket, msg: &str) -> String {
    sock.send(msg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("a response")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn register(local: &str, cseq: u32, auth: Option<&str>) -> String {
    format!(
        "REGISTER sip:ringside SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{cseq}-test\r\n\
From: <sip:bob@ringside>;tag=t1\r\nTo: <sip:bob@ringside>\r\nCall-ID: reg-1@test\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:bob@{local}>;expires=300\r\n{}Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        auth.map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default()
    )
}

#[tokio::test]
async fn a_phone_registers_with_sha_256_digest_and_garbage_is_ignored() {
    let sip = Sip::start(
        Config {
            udp: vec!["127.0.0.1:0".parse().unwrap()],
            tcp: vec![],
            realm: "ringside".into(),
            nonce_secret: [3; 32],
            nonce_lifetime_s: 300,
            min_expires: 60,
            max_expires: 3600,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            rtp_ip: "127.0.0.1".parse().unwrap(),
            rtp_ports: (42000, 42100),
            media_timeout_s: 0,
            max_new_calls_per_second: 100,
            max_calls: 0,
            tls: vec![],
            tls_pem: None,
            authenticate_invites: false,
            trusted_sources: vec![],
        },
        Arc::new(OneUser),
        tokio::sync::mpsc::unbounded_channel().0,
    )
    .await
    .unwrap();
    let server = sip.addrs[0].1;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    let local = sock.local_addr().unwrap().to_string();

    for junk in [&b"\x00\x01garbage"[..], b"INVITE\r\n\r\n", &[0xFF; 3000]] {
        sock.send(junk).await.unwrap();
    }

    // A method ringside does not do outside a dialog: 501, and Allow says what it does.
    let subscribe = register(&local, 7, None)
        .replace("REGISTER sip:", "SUBSCRIBE sip:")
        .replace("CSeq: 7 REGISTER", "CSeq: 7 SUBSCRIBE")
        .replace("z9hG4bK-7-test", "z9hG4bK-sub-test");
    let refused = exchange(&sock, &subscribe).await;
    assert!(refused.starts_with("SIP/2.0 501"), "{refused}");
    assert!(
        refused
            .lines()
            .any(|l| l.starts_with("Allow:") && l.contains("REGISTER")),
        "{refused}"
    );

    let challenge = exchange(&sock, &register(&local, 1, None)).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let sha = challenge
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("SHA-256"))
        .expect("a SHA-256 challenge");
    let first = challenge
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .unwrap();
    assert_eq!(first, sha, "the preferred algorithm comes first");
    let nonce = sha
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();

    let mut creds = digest::Credentials {
        username: "bob".into(),
        realm: "ringside".into(),
        nonce: nonce.into(),
        uri: "sip:ringside".into(),
        response: String::new(),
        algorithm: Algorithm::Sha256,
        qop: Some("auth".into()),
        cnonce: Some("abcdef".into()),
        nc: Some("00000001".into()),
    };
    let h = digest::ha1(Algorithm::Sha256, "bob", "ringside", "builder");
    creds.response = digest::expected_response(&creds, "REGISTER", &h);
    let auth = format!(
        "Digest username=\"bob\", realm=\"ringside\", nonce=\"{nonce}\", uri=\"sip:ringside\", response=\"{}\", algorithm=SHA-256, qop=auth, cnonce=\"abcdef\", nc=00000001",
        creds.response
    );
    let ok = exchange(&sock, &register(&local, 2, Some(&auth))).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        ok.contains(&format!("<sip:bob@{local}>;expires=300")),
        "{ok}"
    );
    assert_eq!(sip.contacts("bob").len(), 1);

    // The same credentials replayed with a tampered response: refused, nothing changes.
    let bad = auth.replace(&creds.response, &"0".repeat(64));
    let refused = exchange(&sock, &register(&local, 3, Some(&bad))).await;
    assert!(refused.starts_with("SIP/2.0 403"), "{refused}");
    assert_eq!(sip.contacts("bob").len(), 1);
}
