//! The handler adapters over real loopback sockets: AUTH offered because the handler
//! checks it (no `auth_mechanisms` in the configuration), `PasswordAuth` around an
//! `AsyncHandler`, and whole-message handlers (sync and async) with the size limit.
#![cfg(feature = "tokio")]

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_core::auth::{AuthAttempt, Credentials};
use smtp_core::blocking::client::{ClientOptions, ErrorKind, SmtpClient, TlsMode};
use smtp_core::blocking::server::Server;
use smtp_core::client::Envelope;
use smtp_core::ehlo::AuthMechanism;
use smtp_core::handler::{
    ConnectionInfo, Handler, Message, MessageHook, PasswordAuth, SessionHandler, Transaction,
    WholeMessage,
};
use smtp_core::reply::{Reply, ReplyCode};
use smtp_core::server::options::ServerOptions;
use smtp_core::server::{Decision, ServerConfig};

fn plain_options() -> ClientOptions {
    let mut o = ClientOptions::new("client.test");
    o.tls = TlsMode::None;
    o.allow_insecure_auth = true;
    o
}

/// Loopback without TLS: AUTH has to be allowed in clear for the test.
fn server_options(max_message_size: u64) -> ServerOptions {
    let mut config = ServerConfig::new("mx.test");
    config.allow_insecure_auth = true;
    config.max_message_size = max_message_size;
    ServerOptions::new(config)
}

/// A handler that checks AUTH itself and says which mechanisms it checks.
struct OwnAuth;
struct OwnAuthSession;
impl Handler for OwnAuth {
    type Session = OwnAuthSession;
    fn connect(&self, _: &ConnectionInfo) -> Result<OwnAuthSession, Reply> {
        Ok(OwnAuthSession)
    }
    fn auth_mechanisms(&self) -> Vec<AuthMechanism> {
        vec![AuthMechanism::Plain]
    }
}
impl SessionHandler for OwnAuthSession {
    fn auth(&mut self, attempt: &AuthAttempt) -> Decision {
        if attempt.username == "bob" && attempt.password.expose() == "pw" {
            Decision::Accept
        } else {
            Decision::reject(535, "5.7.8", "no")
        }
    }
}

