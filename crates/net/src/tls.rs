//! TLS on any [`Transport`], with rustls: the server's side ([`ServerTls`], [`TlsListener`]) and
//! the client's ([`Trust`], [`connect`]).
//!
//! - **Server**: a certificate chain and key from PEM files, reloaded by [`ServerTls::reload`]
//!   (the binary calls it on SIGHUP) without touching connections already up: new handshakes
//!   get the new certificate. TLS 1.2 and 1.3 only. The handshake runs inside the connection's
//!   own task (the first read or write drives it), so a client that never finishes one holds
//!   no one else up and is timed out like any connection that never registers. A plain-text
//!   client on the TLS port is told so in plain text.
//! - **Client**: the server is verified against the system's root certificates (or those of a
//!   PEM file), or pinned by the SHA-256 fingerprint of its certificate (a self-signed server).
//!   When verification fails the error shows the certificate's fingerprint, so that a person who
//!   trusts the server can pin it.
//!
//! The crypto is `ring`'s (no C toolchain beyond the C compiler it needs).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, ready};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::transport::{Listener, Stream};

/// The crypto every TLS connection here uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2 and 1.3: the versions rustls implements, named so that it stays so.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The SHA-256 fingerprint of a certificate (of its DER bytes), as `openssl x509 -fingerprint
/// -sha256` prints it: `AB:CD:...`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// The fingerprint of the first certificate in a PEM file (the server's own, in a chain).
    pub fn of_pem_file(path: &Path) -> Result<Fingerprint, TlsSetupError> {
        let cert = CertificateDer::from_pem_file(path).map_err(|e| TlsSetupError::File {
            what: "cert",
            path: path.to_owned(),
            reason: pem_reason(e),
        })?;
        Ok(Fingerprint::of(cert.as_ref()))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a fingerprint could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a SHA-256 fingerprint: give 64 hexadecimal digits, with or without colons \
     (as `openssl x509 -noout -fingerprint -sha256 -in CERT` or parla-server prints it)"
)]
pub struct BadFingerprint {
    input: String,
}

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    /// `AB:CD:…`, `abcd…`, optionally after `sha256:` or `SHA256 Fingerprint=`.
    fn from_str(input: &str) -> Result<Self, BadFingerprint> {
        let bad = || BadFingerprint {
            input: input.to_owned(),
        };
        let s = input.trim();
        let s = s.rsplit(['=']).next().unwrap_or(s);
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let digits: Vec<u8> = s
            .bytes()
            .filter(|&b| b != b':')
            .map(|b| (b as char).to_digit(16).map(|d| d as u8))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = pair[0] << 4 | pair[1];
        }
        Ok(Fingerprint(bytes))
    }
}

