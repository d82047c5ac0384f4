//! `smtpx_server`: starting a server (with the Maildir handler or a C callback table),
//! its ports, and stopping it.
//!
//! The server is the event-driven one ([`AsyncServer`]) on a tokio runtime of its own:
//! a few worker threads serve every connection, so an idle connection costs a few
//! kilobytes instead of a thread. The callbacks may still block (a database, a file, a
//! DNS query): a callback runs on its worker thread while another worker stays free
//! ([`BlockingHooks::SpareWorker`]; the runtime has at least two workers, even on one
//! CPU), and one that would take the last free worker runs inside
//! [`tokio::task::block_in_place`], which first hands the worker's other connections to
//! another thread. A watchdog thread moves a held worker's connections to a free one, so
//! a blocking callback delays the others by a millisecond or two while callbacks keep
//! blocking (up to ten milliseconds for the first in a second) and stalls only its own
//! connection (with more workers than CPUs, one waits in reserve
//! until then, so that two do not take turns on one CPU); at most [`MAX_BLOCKING`]
//! callbacks block at once in `block_in_place` (tokio's blocking-pool bound), beyond
//! which the connections of the waiting workers wait too. A callback must not wait for
//! the server itself (stopping it from a callback is refused).

use std::ffi::c_char;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_core::asynchronous::server::{AsyncServer, AsyncServerHandle, BlockingHooks};
use smtp_core::auth::AuthMechanism;
use smtp_core::blocking::server::ServerOptions;
use smtp_core::handler::{Handler, PasswordAuth};
use smtp_core::maildir::MaildirHandler;

use super::handler::{CHandler, CTable, smtpx_handler};
use super::reentry;
use crate::config::smtpx_server_config;
use crate::ffi::{free_raw, into_raw, obj, obj_mut, out_arg, str_arg, try_arg, write_out};
use crate::last_error::record;
use crate::log;
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// Threads that may run blocking callbacks at once (tokio's `max_blocking_threads`).
pub const MAX_BLOCKING: usize = 512;

/// A running server and the runtime it runs on.
#[derive(Debug)]
struct Running {
    runtime: tokio::runtime::Runtime,
    handle: AsyncServerHandle,
}

/// A running SMTP server: listeners and connections served by an event loop on a few
/// worker threads of its own (see `smtpx_handler` for where callbacks run).
///
/// Thread safety: movable between threads, one thread at a time; the server's own
/// threads run independently of the thread holding it.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_server {
    server: Option<Running>,
    addrs: Vec<SocketAddr>,
    /// The C callback table, when the handler is one: kept so that stopping can wait
    /// for the last connection thread to let go of it.
    table: Option<Arc<CTable>>,
    /// Marks the threads running this server's callbacks (see `reentry`).
    token: u64,
}

impl smtpx_server {
    /// Stops the server (if running) and waits until no connection thread holds the
    /// callback table any more, then releases it: no callback runs after this returns,
    /// and `userdata_free` has been called.
    fn stop(&mut self, grace: Duration) -> Option<usize> {
        let cut = self.server.take().map(|Running { runtime, handle }| {
            let cut = runtime.block_on(handle.shutdown(grace));
            // Every connection task has ended; what is left (timers, the blocking pool's
            // idle threads) goes now.
            runtime.shutdown_timeout(Duration::from_secs(5));
            cut
        });
        if let Some(table) = self.table.take() {
            // Connection threads leave the server's books just before they drop their
            // session handlers; wait for those last moments (they do no I/O any more).
            while Arc::strong_count(&table) > 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(table);
        }
        cut
    }
}

impl Drop for smtpx_server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(30));
    }
}

