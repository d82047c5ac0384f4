//! The PROXY protocol header parser (`smtp_core::server::proxy`) on any bytes, fed as a
//! driver honouring `wanted()` feeds them: it never panics, always asks for at least one
//! byte and never for more than the header holds, stops within the size limit, and a
//! header it accepts (LOCAL, or both addresses of one family; no CRC32C) encodes back to
//! a header it reads the same.
//!
//! Layout of the input: byte 0 seeds the chunk sizes, the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_core::server::proxy::{MAX_HEADER, ProxyCommand, ProxyParser, ProxyProgress};

fuzz_target!(|input: &[u8]| {
    let Some((&seed, stream)) = input.split_first() else {
        return;
    };
    let mut parser = ProxyParser::new();
    let mut at = 0;
    let mut step = 0usize;
    while at < stream.len() {
        let wanted = parser.wanted();
        assert!(wanted >= 1);
        // Chunks of 1..=wanted bytes, varied by the seed.
        let size = 1 + (usize::from(seed) + step) % wanted;
        let n = size.min(stream.len() - at);
        step += 1;
        match parser.feed(&stream[at..at + n]) {
            Ok(ProxyProgress::More) => at += n,
            Ok(ProxyProgress::Done(header)) => {
                at += n;
                assert!(parser.take_rest().is_empty(), "read past the header");
                assert!(at <= MAX_HEADER);
                let simple = header.command == ProxyCommand::Local
                    || header.source.is_some_and(|s| {
                        header.destination.is_some_and(|d| s.is_ipv4() == d.is_ipv4())
                    });
                // A CRC32C covers the bytes as sent, which re-encoding may change.
                let crc = header.tlv(smtp_core::server::proxy::ProxyTlv::CRC32C).is_some();
                if simple && !crc {
                    let again = header.to_bytes();
                    let mut reparse = ProxyParser::new();
                    match reparse.feed(&again) {
                        Ok(ProxyProgress::Done(h)) if header.version == 1 => {
                            assert_eq!((h.source, h.destination), (header.source, header.destination));
                        }
                        Ok(ProxyProgress::Done(h)) => {
                            assert_eq!(h.command, header.command);
                            assert_eq!(h.tlvs.len(), header.tlvs.len());
                        }
                        other => panic!("{header:?} encoded to {again:?}: {other:?}"),
                    }
                }
                return;
            }
            Err(_) => {
                assert!(at + n <= MAX_HEADER + 16);
                return;
            }
        }
        assert!(at <= MAX_HEADER + 16, "still reading at {at}");
    }
});
