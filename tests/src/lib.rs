//! Lab harness: builds isolated fake Kubernetes nodes out of real kernel objects
//! (network, PID and mount namespaces, veths, bridges, iptables, conntrack).
