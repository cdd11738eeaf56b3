//! Pure derivations over data a bundle already holds, kept next to the format so the
//! producer (which stores them) and any consumer (which may recompute them) run the
//! same code: the pod <-> network namespace <-> host veth correlation, and veth pairing
//! by namespace identity.

pub mod correlate;
pub mod veth;
