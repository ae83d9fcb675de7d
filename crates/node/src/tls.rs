//! TLS certificates for HTTPS and SIP over TLS: a certificate from the config, or in dev mode one generated on first start and kept
//! in the data folder (with instructions for trusting it).

use directory::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate file, when ringside generated it (for the trust instructions).
    pub generated: Option<PathBuf>,
}

/// The certificate and key files: the configured ones, or (dev mode) ones generated once in
/// the data folder. The third path is the certificate when ringside generated it.
pub fn cert_files(
    cfg: &ServerConfig,
    data_dir: &Path,
) -> Result<(PathBuf, PathBuf, Option<PathBuf>), String> {
    Ok(match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), None),
        (None, None) if cfg.dev_mode => {
            let dir = data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let names = vec![
                    "localhost".to_string(),
                    "127.0.0.1".to_string(),
                    "::1".to_string(),
                ];
                let ck = rcgen::generate_simple_self_signed(names)
                    .map_err(|e| format!("cannot generate a certificate: {e}"))?;
                std::fs::write(&c, ck.cert.pem()).map_err(|e| format!("{}: {e}", c.display()))?;
                std::fs::write(&k, ck.signing_key.serialize_pem())
                    .map_err(|e| format!("{}: {e}", k.display()))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600));
                }
            }
            (c.clone(), k, Some(c))
        }
        (None, None) => return Err(
            "TLS (https_listen, [sip] tls) needs tls_cert and tls_key (a certificate is generated only in dev mode)"
                .into(),
        ),
        _ => return Err("tls_cert and tls_key go together".into()),
    })
}

pub fn load(cfg: &ServerConfig, data_dir: &Path) -> Result<Tls, String> {
    let (cert_path, key_path, generated) = cert_files(cfg, data_dir)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        generated,
    })
}