/// Why the server's TLS setup failed: which file, what is wrong, what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read or holds no usable PEM.
    #[error("could not use the TLS {what} {}: {reason}; check the path given to --tls-{what}", path.display())]
    File {
        /// `cert` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key is not the certificate's (or of a kind rustls cannot sign with).
    #[error(
        "the TLS key {} does not fit the certificate {}: {reason}; give the key the certificate was made for",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// Reads a certificate chain and its key from PEM files.
fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsSetupError> {
    let file_error = |what, path: &Path, reason: String| TlsSetupError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error("cert", cert, pem_reason(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error("cert", cert, pem_reason(e)))?;
    if chain.is_empty() {
        return Err(file_error(
            "cert",
            cert,
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("key", key, pem_reason(e)))?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsSetupError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A PEM error in words.
fn pem_reason(err: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match err {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "it holds no PEM item of the expected kind".into(),
        other => format!("it is not valid PEM ({other:?})"),
    }
}

/// Hands every new handshake the certificate loaded last.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The server's TLS: its certificate files, the certificate in use, and the acceptor that
/// starts handshakes with it.
#[derive(Clone)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl ServerTls {
    /// Loads the certificate chain (`cert`, PEM, the server's own first) and its private key
    /// (`key`, PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsSetupError> {
        let (cert, key) = (cert.into(), key.into());
        let loaded = load_certified_key(&cert, &key)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(loaded))));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        Ok(ServerTls {
            cert,
            key,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again; new handshakes use what they now hold, connections already up
    /// keep theirs. On an error the certificate in use stays. Returns the new fingerprint.
    pub fn reload(&self) -> Result<Fingerprint, TlsSetupError> {
        let loaded = Arc::new(load_certified_key(&self.cert, &self.key)?);
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(self.fingerprint())
    }

    /// The fingerprint of the certificate in use (what clients pin).
    pub fn fingerprint(&self) -> Fingerprint {
        let current = self.current.0.read().unwrap_or_else(|e| e.into_inner());
        Fingerprint::of(current.cert[0].as_ref())
    }

    /// Wraps `listener`: what it accepts speaks TLS.
    pub fn listener<L: Listener>(&self, listener: L) -> TlsListener<L> {
        TlsListener {
            inner: listener,
            acceptor: self.acceptor.clone(),
        }
    }
}

/// A listener whose connections speak TLS (see [`ServerTls::listener`]).
pub struct TlsListener<L> {
    inner: L,
    acceptor: TlsAcceptor,
}

impl<L: Listener> Listener for TlsListener<L> {
    type Stream = ServerStream<L::Stream>;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        let handshake = Handshake::Sniffing(stream, self.acceptor.clone());
        Ok((ServerStream(Box::new(handshake)), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// What a plain-text client on the TLS port is told before it is closed.
const PLAIN_ON_TLS_PORT: &[u8] = b"ERROR :Closing Link: this port speaks TLS; connect with TLS \
(ircs://, --tls in parla, /connect -tls in irssi) or to the server's plain port\r\n";

/// A server-side TLS connection whose handshake runs on its first read or write (boxed, so that
/// the connection's task stays small whatever rustls holds).
pub struct ServerStream<S>(Box<Handshake<S>>);

enum Handshake<S> {
    /// Waiting for the first byte: a TLS handshake record starts with 22.
    Sniffing(S, TlsAcceptor),
    Running(tokio_rustls::server::FallibleAccept<Rewound<S>>),
    /// Not TLS: telling the client so in plain text (rustls would send it a binary alert).
    Refusing(S, &'static [u8]),
    Done(tokio_rustls::server::TlsStream<Rewound<S>>),
    Failed(io::ErrorKind, String),
}

/// The first byte of a TLS record that carries a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 22;

/// A stream with its first byte, read to sniff the protocol, put back in front.
pub struct Rewound<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: Stream> AsyncRead for Rewound<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.first.take() {
            Some(byte) if buf.remaining() > 0 => {
                buf.put_slice(&[byte]);
                Poll::Ready(Ok(()))
            }
            first => {
                this.first = first;
                Pin::new(&mut this.inner).poll_read(cx, buf)
            }
        }
    }
}

impl<S: Stream> AsyncWrite for Rewound<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Stream> ServerStream<S> {
    /// Drives the handshake; ready once it is done (or failed: then with the error, again at
    /// every later call).
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let next = match &mut *self.0 {
                Handshake::Done(_) => return Poll::Ready(Ok(())),
                Handshake::Sniffing(raw, _) => {
                    let mut first = [0u8; 1];
                    let mut buf = ReadBuf::new(&mut first);
                    match ready!(Pin::new(&mut *raw).poll_read(cx, &mut buf)) {
                        Err(err) => Handshake::Failed(err.kind(), tls_reason(&err)),
                        Ok(()) if buf.filled().is_empty() => Handshake::Failed(
                            io::ErrorKind::UnexpectedEof,
                            "closed before a TLS handshake".into(),
                        ),
                        Ok(()) => {
                            let byte = buf.filled()[0];
                            // Take the stream and acceptor out to hand them on.
                            let Handshake::Sniffing(raw, acceptor) = std::mem::replace(
                                &mut *self.0,
                                Handshake::Failed(io::ErrorKind::Other, String::new()),
                            ) else {
                                unreachable!("matched above")
                            };
                            if byte == TLS_HANDSHAKE_RECORD {
                                let rewound = Rewound {
                                    first: Some(byte),
                                    inner: raw,
                                };
                                Handshake::Running(acceptor.accept(rewound).into_fallible())
                            } else {
                                Handshake::Refusing(raw, PLAIN_ON_TLS_PORT)
                            }
                        }
                    }
                }
                Handshake::Failed(kind, reason) => {
                    return Poll::Ready(Err(io::Error::new(*kind, reason.clone())));
                }
                Handshake::Running(accept) => match ready!(Pin::new(accept).poll(cx)) {
                    Ok(stream) => Handshake::Done(stream),
                    Err((err, _)) => Handshake::Failed(err.kind(), tls_reason(&err)),
                },
                Handshake::Refusing(raw, rest) => {
                    while !rest.is_empty() {
                        match ready!(Pin::new(&mut *raw).poll_write(cx, rest)) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => *rest = &rest[n..],
                        }
                    }
                    let _ = ready!(Pin::new(&mut *raw).poll_shutdown(cx));
                    Handshake::Failed(
                        io::ErrorKind::InvalidData,
                        "plain text on the TLS port".into(),
                    )
                }
            };
            *self.0 = next;
        }
    }

    fn done(&mut self) -> Pin<&mut tokio_rustls::server::TlsStream<Rewound<S>>> {
        match &mut *self.0 {
            Handshake::Done(stream) => Pin::new(stream),
            _ => unreachable!("polled only after the handshake"),
        }
    }
}

/// A handshake error in words for the log and the room (`TLS handshake failed: ...`).
fn tls_reason(err: &io::Error) -> String {
    format!("TLS handshake failed: {err}")
}

impl<S: Stream> AsyncRead for ServerStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        this.done().poll_read(cx, buf)
    }
}

