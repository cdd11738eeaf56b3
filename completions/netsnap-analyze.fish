# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_netsnap_analyze_global_optspecs
    string join \n v/verbose color= h/help V/version
end

function __fish_netsnap_analyze_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_netsnap_analyze_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_netsnap_analyze_using_subcommand
    set -l cmd (__fish_netsnap_analyze_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -s V -l version -d 'Print version'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "manifest" -d 'Print a bundle\'s manifest: what was collected, what failed and why'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "inspect" -d 'Show one view of a bundle like the live command would (exit 3: the bundle lacks its data)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "analyze" -d 'Analyze bundles (one per node) and report findings with evidence'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "diff" -d 'Compare two bundles semantically: findings new, resolved or changed; Services and their dataplane per port; pods, netns and veths; sysctls and MTUs; conntrack pressure; rule counts; the kube-proxy mode'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "trace" -d 'Walk one packet through the node\'s dataplane, offline: pod routes, veth, netfilter hooks in order (kube-proxy\'s chains with every endpoint and its probability), routing after DNAT, masquerade, delivery; plus the conntrack entries of the flow'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "import" -d 'Turn a sosreport (directory or tarball) or a directory of hand-collected command outputs into a bundle (see docs/import.md for the file names)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "redact" -d 'Redact a bundle so it can be attached to a ticket: addresses anonymized prefix-preserving, names, UIDs, MACs and kube-proxy hashes replaced, secrets removed; every finding stays the same (docs/redaction.md)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "unredact" -d 'Translate a report on a redacted bundle (text, JSON or Markdown) back to the original names and addresses with the owner\'s map; prints to stdout'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "facts" -d 'Print the fact document rules are evaluated over (JSON)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "rules" -d 'List, explain and test rules'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "completions" -d 'Print a shell completion script, e.g. `netsnap-analyze completions bash > /etc/bash_completion.d/netsnap-analyze`'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "man" -d 'Write the man pages into DIR (scripts/gen-docs does this for docs/man/)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand manifest" -l max-unpacked-size -d 'Refuse bundles that expand to more than this many bytes (decompression-bomb guard; 1 GiB holds about 4 million conntrack entries)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand manifest" -l format -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand manifest" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand manifest" -l no-verify -d 'Skip the sha256 check of each artifact against the manifest'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand manifest" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand manifest" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l max-unpacked-size -d 'Refuse bundles that expand to more than this many bytes (decompression-bomb guard; 1 GiB holds about 4 million conntrack entries)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l format -d 'Output format' -r -f -a "text\t'Aligned table, like the live command (`table` is an alias)'
json\t'Stable JSON array of rows'"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s o -l output -d '`-o wide`: every column whole, even wider than the terminal (kubectl\'s `-o wide`)' -r -f -a "wide\t'Every column whole'"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s n -l namespace -d 'pods/services: only this Kubernetes namespace (default: `default`, like kubectl)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l netns -d 'links/addrs/routes/dns: only this network namespace id (`host`, `ns-4026532301`)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l table -d 'routes: only this routing table (`main`, `local`, `100`); iptables: the table (`nat`, `filter`)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l chain -d 'iptables: only this chain (e.g. `KUBE-SERVICES`)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s d -l dst -d 'conntrack: only entries whose original destination is this address (`conntrack -L -d`)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s s -l src -d 'conntrack: only entries whose original source is this address (`conntrack -L -s`)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s p -l proto -d 'conntrack: only this protocol (`tcp`, `udp`, `icmp`, …)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l state -d 'conntrack: only this TCP state (`ESTABLISHED`, `TIME_WAIT`, …)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s t -l tcp-service -d 'ipvs: only this TCP virtual service (`ipvsadm -Ln -t VIP:PORT`)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s u -l udp-service -d 'ipvs: only this UDP virtual service (`ipvsadm -Ln -u VIP:PORT`)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l no-verify -d 'Skip the sha256 check of each artifact against the manifest'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s A -l all-namespaces -d 'pods/services: all Kubernetes namespaces'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l summary -d 'conntrack: counts per protocol and state, table usage, top destinations'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -l stats -d 'conntrack: per-CPU statistics (`conntrack -S`)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l max-unpacked-size -d 'Refuse bundles that expand to more than this many bytes (decompression-bomb guard; 1 GiB holds about 4 million conntrack entries)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l rules -d 'Add (or override, by id) rules from the YAML files in this directory' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l disable -d 'Do not run this rule (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l set -d 'Override a rule parameter, e.g. conntrack-near-max.ratio=0.95 (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l format -d 'Output format' -r -f -a "text\t''
json\t''
markdown\t''
html\t'One self-contained HTML file (no script, no external resource)'"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l fail-on -d 'Exit 1 when a finding is at or above this severity' -r -f -a "info\t''
warning\t''
error\t''
critical\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -l no-verify -d 'Skip the sha256 check of each artifact against the manifest'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand analyze" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l max-unpacked-size -d 'Refuse bundles that expand to more than this many bytes (decompression-bomb guard; 1 GiB holds about 4 million conntrack entries)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l rules -d 'Add (or override, by id) rules from the YAML files in this directory' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l disable -d 'Do not run this rule (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l set -d 'Override a rule parameter, e.g. conntrack-near-max.ratio=0.95 (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l format -d 'Output format' -r -f -a "text\t''
json\t''
markdown\t''
html\t'One self-contained HTML file (no script, no external resource)'"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l fail-on -d 'Exit 1 when B has a new or worsened finding at or above this severity' -r -f -a "info\t''
warning\t''
error\t''
critical\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -l no-verify -d 'Skip the sha256 check of each artifact against the manifest'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -l from -d 'Source: namespace/pod, a pod name, or IP[:PORT]' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -l to -d 'Destination: VIP:PORT[/PROTO], IP:PORT[/PROTO], or namespace/pod[:PORT[/PROTO]]' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -l max-unpacked-size -d 'Refuse bundles that expand to more than this many bytes (decompression-bomb guard; 1 GiB holds about 4 million conntrack entries)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -l format -d 'Output format' -r -f -a "text\t''
json\t''
markdown\t''
html\t'One self-contained HTML file (no script, no external resource)'"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -l no-verify -d 'Skip the sha256 check of each artifact against the manifest'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand trace" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand import" -s o -l output -d 'Bundle to write (.tar.zst)' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand import" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand import" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand import" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -l max-unpacked-size -d 'Refuse bundles that expand to more than this many bytes (decompression-bomb guard; 1 GiB holds about 4 million conntrack entries)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -s o -l output -d 'Redacted bundle to write (.tar.zst)' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -l map -d 'Map file to write or extend [default: OUTPUT.map.json]. An existing map lends its key when --key is not given' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -l key -d 'Key file: 64 hex digits, at least 32 random bytes, or a map file [default: the existing map\'s key, else a new random key]' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -l no-verify -d 'Skip the sha256 check of each artifact against the manifest'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -l keep-unredactable -d 'Keep artifacts that cannot be redacted (not text, malformed JSON) as they are, marked in the manifest, instead of withholding them. They may leak'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand redact" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand unredact" -l map -d 'The map written by `redact`' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand unredact" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand unredact" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand unredact" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -l cluster -d 'Print the cluster fact document that rules with `scope: cluster` see, of these node bundles (two or more, or a directory of them) instead' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -l max-unpacked-size -d 'Refuse bundles that expand to more than this many bytes (decompression-bomb guard; 1 GiB holds about 4 million conntrack entries)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -l no-verify -d 'Skip the sha256 check of each artifact against the manifest'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -l docs -d 'Print docs/facts.md (generated from the fact types) instead'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -l schema -d 'Print the JSON schema of the fact document instead'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand facts" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -f -a "list" -d 'List the rules (built-in plus --rules DIR)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -f -a "explain" -d 'Show one rule: what it checks, its condition, parameters and references'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -f -a "test" -d 'Run the test cases inside rule files (the built-in rules, or the rules in DIR)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -f -a "docs" -d 'Print docs/rules.md (generated from the rules)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and not __fish_seen_subcommand_from list explain test docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from list" -l rules -d 'Add (or override, by id) rules from the YAML files in this directory' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from list" -l disable -d 'Do not run this rule (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from list" -l set -d 'Override a rule parameter, e.g. conntrack-near-max.ratio=0.95 (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from list" -l format -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from list" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from explain" -l rules -d 'Add (or override, by id) rules from the YAML files in this directory' -r -F
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from explain" -l disable -d 'Do not run this rule (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from explain" -l set -d 'Override a rule parameter, e.g. conntrack-near-max.ratio=0.95 (repeatable)' -r
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from explain" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from explain" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from test" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from test" -l all -d 'Print every case, not only failures'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from test" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from docs" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from docs" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from docs" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the rules (built-in plus --rules DIR)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Show one rule: what it checks, its condition, parameters and references'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from help" -f -a "test" -d 'Run the test cases inside rule files (the built-in rules, or the rules in DIR)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from help" -f -a "docs" -d 'Print docs/rules.md (generated from the rules)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand rules; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand completions" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand completions" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand completions" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand man" -l color -d 'Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command takes it; bundle text is made inert whatever the choice' -r -f -a "auto\t''
always\t''
never\t''"
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand man" -s v -l verbose -d 'Log verbosity on stderr (-v info, -vv debug)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand man" -s h -l help -d 'Print help'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "manifest" -d 'Print a bundle\'s manifest: what was collected, what failed and why'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "inspect" -d 'Show one view of a bundle like the live command would (exit 3: the bundle lacks its data)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "analyze" -d 'Analyze bundles (one per node) and report findings with evidence'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "diff" -d 'Compare two bundles semantically: findings new, resolved or changed; Services and their dataplane per port; pods, netns and veths; sysctls and MTUs; conntrack pressure; rule counts; the kube-proxy mode'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "trace" -d 'Walk one packet through the node\'s dataplane, offline: pod routes, veth, netfilter hooks in order (kube-proxy\'s chains with every endpoint and its probability), routing after DNAT, masquerade, delivery; plus the conntrack entries of the flow'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "import" -d 'Turn a sosreport (directory or tarball) or a directory of hand-collected command outputs into a bundle (see docs/import.md for the file names)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "redact" -d 'Redact a bundle so it can be attached to a ticket: addresses anonymized prefix-preserving, names, UIDs, MACs and kube-proxy hashes replaced, secrets removed; every finding stays the same (docs/redaction.md)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "unredact" -d 'Translate a report on a redacted bundle (text, JSON or Markdown) back to the original names and addresses with the owner\'s map; prints to stdout'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "facts" -d 'Print the fact document rules are evaluated over (JSON)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "rules" -d 'List, explain and test rules'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "completions" -d 'Print a shell completion script, e.g. `netsnap-analyze completions bash > /etc/bash_completion.d/netsnap-analyze`'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "man" -d 'Write the man pages into DIR (scripts/gen-docs does this for docs/man/)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and not __fish_seen_subcommand_from manifest inspect analyze diff trace import redact unredact facts rules completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and __fish_seen_subcommand_from rules" -f -a "list" -d 'List the rules (built-in plus --rules DIR)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and __fish_seen_subcommand_from rules" -f -a "explain" -d 'Show one rule: what it checks, its condition, parameters and references'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and __fish_seen_subcommand_from rules" -f -a "test" -d 'Run the test cases inside rule files (the built-in rules, or the rules in DIR)'
complete -c netsnap-analyze -n "__fish_netsnap_analyze_using_subcommand help; and __fish_seen_subcommand_from rules" -f -a "docs" -d 'Print docs/rules.md (generated from the rules)'
