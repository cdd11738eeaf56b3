# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_netsnap_collect_global_optspecs
    string join \n o/output= force no-api node-name= host-root= timeout= deadline= sample-interval= max-artifact-size= max-bundle-size= conntrack-max-entries= ipvs-max-connections= max-ip-text-netns= netns-workers= kubeconfig= context= api-scope= run-id= api-qps= api-burst= api-max-bytes= api-max-retries= start-jitter= dns-from= dns-name= dns-timeout= redact key= map= q/quiet v/verbose h/help V/version
end

function __fish_netsnap_collect_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_netsnap_collect_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_netsnap_collect_using_subcommand
    set -l cmd (__fish_netsnap_collect_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -s o -l output -d 'Bundle to write, `-` for stdout [default: netsnap-<node>-<UTC>.tar.zst in the current directory]' -r -F
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l node-name -d 'Kubernetes node name of this node' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l host-root -d 'Root of the host filesystem (read files and /proc under it), e.g. /host in a privileged pod' -r -F
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l timeout -d 'A command printing nothing this long is cut (ruleset dumps and the conntrack table: 4x); one namespace read' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l deadline -d 'Deadline for the whole run' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l sample-interval -d 'Time between the first and second sample of counters (conntrack stats, link stats)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l max-artifact-size -d 'Per-artifact cap in bytes (0 = unlimited)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l max-bundle-size -d 'Whole-bundle cap in bytes before compression (0 = unlimited)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l conntrack-max-entries -d 'Keep at most this many conntrack entries (default: all)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l ipvs-max-connections -d 'Keep at most N lines of `ipvsadm -Lnc` and `/proc/net/ip_vs_conn`' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l max-ip-text-netns -d 'Raw `ip addr`/`ip route` text for at most N non-host namespaces (native data is always complete)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l netns-workers -d 'Threads reading network namespaces' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l kubeconfig -d 'Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, in-cluster, /etc/kubernetes/kubelet.conf]' -r -F
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l context -d 'Kubeconfig context to use [default: its current-context]' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l api-scope -d 'Which API data to collect: full (cluster lists + this node, alone), node (only this node\'s objects, for fan-out), cluster (only the cluster lists, once per run)' -r -f -a "full\t''
node\t''
cluster\t''"
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l run-id -d 'Id shared by the node bundles and the cluster bundle of one collection run' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l api-qps -d 'Client-side API request rate after the burst (requests per second, 0 = unlimited)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l api-burst -d 'API requests allowed back to back before --api-qps applies' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l api-max-bytes -d 'Hard cap on API response bytes [default: 32 MiB for node scope, 2 GiB otherwise]' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l api-max-retries -d 'Most retries after `429 Too Many Requests` (each waits Retry-After, within the deadline)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l start-jitter -d 'Delay the first API request by this node\'s share of DURATION (e.g. 30s), so a DaemonSet\'s collectors do not all ask at once. Bounded by half the deadline' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l dns-from -d 'Pod namespaces to send DNS probes from: `all`, a number N, or `namespace/pod` (plus the host)' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l dns-name -d 'Extra name to resolve from pods (repeatable), besides kubernetes.default.svc.<domain>' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l dns-timeout -d 'Timeout of one DNS query attempt' -r
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l key -d 'With --redact: key file (64 hex digits, 32+ random bytes, or a map file) [default: the --map file\'s key, else a new random key]. Use one key for every node so the redacted bundles still join' -r -F
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l map -d 'With --redact: the map to write or extend [default: BUNDLE.map.json; required with `-o -`]' -r -F
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l force -d 'Replace the file at --output if one exists (without it, an existing file is refused)'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l no-api -d 'Do not contact the Kubernetes API (node-local data only)'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -l redact -d 'Write only a redacted bundle, safe to attach to a ticket: addresses anonymized prefix-preserving, names, UIDs, MACs and kube-proxy hashes replaced, secrets removed (docs/redaction.md). The map is written beside the bundle (--map), never inside it'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -s q -l quiet -d 'No progress lines (warnings and the summary still print)'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -s v -l verbose -d 'More logging (-v info, -vv debug)'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -s h -l help -d 'Print help'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -s V -l version -d 'Print version'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -f -a "completions" -d 'Print a shell completion script, e.g. `netsnap-collect completions bash > /etc/bash_completion.d/netsnap-collect`'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -f -a "man" -d 'Write the man pages into DIR (scripts/gen-docs does this for docs/man/)'
complete -c netsnap-collect -n "__fish_netsnap_collect_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netsnap-collect -n "__fish_netsnap_collect_using_subcommand completions" -s h -l help -d 'Print help'
complete -c netsnap-collect -n "__fish_netsnap_collect_using_subcommand man" -s h -l help -d 'Print help'
complete -c netsnap-collect -n "__fish_netsnap_collect_using_subcommand help; and not __fish_seen_subcommand_from completions man help" -f -a "completions" -d 'Print a shell completion script, e.g. `netsnap-collect completions bash > /etc/bash_completion.d/netsnap-collect`'
complete -c netsnap-collect -n "__fish_netsnap_collect_using_subcommand help; and not __fish_seen_subcommand_from completions man help" -f -a "man" -d 'Write the man pages into DIR (scripts/gen-docs does this for docs/man/)'
complete -c netsnap-collect -n "__fish_netsnap_collect_using_subcommand help; and not __fish_seen_subcommand_from completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
