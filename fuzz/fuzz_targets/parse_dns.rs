//! Fuzzes every `parse::dns` entry point: none may panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::dns;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let d = dns::parse_dig(&text);
    let _ = d.outcome();
    let n = dns::parse_nslookup(&text);
    let _ = (n.outcome(), n.addresses());
    let r = dns::parse_resolv_conf(&text);
    let _ = r.ndots();
    if let Ok(report) = dns::load_probe_report(&text) {
        let _ = dns::summarize(&report);
    }
});
