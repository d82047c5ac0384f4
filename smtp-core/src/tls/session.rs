//! [`TlsSession`]: one TLS connection without I/O, for callers that move the bytes
//! themselves (an event loop in C, asyncio in Python). It wraps a rustls connection the
//! same way for both sides: ciphertext in, plaintext out, plaintext in, ciphertext out,
//! each buffer bounded by its consumer.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, Connection, ServerConnection};

use super::{TlsError, TlsErrorKind};

/// A TLS failure of a [`TlsSession`]: what failed and its [kind](TlsErrorKind).
#[derive(Debug, Clone)]
pub struct TlsSessionError {
    message: String,
    kind: TlsErrorKind,
    /// The rustls error behind it, when there is one (the error's source).
    rustls: Option<rustls::Error>,
}

impl TlsSessionError {
    fn new(kind: TlsErrorKind, message: String) -> TlsSessionError {
        TlsSessionError {
            message,
            kind,
            rustls: None,
        }
    }

    /// A handshake that failed without a TLS error to show for it (the caller's
    /// deadline passed, the peer hung up).
    pub fn handshake(message: impl Into<String>) -> TlsSessionError {
        TlsSessionError::new(TlsErrorKind::Protocol, message.into())
    }

    /// What the failure was about (an unknown issuer, a name mismatch, ...).
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }
}

impl std::fmt::Display for TlsSessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsSessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.rustls
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A failed handshake of a caller's [`TlsSession`], reported to a client operation
/// ([`Operation::tls_failed`](crate::client::runner::Operation::tls_failed)): an error of
/// kind `Tls` whose [`tls_kind`](crate::client::error::Error::tls_kind) is the session's.
impl From<TlsSessionError> for crate::client::error::Error {
    fn from(error: TlsSessionError) -> Self {
        match error.rustls {
            Some(rustls) => crate::client::error::Error::io(
                "TLS handshake failed",
                io::Error::new(io::ErrorKind::InvalidData, rustls),
            ),
            None => crate::client::error::Error::new(
                crate::client::error::ErrorKind::Tls,
                error.message,
            ),
        }
    }
}

/// One TLS connection without I/O, client or server.
///
/// Give it what the socket delivered ([`receive`](Self::receive)), send what
/// [`output`](Self::output) holds, read the decrypted bytes from
/// [`plaintext`](Self::plaintext), and encrypt with [`write`](Self::write). After a
/// failure, `output` may hold an alert to send before closing.
///
/// ```
/// use smtp_core::tls::{TlsSession, client_config, TlsClientOptions};
/// let config = client_config(&TlsClientOptions::default()).unwrap();
/// let client = TlsSession::client(config, "mx.example.org").unwrap();
/// assert!(client.is_handshaking());
/// assert!(!client.output().is_empty()); // the ClientHello, ready to send
/// ```
#[derive(Debug)]
pub struct TlsSession {
    conn: Connection,
    /// Ciphertext waiting to be sent.
    out: Vec<u8>,
    /// Plaintext received and not yet consumed.
    plain: Vec<u8>,
    /// A close_notify arrived: the peer sends nothing more.
    peer_closed: bool,
}

