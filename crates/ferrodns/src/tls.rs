//! TLS for the API (rustls): a certificate chain and its key from PEM files
//! (`--api-tls-cert`, `--api-tls-key`), read again on SIGHUP. A reload that
//! fails (a missing file, a key that is not the certificate's) is logged and
//! changes nothing; connections already open keep the configuration they
//! started with, new ones get the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::signal::unix::{signal, SignalKind};

/// The API's TLS configuration, swapped whole on reload.
pub struct ApiTls {
    cert: PathBuf,
    key: PathBuf,
    config: ArcSwap<ServerConfig>,
}

impl ApiTls {
    /// Reads the certificate chain and key; an error names the file and
    /// what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<ApiTls> {
        let config = server_config(cert, key)?;
        Ok(ApiTls { cert: cert.to_path_buf(), key: key.to_path_buf(), config: ArcSwap::from(config) })
    }

    /// Reads the files again and, if they make a configuration, uses it for
    /// the connections that come next.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        self.config.store(config);
        Ok(())
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("cannot read the API certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in the API certificate {}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("cannot read a private key from {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!("the key in {} does not go with the certificate in {}", key_path.display(), cert_path.display())
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reloads the API's certificate and key on every SIGHUP.
pub async fn reload_on_hangup(tls: Arc<ApiTls>) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    while hangup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!(cert = %tls.cert.display(), "API certificate reloaded"),
            Err(e) => tracing::error!(error = format!("{e:#}"), "API certificate not reloaded; the previous one stays"),
        }
    }
    Ok(())
}
