//! Fuzzes the sysctl dump parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::sysctl;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = sysctl::parse_sysctl(&text);
});
