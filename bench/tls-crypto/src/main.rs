//! `tls-crypto KEY.der [N]`: CPU time per operation (from /proc/self/schedstat)
//! of an RSA-2048 PSS-SHA256 signature and of an X25519 key generation plus agreement
//! (what a TLS 1.3 server does per full handshake), with aws-lc-rs and with *ring*.

use std::time::Duration;

/// CPU time of this (single-threaded) process, from /proc/self/schedstat (nanoseconds).
fn cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/self/schedstat").expect("/proc/self/schedstat");
    let ns: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(ns)
}

/// Microseconds of CPU per call of `f`, after a warm-up of a tenth of `n`.
fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = cpu();
    for _ in 0..n {
        f();
    }
    (cpu() - start).as_secs_f64() / f64::from(n) * 1e6
}

fn aws_lc(der: &[u8], n: u32) -> (f64, f64) {
    use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{RSA_PSS_SHA256, RsaKeyPair};
    let key = RsaKeyPair::from_pkcs8(der).expect("an RSA PKCS#8 key");
    let rng = SystemRandom::new();
    let (msg, mut sig) = ([7u8; 130], vec![0u8; key.public_modulus_len()]);
    let sign = per_op(n, || {
        key.sign(&RSA_PSS_SHA256, &rng, &msg, &mut sig).unwrap()
    });
    let peer = PrivateKey::generate(&X25519)
        .unwrap()
        .compute_public_key()
        .unwrap();
    let kx = per_op(n * 4, || {
        let mine = PrivateKey::generate(&X25519).unwrap();
        std::hint::black_box(mine.compute_public_key().unwrap());
        let peer = UnparsedPublicKey::new(&X25519, peer.as_ref());
        agreement::agree(&mine, &peer, (), |s| Ok(s[0])).unwrap();
    });
    (sign, kx)
}

fn ring(der: &[u8], n: u32) -> (f64, f64) {
    use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    use ring::rand::SystemRandom;
    use ring::signature::{RSA_PSS_SHA256, RsaKeyPair};
    let key = RsaKeyPair::from_pkcs8(der).expect("an RSA PKCS#8 key");
    let rng = SystemRandom::new();
    let (msg, mut sig) = ([7u8; 130], vec![0u8; key.public().modulus_len()]);
    let sign = per_op(n, || {
        key.sign(&RSA_PSS_SHA256, &rng, &msg, &mut sig).unwrap()
    });
    let peer = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
    let peer = peer.compute_public_key().unwrap();
    let kx = per_op(n * 4, || {
        let mine = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
        std::hint::black_box(mine.compute_public_key().unwrap());
        let peer = UnparsedPublicKey::new(&X25519, peer.as_ref());
        agreement::agree_ephemeral(mine, &peer, |s| s[0]).unwrap();
    });
    (sign, kx)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: tls-crypto KEY.der [N]   (an RSA-2048 key in PKCS#8 DER)");
        std::process::exit(2);
    };
    let der = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let n: u32 = args
        .next()
        .map_or(1000, |s| s.parse().expect("N: a number"));
    for (name, (sign, kx)) in [("aws-lc-rs", aws_lc(&der, n)), ("ring", ring(&der, n))] {
        println!("{name}: RSA-2048 PSS sign {sign:.0} us, X25519 keygen+agree {kx:.0} us");
    }
}
