//! `ringside doctor`: check a configuration and this machine before serving, and say what is
//! wrong in words — the config file, the data folder and its disk, the ports, certificates,
//! the store, the cluster's bus, the speech-to-text weights.

use directory::Config;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub area: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Works, but worth knowing.
    Note,
    Fail,
}

fn check(area: &'static str, outcome: Outcome, detail: impl Into<String>) -> Check {
    Check {
        area,
        outcome,
        detail: detail.into(),
    }
}

/// Run every check for the configuration at `config` (default `<data_dir>/ringside.toml`).
pub async fn run(data_dir: &Path, config: Option<&Path>) -> Vec<Check> {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join("ringside.toml"));
    let mut out = vec![];
    let cfg = if path.exists() {
        match Config::load(&path) {
            Ok(c) => {
                out.push(check(
                    "config",
                    Outcome::Ok,
                    format!(
                        "{}: {} tenants, {} apps, {} users",
                        path.display(),
                        c.tenants.len(),
                        c.apps.len(),
                        c.users.len()
                    ),
                ));
                c
            }
            Err(e) => {
                out.push(check("config", Outcome::Fail, e));
                return out;
            }
        }
    } else {
        out.push(check(
            "config",
            Outcome::Note,
            format!(
                "{} does not exist: `ringside serve` will write a development directory there",
                path.display()
            ),
        ));
        Config::seed_dev()
    };
    out.extend(data_folder(data_dir));
    out.extend(ports(&cfg));
    out.extend(certificates(&cfg, data_dir));
    out.extend(store(&cfg, data_dir).await);
    out.extend(bus(&cfg).await);
    out.push(weights(&cfg, data_dir));
    out
}

/// Can a file be written (and synced) in `dir`? The probe file is removed again.
pub fn probe_writable(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir.join(".ringside-write-probe");
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(b"ok")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written
}

