//! iptables-save parser and kube-proxy model: no input may panic, and every line is accounted for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::iptables::{kube_proxy_model, parse_iptables_save};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let dump = parse_iptables_save(&text);
    let l = dump.lines;
    assert_eq!(l.parsed + l.comments + l.blank + l.unparsed, l.total);
    let _ = kube_proxy_model(&dump);
});
