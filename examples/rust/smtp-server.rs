//! A real SMTP server on smtpx: Maildir delivery (or discard), STARTTLS and implicit TLS,
//! AUTH, limits and timeouts. Prints `listening on ADDR` when ready and stops cleanly on
//! SIGINT or SIGTERM. With `SMTPX_LOG=info` (or `debug`) in the environment it logs one
//! line per connection event to standard error.
//!
//! ```text
//! cargo run --release --example smtp-server -- [--listen ADDR] [--maildir DIR] [--discard]
//!     [--hostname NAME] [--tls-cert PEM --tls-key PEM] [--tls-listen ADDR] [--require-tls]
//!     [--auth USER:PASS]... [--allow-insecure-auth] [--max-size BYTES] [--max-recipients N]
//!     [--timeout SECS] [--max-connections N] [--lmtp] [--bare-lf normalize|reject]
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use smtp_core::auth::AuthMechanism;
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::data::BareLinePolicy;
use smtp_core::handler::{DiscardHandler, Handler, PasswordAuth};
use smtp_core::maildir::MaildirHandler;
use smtp_core::server::ServerConfig;

struct Args {
    listen: String,
    maildir: PathBuf,
    discard: bool,
    hostname: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_listen: Option<String>,
    require_tls: bool,
    auth: Vec<(String, String)>,
    allow_insecure_auth: bool,
    max_size: Option<u64>,
    max_recipients: Option<usize>,
    timeout: Option<u64>,
    max_connections: Option<usize>,
    lmtp: bool,
    bare_lf: BareLinePolicy,
}

const USAGE: &str = "usage: smtp-server [--listen ADDR] [--maildir DIR] [--discard] [--hostname NAME] \
[--tls-cert PEM --tls-key PEM] [--tls-listen ADDR] [--require-tls] [--auth USER:PASS]... \
[--allow-insecure-auth] [--max-size BYTES] [--max-recipients N] [--timeout SECS] \
[--max-connections N] [--lmtp] [--bare-lf normalize|reject]";

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
        auth: Vec::new(),
        allow_insecure_auth: false,
        max_size: None,
        max_recipients: None,
        timeout: None,
        max_connections: None,
        lmtp: false,
        bare_lf: BareLinePolicy::Normalize,
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
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if (a.tls_listen.is_some() || a.require_tls) && a.tls_cert.is_none() {
        return Err("--tls-listen and --require-tls need --tls-cert and --tls-key".into());
    }
    Ok(a)
}

fn run<H: Handler>(handler: H, args: &Args) -> Result<(), String> {
    let mut config = ServerConfig::new(args.hostname.clone());
    config.lmtp = args.lmtp;
    config.bare_line_policy = args.bare_lf;
    config.require_tls = args.require_tls;
    config.allow_insecure_auth = args.allow_insecure_auth;
    if !args.auth.is_empty() {
        config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    }
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
    if let Some(n) = args.max_connections {
        options.max_connections = n;
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options.tls = Some(
            smtp_core::tls::server_config_from_pem_files(cert, key).map_err(|e| e.to_string())?,
        );
    }
    let handler = PasswordAuth::new(handler, args.auth.clone());
    let mut builder = Server::builder(handler, options)
        .listen(&args.listen)
        .map_err(|e| format!("{}: {e}", args.listen))?;
    if let Some(tls_listen) = &args.tls_listen {
        builder = builder
            .listen_tls(tls_listen)
            .map_err(|e| format!("{tls_listen}: {e}"))?;
    }
    // Catch the signals before saying we are ready: a supervisor may stop us at once.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| e.to_string())?;
    let server = builder.start().map_err(|e| e.to_string())?;
    let addrs = server.local_addrs().to_vec();
    println!("listening on {}", addrs[0]);
    if let Some(tls_addr) = addrs.get(1) {
        eprintln!("implicit TLS on {tls_addr}");
    }
    let _ = std::io::stdout().flush();
    let signal = signals.forever().next();
    eprintln!("signal {signal:?}: shutting down");
    let cut = server.shutdown(Duration::from_secs(10));
    if cut > 0 {
        eprintln!("{cut} connection(s) cut at the end of the grace period");
    }
    Ok(())
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
    let result = if args.discard {
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
