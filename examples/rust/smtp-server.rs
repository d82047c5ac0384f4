//! A real SMTP server on smtpx: Maildir delivery (or discard), STARTTLS and implicit TLS,
//! AUTH, limits and timeouts. Prints `listening on ADDR` when ready and stops cleanly on
//! SIGINT or SIGTERM. With `SMTPX_LOG=info` (or `debug`) in the environment it logs one
//! line per connection event to standard error.
//!
//! `--async` serves the same options and handler on the tokio driver
//! ([`AsyncServer`](smtp_core::asynchronous::server::AsyncServer), feature `tokio`) instead
//! of a thread per connection. By default it runs a current-thread runtime: in
//! `bench/peers` (server pinned to one CPU) it used the least CPU per message, see
//! `bench/README.md`. `--async-threads N` runs a multi-threaded runtime with N workers
//! instead, where the handler's hooks go through `block_in_place` unless
//! `--no-block-in-place` is given.
//!
//! ```text
//! cargo run --release --example smtp-server -- [--listen ADDR] [--maildir DIR] [--discard]
//!     [--hostname NAME] [--tls-cert PEM --tls-key PEM] [--tls-listen ADDR] [--require-tls]
//!     [--auth USER:PASS]... [--allow-insecure-auth] [--max-size BYTES] [--max-recipients N]
//!     [--timeout SECS] [--max-connections N] [--lmtp] [--bare-lf normalize|reject]
//!     [--async [--async-threads N] [--no-block-in-place]] [--no-pipelining-sync]
//!     [--proxy-protocol [--proxy-trusted CIDR]...] [-v]
//!     [--relay HOST:PORT [--relay-lmtp] [--relay-starttls] [--relay-ca PEM]
//!      [--relay-auth USER:PASS] [--relay-pool N]]
//! ```
//!
//! `--relay HOST:PORT` replaces Maildir delivery with a before-queue proxy
//! ([`RelayHandler`](smtp_core::server::relay::RelayHandler)): every transaction is
//! forwarded as it arrives to that next hop (over LMTP with `--relay-lmtp`, with STARTTLS
//! required with `--relay-starttls`, trusting the CA certificates in `--relay-ca PEM`
//! instead of the web PKI, authenticating with `--relay-auth`), through a pool of at
//! most `--relay-pool N` connections (default 8); each client is answered with the next
//! hop's replies. With `--async` it is the
//! [`AsyncRelayHandler`](smtp_core::server::relay::AsyncRelayHandler), which waits for the
//! next hop without holding a worker thread.
//!
//! `-v` prints the wire trace on standard error: every command and reply line as
//! `conn=ID C: ...` / `conn=ID S: ...`, AUTH payloads redacted, message content by size.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use smtp_core::auth::Credentials;
use smtp_core::blocking::Server;
use smtp_core::client::pool::PoolConfig;
use smtp_core::client::{ClientOptions, TlsMode};
use smtp_core::data::BareLinePolicy;
use smtp_core::handler::{DiscardHandler, Handler, PasswordAuth};
use smtp_core::maildir::MaildirHandler;
use smtp_core::server::proxy::{IpNetwork, ProxyProtocol};
use smtp_core::server::relay::RelayHandler;
use smtp_core::server::{ServerConfig, ServerOptions};
use smtp_core::tls::{self, RootCerts, TlsClientOptions};
use smtp_core::trace::TraceSink;

struct Args {
    listen: String,
    maildir: PathBuf,
    discard: bool,
    hostname: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_listen: Option<String>,
    require_tls: bool,
    /// False with --no-pipelining-sync: careless pipelining is then tolerated.
    pipelining_sync: bool,
    auth: Vec<(String, String)>,
    allow_insecure_auth: bool,
    max_size: Option<u64>,
    max_recipients: Option<usize>,
    timeout: Option<u64>,
    max_connections: Option<usize>,
    lmtp: bool,
    bare_lf: BareLinePolicy,
    /// Serve on the tokio driver instead of a thread per connection.
    asynchronous: bool,
    /// With `asynchronous`: worker threads of a multi-threaded runtime; None for a
    /// current-thread runtime.
    async_threads: Option<usize>,
    block_in_place: bool,
    /// Print the wire trace on standard error.
    verbose: bool,
    /// --proxy-protocol: every connection begins with a PROXY header.
    proxy_protocol: bool,
    /// --proxy-trusted: where the headers may come from (default loopback).
    proxy_trusted: Vec<IpNetwork>,
    /// Forward every transaction to this next hop instead of storing it.
    relay: Option<String>,
    relay_lmtp: bool,
    relay_starttls: bool,
    relay_ca: Option<PathBuf>,
    relay_auth: Option<(String, String)>,
    relay_pool: usize,
}

