//! Fuzzes every conntrack parser: listings (collected and streamed), -S, /proc stat, -C.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::conntrack;

fuzz_target!(|data: &[u8]| {
    let _ = conntrack::for_each_entry(data, |_| {});
    let text = String::from_utf8_lossy(data);
    let _ = conntrack::parse_conntrack_list(&text);
    let _ = conntrack::parse_conntrack_stats(&text);
    let _ = conntrack::parse_proc_stat(&text);
    let _ = conntrack::parse_conntrack_count(&text);
});
