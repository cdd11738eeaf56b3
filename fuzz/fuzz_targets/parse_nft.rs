//! nft ruleset parser and kube-proxy nftables model: no input may panic, and every line is accounted for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::nft::{kube_proxy_nft_model, parse_nft_ruleset};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let r = parse_nft_ruleset(&text);
    let l = r.lines;
    assert_eq!(l.parsed + l.comments + l.blank + l.unparsed, l.total);
    let _ = kube_proxy_nft_model(&r);
});