const USAGE: &str = "usage: smtp-server [--listen ADDR] [--maildir DIR] [--discard] [--hostname NAME] \
[--tls-cert PEM --tls-key PEM] [--tls-listen ADDR] [--require-tls] [--auth USER:PASS]... \
[--allow-insecure-auth] [--max-size BYTES] [--max-recipients N] [--timeout SECS] \
[--max-connections N] [--lmtp] [--bare-lf normalize|reject] \
[--async [--async-threads N] [--no-block-in-place]] [--no-pipelining-sync] \
[--proxy-protocol [--proxy-trusted CIDR]...] [-v] \
[--relay HOST:PORT [--relay-lmtp] [--relay-starttls] [--relay-ca PEM] [--relay-auth USER:PASS] \
[--relay-pool N]]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:2525".into(),
        maildir: PathBuf::from("maildir"),
        discard: false,
        hostname: "localhost".into(),
        tls_cert: None,
        tls_key: None,
        tls_listen: None,
        require_tls: false,
        pipelining_sync: true,
        auth: Vec::new(),
        allow_insecure_auth: false,
        max_size: None,
        max_recipients: None,
        timeout: None,
        max_connections: None,
        lmtp: false,
        bare_lf: BareLinePolicy::Normalize,
        asynchronous: false,
        async_threads: None,
        block_in_place: true,
        verbose: false,
        proxy_protocol: false,
        proxy_trusted: Vec::new(),
        relay: None,
        relay_lmtp: false,
        relay_starttls: false,
        relay_ca: None,
        relay_auth: None,
        relay_pool: 8,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        fn number<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
        }
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--maildir" => a.maildir = value()?.into(),
            "--discard" => a.discard = true,
            "--hostname" => a.hostname = value()?,
            "--tls-cert" => a.tls_cert = Some(value()?.into()),
            "--tls-key" => a.tls_key = Some(value()?.into()),
            "--tls-listen" => a.tls_listen = Some(value()?),
            "--require-tls" => a.require_tls = true,
            "--no-pipelining-sync" => a.pipelining_sync = false,
            "--auth" => {
                let v = value()?;
                let (user, pass) = v.split_once(':').ok_or("--auth takes USER:PASS")?;
                a.auth.push((user.to_owned(), pass.to_owned()));
            }
            "--allow-insecure-auth" => a.allow_insecure_auth = true,
            "--max-size" => a.max_size = Some(number(&flag, value()?)?),
            "--max-recipients" => a.max_recipients = Some(number(&flag, value()?)?),
            "--timeout" => a.timeout = Some(number(&flag, value()?)?),
            "--max-connections" => a.max_connections = Some(number(&flag, value()?)?),
            "--lmtp" => a.lmtp = true,
            "--bare-lf" => {
                a.bare_lf = match value()?.as_str() {
                    "normalize" => BareLinePolicy::Normalize,
                    "reject" => BareLinePolicy::Reject,
                    other => return Err(format!("--bare-lf: normalize or reject, not {other}")),
                }
            }
            "--async" => a.asynchronous = true,
            "--async-threads" => {
                let n: usize = number(&flag, value()?)?;
                if n == 0 {
                    return Err("--async-threads: at least 1".into());
                }
                a.async_threads = Some(n);
            }
            "--no-block-in-place" => a.block_in_place = false,
            "--proxy-protocol" => a.proxy_protocol = true,
            "--proxy-trusted" => a.proxy_trusted.push(
                value()?
                    .parse()
                    .map_err(|e| format!("--proxy-trusted: {e}"))?,
            ),
            "-v" | "--verbose" => a.verbose = true,
            "--relay" => a.relay = Some(value()?),
            "--relay-lmtp" => a.relay_lmtp = true,
            "--relay-starttls" => a.relay_starttls = true,
            "--relay-ca" => a.relay_ca = Some(value()?.into()),
            "--relay-auth" => {
                let v = value()?;
                let (user, pass) = v.split_once(':').ok_or("--relay-auth takes USER:PASS")?;
                a.relay_auth = Some((user.to_owned(), pass.to_owned()));
            }
            "--relay-pool" => a.relay_pool = number(&flag, value()?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !a.proxy_trusted.is_empty() && !a.proxy_protocol {
        return Err("--proxy-trusted goes with --proxy-protocol".into());
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if (a.tls_listen.is_some() || a.require_tls) && a.tls_cert.is_none() {
        return Err("--tls-listen and --require-tls need --tls-cert and --tls-key".into());
    }
    if !a.asynchronous && (a.async_threads.is_some() || !a.block_in_place) {
        return Err("--async-threads and --no-block-in-place go with --async".into());
    }
    if a.asynchronous && !cfg!(feature = "tokio") {
        return Err("--async needs the async driver: build this example with \
            `cargo build --release -p smtp-core --examples --features tokio` (or `make examples`)"
            .into());
    }
    Ok(a)
}

/// The server options both drivers share, from the command line.
fn options(args: &Args) -> Result<ServerOptions, String> {
    let mut config = ServerConfig::new(args.hostname.clone());
    config.lmtp = args.lmtp;
    config.bare_line_policy = args.bare_lf;
    config.require_tls = args.require_tls;
    config.pipelining_sync = args.pipelining_sync;
    config.allow_insecure_auth = args.allow_insecure_auth;
    if let Some(size) = args.max_size {
        config.max_message_size = size;
    }
    if let Some(n) = args.max_recipients {
        config.max_recipients = n;
    }
    if let Some(secs) = args.timeout {
        config.command_timeout = Duration::from_secs(secs);
        config.data_timeout = Duration::from_secs(secs);
    }
    let mut options = ServerOptions::new(config);
    if args.verbose {
        options.trace = Some(smtp_core::trace::TraceSink::stderr());
    }
    if let Some(n) = args.max_connections {
        options.max_connections = n;
    }
    if args.proxy_protocol {
        let trusted = if args.proxy_trusted.is_empty() {
            vec!["127.0.0.0/8".parse()?, "::1".parse()?]
        } else {
            args.proxy_trusted.clone()
        };
        let mut proxy = ProxyProtocol::new(trusted);
        if let Some(secs) = args.timeout {
            proxy.timeout = proxy.timeout.min(Duration::from_secs(secs));
        }
        options.proxy_protocol = Some(proxy);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options.tls = Some(
            smtp_core::tls::server_config_from_pem_files(cert, key).map_err(|e| e.to_string())?,
        );
    }
    Ok(options)
}

/// Catches SIGINT and SIGTERM. Done before saying we are ready: a supervisor may stop us
/// at once.
fn catch_signals() -> Result<signal_hook::iterator::Signals, String> {
    signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| e.to_string())
}