impl<S: Stream> AsyncWrite for ServerStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        this.done().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        this.done().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // rustls takes vectored writes into its own buffer.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        this.done().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match ready!(this.poll_handshake(cx)) {
            Ok(()) => this.done().poll_shutdown(cx),
            // Nothing left to close politely.
            Err(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Which certificates a client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's root certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR` override where they are).
    System,
    /// The root certificates in this PEM file (a private certificate authority).
    CaFile(PathBuf),
    /// Exactly the certificate with this fingerprint (a self-signed server), whatever it says.
    Pinned(Fingerprint),
}

/// Why a TLS connection to a server failed, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsConnectError {
    /// No root certificates to verify against.
    #[error(
        "no trusted root certificates: {reason}. Install the system's CA certificates (Debian: \
         ca-certificates), give a CA file with --tls-ca, or pin the server's certificate with \
         --tls-fingerprint"
    )]
    NoRoots {
        /// What went wrong loading them.
        reason: String,
    },
    /// The certificate did not verify against the roots.
    #[error(
        "the server's certificate is not trusted ({reason}). Its SHA-256 fingerprint is \
         {fingerprint}; if you trust this server (ask its operator to confirm the \
         fingerprint), connect with --tls-fingerprint {fingerprint}"
    )]
    Untrusted {
        /// What rustls said.
        reason: String,
        /// The certificate presented.
        fingerprint: Fingerprint,
    },
    /// The certificate is not the pinned one.
    #[error(
        "the server's certificate has the SHA-256 fingerprint {got}, not the {pinned} given \
         with --tls-fingerprint. If its operator changed the certificate, pin the new one; if \
         not, someone may be intercepting the connection"
    )]
    WrongPin {
        /// The certificate presented.
        got: Fingerprint,
        /// The one expected.
        pinned: Fingerprint,
    },
    /// The handshake failed before a certificate was seen (not a TLS port, a reset...).
    #[error(
        "the TLS handshake failed: {reason}. Is this the server's TLS port (6697 by \
         convention)? To connect without TLS, drop --tls (or ircs://) and use its plain port"
    )]
    Handshake {
        /// What went wrong.
        reason: String,
    },
    /// The host is not a name a certificate can be for.
    #[error("{host:?} is not a host name or IP address a certificate can name")]
    BadName {
        /// The host as given.
        host: String,
    },
}