/// Builds the server from the configuration and starts it.
/// `handler_auth`: the handler checks AUTH itself, so AUTH is offered even without users.
/// `token`: the server's own (see `reentry`), given to its log callback.
pub(crate) fn start<H: Handler>(
    config: &mut smtpx_server_config,
    handler: H,
    handler_auth: bool,
    token: u64,
) -> Result<smtpx_server, smtpx_result> {
    let mut session = config.session_config();
    if handler_auth {
        session.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    }
    let mut options = ServerOptions::new(session);
    options.trace = log::server_trace_sink(config.log.as_ref(), token);
    if let Some(n) = config.max_connections {
        options.max_connections = n;
    }
    if let Some(n) = config.listen_backlog {
        options.listen_backlog = n;
    }
    options.proxy_protocol = config.proxy_protocol();
    if let Some((cert, key)) = &config.tls_files {
        let tls = smtp_core::tls::TlsIdentity::from_pem_files(cert, key)
            .and_then(|id| smtp_core::tls::server_config_with(id, &config.tls_extras));
        match tls {
            Ok(tls) => options.tls = Some(tls),
            Err(e) => {
                config.last_error.set_message(e.to_string());
                return Err(smtpx_result::Tls);
            }
        }
    } else if config.tls_listen.is_some() || config.config.require_tls {
        config
            .last_error
            .set_message("implicit TLS and require-TLS need a certificate and key");
        return Err(smtpx_result::InvalidArgument);
    }
    let io_err = |config: &mut smtpx_server_config, what: &str, e: std::io::Error| {
        config.last_error.set_message(format!("{what}: {e}"));
        smtpx_result::Io
    };
    // A listening descriptor is the server's from here on, whatever happens next.
    let listen = match config.listen_fd {
        Some(fd) => match adopt_listener(fd) {
            Ok(listener) => {
                config.listen_fd = None;
                Listen::Adopted(listener)
            }
            Err(e) => return Err(io_err(config, &format!("listening descriptor {fd}"), e)),
        },
        None => Listen::Address(config.listen.clone()),
    };
    let builder = if config.users.is_empty() {
        start_with(config, handler, options, listen, token)
    } else {
        let users = config.users.clone();
        start_with(
            config,
            PasswordAuth::new(handler, users),
            options,
            listen,
            token,
        )
    };
    builder.map_err(|(what, e)| io_err(config, &what, e))
}

/// Where the first listener comes from.
enum Listen {
    /// An address to bind ("HOST:PORT").
    Address(String),
    /// A listening socket handed over by the caller.
    Adopted(std::net::TcpListener),
}

fn start_with<H: Handler>(
    config: &smtpx_server_config,
    handler: H,
    options: ServerOptions,
    listen: Listen,
    token: u64,
) -> Result<smtpx_server, (String, std::io::Error)> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    // Callbacks that may block run in place while another worker stays free, so there
    // must be one to spare, even on one CPU.
    let workers = if config.callbacks_block {
        workers.max(2)
    } else {
        workers
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(MAX_BLOCKING)
        .thread_name("smtpx-server")
        .on_thread_start(block_sigpipe)
        .enable_all()
        .build()
        .map_err(|e| ("cannot start the server's threads".to_owned(), e))?;
    let handle = {
        let _inside = runtime.enter();
        let hooks = if config.callbacks_block {
            BlockingHooks::SpareWorker
        } else {
            BlockingHooks::Inline
        };
        let builder = AsyncServer::builder(handler, options).blocking_hooks(hooks);
        let mut builder = match listen {
            Listen::Adopted(listener) => builder.listener(listener, false),
            Listen::Address(addr) => builder.listen(&*addr).map_err(|e| (addr.clone(), e))?,
        };
        if let Some(tls_listen) = &config.tls_listen {
            builder = builder
                .listen_tls(tls_listen)
                .map_err(|e| (tls_listen.clone(), e))?;
        }
        builder
            .start()
            .map_err(|e| ("cannot start the server".to_owned(), e))?
    };
    Ok(smtpx_server {
        addrs: handle.local_addrs().to_vec(),
        server: Some(Running { runtime, handle }),
        table: None,
        token,
    })
}

/// Takes `fd` as a listening TCP socket, after checking that it is one (an Internet
/// socket with SO_ACCEPTCONN set). On failure the descriptor is left, open, to the caller.
#[cfg(unix)]
fn adopt_listener(fd: std::ffi::c_int) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes to `listening`, a c_int that lives
    // through the call; an invalid descriptor is an error, not undefined behaviour.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if listening == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the socket is not listening",
        ));
    }
    // SAFETY: fd is an open socket (getsockopt succeeded) that the caller handed to the
    // library with smtpx_server_config_set_listen_fd; it is given back on failure below.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    match listener.local_addr() {
        Ok(_) => Ok(listener),
        Err(e) => {
            let _ = listener.into_raw_fd();
            Err(e)
        }
    }
}