impl TlsSession {
    /// A client session that checks the server's certificate against `server_name` (a
    /// DNS name or an IP address); its ClientHello is ready in [`output`](Self::output).
    pub fn client(
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<TlsSession, TlsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::new(format!("not a DNS name or IP address: {server_name:?}")))?;
        let conn = ClientConnection::new(config, name)
            .map_err(|e| TlsError::new(format!("TLS client: {e}")))?;
        Ok(TlsSession::with(Connection::Client(conn)))
    }

    /// A client session for a STARTTLS the client runner asked for
    /// ([`Action::StartTls`](crate::client::runner::Action::StartTls)): its configuration
    /// and the name the certificate must carry.
    pub fn client_for(setup: &crate::client::options::TlsSetup) -> Result<TlsSession, TlsError> {
        let conn = ClientConnection::new(Arc::clone(&setup.config), setup.server_name.clone())
            .map_err(|e| TlsError::new(format!("TLS client: {e}")))?;
        Ok(TlsSession::with(Connection::Client(conn)))
    }

    /// A server session; it waits for the client's hello.
    pub fn server(config: Arc<rustls::ServerConfig>) -> Result<TlsSession, TlsError> {
        let conn =
            ServerConnection::new(config).map_err(|e| TlsError::new(format!("TLS server: {e}")))?;
        Ok(TlsSession::with(Connection::Server(conn)))
    }

    fn with(conn: Connection) -> TlsSession {
        let mut session = TlsSession {
            conn,
            out: Vec::new(),
            plain: Vec::new(),
            peer_closed: false,
        };
        session.drain_tls();
        session
    }

    fn failed(&self, error: &rustls::Error) -> TlsSessionError {
        let what = if self.conn.is_handshaking() {
            "TLS handshake failed"
        } else {
            "TLS failed"
        };
        TlsSessionError {
            message: format!("{what}: {error}"),
            kind: TlsErrorKind::of_rustls(error),
            rustls: Some(error.clone()),
        }
    }

    fn io_failed(error: &io::Error) -> TlsSessionError {
        TlsSessionError::new(TlsErrorKind::Protocol, format!("TLS: {error}"))
    }

    /// Moves what rustls has to send into `out`.
    fn drain_tls(&mut self) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
    }

    /// Takes ciphertext read from the socket; the plaintext it carried is appended to
    /// [`plaintext`](Self::plaintext) (handshake records carry none). Fails when the
    /// peer breaks TLS or, during the handshake, is not trusted; `output` may then hold
    /// an alert to send before closing. Bytes after the peer's close_notify are ignored.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), TlsSessionError> {
        let mut input = data;
        while !input.is_empty() && !self.peer_closed {
            let read = self
                .conn
                .read_tls(&mut input)
                .map_err(|e| Self::io_failed(&e))?;
            let processed = self.conn.process_new_packets();
            self.drain_tls();
            let state = processed.map_err(|e| self.failed(&e))?;
            if state.plaintext_bytes_to_read() > 0 {
                match self.conn.reader().read_to_end(&mut self.plain) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(Self::io_failed(&e)),
                }
            }
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
            if read == 0 {
                break;
            }
        }
        Ok(())
    }

    /// The plaintext received and not yet consumed.
    pub fn plaintext(&self) -> &[u8] {
        &self.plain
    }

    /// Marks the first `n` bytes of the plaintext as read (more than there are: all).
    pub fn consume_plaintext(&mut self, n: usize) {
        self.plain.drain(..n.min(self.plain.len()));
    }

    /// Encrypts plaintext to send; the ciphertext goes to [`output`](Self::output). Only
    /// once the handshake is over (before, rustls would hold the plaintext back).
    pub fn write(&mut self, data: &[u8]) -> Result<(), TlsSessionError> {
        if self.conn.is_handshaking() {
            return Err(TlsSessionError::new(
                TlsErrorKind::Protocol,
                "TLS: the handshake is not over".into(),
            ));
        }
        let mut rest = data;
        while !rest.is_empty() {
            let n = self
                .conn
                .writer()
                .write(rest)
                .map_err(|e| Self::io_failed(&e))?;
            // rustls takes up to its buffer limit; move that out and offer the rest.
            self.drain_tls();
            if n == 0 {
                return Err(TlsSessionError::new(
                    TlsErrorKind::Protocol,
                    "TLS: the connection takes no more data".into(),
                ));
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    /// The ciphertext to write to the socket (handshake records, encrypted data, alerts).
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Marks the first `n` bytes of the output as sent (more than there are: all).
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Takes the whole output at once.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Queues a close_notify alert in the output: the orderly end.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
        self.drain_tls();
    }

    /// True until the handshake is complete.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True once the peer sent close_notify: it will send nothing more.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The negotiated protocol version, "TLSv1.2" or "TLSv1.3", once known.
    pub fn protocol_version(&self) -> Option<&'static str> {
        super::info::protocol_name(&self.conn)
    }

    /// The negotiated cipher suite's IANA name, such as "TLS13_AES_256_GCM_SHA384".
    pub fn cipher_suite(&self) -> Option<&'static str> {
        super::info::cipher_name(&self.conn)
    }

    /// Everything a server handler is told about the handshake ([`TlsInfo`](super::TlsInfo)):
    /// version, cipher, the client's SNI and certificate chain. For a sans-IO server that
    /// drives TLS itself, to hand to its connection layer once the handshake is over.
    pub fn info(&self) -> super::TlsInfo {
        super::TlsInfo::from_state(&self.conn, self.server_name())
    }

    /// On a server, the name the client asked for (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The peer's certificate chain (DER, leaf first), once the handshake has checked
    /// it: the server's on a client, the client's (mutual TLS) on a server.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{RootCerts, TlsClientOptions, client_config, server_config_from_pem};

    fn pair(name: &str) -> (TlsSession, TlsSession) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = generated.cert.pem();
        let key = generated.signing_key.serialize_pem();
        let server = server_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let options = TlsClientOptions {
            roots: RootCerts::Pem(cert.into_bytes()),
            ..TlsClientOptions::default()
        };
        let client = client_config(&options).unwrap();
        (
            TlsSession::client(client, name).unwrap(),
            TlsSession::server(server).unwrap(),
        )
    }

    /// Moves output between the two until neither has any (bounded).
    fn pump(a: &mut TlsSession, b: &mut TlsSession) -> Result<(), TlsSessionError> {
        for _ in 0..32 {
            let (ab, ba) = (a.take_output(), b.take_output());
            if ab.is_empty() && ba.is_empty() {
                return Ok(());
            }
            b.receive(&ab)?;
            a.receive(&ba)?;
        }
        panic!("no quiet point in 32 rounds");
    }

    #[test]
    fn a_handshake_then_data_both_ways_then_close() {
        let (mut client, mut server) = pair("localhost");
        pump(&mut client, &mut server).unwrap();
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(server.server_name(), Some("localhost"));
        assert!(client.protocol_version().is_some());
        assert!(client.cipher_suite().is_some());
        assert_eq!(client.peer_certificates().map(<[_]>::len), Some(1));
        client.write(b"EHLO c\r\n").unwrap();
        pump(&mut client, &mut server).unwrap();
        assert_eq!(server.plaintext(), b"EHLO c\r\n");
        server.consume_plaintext(4);
        assert_eq!(server.plaintext(), b" c\r\n");
        server.write(b"250 ok\r\n").unwrap();
        client.close();
        pump(&mut client, &mut server).unwrap();
        assert_eq!(client.plaintext(), b"250 ok\r\n");
        assert!(server.peer_closed());
    }

    #[test]
    fn an_untrusted_name_is_a_classified_failure() {
        let (mut client, mut server) = pair("mx.example.org");
        let e = pump(&mut client, &mut server).unwrap_err();
        assert_eq!(e.kind(), TlsErrorKind::NameMismatch);
        assert!(e.to_string().contains("handshake"), "{e}");
        let (mut early, _) = pair("localhost");
        assert!(early.write(b"too soon").is_err());
    }
}
