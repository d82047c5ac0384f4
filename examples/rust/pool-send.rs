//! Sends messages through a connection pool shared by several threads
//! ([`SmtpPool`](smtp_core::blocking::pool::SmtpPool)), and prints how many went and how
//! many connections carried them.
//!
//! ```text
//! cargo run --example pool-send -- HOST:PORT FROM TO [COUNT [THREADS [POOL]]]
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use smtp_core::blocking::client::{ClientOptions, TlsMode};
use smtp_core::blocking::pool::SmtpPool;
use smtp_core::client::Envelope;
use smtp_core::client::pool::PoolConfig;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: pool-send HOST:PORT FROM TO [COUNT [THREADS [POOL]]]");
        return ExitCode::from(2);
    }
    let number =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (count, threads, size) = (number(3, 10), number(4, 4).max(1), number(5, 4));
    let mut options = ClientOptions::new("localhost");
    options.tls = TlsMode::None;
    let server_name = args[0]
        .rsplit_once(':')
        .map_or("localhost", |(host, _)| host);
    let pool = match SmtpPool::new(
        args[0].as_str(),
        server_name,
        options,
        PoolConfig::new(size),
    ) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("pool-send: {e}");
            return ExitCode::FAILURE;
        }
    };
    let envelope = match Envelope::new(&args[1], [args[2].as_str()]) {
        Ok(envelope) => envelope,
        Err(e) => {
            eprintln!("pool-send: {e}");
            return ExitCode::from(2);
        }
    };
    let failed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..count / threads {
                    match pool.send_bytes(&envelope, b"Subject: pooled\r\n\r\nHello.\r\n") {
                        Ok(result) if result.is_success() => {}
                        Ok(result) => {
                            eprintln!("refused: {:?}", result.data);
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let failed = failed.load(Ordering::Relaxed);
    let (open, _) = pool.status();
    println!(
        "{} sent, {failed} failed, {open} connections open",
        count / threads * threads - failed
    );
    pool.close();
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
