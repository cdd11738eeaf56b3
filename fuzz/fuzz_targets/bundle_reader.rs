//! Fuzzes the bundle reader: any bytes must give a bundle or a typed error, never
//! a panic, and never a write outside the reader's temp dir.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_bundle::{Bundle, ReaderOptions};

fuzz_target!(|data: &[u8]| {
    let options = ReaderOptions {
        max_unpacked_bytes: 8 << 20,
        max_entries: 1_000,
        ..ReaderOptions::default()
    };
    let _ = Bundle::from_bytes(data, &options);
    // Also exercise the manifest parser directly.
    let _ = netsnap_bundle::reader::parse_manifest(data);
});
