//! Sends a message with smtpx's blocking client and prints every recipient's result.
//!
//! ```text
//! cargo run --release --example smtp-send -- --server HOST:PORT --from ADDR --to ADDR...
//!     [--starttls | --tls] [--insecure] [--auth USER:PASS] [--allow-insecure-auth]
//!     [--helo NAME] [--count N] [-v] [FILE|-]
//! ```
//!
//! `--auth` needs `--starttls` or `--tls`: without TLS the password would go in clear, so
//! the client refuses to send it (and says so) unless `--allow-insecure-auth` is given, for
//! a test server or a trusted network.
//!
//! `-v` prints the wire trace on standard error (`conn=ID C: ...` / `conn=ID S: ...`, AUTH
//! payloads redacted, message content by size).
//!
//! The message comes from FILE, or standard input when FILE is `-` or missing, and is sent
//! `--count` times over one connection (each next message pipelined behind the previous
//! one's end when the server allows). Exit status: 0 when every recipient accepted every
//! message, 1 when some were refused, 2 on any other error.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use smtp_core::auth::Credentials;
use smtp_core::blocking::SmtpClient;
use smtp_core::client::{ClientOptions, Envelope, TlsMode};
use smtp_core::tls::{self, TlsClientOptions};

struct Args {
    server: String,
    from: String,
    to: Vec<String>,
    tls: TlsMode,
    insecure: bool,
    auth: Option<(String, String)>,
    /// Let the credentials go over a connection without TLS.
    allow_insecure_auth: bool,
    helo: String,
    count: u64,
    file: Option<String>,
    /// Print the wire trace on standard error.
    verbose: bool,
}

const USAGE: &str = "usage: smtp-send --server HOST:PORT --from ADDR --to ADDR... [--starttls | --tls] \
[--insecure] [--auth USER:PASS] [--allow-insecure-auth] [--helo NAME] [--count N] [-v] [FILE|-]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        server: String::new(),
        from: String::new(),
        to: Vec::new(),
        tls: TlsMode::None,
        insecure: false,
        auth: None,
        allow_insecure_auth: false,
        helo: "localhost".into(),
        count: 1,
        file: None,
        verbose: false,
    };
    let mut from_set = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let value = |i: usize| {
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--server" => {
                a.server = value(i)?;
                i += 1;
            }
            "--from" => {
                a.from = value(i)?;
                from_set = true;
                i += 1;
            }
            "--to" => {
                // --to takes one or more addresses: everything up to the next flag or FILE.
                a.to.push(value(i)?);
                i += 1;
                while args
                    .get(i + 1)
                    .is_some_and(|v| !v.starts_with("--") && v.contains('@'))
                {
                    a.to.push(args[i + 1].clone());
                    i += 1;
                }
            }
            "--starttls" => a.tls = TlsMode::StartTlsRequired,
            "--tls" => a.tls = TlsMode::Implicit,
            "--insecure" => a.insecure = true,
            "--allow-insecure-auth" => a.allow_insecure_auth = true,
            "--auth" => {
                let v = value(i)?;
                let (user, pass) = v.split_once(':').ok_or("--auth takes USER:PASS")?;
                a.auth = Some((user.to_owned(), pass.to_owned()));
                i += 1;
            }
            "--helo" => {
                a.helo = value(i)?;
                i += 1;
            }
            "--count" => {
                a.count = value(i)?.parse().map_err(|_| "--count takes a number")?;
                i += 1;
            }
            "-v" | "--verbose" => a.verbose = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other if other.starts_with("--") => {
                return Err(format!("unknown argument {other}\n{USAGE}"));
            }
            file => {
                if a.file.replace(file.to_owned()).is_some() {
                    return Err(format!("only one FILE\n{USAGE}"));
                }
            }
        }
        i += 1;
    }
    if a.server.is_empty() || !from_set || a.to.is_empty() {
        return Err(USAGE.into());
    }
    Ok(a)
}

fn read_message(file: Option<&str>) -> Result<Vec<u8>, String> {
    let mut message = Vec::new();
    match file {
        None | Some("-") => std::io::stdin()
            .read_to_end(&mut message)
            .map_err(|e| format!("stdin: {e}"))?,
        Some(path) => std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut message))
            .map_err(|e| format!("{path}: {e}"))?,
    };
    Ok(message)
}

/// Sends and prints; returns whether every recipient took every message.
fn run(args: &Args) -> Result<bool, String> {
    let to: Vec<&str> = args.to.iter().map(String::as_str).collect();
    let envelope = Envelope::new(&args.from, &to).map_err(|e| format!("bad address: {e}"))?;
    let message = read_message(args.file.as_deref())?;
    let mut options = ClientOptions::new(args.helo.clone());
    options.tls = args.tls;
    if args.verbose {
        options.trace = Some(smtp_core::trace::TraceSink::stderr());
    }
    if args.insecure {
        let tls_options = TlsClientOptions {
            dangerous_accept_invalid_certs: true,
            ..TlsClientOptions::default()
        };
        options.tls_config = Some(tls::client_config(&tls_options).map_err(|e| e.to_string())?);
    }
    options.credentials = args
        .auth
        .as_ref()
        .map(|(u, p)| Credentials::password(u.clone(), p.clone()));
    options.allow_insecure_auth = args.allow_insecure_auth;
    let host = args
        .server
        .rsplit_once(':')
        .map_or(args.server.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut client = SmtpClient::connect(&args.server, host, options).map_err(|e| e.to_string())?;
    let mut all_accepted = true;
    // One buffered writer: a write(2) per printed line would cost more than the SMTP work.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // The messages go out as batches: each next message rides behind the previous one's
    // final dot (one round trip per message); batches of 1,000 keep the list of outcomes
    // small whatever --count is.
    let mut n = 0u64;
    while n < args.count {
        let batch = (args.count - n).min(1_000);
        let outcomes = client.send_batch((0..batch).map(|_| (&envelope, message.as_slice())));
        for outcome in outcomes {
            n += 1;
            let result = outcome.map_err(|e| format!("message {n}: {e}"))?;
            for r in &result.recipients {
                let _ = writeln!(
                    out,
                    "message {n}: {}: {}",
                    r.address,
                    r.reply.to_string().replace('\n', " / ")
                );
                all_accepted &= r.is_accepted();
            }
            match &result.data {
                Some(reply) => writeln!(
                    out,
                    "message {n}: final: {}",
                    reply.to_string().replace('\n', " / ")
                ),
                None => writeln!(
                    out,
                    "message {n}: final: not sent ({})",
                    result.mail.to_string().replace('\n', " / ")
                ),
            }
            .map_err(|e| format!("stdout: {e}"))?;
            all_accepted &= result.is_success();
        }
    }
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    client.quit().map_err(|e| e.to_string())?;
    Ok(all_accepted)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("smtp-send: {e}");
            ExitCode::from(2)
        }
    }
}
