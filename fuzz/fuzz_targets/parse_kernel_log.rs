//! Fuzzes the kernel-log parser (dmesg forms, /dev/kmsg records, journal lines).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsnap_parse::kernel_log;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let log = kernel_log::parse_kernel_log(&text);
    let _ = log.counts();
});
