//! Stores the pod <-> netns <-> veth correlation (`correlation/pods.json`): the
//! derivation itself is pure and lives with the format
//! ([`netsnap_bundle::derive::correlate`]), so the analyzer runs the same code.

pub use netsnap_bundle::derive::correlate::{CorrelationInput, correlate};
use netsnap_bundle::layout;
use netsnap_bundle::native::PodCorrelation;

/// Computes the correlation and stores it at `correlation/pods.json` (source `derived`).
pub fn collect(
    writer: &netsnap_bundle::BundleWriter,
    input: &CorrelationInput<'_>,
) -> Result<PodCorrelation, netsnap_bundle::WriteError> {
    let started = std::time::Instant::now();
    let corr = correlate(input);
    let spec = netsnap_bundle::ArtifactSpec::native(
        layout::correlation::PODS,
        netsnap_bundle::ArtifactSource::Derived,
    )
    .with_attribute("pods", corr.pods.len().to_string())
    .with_attribute("pod_cidrs", input.pod_cidrs.join(","));
    writer.add_json(spec, &corr, started.elapsed())?;
    Ok(corr)
}