#[cfg(not(unix))]
fn adopt_listener(_fd: std::ffi::c_int) -> std::io::Result<std::net::TcpListener> {
    Err(std::io::Error::other("listening descriptors are Unix only"))
}

/// Blocks SIGPIPE in the calling thread (one of the server's). A C program, unlike a Rust
/// one, usually keeps SIGPIPE's default action, which ends the process: a write to a
/// client that has gone (TLS writes go through `writev`, which has no MSG_NOSIGNAL) would
/// kill the embedding program. Blocked, the write fails with EPIPE instead, and the signal
/// stays pending on this thread, never delivered. The process's own disposition is left
/// alone. Callbacks, which run on these threads, see SIGPIPE blocked too.
fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: a fresh, zeroed sigset_t is filled by sigemptyset and sigaddset before
    // pthread_sigmask reads it; a NULL old-set pointer is allowed. Only this thread's
    // mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Says whether the handler's callbacks may block (the default, true): then a callback
/// runs on its server thread while another stays free, and in tokio's `block_in_place`
/// (which first hands the thread's other connections to another thread) when it would
/// take the last free one; a watchdog moves a blocked thread's connections to a free
/// thread within a millisecond or two (see `smtpx_server_start`). Callbacks that never
/// block (no I/O, no lock held long, no sleep) may say false: they then run on the
/// server's event loop without any of this, which costs a little less CPU per message
/// and leaves the server one thread per CPU, but a callback that does block then stalls
/// every connection served by that thread.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_callbacks_block(
    config: *mut smtpx_server_config,
    may_block: bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let config = try_arg!(unsafe { obj_mut(config) });
        config.callbacks_block = may_block;
        smtpx_result::Ok
    })
}

/// Hands a started server to C.
pub(crate) fn finish_start(
    started: Result<smtpx_server, smtpx_result>,
    out_server: *mut *mut smtpx_server,
) -> smtpx_result {
    match started {
        Ok(server) => {
            // SAFETY: out_server was checked non-NULL by the caller.
            unsafe { write_out(out_server, into_raw(server)) };
            smtpx_result::Ok
        }
        Err(e) => e,
    }
}

/// Starts a server that delivers every accepted message into the Maildir `maildir_dir`
/// (created with `tmp`, `new` and `cur` when missing), and writes it to `*out_server`
/// (release with `smtpx_server_free`). On failure `smtpx_server_config_last_error` gives
/// the detail: SMTPX_RESULT_IO (the folder or a listening address), SMTPX_RESULT_TLS
/// (certificate or key), SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: `config` is used by this thread during the call only; the server's
/// threads are started before it returns.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_start_maildir(
    config: *mut smtpx_server_config,
    maildir_dir: *const c_char,
    out_server: *mut *mut smtpx_server,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let config = try_arg!(unsafe { obj_mut(config) });
        record(config, |config| {
            try_arg!(out_arg(out_server));
            // SAFETY: the caller passes a NUL-terminated string.
            let dir = try_arg!(unsafe { str_arg(maildir_dir) });
            let handler = match MaildirHandler::new(dir, config.config.hostname.clone()) {
                Ok(h) => h,
                Err(e) => {
                    config.last_error.set_message(format!("{dir}: {e}"));
                    return smtpx_result::Io;
                }
            };
            let started = start(config, handler, false, reentry::new_token());
            finish_start(started, out_server)
        })
    })
}

/// Starts a server whose decisions are made by the C callbacks in `*handler` (copied; see
/// `smtpx_handler` for threads and the userdata's lifetime). The server is event-driven: a few threads of its own serve every
/// connection; a callback runs on its server thread while another stays free (else in
/// tokio's `block_in_place`, which hands the other connections of its thread to another
/// thread first), and a watchdog moves a blocked thread's connections to a free one
/// within a millisecond or two (up to ten milliseconds for the first callback to block
/// in a second), so a callback that blocks stalls only its own connection (at most 512 callbacks block at once in `block_in_place`). Writes it to `*out_server` (release with `smtpx_server_free`). On failure `userdata_free` has been
/// called and `smtpx_server_config_last_error` gives the detail.
///
/// Thread safety: `config` is used by this thread during the call only.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_start(
    config: *mut smtpx_server_config,
    handler: *const smtpx_handler,
    out_server: *mut *mut smtpx_server,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a readable smtpx_handler.
        let handler = try_arg!(unsafe { obj(handler) });
        // Owning the table first means userdata_free runs on every path below.
        let handler_auth = handler.auth.is_some();
        let table = Arc::new(CTable(*handler));
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let config = try_arg!(unsafe { obj_mut(config) });
        record(config, |config| {
            try_arg!(out_arg(out_server));
            let token = reentry::new_token();
            let handler = CHandler(Arc::clone(&table), token);
            let started = start(config, handler, handler_auth, token).map(|mut server| {
                server.table = Some(table);
                server
            });
            finish_start(started, out_server)
        })
    })
}