fn announce(addrs: &[std::net::SocketAddr]) {
    println!("listening on {}", addrs[0]);
    if let Some(tls_addr) = addrs.get(1) {
        eprintln!("implicit TLS on {tls_addr}");
    }
    let _ = std::io::stdout().flush();
}

fn run<H: Handler>(handler: H, args: &Args) -> Result<(), String> {
    let options = options(args)?;
    let handler = PasswordAuth::new(handler, args.auth.clone());
    if args.asynchronous {
        return run_async(handler, options, args);
    }
    let mut builder = Server::builder(handler, options)
        .listen(&args.listen)
        .map_err(|e| format!("{}: {e}", args.listen))?;
    if let Some(tls_listen) = &args.tls_listen {
        builder = builder
            .listen_tls(tls_listen)
            .map_err(|e| format!("{tls_listen}: {e}"))?;
    }
    let mut signals = catch_signals()?;
    let server = builder.start().map_err(|e| e.to_string())?;
    announce(server.local_addrs());
    let signal = signals.forever().next();
    eprintln!("signal {signal:?}: shutting down");
    let cut = server.shutdown(Duration::from_secs(10));
    if cut > 0 {
        eprintln!("{cut} connection(s) cut at the end of the grace period");
    }
    Ok(())
}

/// The same server on the tokio driver. The signal is awaited on a plain thread (the
/// `tokio` feature of smtp-core does not enable tokio's signal support) and handed to the
/// runtime over a oneshot channel, which works for both runtime flavours: a
/// current-thread runtime serves connections only while `block_on` runs.
#[cfg(feature = "tokio")]
fn run_async<H: Handler>(handler: H, options: ServerOptions, args: &Args) -> Result<(), String> {
    let builder = smtp_core::asynchronous::AsyncServer::builder(handler, options)
        .block_in_place(args.block_in_place);
    serve_async(builder, args)
}

/// `--async --relay`: the relay as an async handler, which waits for the next hop without
/// holding a worker thread (so `--no-block-in-place` changes nothing for it).
#[cfg(feature = "tokio")]
fn run_async_relay(next_hop: &str, args: &Args) -> Result<(), String> {
    use smtp_core::server::relay::AsyncRelayHandler;

    let (host, client_options) = relay_options(next_hop, args)?;
    let relay = AsyncRelayHandler::new(next_hop, &host, client_options, relay_pool(args))
        .map_err(|e| format!("--relay {next_hop}: {e}"))?;
    let handler = PasswordAuth::new(relay, args.auth.clone());
    let builder = smtp_core::asynchronous::AsyncServer::builder_async(handler, options(args)?);
    serve_async(builder, args)
}

