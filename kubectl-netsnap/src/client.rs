//! A `kube::Client` from the user's kubeconfig and the flags kubectl plugins
//! take (`--kubeconfig`, `--context`, `--namespace`), in kubectl's precedence:
//! the flag, then `$KUBECONFIG`, then `~/.kube/config` (then in-cluster).

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Connection flags shared by every subcommand.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--namespace`.
    pub namespace: Option<String>,
}

/// Errors building the client.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig could not be read or does not name a usable context.
    #[error("kubeconfig: {0} (check --kubeconfig, $KUBECONFIG and --context)")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// No kubeconfig was found and this is not a pod.
    #[error("no kubeconfig found and not running in a cluster: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client and the namespace the plugin's pods go to.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: Client,
    /// `--namespace`, else the context's namespace, else `default`.
    pub namespace: String,
    /// True when the namespace came from `--namespace`.
    pub namespace_explicit: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Builds the client.
pub async fn connect(opts: &ConnectOptions) -> Result<Connection, ConnectError> {
    let kc_opts = KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let config = match &opts.kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &kc_opts).await?
        }
        None if opts.context.is_some() => Config::from_kubeconfig(&kc_opts).await?,
        None => Config::infer().await?,
    };
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok(Connection {
        client: Client::try_from(config)?,
        namespace,
        namespace_explicit: opts.namespace.is_some(),
    })
}