/// The port of the server's first listener (the one set with
/// `smtpx_server_config_set_listen`); 0 for NULL.
///
/// Thread safety: one thread at a time per server.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_local_port(server: *const smtpx_server) -> u16 {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live server.
        unsafe { server.as_ref() }
            .and_then(|s| s.addrs.first())
            .map_or(0, SocketAddr::port)
    })
}

/// The port of the implicit-TLS listener; 0 when there is none or for NULL.
///
/// Thread safety: one thread at a time per server.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_tls_port(server: *const smtpx_server) -> u16 {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live server.
        unsafe { server.as_ref() }
            .and_then(|s| s.addrs.get(1))
            .map_or(0, SocketAddr::port)
    })
}

/// Stops the server gracefully: stops accepting, lets transactions in flight finish for up
/// to `grace_ms` milliseconds, closes idle connections with 421, then cuts what is left.
/// Returns once no callback is running or can run any more (a handler's `userdata_free`
/// has then been called). Writes the number of connections cut to `*out_cut` when
/// `out_cut` is not NULL.
/// A server already stopped gives SMTPX_RESULT_NOT_READY. Free it afterwards.
///
/// Not from the server's own callbacks: called from inside one of its handler or log
/// callbacks (on a thread serving one of its connections), where it would wait for that
/// very connection, it does nothing and returns SMTPX_RESULT_REENTRANT. To stop the
/// server from a callback, tell another thread to call this, or call `smtpx_server_free`
/// (which then finishes in the background).
///
/// Thread safety: blocks the calling thread; one thread at a time per server.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_stop(
    server: *mut smtpx_server,
    grace_ms: u64,
    out_cut: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live server, used by no other thread.
        let server = try_arg!(unsafe { obj_mut(server) });
        if reentry::is_inside(server.token) {
            return smtpx_result::Reentrant;
        }
        let Some(cut) = server.stop(Duration::from_millis(grace_ms)) else {
            return smtpx_result::NotReady;
        };
        if !out_cut.is_null() {
            // SAFETY: out_cut is not NULL and points to a writable size_t.
            unsafe { write_out(out_cut, cut) };
        }
        smtpx_result::Ok
    })
}

/// Frees a server; one still running is stopped first with a 30-second grace period (see
/// `smtpx_server_stop`: no callback runs after this returns).
/// NULL is fine; must not be called twice.
///
/// From inside one of the server's own handler or log callbacks it returns at once: the
/// stop (30-second grace, the calling connection included) and the release then happen on
/// a background thread, and `userdata_free` is called there. The server must not be used
/// after the call either way.
///
/// Thread safety: no other thread may use the server during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_free(server: *mut smtpx_server) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live server, which nobody else uses now.
        let reentrant = unsafe { server.as_ref() }.is_some_and(|s| reentry::is_inside(s.token));
        if !reentrant {
            // SAFETY: the caller passes NULL or a server from smtpx_server_start*, once.
            unsafe { free_raw(server) };
            return;
        }
        // SAFETY: not NULL (checked above), from smtpx_server_start*, freed only here.
        let owned = unsafe { Box::from_raw(server) };
        // The server goes over only once the thread exists: if it cannot be made, dropping
        // the server here would wait for this very thread, so it is leaked instead.
        let (hand_over, receive) = std::sync::mpsc::channel::<Box<smtpx_server>>();
        let spawned = std::thread::Builder::new()
            .name("smtpx-server-free".into())
            .spawn(move || drop(receive.recv()));
        match spawned {
            Ok(_) => {
                let _ = hand_over.send(owned);
            }
            Err(e) => {
                ::log::error!(
                    "smtpx_server_free from a callback: no thread to stop the server ({e}); it is leaked"
                );
                Box::leak(owned);
            }
        }
    })
}
