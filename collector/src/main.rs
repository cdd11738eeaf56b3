//! `netsnap-collect`: thin CLI over the `netsnap_collector` library.

fn main() {
    eprintln!("netsnap-collect: not built yet (see issue 4)");
    std::process::exit(2);
}
