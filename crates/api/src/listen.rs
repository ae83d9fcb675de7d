//! Serving the router: over TLS here (plain TCP is axum::serve).

use std::sync::Arc;

/// Serve `app` over TLS on `listener` until the process ends.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // A failed handshake (plain HTTP on the TLS port, an untrusting client) only
            // concerns that connection.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
        });
    }
}
