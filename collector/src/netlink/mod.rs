//! Per-namespace state, natively over rtnetlink, with a bounded pool of
//! dedicated OS threads.
//!
//! How a namespace is read: a pool thread (never a tokio worker, never a forked
//! process) opens the namespace file, checks its inode, `setns(CLONE_NEWNET)`s
//! into it, and only then opens its netlink socket, so the socket belongs to
//! that namespace. A current-thread tokio runtime owned by the thread drives
//! rtnetlink. The same thread then reads `/proc/sys/net/...`: net sysctls are
//! resolved against the *reading thread's* namespace (verified by the
//! `sysctls_follow_the_thread` test), whereas `/proc/net` is `/proc/self/net`,
//! the thread-group leader's view, so it is never used here.
//!
//! Cost is one thread switch and a handful of netlink dumps per namespace; no
//! process per namespace, so 500 namespaces cost ~10x what 50 do.
//!
//! veth pairs are matched by namespace identity, never by index alone: the
//! host's nsid for each namespace (RTM_GETNSID with the namespace's fd) must
//! equal the host-side veth's `link_netnsid`, and both ends must point at each
//! other's index.
//!
//! Layout: [`pool`] (the namespace threads), [`records`] (netlink messages to
//! bundle records), pairing in [`netsnap_bundle::derive::veth`], [`step`] (the [`crate::step::Step`]).
//! The raw `ip` text per namespace is its own source, [`crate::ip_text`].

pub mod pool;
pub mod records;
pub mod step;

pub use netsnap_bundle::derive::veth::veth_pairs;
pub use records::{dump, link_record, read_net_sysctls};