/// Runs `builder`'s server on a runtime as `--async-threads` says, until a signal.
#[cfg(feature = "tokio")]
fn serve_async(
    builder: smtp_core::asynchronous::server::AsyncServerBuilder,
    args: &Args,
) -> Result<(), String> {
    let runtime = match args.async_threads {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    }
    .enable_all()
    .build()
    .map_err(|e| format!("tokio runtime: {e}"))?;
    let mut builder = builder
        .listen(&args.listen)
        .map_err(|e| format!("{}: {e}", args.listen))?;
    if let Some(tls_listen) = &args.tls_listen {
        builder = builder
            .listen_tls(tls_listen)
            .map_err(|e| format!("{tls_listen}: {e}"))?;
    }
    let mut signals = catch_signals()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(signals.forever().next());
    });
    runtime.block_on(async move {
        let server = builder.start().map_err(|e| e.to_string())?;
        announce(server.local_addrs());
        let signal = rx.await.ok().flatten();
        eprintln!("signal {signal:?}: shutting down");
        let cut = server.shutdown(Duration::from_secs(10)).await;
        if cut > 0 {
            eprintln!("{cut} connection(s) cut at the end of the grace period");
        }
        Ok(())
    })
}

/// Without the `tokio` feature `--async` is refused by `parse_args`; this is never reached.
#[cfg(not(feature = "tokio"))]
fn run_async<H: Handler>(_: H, _: ServerOptions, _: &Args) -> Result<(), String> {
    Err("--async needs the tokio feature".into())
}

/// Without the `tokio` feature `--async` is refused by `parse_args`; this is never reached.
#[cfg(not(feature = "tokio"))]
fn run_async_relay(_: &str, _: &Args) -> Result<(), String> {
    Err("--async needs the tokio feature".into())
}

/// The smallest logger that shows the library's `log` records on standard error.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
    }
    fn flush(&self) {}
}

/// The relay to `next_hop` that the `--relay*` flags describe.
fn relay_handler(next_hop: &str, args: &Args) -> Result<RelayHandler, String> {
    let (host, options) = relay_options(next_hop, args)?;
    RelayHandler::new(next_hop, &host, options, relay_pool(args))
        .map_err(|e| format!("--relay {next_hop}: {e}"))
}

fn relay_pool(args: &Args) -> PoolConfig {
    PoolConfig::new(args.relay_pool)
}

/// The next hop's host name (the name its certificate must carry) and the client options
/// the `--relay*` flags describe.
fn relay_options(next_hop: &str, args: &Args) -> Result<(String, ClientOptions), String> {
    let host = next_hop
        .rsplit_once(':')
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
        .ok_or("--relay takes HOST:PORT")?;
    let mut options = ClientOptions::new(args.hostname.clone());
    options.lmtp = args.relay_lmtp;
    options.tls = if args.relay_starttls {
        TlsMode::StartTlsRequired
    } else {
        TlsMode::None
    };
    if let Some(ca) = &args.relay_ca {
        let roots = TlsClientOptions {
            roots: RootCerts::PemFile(ca.clone()),
            ..TlsClientOptions::default()
        };
        options.tls_config = Some(tls::client_config(&roots).map_err(|e| e.to_string())?);
    }
    if let Some((user, pass)) = &args.relay_auth {
        options.credentials = Some(Credentials::password(user.clone(), pass.clone()));
        // Without --relay-starttls the password goes in clear: the operator asked for it.
        options.allow_insecure_auth = !args.relay_starttls;
    }
    if args.verbose {
        options.trace = Some(TraceSink::log());
    }
    Ok((host.to_owned(), options))
}

fn main() -> ExitCode {
    if let Ok(level) = std::env::var("SMTPX_LOG")
        && let Ok(filter) = level.parse::<log::LevelFilter>()
    {
        static LOGGER: StderrLogger = StderrLogger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(filter);
        }
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = if let Some(next_hop) = &args.relay {
        if args.asynchronous {
            run_async_relay(next_hop, &args)
        } else {
            relay_handler(next_hop, &args).and_then(|relay| run(relay, &args))
        }
    } else if args.discard {
        run(DiscardHandler, &args)
    } else {
        match MaildirHandler::new(&args.maildir, args.hostname.clone()) {
            Ok(handler) => run(handler, &args),
            Err(e) => Err(format!("{}: {e}", args.maildir.display())),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smtp-server: {e}");
            ExitCode::from(1)
        }
    }
}
