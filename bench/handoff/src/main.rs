//! `handoff [CALLS] [WORKERS]`: one task on a multi-threaded tokio runtime calls a trivial
//! callback CALLS times, yielding to the runtime between calls (as a connection does
//! between messages), in four ways, and prints wall and CPU time (the whole process's
//! user + system time, /proc/self/stat) per call:
//!
//! - `inline`: called on the worker (what `callbacks_block` false does);
//! - `block_in_place`: `tokio::task::block_in_place` (the default of the C server);
//! - `spawn_blocking`: `tokio::task::spawn_blocking`, awaited;
//! - `thread+oneshot`: sent to one dedicated thread over a channel, the answer awaited on
//!   a oneshot channel.

use std::sync::mpsc;
use std::time::Instant;

/// This process's CPU time in seconds (user + system, all threads).
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // After the command name in parentheses: utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}

#[inline(never)]
fn callback(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(3))
}

type Job = (u64, tokio::sync::oneshot::Sender<u64>);

async fn one(mode: &str, i: u64, pool: &mpsc::Sender<Job>) -> u64 {
    match mode {
        "inline" => callback(i),
        "block_in_place" => tokio::task::block_in_place(|| callback(i)),
        "spawn_blocking" => tokio::task::spawn_blocking(move || callback(i))
            .await
            .unwrap(),
        _ => {
            let (answer, back) = tokio::sync::oneshot::channel();
            pool.send((i, answer)).unwrap();
            back.await.unwrap()
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args
        .next()
        .map_or(200_000, |s| s.parse().expect("CALLS: a number"));
    let workers: usize = args
        .next()
        .map_or(2, |s| s.parse().expect("WORKERS: a number"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let (pool, jobs) = mpsc::channel::<Job>();
    std::thread::spawn(move || {
        for (x, answer) in jobs {
            let _ = answer.send(callback(x));
        }
    });
    // The first round warms up (threads started, caches); the second is printed.
    for round in 0..2 {
        for mode in [
            "inline",
            "block_in_place",
            "spawn_blocking",
            "thread+oneshot",
        ] {
            let pool = pool.clone();
            let (cpu0, wall0) = (cpu(), Instant::now());
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut sum = 0u64;
                    for i in 0..calls {
                        sum = sum.wrapping_add(one(mode, i, &pool).await);
                        tokio::task::yield_now().await;
                    }
                    std::hint::black_box(sum);
                })
                .await
                .unwrap();
            });
            let (cpu, wall) = (cpu() - cpu0, wall0.elapsed().as_secs_f64());
            if round == 1 {
                let per = |s: f64| s / calls as f64 * 1e6;
                println!(
                    "{mode:>15}: {:6.2} us wall, {:6.2} us CPU per call",
                    per(wall),
                    per(cpu)
                );
            }
        }
    }
}