fn data_folder(dir: &Path) -> Vec<Check> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return vec![check(
            "data",
            Outcome::Fail,
            format!("cannot create the data folder {}: {e}", dir.display()),
        )];
    }
    let mut out = vec![match probe_writable(dir) {
        Ok(()) => check(
            "data",
            Outcome::Ok,
            format!("{} is writable", dir.display()),
        ),
        Err(e) => check(
            "data",
            Outcome::Fail,
            format!(
                "cannot write in {}: {e} (ringside keeps its database, keys and recordings there)",
                dir.display()
            ),
        ),
    }];
    if let Some(free) = free_bytes(dir) {
        let mb = free / (1024 * 1024);
        out.push(if mb < 100 {
            check(
                "disk",
                Outcome::Fail,
                format!(
                    "only {mb} MB free under {}: commits and recordings will fail",
                    dir.display()
                ),
            )
        } else if mb < 1024 {
            check(
                "disk",
                Outcome::Note,
                format!("{mb} MB free under {}: recordings fill it", dir.display()),
            )
        } else {
            check(
                "disk",
                Outcome::Ok,
                format!("{} GB free under {}", mb / 1024, dir.display()),
            )
        });
    }
    out
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (r == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

/// Every address ringside would listen on, bound and released at once.
fn ports(cfg: &Config) -> Vec<Check> {
    let mut wanted: Vec<(String, String, bool)> =
        vec![("HTTP listen".into(), cfg.server.listen.clone(), true)];
    if let Some(h) = &cfg.server.https_listen {
        wanted.push(("HTTPS listen".into(), h.clone(), true));
    }
    if let Some(sip) = &cfg.sip {
        let (udp, tcp) = sip.udp_and_tcp();
        wanted.extend(udp.into_iter().map(|a| ("SIP UDP".into(), a, false)));
        wanted.extend(tcp.into_iter().map(|a| ("SIP TCP".into(), a, true)));
        wanted.extend(
            sip.tls
                .iter()
                .map(|a| ("SIP TLS".to_string(), a.clone(), true)),
        );
    }
    if let Some(w) = &cfg.webrtc {
        wanted.push(("WebRTC UDP".into(), w.udp.clone(), false));
    }
    wanted
        .into_iter()
        .map(|(what, addr, tcp)| {
            let r = if tcp {
                TcpListener::bind(&addr).map(|_| ())
            } else {
                UdpSocket::bind(&addr).map(|_| ())
            };
            match r {
                Ok(()) => check("port", Outcome::Ok, format!("{what} {addr} is free")),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => check(
                    "port",
                    Outcome::Fail,
                    format!("{what} {addr} is in use (is ringside already running?)"),
                ),
                Err(e) => check(
                    "port",
                    Outcome::Fail,
                    format!("{what} {addr} cannot be bound: {e}"),
                ),
            }
        })
        .collect()
}

/// The HTTPS / SIP TLS certificate: readable, matching its key, and not expired.
fn certificates(cfg: &Config, data_dir: &Path) -> Vec<Check> {
    let tls_wanted =
        cfg.server.https_listen.is_some() || cfg.sip.as_ref().is_some_and(|s| !s.tls.is_empty());
    if !tls_wanted {
        return vec![];
    }
    if cfg.server.tls_cert.is_none() && cfg.server.tls_key.is_none() {
        return vec![check(
            "certificate",
            if cfg.server.dev_mode {
                Outcome::Note
            } else {
                Outcome::Fail
            },
            if cfg.server.dev_mode {
                "no tls_cert/tls_key: a self-signed development certificate is generated (clients must trust it)"
            } else {
                "HTTPS or SIP TLS is configured without tls_cert/tls_key, and dev_mode is off"
            },
        )];
    }
    let (cert, _, _) = match node::tls::cert_files(&cfg.server, data_dir) {
        Ok(c) => c,
        Err(e) => return vec![check("certificate", Outcome::Fail, e)],
    };
    let mut out = vec![match node::tls::load(&cfg.server, data_dir) {
        Ok(_) => check(
            "certificate",
            Outcome::Ok,
            format!("{} loads and matches its key", cert.display()),
        ),
        Err(e) => check("certificate", Outcome::Fail, e),
    }];
    if let Some(days) = days_left(&cert) {
        out.push(if days < 0 {
            check(
                "certificate",
                Outcome::Fail,
                format!("{} expired {} days ago", cert.display(), -days),
            )
        } else if days < 14 {
            check(
                "certificate",
                Outcome::Note,
                format!("{} expires in {days} days", cert.display()),
            )
        } else {
            check(
                "certificate",
                Outcome::Ok,
                format!("{} is valid for {days} more days", cert.display()),
            )
        });
    }
    out
}

fn days_left(cert: &PathBuf) -> Option<i64> {
    let pem = std::fs::read(cert).ok()?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let (_, c) = x509_parser::parse_x509_certificate(&p.contents).ok()?;
    let end = c.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some((end - now).div_euclid(86_400))
}

async fn store(cfg: &Config, data_dir: &Path) -> Vec<Check> {
    let url = cfg.store.as_ref().and_then(|s| s.url.clone());
    let (what, url) = match url {
        Some(u) => (u.clone(), u),
        None => {
            let p = data_dir.join("ringside.db");
            (p.display().to_string(), p.display().to_string())
        }
    };
    // The store blocks (and PostgreSQL's client may not run on an async thread).
    let r = tokio::task::spawn_blocking(move || -> Result<(), String> {
        std::thread::spawn(move || {
            let mut s = store::Store::open_url(&url).map_err(|e| e.to_string())?;
            s.ping().map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the store check panicked".to_string())?
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    vec![match r {
        Ok(()) => check("store", Outcome::Ok, format!("{} answers", redact(&what))),
        Err(e) => check("store", Outcome::Fail, format!("{}: {e}", redact(&what))),
    }]
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            match auth.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn bus(cfg: &Config) -> Vec<Check> {
    let Some(c) = &cfg.cluster else {
        return vec![];
    };
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(c.nats.as_str());
    vec![
        match tokio::time::timeout(Duration::from_secs(4), connect).await {
            Ok(Ok(_)) => check(
                "bus",
                Outcome::Ok,
                format!("NATS at {} answers (node {})", c.nats, c.node_id),
            ),
            Ok(Err(e)) => check("bus", Outcome::Fail, format!("NATS at {}: {e}", c.nats)),
            Err(_) => check(
                "bus",
                Outcome::Fail,
                format!("NATS at {} did not answer within 4 s", c.nats),
            ),
        },
    ]
}

fn weights(cfg: &Config, data_dir: &Path) -> Check {
    let t = cfg.transcription.clone().unwrap_or_default();
    if !t.enabled {
        return check(
            "transcription",
            Outcome::Note,
            "disabled ([transcription] enabled = false)",
        );
    }
    let dir = t
        .model
        .map(PathBuf::from)
        .or_else(|| asr::find_model(Some(data_dir)));
    match dir {
        None => check(
            "transcription",
            Outcome::Note,
            "no Whisper weights found: startTranscription will fail with 503 until they are installed (scripts/models.sh; docs/transcription.md)",
        ),
        Some(d) => match asr::check_model(&d) {
            Ok(()) => check(
                "transcription",
                Outcome::Ok,
                format!("Whisper weights at {}", d.display()),
            ),
            Err(e) => check(
                "transcription",
                Outcome::Fail,
                format!("{}: {e}", d.display()),
            ),
        },
    }
}

/// The report as printed; and whether everything passed.
pub fn report(checks: &[Check]) -> (String, bool) {
    let mut s = String::new();
    let mut failed = 0;
    for c in checks {
        let tag = match c.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Note => "note",
            Outcome::Fail => {
                failed += 1;
                "FAIL"
            }
        };
        s.push_str(&format!("  {tag}  {:<13} {}\n", c.area, c.detail));
    }
    s.push_str(&match failed {
        0 => "Nothing wrong found.\n".to_string(),
        1 => "1 problem.\n".to_string(),
        n => format!("{n} problems.\n"),
    });
    (s, failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("/var/lib/ringside.db"), "/var/lib/ringside.db");
    }
}
