//! TLS for the TCP sink (rustls with the `ring` provider): the client set-up, loaded once at
//! start, and a connection that keeps the sink's delivery proof.
//!
//! The handshake is completed before any event is written, so a receiver that fails
//! verification never sees one; a TLS failure is never retried as plain text. Confirmation
//! works as over plain TCP, one layer up: our close_notify, then our FIN, then the receiver's
//! close_notify or EOF (bounded), which it sends only after reading everything before ours.
//!
//! Failures become one-line `io::Error`s wrapping a [`TlsFailure`] (made in `tls/failure.rs`);
//! a certificate problem is [permanent](is_permanent), so the sink gives up at once instead of
//! retrying it. The connection itself, [`TlsStream`], is in `tls/stream.rs`.

pub(crate) mod failure;
mod stream;

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use log::warn;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

pub(crate) use failure::is_permanent;
pub(crate) use stream::TlsStream;

/// The TLS options as given, before loading.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    /// Trust only these CAs (PEM) instead of the system's.
    pub(crate) ca: Option<PathBuf>,
    /// The name expected in the receiver's certificate, instead of the target's host.
    pub(crate) server_name: Option<String>,
    /// Our certificate chain and key (PEM), for receivers that require one.
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) insecure_skip_verify: bool,
}

/// A loaded TLS client set-up, shared by every connection of a run.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    has_client_cert: bool,
    /// How many times a receiver asked for our certificate (counted by our resolver).
    asked: Arc<AtomicUsize>,
}

impl Tls {
    /// Loads the roots (system store or `--tls-ca`) and the client certificate; errors name the
    /// file. `--tls-insecure-skip-verify` is warned about here, once.
    pub(crate) fn load(opts: &TlsOptions) -> Result<Tls> {
        let provider = Arc::new(ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS set-up")?;
        let builder = if opts.insecure_skip_verify {
            warn!(
                "--tls-insecure-skip-verify: the receiver's certificate is not checked; anyone \
                 on the network path can pose as the receiver and read the events"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
        } else {
            builder.with_root_certificates(roots(opts.ca.as_deref())?)
        };
        let key = match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => Some(Arc::new(client_key(cert, key, &provider)?)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let asked = Arc::new(AtomicUsize::new(0));
        let has_client_cert = key.is_some();
        let config = builder.with_client_cert_resolver(Arc::new(ClientCert {
            key,
            asked: asked.clone(),
        }));
        let server_name = opts
            .server_name
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_owned())
                    .with_context(|| format!("bad --tls-server-name '{n}'"))
            })
            .transpose()?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
            has_client_cert,
            asked,
        })
    }

    /// The client set-up, for the HTTP sinks' client.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The TLS handshake on a fresh connection to `target` (`host:port`), within `timeout`.
    /// Nothing of ours is written before it succeeded.
    pub(crate) fn connect(
        &self,
        target: &str,
        sock: TcpStream,
        timeout: Duration,
    ) -> io::Result<TlsStream> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host_of(target).to_owned()).map_err(|_| {
                failure::failure(
                    format!("no host name in '{target}' to check the certificate against"),
                    true,
                )
            })?,
        };
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| failure::failure(e.to_string(), true))?;
        let asked_before = self.asked.load(Ordering::SeqCst);
        let asked = || self.asked.load(Ordering::SeqCst) != asked_before;
        TlsStream::handshake(conn, sock, timeout, self.has_client_cert, asked)
    }
}

/// The host of `host:port` (or `[v6]:port`), to check the certificate against.
fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The system's CAs, or only those of `--tls-ca`.
fn roots(ca: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(ca) = ca else {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            bail!("no system CA certificates ({why}): install ca-certificates, or give --tls-ca");
        }
        return Ok(roots);
    };
    let certs = pem_certs(ca).with_context(|| format!("--tls-ca {}", ca.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("--tls-ca {}: no usable certificate in it", ca.display());
    }
    Ok(roots)
}

/// Our certificate chain and its key, checked to fit each other.
fn client_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let source = format!("--tls-key {}", key.display());
    let der = PrivateKeyDer::from_pem_slice(&pem_file(key).context(source.clone())?)
        .context(source.clone())?;
    if let Some(warning) = crate::cli::small_file::readable_by_others(key, "a private key") {
        warn!("{warning}");
    }
    let chain = pem_certs(cert).with_context(|| format!("--tls-cert {}", cert.display()))?;
    CertifiedKey::from_der(chain, der, provider).with_context(|| {
        format!(
            "--tls-key {} with --tls-cert {}",
            key.display(),
            cert.display()
        )
    })
}

/// The most a PEM file may hold: a system CA bundle is about 200 KiB.
const PEM_MAX: u64 = 4 << 20;

/// A PEM file's bytes, read as the config and secret files are: a regular file only, without
/// blocking (a FIFO would hang `check` and every start), and capped (`/dev/zero`, a huge file).
fn pem_file(path: &Path) -> Result<Vec<u8>> {
    crate::cli::small_file::read(path, PEM_MAX)
        .map(String::into_bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = pem_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        bail!("no PEM certificate in it");
    }
    Ok(certs)
}

/// Hands out our client certificate, if any, and counts the receivers' requests for it.
#[derive(Debug)]
struct ClientCert {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicUsize>,
}

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// `--tls-insecure-skip-verify`: any certificate, any name; the handshake's signatures are
/// still checked, so the connection is at least encrypted to whoever answered.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

/// The two signature checks rustls asks a verifier for, each handed to the provider's own.
#[rustfmt::skip] // rustfmt would format the body at a narrower width, and warn
macro_rules! signature_check {
    ($name:ident) => {
        fn $name(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.0.signature_verification_algorithms;
            rustls::crypto::$name(message, cert, dss, algorithms)
        }
    };
}

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_check!(verify_tls12_signature);
    signature_check!(verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("logs.example:6514"), "logs.example");
        assert_eq!(host_of("127.0.0.1:6514"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6514"), "::1");
    }
}