/// Verifies the server and remembers which certificate it presented.
#[derive(Debug)]
struct Verifier {
    trust: Verify,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<Fingerprint>>,
}

#[derive(Debug)]
enum Verify {
    Roots(Arc<WebPkiServerVerifier>),
    Pinned(Fingerprint),
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(got);
        match &self.trust {
            Verify::Roots(roots) => {
                roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Verify::Pinned(pinned) if *pinned == got => Ok(ServerCertVerified::assertion()),
            Verify::Pinned(_) => Err(rustls::Error::General("not the pinned certificate".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The root certificates `trust` names.
fn roots(trust: &Trust) -> Result<RootCertStore, TlsConnectError> {
    let mut store = RootCertStore::empty();
    let certs = match trust {
        Trust::Pinned(_) => return Ok(store),
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let reason = match found.errors.first() {
                    Some(err) => err.to_string(),
                    None => "none found on this system".to_owned(),
                };
                return Err(TlsConnectError::NoRoots { reason });
            }
            found.certs
        }
        Trust::CaFile(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsConnectError::NoRoots {
                reason: format!("could not read {}: {}", path.display(), pem_reason(e)),
            })?,
    };
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsConnectError::NoRoots {
            reason: "none of the certificates found could be used".into(),
        });
    }
    Ok(store)
}

/// Starts TLS over `stream` (already connected to `host`) and verifies the server against
/// `trust`.
pub async fn connect<S: Stream>(
    stream: S,
    host: &str,
    trust: &Trust,
) -> Result<tokio_rustls::client::TlsStream<S>, TlsConnectError> {
    let provider = provider();
    let verify = match trust {
        Trust::Pinned(pin) => Verify::Pinned(*pin),
        other => Verify::Roots(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(other)?), provider.clone())
                .build()
                .map_err(|e| TlsConnectError::NoRoots {
                    reason: e.to_string(),
                })?,
        ),
    };
    let verifier = Arc::new(Verifier {
        trust: verify,
        algorithms: provider.signature_verification_algorithms,
        seen: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|_| TlsConnectError::BadName {
        host: host.to_owned(),
    })?;
    match TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
    {
        Ok(stream) => Ok(stream),
        Err(err) => {
            let seen = *verifier.seen.lock().unwrap_or_else(|e| e.into_inner());
            let reason = match err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::InvalidCertificate(why)) => certificate_problem(why),
                Some(other) => other.to_string(),
                None => err.to_string(),
            };
            Err(match (seen, trust) {
                (Some(got), Trust::Pinned(pinned)) if got != *pinned => TlsConnectError::WrongPin {
                    got,
                    pinned: *pinned,
                },
                (Some(fingerprint), Trust::System | Trust::CaFile(_)) => {
                    TlsConnectError::Untrusted {
                        reason,
                        fingerprint,
                    }
                }
                _ => TlsConnectError::Handshake { reason },
            })
        }
    }
}

/// What is wrong with a certificate, in words a person can act on.
fn certificate_problem(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match why {
        E::UnknownIssuer => {
            "it is self-signed, or signed by an authority this system does not trust".into()
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "it is for another host name; connect with the name the certificate gives".into()
        }
        E::Expired | E::ExpiredContext { .. } => "it has expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "it is not valid yet (or this computer's clock is wrong)".into()
        }
        E::Revoked => "it has been revoked".into(),
        other => format!("{other:?}"),
    }
}

/// A throw-away self-signed certificate for `names` (host names or IPs), as PEM: the
/// certificate and its private key. For trying TLS locally (`parla-server self-signed`).
pub fn self_signed(names: Vec<String>) -> Result<(String, String), String> {
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Parla self-signed (parla-server self-signed)",
    );
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `pem` to `path` (a private key readable by its owner only).
pub fn write_pem(path: &Path, pem: &str, private: bool) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(pem.as_bytes())
}
