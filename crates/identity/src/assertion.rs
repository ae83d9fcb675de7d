//! Certificate credentials: the client assertion MSAL sends instead of a secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Verify a client assertion (RFC 7523, as MSAL's certificate credentials send it): a JWT
/// signed by the key of one of the app's certificates, picked by its `x5t` / `x5t#S256`
/// thumbprint, with `iss` = `sub` = the client id, `aud` = the token endpoint, and a valid `exp`.
pub fn verify_client_assertion(
    assertion: &str,
    client_id: &str,
    token_endpoint: &str,
    certificates: &[String],
    now_s: u64,
) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut parts = assertion.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("client_assertion is not a JWT".into());
    };
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| "client_assertion header is not base64url")?,
    )
    .map_err(|_| "client_assertion header is not JSON")?;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| "client_assertion payload is not base64url")?,
    )
    .map_err(|_| "client_assertion payload is not JSON")?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| "client_assertion signature is not base64url")?;
    let alg: &dyn rustls::pki_types::SignatureVerificationAlgorithm = match header["alg"].as_str() {
        Some("RS256") => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        Some("ES256") => webpki::aws_lc_rs::ECDSA_P256_SHA256,
        other => {
            return Err(format!(
                "client_assertion algorithm {other:?} is not supported"
            ));
        }
    };
    // Thumbprints are base64url; MSAL for Python pads them with `=`, Entra accepts both.
    let thumb = |k: &str| {
        header[k]
            .as_str()
            .map(|t| t.trim_end_matches('=').to_string())
    };
    let (x5t, x5t256) = (thumb("x5t"), thumb("x5t#S256"));
    let mut matched = false;
    for pem in certificates {
        let Ok(der) = CertificateDer::from_pem_slice(pem.as_bytes()) else {
            continue;
        };
        let sha1 = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_ref())
                .as_ref(),
        );
        let sha256 = URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref());
        if x5t.as_deref() != Some(sha1.as_str()) && x5t256.as_deref() != Some(sha256.as_str()) {
            continue;
        }
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| format!("the registered certificate cannot be used: {e:?}"))?;
        let msg = &assertion.as_bytes()[..h.len() + 1 + p.len()];
        cert.verify_signature(alg, msg, &signature)
            .map_err(|_| "client_assertion signature is invalid".to_string())?;
        matched = true;
        break;
    }
    if !matched {
        return Err(
            "client_assertion is not signed by a certificate registered for this app (x5t)".into(),
        );
    }
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err("client_assertion iss and sub must be the client id".into());
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a.eq_ignore_ascii_case(token_endpoint),
        Value::Array(v) => v.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(token_endpoint))
        }),
        _ => false,
    };
    if !aud_ok {
        return Err(format!("client_assertion aud must be {token_endpoint}"));
    }
    // NumericDate may have a fraction (RFC 7519 §2): MSAL for Python sends time.time() + 600.
    let now = now_s as f64;
    let exp = claims["exp"]
        .as_f64()
        .ok_or("client_assertion has no exp")?;
    if exp + 30.0 < now {
        return Err("client_assertion has expired".into());
    }
    if claims["nbf"].as_f64().is_some_and(|n| n > now + 30.0) {
        return Err("client_assertion is not yet valid".into());
    }
    Ok(())
}

/// The Entra error number (AADSTS) for a reason [`verify_client_assertion`] gives.
pub fn aadsts(reason: &str) -> u32 {
    if reason.contains("expired") || reason.contains("not yet valid") {
        700024
    } else if reason.contains("signature is invalid")
        || reason.contains("(x5t)")
        || reason.contains("cannot be used")
    {
        700027
    } else if reason.contains("iss and sub") {
        700021
    } else {
        50027
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_number_entra_gives_them() {
        assert_eq!(aadsts("client_assertion has expired"), 700024);
        assert_eq!(aadsts("client_assertion is not yet valid"), 700024);
        assert_eq!(aadsts("client_assertion signature is invalid"), 700027);
        assert_eq!(
            aadsts("client_assertion is not signed by a certificate registered for this app (x5t)"),
            700027
        );
        assert_eq!(
            aadsts("client_assertion iss and sub must be the client id"),
            700021
        );
        assert_eq!(aadsts("client_assertion is not a JWT"), 50027);
    }
}
