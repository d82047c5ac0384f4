//! smtpx's `SmtpPool` against lettre's pooled `SmtpTransport`, side by side in one run:
//! N messages from S concurrent sender threads through a pool of P connections into one
//! server (Postfix's `smtp-sink` in `run.sh`), several rounds alternating which goes
//! first; prints each round's messages per second, the medians and their ratio.
//!
//! ```text
//! pool-lettre ADDR [--messages N] [--senders S] [--pool P] [--rounds R]
//! ```
//!
//! Both send the same 1 KiB message to one recipient; a message that is not accepted
//! stops the run (a benchmark of failures would be meaningless). lettre does not set
//! TCP_NODELAY on its sockets: `run.sh` preloads `nodelay.c`, which sets it on every TCP
//! socket the process connects, so neither side waits on Nagle's algorithm.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lettre::Transport;

struct Args {
    addr: SocketAddr,
    messages: usize,
    senders: usize,
    pool: usize,
    rounds: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or("usage: pool-lettre ADDR [--messages N] [--senders S] [--pool P] [--rounds R]")?
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    let mut a = Args {
        addr,
        messages: 100_000,
        senders: 8,
        pool: 8,
        rounds: 3,
    };
    while let Some(flag) = args.next() {
        let value: usize = args
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--messages" => a.messages = value,
            "--senders" => a.senders = value.max(1),
            "--pool" => a.pool = value.max(1),
            "--rounds" => a.rounds = value.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn message() -> Vec<u8> {
    let mut m = b"From: bench@example.org\r\nTo: sink@example.net\r\nSubject: pool bench\r\n\r\n".to_vec();
    while m.len() < 1024 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m
}

/// This process's CPU time so far (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ")" and state.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// What one round measured.
struct Round {
    rate: f64,
    cpu_per_message: Duration,
}

/// Runs `send` `total` times spread over `senders` threads.
fn timed(total: usize, senders: usize, send: impl Fn() -> Result<(), String> + Sync) -> Result<Round, String> {
    let per = total / senders;
    let start = Instant::now();
    let cpu = cpu_time();
    let outcome: Result<(), String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..senders)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..per {
                        send()?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a sender panicked".to_string())?)
    });
    outcome?;
    let sent = (per * senders) as u32;
    Ok(Round {
        rate: sent as f64 / start.elapsed().as_secs_f64(),
        cpu_per_message: (cpu_time() - cpu) / sent.max(1),
    })
}

fn smtpx_round(a: &Args, msg: &[u8]) -> Result<Round, String> {
    use smtp_core::blocking::client::{ClientOptions, TlsMode};
    use smtp_core::blocking::pool::SmtpPool;
    use smtp_core::client::Envelope;
    use smtp_core::client::pool::PoolConfig;

    let mut options = ClientOptions::new("bench.example");
    options.tls = TlsMode::None;
    let pool = SmtpPool::new(a.addr, "localhost", options, PoolConfig::new(a.pool)).map_err(|e| e.to_string())?;
    let envelope = Envelope::new("bench@example.org", &["sink@example.net"]).map_err(|e| e.to_string())?;
    let rate = timed(a.messages, a.senders, || {
        let result = pool.send_bytes(&envelope, msg).map_err(|e| format!("smtpx: {e}"))?;
        if result.is_success() { Ok(()) } else { Err(format!("smtpx: refused: {result:?}")) }
    });
    pool.close();
    rate
}

fn lettre_round(a: &Args, msg: &[u8]) -> Result<Round, String> {
    use lettre::transport::smtp::PoolConfig;
    use lettre::transport::smtp::SmtpTransport;

    let transport = SmtpTransport::builder_dangerous(a.addr.ip().to_string())
        .port(a.addr.port())
        .pool_config(PoolConfig::new().max_size(a.pool as u32).idle_timeout(Duration::from_secs(60)))
        .build();
    let envelope = lettre::address::Envelope::new(
        Some("bench@example.org".parse().map_err(|e| format!("{e}"))?),
        vec!["sink@example.net".parse().map_err(|e| format!("{e}"))?],
    )
    .map_err(|e| e.to_string())?;
    timed(a.messages, a.senders, || {
        let response = transport.send_raw(&envelope, msg).map_err(|e| format!("lettre: {e}"))?;
        if response.is_positive() { Ok(()) } else { Err(format!("lettre: refused: {response:?}")) }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let msg = message();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    println!(
        "{} messages of {} bytes, {} senders, pool of {}, {} rounds into {}",
        a.messages,
        msg.len(),
        a.senders,
        a.pool,
        a.rounds,
        a.addr
    );
    for round in 0..a.rounds {
        // Alternate which goes first, so that neither always meets a warmer sink.
        let order: [bool; 2] = if round % 2 == 0 { [true, false] } else { [false, true] };
        for smtpx in order {
            let rate = if smtpx { smtpx_round(&a, &msg) } else { lettre_round(&a, &msg) };
            match rate {
                Ok(Round { rate, cpu_per_message }) => {
                    println!(
                        "round {round}: {:<7} {rate:>10.0} msg/s  client CPU {:>5.1} us/msg",
                        if smtpx { "smtpx" } else { "lettre" },
                        cpu_per_message.as_secs_f64() * 1e6
                    );
                    if smtpx { ours.push(rate) } else { theirs.push(rate) }
                }
                Err(e) => {
                    eprintln!("round {round}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("median smtpx  {ours:>10.0} msg/s");
    println!("median lettre {theirs:>10.0} msg/s");
    println!("ratio smtpx/lettre {:.2}", ours / theirs);
    ExitCode::SUCCESS
}