#[test]
fn the_auth_hook_alone_makes_the_server_offer_auth() {
    let server = Server::builder(OwnAuth, server_options(1 << 20))
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut client =
        SmtpClient::connect(server.local_addrs()[0], "localhost", plain_options()).unwrap();
    let offered = client.capabilities().unwrap().auth.clone();
    assert_eq!(offered, [AuthMechanism::Plain]);
    let err = client
        .login(Credentials::password("bob", "wrong"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed);
    assert!(client.login(Credentials::password("bob", "pw")).is_ok());
    client.quit().unwrap();
    server.shutdown(Duration::from_secs(5));

    // PasswordAuth offers PLAIN and LOGIN by itself.
    let handler = PasswordAuth::new(smtp_core::handler::DiscardHandler, [("alice", "s3cret")]);
    let server = Server::builder(handler, server_options(1 << 20))
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut client =
        SmtpClient::connect(server.local_addrs()[0], "localhost", plain_options()).unwrap();
    assert!(
        client
            .login(Credentials::password("alice", "s3cret"))
            .is_ok()
    );
    client.quit().unwrap();
    server.shutdown(Duration::from_secs(5));

    // Without an auth-checking handler, AUTH is not offered, and the client says so.
    let server = Server::builder(smtp_core::handler::DiscardHandler, server_options(1 << 20))
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut client =
        SmtpClient::connect(server.local_addrs()[0], "localhost", plain_options()).unwrap();
    assert!(client.capabilities().unwrap().auth.clone().is_empty());
    let err = client
        .login(Credentials::password("alice", "s3cret"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthUnsupported);
    client.quit().unwrap();
    server.shutdown(Duration::from_secs(5));
}

/// Keeps every whole message it is given (sync and async).
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<Kept>>>);
/// The recipients and content of one message.
type Kept = (Vec<String>, Vec<u8>);
struct KeepSession(Keep);

impl Handler for Keep {
    type Session = KeepSession;
    fn connect(&self, _: &ConnectionInfo) -> Result<KeepSession, Reply> {
        Ok(KeepSession(self.clone()))
    }
}
impl SessionHandler for KeepSession {}
impl MessageHook for KeepSession {
    fn message(&mut self, transaction: &Transaction, mut message: Message<'_>) -> Decision {
        let mut content = Vec::new();
        message.read_to_end(&mut content).unwrap();
        if content.windows(4).any(|w| w == b"spam") {
            return Decision::reject(550, "5.7.1", "no spam here");
        }
        let rcpts = transaction
            .recipients
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        let mut kept = self.0.0.lock().unwrap();
        kept.push((rcpts, content));
        Decision::queued(kept.len())
    }
}

#[test]
fn whole_message_handler_gets_the_message_and_the_limit_holds() {
    let keep = Keep::default();
    // The adapter holds at most 2,000 bytes; the session allows 10,000.
    let handler = WholeMessage::new(keep.clone()).max_size(2000);
    let server = Server::builder(handler, server_options(10_000))
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut client =
        SmtpClient::connect(server.local_addrs()[0], "localhost", plain_options()).unwrap();
    let envelope = Envelope::new("a@example.org", ["b@example.net", "c@example.net"]).unwrap();
    let result = client
        .send_bytes(&envelope, b"Subject: hi\r\n\r\n.dotted\r\nbody\r\n")
        .unwrap();
    assert!(result.is_success());
    assert_eq!(result.queue_id(), Some("1"));
    let refused = client
        .send_bytes(&envelope, b"Subject: spam\r\n\r\nspam\r\n")
        .unwrap();
    assert_eq!(refused.data.unwrap().code(), ReplyCode::MAILBOX_UNAVAILABLE);
    // Over the adapter's limit (unknown size, discovered while streaming): 552.
    let big = client
        .send(&envelope, std::io::repeat(b'x').take(5000), None)
        .unwrap();
    assert_eq!(big.data.unwrap().code(), ReplyCode::STORAGE_EXCEEDED);
    // Over the session's limit: refused the same way, the hook never sees it.
    let bigger = client
        .send(&envelope, std::io::repeat(b'y').take(20_000), None)
        .unwrap();
    assert_eq!(bigger.data.unwrap().code(), ReplyCode::STORAGE_EXCEEDED);
    // The connection still works after both.
    assert!(
        client
            .send_bytes(&envelope, b"Subject: again\r\n\r\nok\r\n")
            .unwrap()
            .is_success()
    );
    client.quit().unwrap();
    server.shutdown(Duration::from_secs(5));

    let kept = keep.0.lock().unwrap();
    assert_eq!(
        kept.len(),
        2,
        "only the two small messages reached the hook"
    );
    assert_eq!(kept[0].0, ["b@example.net", "c@example.net"]);
    assert_eq!(kept[0].1, b"Subject: hi\r\n\r\n.dotted\r\nbody\r\n");
    assert_eq!(kept[1].1, b"Subject: again\r\n\r\nok\r\n");
}

/// The same with an `AsyncHandler` on the tokio server.
#[cfg(feature = "tokio")]
mod with_tokio {
    use super::*;
    use smtp_core::asynchronous::{AsyncServer, AsyncSmtpClient};
    use smtp_core::handler::{AsyncHandler, AsyncMessageHook, AsyncSessionHandler};

    impl AsyncHandler for Keep {
        type Session = KeepSession;
        async fn connect(&self, _: &ConnectionInfo) -> Result<KeepSession, Reply> {
            Ok(KeepSession(self.clone()))
        }
    }
    impl AsyncSessionHandler for KeepSession {}
    impl AsyncMessageHook for KeepSession {
        async fn message(
            &mut self,
            transaction: &Transaction,
            mut message: Message<'_>,
        ) -> Decision {
            use tokio::io::AsyncReadExt;
            let mut content = Vec::new();
            AsyncReadExt::read_to_end(&mut message, &mut content)
                .await
                .unwrap();
            let rcpts = transaction
                .recipients
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect();
            let mut kept = self.0.0.lock().unwrap();
            kept.push((rcpts, content));
            Decision::queued(kept.len())
        }
    }

    #[tokio::test]
    async fn async_whole_message_handler_and_password_auth() {
        let keep = Keep::default();
        let handler = PasswordAuth::new(WholeMessage::new(keep.clone()), [("alice", "s3cret")]);
        let server = AsyncServer::builder_async(handler, server_options(10_000))
            .listen("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap();
        let mut client =
            AsyncSmtpClient::connect(server.local_addrs()[0], "localhost", plain_options())
                .await
                .unwrap();
        let err = client
            .login(Credentials::password("alice", "nope"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthFailed);
        client
            .login(Credentials::password("alice", "s3cret"))
            .await
            .unwrap();
        let envelope = Envelope::new("a@example.org", vec![String::from("b@example.net")]).unwrap();
        let result = client
            .send_bytes(&envelope, b"Subject: async\r\n\r\nhello\r\n")
            .await
            .unwrap();
        assert_eq!(result.queue_id(), Some("1"));
        let big = client
            .send(&envelope, &vec![b'z'; 20_000][..], None)
            .await
            .unwrap();
        assert_eq!(big.data.unwrap().code(), ReplyCode::STORAGE_EXCEEDED);
        client.quit().await.unwrap();
        server.shutdown(Duration::from_secs(5)).await;
        let kept = keep.0.lock().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1, b"Subject: async\r\n\r\nhello\r\n");
    }
}
