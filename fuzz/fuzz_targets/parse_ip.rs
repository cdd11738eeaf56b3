//! Fuzzes every `parse::ip` entry point: none may panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::ip;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let links = ip::parse_addr(&text);
    let routes = ip::parse_routes(&text);
    let _ = ip::parse_rules(&text);
    let _ = ip::parse_neigh(&text);
    let _ = ip::parse_json_links(&text);
    let _ = ip::parse_json_routes(&text);
    // The native adapters must cope with whatever the text parsers produced.
    let snap = ip::to_native_snapshot("fuzz", &links, &routes);
    let _ = ip::from_native(&snap);
});
