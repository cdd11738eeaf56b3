//! Cooperative cancellation shared by every step: the global deadline and
//! Ctrl-C/SIGTERM both trip the same token.
//!
//! Steps never get aborted mid-write when they honour the token: a command is
//! killed and its artifact finished as partial, so the manifest keeps a record
//! for everything that was started.

use std::sync::Arc;

use tokio::sync::watch;

/// Why the run was stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The global `--deadline` passed.
    Deadline,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl StopReason {
    /// Short human text used in records ("deadline exceeded", "interrupted").
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Deadline => "global deadline exceeded",
            StopReason::Interrupted => "interrupted (Ctrl-C/SIGTERM)",
        }
    }
}

/// A clonable cancellation token.
#[derive(Clone, Debug)]
pub struct Cancel {
    tx: Arc<watch::Sender<Option<StopReason>>>,
    rx: watch::Receiver<Option<StopReason>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    /// A token that has not fired.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(None);
        Cancel {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Fires the token; the first reason wins.
    pub fn stop(&self, reason: StopReason) {
        self.tx.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The reason, once fired.
    pub fn reason(&self) -> Option<StopReason> {
        *self.rx.borrow()
    }

    /// True once fired.
    pub fn is_stopped(&self) -> bool {
        self.reason().is_some()
    }

    /// Resolves when the token fires.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.rx.clone();
        loop {
            if let Some(r) = *rx.borrow_and_update() {
                return r;
            }
            if rx.changed().await.is_err() {
                // Sender gone: nobody can stop us any more; wait forever.
                std::future::pending::<()>().await;
            }
        }
    }
}
