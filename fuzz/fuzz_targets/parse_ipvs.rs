//! Fuzzes the IPVS parsers: service listings (every form) and connection listings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::ipvs;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut t = ipvs::parse_ipvs_list(&text);
    let other = t.clone();
    t.merge(&other);
    let _ = ipvs::parse_ipvs_connections(&text);
    let _ = ipvs::for_each_connection(data, |_| {});
});
