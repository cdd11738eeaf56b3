//! Order-aware evaluation of one packet through one table of an `iptables-save` dump.
//!
//! The kernel walks a hook's chain rule by rule, follows `-j` jumps (and returns to the
//! next rule), `-g` gotos (which return to the caller of the chain that jumped), `RETURN`,
//! and ends at the first terminating target or the built-in chain's policy. This module
//! does the same over the parsed model ([`crate::parse::iptables`]) so a rule such as an
//! unconditional `-A FORWARD -j REJECT` placed *before* the CNI's accept is seen for what
//! it is, instead of scanning for an accept anywhere in the chain.
//!
//! What the evaluator does not know (an interface it was not told, a `-m set` without the
//! ipset contents, a match module it does not understand) never silently matches or
//! misses: the walk forks into "assumed to match" and "assumed not to match", and every
//! resulting path carries its assumptions. `-m statistic --mode random` forks too, with the
//! probability on each branch, which is how kube-proxy's endpoint choice shows up.
//!
//! Pure: no I/O, no clock; bounded (path, depth and step caps) on hostile input.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::parse::iptables::{Rule, Table};

/// Most paths one evaluation explores; further forks are cut and `truncated` is set.
pub const MAX_PATHS: usize = 256;
/// Deepest jump nesting before a path is abandoned (the kernel's own limit is similar).
const MAX_DEPTH: usize = 64;
/// Most rules one path visits (a loop through gotos cannot hang the analyzer).
const MAX_STEPS: usize = 200_000;

/// A packet mark with the bits that are known (`known` mask); unknown bits make a
/// `-m mark` match on them fork.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Mark {
    /// Mark value (only the `known` bits are meaningful).
    pub value: u32,
    /// Which bits of `value` are known.
    pub known: u32,
}

impl Mark {
    /// A fully known mark.
    pub fn known(value: u32) -> Self {
        Mark {
            value,
            known: u32::MAX,
        }
    }
}

/// What is known about the packet; `None` means unknown, so a match on it forks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Packet {
    /// Source address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// Protocol, lower-case (`tcp`, `udp`, `icmp`, `sctp`).
    pub proto: Option<String>,
    /// Source port.
    pub sport: Option<u16>,
    /// Destination port.
    pub dport: Option<u16>,
    /// Input interface (`-i`); `None` when unknown or not set in this hook.
    pub in_iface: Option<String>,
    /// Output interface (`-o`).
    pub out_iface: Option<String>,
    /// The packet mark.
    pub mark: Mark,
    /// Conntrack state (`NEW`, `ESTABLISHED`, `RELATED`, `INVALID`, `UNTRACKED`).
    pub ctstate: Option<String>,
    /// The source address is local to the node (`-m addrtype --src-type LOCAL`).
    pub src_local: Option<bool>,
    /// The destination address is local to the node (`--dst-type LOCAL`).
    pub dst_local: Option<bool>,
}

/// How a path through a table ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// `ACCEPT` (or the policy): the packet leaves this table's hook.
    Accept,
    /// `DROP` (or the policy).
    Drop,
    /// `REJECT` (the packet is answered with an error).
    Reject {
        /// `--reject-with` value, if printed.
        with: Option<String>,
    },
    /// `DNAT --to-destination`.
    Dnat {
        /// The new destination (`ip[:port]`), or `?` when the target is garbled.
        to: String,
    },
    /// `SNAT --to-source`.
    Snat {
        /// The new source.
        to: String,
    },
    /// `MASQUERADE`.
    Masquerade,
    /// `REDIRECT`.
    Redirect,
    /// `NFQUEUE`/`QUEUE`/`TPROXY`: handed to user space or a socket; unknown after that.
    Queue {
        /// The target name.
        target: String,
    },
    /// A user chain evaluated on its own fell through (the caller continues).
    Continue,
    /// The path was abandoned (too deep, too long: a jump loop).
    Abandoned {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// True for `DROP` and `REJECT`.
    pub fn blocks(&self) -> bool {
        matches!(self, Verdict::Drop | Verdict::Reject { .. })
    }

    /// Short lower-case name (`accept`, `drop`, `reject`, `dnat`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject { .. } => "reject",
            Verdict::Dnat { .. } => "dnat",
            Verdict::Snat { .. } => "snat",
            Verdict::Masquerade => "masquerade",
            Verdict::Redirect => "redirect",
            Verdict::Queue { .. } => "queue",
            Verdict::Continue => "continue",
            Verdict::Abandoned { .. } => "abandoned",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Reject { with: Some(w) } => write!(f, "REJECT ({w})"),
            Verdict::Dnat { to } => write!(f, "DNAT to {to}"),
            Verdict::Snat { to } => write!(f, "SNAT to {to}"),
            Verdict::Queue { target } => write!(f, "{target}"),
            Verdict::Abandoned { reason } => write!(f, "abandoned: {reason}"),
            v => f.write_str(&v.name().to_ascii_uppercase()),
        }
    }
}

/// One rule (or policy) a path went through and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    /// Chain of the rule.
    pub chain: String,
    /// 1-based line of the rule (or of the chain declaration for a policy).
    pub line: usize,
    /// What happened: `jump KUBE-SERVICES`, `goto X`, `return`, `ACCEPT`, `policy DROP`,
    /// `MARK --set-xmark 0x4000/0x4000`.
    pub action: String,
    /// `-m comment` text of the rule, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A branch taken on something the evaluator could not decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Assumption {
    /// Chain of the rule.
    pub chain: String,
    /// 1-based line of the rule.
    pub line: usize,
    /// The undecided matches, as written (`-i cni0`, `-m set --match-set X src`).
    pub matches: Vec<String>,
    /// The branch: the rule was assumed to match (true) or not to match (false).
    pub assumed_match: bool,
    /// For `-m statistic --mode random`: the rule's probability (not an unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

impl std::fmt::Display for Assumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.probability {
            Some(p) if self.matches.is_empty() => write!(
                f,
                "line {}: random with probability {:.4}: {}",
                self.line,
                p,
                if self.assumed_match {
                    "taken"
                } else {
                    "not taken"
                }
            ),
            _ => write!(
                f,
                "line {}: unknown: {}: assumed {}",
                self.line,
                self.matches.join(" "),
                if self.assumed_match {
                    "to match"
                } else {
                    "not to match"
                }
            ),
        }
    }
}

/// One way through the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvalPath {
    /// How the path ended.
    pub verdict: Verdict,
    /// Chain and 1-based line of the rule or policy that decided (`None`: a chain that is
    /// not in the table, whose implicit policy is ACCEPT).
    pub decided_at: Option<(String, usize)>,
    /// Every rule that matched on the way, in order.
    pub steps: Vec<Step>,
    /// The undecided matches this path assumed.
    pub assumptions: Vec<Assumption>,
    /// Probability of this path among the random (`-m statistic`) branches only.
    pub probability: f64,
    /// The packet as it leaves (DNAT rewrites the destination, MARK the mark).
    pub packet: Packet,
}

/// All the ways one packet can go through one table's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evaluation {
    /// Table name.
    pub table: String,
    /// Entry chain.
    pub chain: String,
    /// The paths, in the order the kernel would prefer them (assumed-match first).
    pub paths: Vec<EvalPath>,
    /// True if more than [`MAX_PATHS`] paths existed and some were not explored.
    pub truncated: bool,
}

impl Evaluation {
    /// True if there is at least one path and every path ends in DROP or REJECT.
    pub fn always_blocks(&self) -> bool {
        !self.paths.is_empty() && !self.truncated && self.paths.iter().all(|p| p.verdict.blocks())
    }

    /// True if some path ends in ACCEPT (or a NAT verdict, which also lets it through).
    pub fn may_pass(&self) -> bool {
        self.truncated || self.paths.iter().any(|p| !p.verdict.blocks())
    }

    /// `accept`, `drop`, `reject` when all paths agree on that name, else `mixed`.
    pub fn summary(&self) -> &'static str {
        let mut names = self.paths.iter().map(|p| p.verdict.name());
        match names.next() {
            None => "none",
            Some(first) if !self.truncated && names.all(|n| n == first) => first,
            Some(_) => "mixed",
        }
    }
}

/// The chains of one table with their rules in order (built once per table).
#[derive(Debug)]
pub struct TableIndex<'a> {
    table: &'a Table,
    chains: HashMap<&'a str, Vec<&'a Rule>>,
}

impl<'a> TableIndex<'a> {
    /// Indexes a table's rules by chain.
    pub fn new(table: &'a Table) -> Self {
        let mut chains: HashMap<&'a str, Vec<&'a Rule>> = HashMap::new();
        for c in &table.chains {
            chains.entry(c.name.as_str()).or_default();
        }
        for r in &table.rules {
            chains.entry(r.chain.as_str()).or_default().push(r);
        }
        TableIndex { table, chains }
    }

    /// The table.
    pub fn table(&self) -> &'a Table {
        self.table
    }

    /// True if the chain is declared or has rules.
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.contains_key(name)
    }

    /// Evaluates `pkt` from `chain` (a built-in hook chain or a user chain).
    pub fn evaluate(&self, chain: &str, pkt: &Packet) -> Evaluation {
        let mut out = Evaluation {
            table: self.table.name.clone(),
            chain: chain.to_string(),
            paths: Vec::new(),
            truncated: false,
        };
        if !self.has_chain(chain) {
            // No such chain in this table: nothing to traverse, the packet passes.
            out.paths.push(EvalPath {
                verdict: if is_builtin(chain) {
                    Verdict::Accept
                } else {
                    Verdict::Continue
                },
                decided_at: None,
                steps: Vec::new(),
                assumptions: Vec::new(),
                probability: 1.0,
                packet: pkt.clone(),
            });
            return out;
        }
        let mut work = vec![State {
            entry: chain.to_string(),
            frames: vec![Frame {
                chain: chain.to_string(),
                idx: 0,
            }],
            pkt: pkt.clone(),
            steps: Vec::new(),
            assumptions: Vec::new(),
            probability: 1.0,
            visited: 0,
        }];
        let mut spawned = 1usize;
        while let Some(st) = work.pop() {
            let mut forks = Vec::new();
            let done = self.run(st, &mut forks);
            out.paths.push(done);
            // Pushed in reverse so the "assumed not to match" branches come out in order.
            for f in forks.into_iter().rev() {
                if spawned >= MAX_PATHS {
                    out.truncated = true;
                    continue;
                }
                spawned += 1;
                work.push(f);
            }
        }
        out
    }

    /// The end of a path that fell off (or returned from) the entry chain: a built-in
    /// chain's policy decides (also after a `-g` from it), a user chain continues.
    fn policy(&self, mut st: State) -> EvalPath {
        let chain = st.entry.clone();
        let decl = self.table.chain(&chain);
        match decl.and_then(|c| c.policy.clone().map(|p| (p, c.line))) {
            Some((policy, line)) => {
                st.steps.push(Step {
                    chain: chain.clone(),
                    line,
                    action: format!("policy {policy}"),
                    comment: None,
                });
                let v = match policy.as_str() {
                    "DROP" => Verdict::Drop,
                    _ => Verdict::Accept,
                };
                st.finish(v, Some((chain, line)))
            }
            None if is_builtin(&chain) => st.finish(Verdict::Accept, None),
            None => st.finish(Verdict::Continue, None),
        }
    }

    /// Runs one state to its end; forks (the not-taken branches) are pushed to `forks`.
    fn run(&self, mut st: State, forks: &mut Vec<State>) -> EvalPath {
        loop {
            let Some(frame) = st.frames.last_mut() else {
                return self.policy(st);
            };
            let rules = self.chains.get(frame.chain.as_str());
            let rule = rules.and_then(|r| r.get(frame.idx)).copied();
            let Some(rule) = rule else {
                // End of chain: a user chain returns to its caller, a built-in one applies
                // its policy.
                st.frames.pop();
                if st.frames.is_empty() {
                    return self.policy(st);
                }
                continue;
            };
            frame.idx += 1;
            st.visited += 1;
            if st.visited > MAX_STEPS {
                return st.finish(
                    Verdict::Abandoned {
                        reason: format!("more than {MAX_STEPS} rules visited (a jump loop?)"),
                    },
                    Some((rule.chain.clone(), rule.line)),
                );
            }
            match match_rule(rule, &st.pkt) {
                Matched::No => continue,
                Matched::Yes => {}
                Matched::Fork {
                    unknown,
                    probability,
                } => {
                    let mut alt = st.clone();
                    if !unknown.is_empty() || probability.is_some() {
                        alt.assumptions.push(Assumption {
                            chain: rule.chain.clone(),
                            line: rule.line,
                            matches: unknown.clone(),
                            assumed_match: false,
                            probability,
                        });
                    }
                    if let Some(p) = probability {
                        alt.probability *= 1.0 - p;
                        st.probability *= p;
                    }
                    st.assumptions.push(Assumption {
                        chain: rule.chain.clone(),
                        line: rule.line,
                        matches: unknown,
                        assumed_match: true,
                        probability,
                    });
                    forks.push(alt);
                }
            }
            if let Some(v) = self.apply(rule, &mut st) {
                return st.finish(v, Some((rule.chain.clone(), rule.line)));
            }
        }
    }

    /// Applies a matched rule's target; returns the verdict when the path ends here.
    fn apply(&self, rule: &Rule, st: &mut State) -> Option<Verdict> {
        let Some(target) = &rule.target else {
            // No target: a counting rule; it matched, so it is a step (the kernel's trace
            // lists it too, with verdict continue).
            st.steps.push(Step {
                chain: rule.chain.clone(),
                line: rule.line,
                action: "continue".to_string(),
                comment: rule.comment.clone(),
            });
            return None;
        };
        let name = target.name.as_str();
        let mut step = |action: String| {
            st.steps.push(Step {
                chain: rule.chain.clone(),
                line: rule.line,
                action,
                comment: rule.comment.clone(),
            });
        };
        let args = target.args.join(" ");
        let with_args = |n: &str| {
            if args.is_empty() {
                n.to_string()
            } else {
                format!("{n} {args}")
            }
        };
        let verdict = match name {
            "ACCEPT" => Verdict::Accept,
            "DROP" => Verdict::Drop,
            "REJECT" => Verdict::Reject {
                with: arg_after(&target.args, "--reject-with"),
            },
            "DNAT" => {
                let to = rule
                    .to_destination
                    .clone()
                    .unwrap_or_else(|| "?".to_string());
                step(with_args(name));
                apply_dnat(&mut st.pkt, &to);
                return Some(Verdict::Dnat { to });
            }
            "SNAT" => Verdict::Snat {
                to: arg_after(&target.args, "--to-source").unwrap_or_else(|| "?".into()),
            },
            "MASQUERADE" => Verdict::Masquerade,
            "REDIRECT" => Verdict::Redirect,
            "QUEUE" | "NFQUEUE" | "TPROXY" => Verdict::Queue {
                target: name.to_string(),
            },
            "RETURN" => {
                step("return".to_string());
                st.frames.pop();
                // RETURN from the entry chain: `run` sees no frame left and applies the
                // policy.
                return None;
            }
            "MARK" => {
                step(with_args(name));
                apply_mark(&mut st.pkt.mark, &target.args);
                return None;
            }
            _ if self.chains.contains_key(name) => {
                if st.frames.len() >= MAX_DEPTH {
                    return Some(Verdict::Abandoned {
                        reason: format!("jumps nested deeper than {MAX_DEPTH}"),
                    });
                }
                let frame = Frame {
                    chain: name.to_string(),
                    idx: 0,
                };
                if target.goto {
                    step(format!("goto {name}"));
                    // A goto replaces the current chain: falling off the end returns to
                    // the chain that jumped to this one.
                    if let Some(top) = st.frames.last_mut() {
                        *top = frame;
                    }
                } else {
                    step(format!("jump {name}"));
                    st.frames.push(frame);
                }
                return None;
            }
            _ => {
                // LOG, CT, CONNMARK, NOTRACK, TCPMSS, …: these do not end the traversal.
                let known = NON_TERMINATING.contains(&name);
                step(if known {
                    with_args(name)
                } else {
                    format!(
                        "{} (unknown target: assumed not to end the chain)",
                        with_args(name)
                    )
                });
                return None;
            }
        };
        step(with_args(name));
        Some(verdict)
    }
}

/// One hook's chain in one table, for [`evaluate_stages`].
#[derive(Debug, Clone, Copy)]
pub struct Stage<'i, 'a> {
    /// The table.
    pub index: &'i TableIndex<'a>,
    /// The hook's chain (`PREROUTING`, `FORWARD`, …).
    pub chain: &'i str,
}

/// A path through several hooks: one [`EvalPath`] per stage it reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StagedPath {
    /// `(table, chain, path)` per stage reached, in order.
    pub hops: Vec<(String, String, EvalPath)>,
}

impl StagedPath {
    /// The last hop (where it was dropped, or the last stage).
    pub fn last(&self) -> Option<&EvalPath> {
        self.hops.last().map(|h| &h.2)
    }

    /// True if the path ends in DROP or REJECT.
    pub fn blocks(&self) -> bool {
        self.last().is_some_and(|p| p.verdict.blocks())
    }
}

/// Evaluates a packet through hooks in order (say raw, mangle, nat PREROUTING, then
/// mangle and filter FORWARD), carrying each path's rewritten packet (DNAT, MARK) into the
/// next stage; a DROP or REJECT ends a path. The bool is true when paths were cut.
pub fn evaluate_stages(stages: &[Stage<'_, '_>], pkt: &Packet) -> (Vec<StagedPath>, bool) {
    let mut live = vec![(StagedPath { hops: Vec::new() }, pkt.clone())];
    let mut done = Vec::new();
    let mut truncated = false;
    for st in stages {
        let mut next = Vec::new();
        for (sp, p) in live {
            let e = st.index.evaluate(st.chain, &p);
            truncated |= e.truncated;
            for path in e.paths {
                let blocks =
                    path.verdict.blocks() || matches!(path.verdict, Verdict::Abandoned { .. });
                let out = path.packet.clone();
                let mut sp = sp.clone();
                sp.hops.push((e.table.clone(), e.chain.clone(), path));
                if blocks {
                    done.push(sp);
                } else if next.len() >= MAX_PATHS {
                    truncated = true;
                } else {
                    next.push((sp, out));
                }
            }
        }
        live = next;
    }
    done.extend(live.into_iter().map(|(sp, _)| sp));
    (done, truncated)
}

/// Targets that never end the traversal.
const NON_TERMINATING: &[&str] = &[
    "LOG",
    "NFLOG",
    "ULOG",
    "CONNMARK",
    "CT",
    "NOTRACK",
    "TRACE",
    "TCPMSS",
    "CHECKSUM",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "AUDIT",
    "SET",
    "CONNSECMARK",
    "SECMARK",
    "NFACCT",
    "IDLETIMER",
    "LED",
    "TEE",
];

fn is_builtin(chain: &str) -> bool {
    matches!(
        chain,
        "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
    )
}

fn arg_after(args: &[String], opt: &str) -> Option<String> {
    let i = args.iter().position(|a| a == opt)?;
    args.get(i + 1).cloned()
}

fn apply_dnat(pkt: &mut Packet, to: &str) {
    // `ip`, `ip:port`, `[v6]:port`, `ip-ip:port-port` (a range keeps the first).
    let (host, port) = if let Some(rest) = to.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (rest, None),
        }
    } else if to.matches(':').count() == 1 {
        let (h, p) = to.split_once(':').unwrap_or((to, ""));
        (h, Some(p))
    } else {
        (to, None)
    };
    let host = host.split('-').next().unwrap_or(host);
    pkt.dst = host
        .parse()
        .ok()
        .or(if host.is_empty() { pkt.dst } else { None });
    if let Some(p) = port {
        pkt.dport = p.split('-').next().and_then(|p| p.parse().ok());
    }
    pkt.dst_local = None;
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn value_mask(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn apply_mark(mark: &mut Mark, args: &[String]) {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some((v, m)) = it.clone().next().and_then(|s| value_mask(s)) else {
            continue;
        };
        match a.as_str() {
            // --set-xmark v/m: zero the mask bits, then XOR v.
            "--set-xmark" => {
                mark.value = (mark.value & !m) ^ v;
                mark.known |= m;
            }
            "--set-mark" => {
                mark.value = (mark.value & !m) | v;
                mark.known |= m;
            }
            "--or-mark" => {
                mark.value |= v;
                mark.known |= v;
            }
            "--and-mark" => {
                mark.value &= v;
                mark.known |= !v;
            }
            "--xor-mark" => mark.value ^= v,
            _ => continue,
        }
        it.next();
    }
}

#[derive(Debug, Clone)]
struct Frame {
    chain: String,
    idx: usize,
}

#[derive(Debug, Clone)]
struct State {
    /// The chain the evaluation started in (its policy ends every path that falls off).
    entry: String,
    frames: Vec<Frame>,
    pkt: Packet,
    steps: Vec<Step>,
    assumptions: Vec<Assumption>,
    probability: f64,
    visited: usize,
}

impl State {
    fn finish(self, verdict: Verdict, decided_at: Option<(String, usize)>) -> EvalPath {
        EvalPath {
            verdict,
            decided_at,
            steps: self.steps,
            assumptions: self.assumptions,
            probability: self.probability,
            packet: self.pkt,
        }
    }
}

/// The outcome of one rule's matches against the packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Matched {
    /// Every match holds.
    Yes,
    /// Some match does not hold.
    No,
    /// Nothing fails, but some matches are unknown or random.
    Fork {
        /// The undecided matches as written.
        unknown: Vec<String>,
        /// `-m statistic --mode random --probability`.
        probability: Option<f64>,
    },
}

/// One match's outcome.
enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    fn from(b: bool) -> Self {
        if b { Tri::Yes } else { Tri::No }
    }
}

/// Evaluates all the matches of a rule (the tokens before `-j`/`-g`).
pub fn match_rule(rule: &Rule, pkt: &Packet) -> Matched {
    let toks: Vec<&str> = rule.tokens.iter().collect();
    let mut unknown: Vec<String> = Vec::new();
    let mut probability: Option<f64> = None;
    let mut module = "";
    let mut negate = false;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let val = toks.get(i + 1).copied();
        if t == "!" {
            negate = true;
            i += 1;
            continue;
        }
        if matches!(t, "-j" | "--jump" | "-g" | "--goto") {
            break;
        }
        if matches!(t, "-m" | "--match") {
            module = val.unwrap_or("");
            i += 2;
            continue;
        }
        // Options with no value.
        let flag: Option<Tri> = match t {
            "-f" | "--fragment" => Some(Tri::No), // a first (or unfragmented) packet
            "--syn" => Some(syn_match(pkt)),
            _ => None,
        };
        let (res, used): (Tri, usize) = if let Some(r) = flag {
            (r, 1)
        } else {
            match (module, t) {
                (_, "-p" | "--protocol") => (proto_match(val, pkt), 2),
                (_, "-s" | "--source" | "--src") => (addr_match(val, pkt.src), 2),
                (_, "-d" | "--destination" | "--dst") => (addr_match(val, pkt.dst), 2),
                (_, "-i" | "--in-interface") => (iface_match(val, pkt.in_iface.as_deref()), 2),
                (_, "-o" | "--out-interface") => (iface_match(val, pkt.out_iface.as_deref()), 2),
                ("comment", "--comment") => (Tri::Yes, 2),
                (_, "--dport" | "--destination-port" | "--dports" | "--destination-ports") => {
                    (port_match(val, pkt.dport), 2)
                }
                (_, "--sport" | "--source-port" | "--sports" | "--source-ports") => {
                    (port_match(val, pkt.sport), 2)
                }
                ("multiport", "--ports" | "--port") => {
                    let d = port_match(val, pkt.dport);
                    let s = port_match(val, pkt.sport);
                    (
                        match (d, s) {
                            (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
                            (Tri::No, Tri::No) => Tri::No,
                            _ => Tri::Unknown,
                        },
                        2,
                    )
                }
                ("statistic", "--mode") => (Tri::Yes, 2),
                ("statistic", "--probability") => match val.and_then(|v| v.parse::<f64>().ok()) {
                    Some(p) if !negate => {
                        probability = Some(probability.unwrap_or(1.0) * p);
                        (Tri::Yes, 2)
                    }
                    _ => (Tri::Unknown, 2),
                },
                ("conntrack" | "state", "--ctstate" | "--state") => {
                    (ctstate_match(val, pkt.ctstate.as_deref()), 2)
                }
                ("addrtype", "--src-type") => (addrtype_match(val, pkt.src, pkt.src_local), 2),
                ("addrtype", "--dst-type") => (addrtype_match(val, pkt.dst, pkt.dst_local), 2),
                ("mark", "--mark") => (mark_match(val, pkt.mark), 2),
                _ if !KNOWN_MODULES.contains(&module) && t.starts_with("--") => {
                    // A module the evaluator does not know: all its options are one
                    // unknown match, up to the next generic option or `-m`.
                    let mut j = i + 1;
                    while j < toks.len() && !ends_module(&toks, j) {
                        j += 1;
                    }
                    (Tri::Unknown, j - i)
                }
                _ => {
                    // Not understood: the option and its values are one unknown match.
                    let mut j = i + 1;
                    while j < toks.len()
                        && toks[j] != "!"
                        && !(toks[j].starts_with('-') && toks[j].len() > 1 && !is_number(toks[j]))
                    {
                        j += 1;
                    }
                    (Tri::Unknown, j - i)
                }
            }
        };
        let res = match (res, negate) {
            (Tri::Yes, true) => Tri::No,
            (Tri::No, true) => Tri::Yes,
            (r, _) => r,
        };
        match res {
            Tri::No => return Matched::No,
            Tri::Yes => {}
            Tri::Unknown => {
                let mut text = String::new();
                if negate {
                    text.push_str("! ");
                }
                if !module.is_empty() && t.starts_with("--") && !matches!(t, "--dport" | "--sport")
                {
                    text.push_str(&format!("-m {module} "));
                }
                text.push_str(&toks[i..(i + used).min(toks.len())].join(" "));
                unknown.push(text);
            }
        }
        negate = false;
        i += used;
    }
    if unknown.is_empty() && probability.is_none() {
        Matched::Yes
    } else {
        Matched::Fork {
            unknown,
            probability,
        }
    }
}

/// Match modules whose options the evaluator reads (others are unknown as a whole).
const KNOWN_MODULES: &[&str] = &[
    "",
    "comment",
    "tcp",
    "udp",
    "sctp",
    "multiport",
    "statistic",
    "conntrack",
    "state",
    "addrtype",
    "mark",
];

/// True if token `j` starts a generic option, a new `-m` or the target (a `!` counts
/// when it negates one of those).
fn ends_module(toks: &[&str], j: usize) -> bool {
    let t = if toks[j] == "!" {
        toks.get(j + 1).copied().unwrap_or("")
    } else {
        toks[j]
    };
    matches!(
        t,
        "-m" | "--match"
            | "-j"
            | "--jump"
            | "-g"
            | "--goto"
            | "-p"
            | "--protocol"
            | "-s"
            | "--source"
            | "-d"
            | "--destination"
            | "-i"
            | "--in-interface"
            | "-o"
            | "--out-interface"
    )
}

fn is_number(s: &str) -> bool {
    s.trim_start_matches('-').parse::<f64>().is_ok()
}

fn syn_match(pkt: &Packet) -> Tri {
    match (pkt.proto.as_deref(), pkt.ctstate.as_deref()) {
        (Some("tcp"), Some("NEW")) => Tri::Yes,
        (Some("tcp"), Some(_)) => Tri::No,
        (Some(_), _) => Tri::No,
        _ => Tri::Unknown,
    }
}

fn proto_name(p: &str) -> String {
    match p {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "ipv6-icmp".into(),
        "132" => "sctp".into(),
        "icmpv6" => "ipv6-icmp".into(),
        p => p.to_ascii_lowercase(),
    }
}

fn proto_match(val: Option<&str>, pkt: &Packet) -> Tri {
    let Some(v) = val else { return Tri::Unknown };
    let v = proto_name(v);
    if v == "all" || v == "0" {
        return Tri::Yes;
    }
    match &pkt.proto {
        Some(p) => Tri::from(proto_name(p) == v),
        None => Tri::Unknown,
    }
}

/// True if `ip` is in `cidr` (`a.b.c.d/len` or a bare address).
pub fn in_cidr(cidr: &str, ip: IpAddr) -> Option<bool> {
    // A dotted mask (`10.0.0.0/255.255.255.0`), as older iptables print: it may be any bit
    // pattern, not only a prefix, so it is compared bit by bit.
    if let Some((net, mask)) = cidr.split_once('/')
        && let Ok(mask) = mask.parse::<std::net::Ipv4Addr>()
    {
        let net: std::net::Ipv4Addr = net.parse().ok()?;
        let (net, mask) = (u32::from(net), u32::from(mask));
        return Some(match ip {
            IpAddr::V4(i) => net & mask == u32::from(i) & mask,
            IpAddr::V6(_) => false,
        });
    }
    Some(netsnap_bundle::net::parse_prefix(cidr)?.contains(&ip))
}

fn addr_match(val: Option<&str>, ip: Option<IpAddr>) -> Tri {
    let (Some(v), Some(ip)) = (val, ip) else {
        return Tri::Unknown;
    };
    let mut unknown = false;
    for c in v.split(',') {
        match in_cidr(c, ip) {
            Some(true) => return Tri::Yes,
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown { Tri::Unknown } else { Tri::No }
}

fn iface_match(val: Option<&str>, iface: Option<&str>) -> Tri {
    let (Some(v), Some(i)) = (val, iface) else {
        return Tri::Unknown;
    };
    Tri::from(match v.strip_suffix('+') {
        Some(prefix) => i.starts_with(prefix),
        None => i == v,
    })
}

fn port_match(val: Option<&str>, port: Option<u16>) -> Tri {
    let (Some(v), Some(p)) = (val, port) else {
        return Tri::Unknown;
    };
    for part in v.split(',') {
        let hit = match part.split_once(':') {
            Some((a, b)) => {
                let a = if a.is_empty() {
                    Some(0)
                } else {
                    a.parse::<u16>().ok()
                };
                let b = if b.is_empty() {
                    Some(u16::MAX)
                } else {
                    b.parse::<u16>().ok()
                };
                match (a, b) {
                    (Some(a), Some(b)) => a <= p && p <= b,
                    _ => return Tri::Unknown,
                }
            }
            None => match part.parse::<u16>() {
                Ok(x) => x == p,
                // A service name from /etc/services: not resolved offline.
                Err(_) => return Tri::Unknown,
            },
        };
        if hit {
            return Tri::Yes;
        }
    }
    Tri::No
}

fn ctstate_match(val: Option<&str>, state: Option<&str>) -> Tri {
    let (Some(v), Some(s)) = (val, state) else {
        return Tri::Unknown;
    };
    let mut unknown = false;
    for item in v.split(',') {
        if item.eq_ignore_ascii_case(s) {
            return Tri::Yes;
        }
        // Virtual states (`DNAT`, `SNAT`) depend on what NAT did to the connection.
        if matches!(item, "DNAT" | "SNAT") {
            unknown = true;
        }
    }
    if unknown { Tri::Unknown } else { Tri::No }
}

fn addrtype_match(val: Option<&str>, ip: Option<IpAddr>, local: Option<bool>) -> Tri {
    let Some(v) = val else { return Tri::Unknown };
    let mut unknown = false;
    for ty in v.split(',') {
        let r = match ty {
            "LOCAL" => local.map(Tri::from),
            "UNICAST" => ip.map(|ip| Tri::from(!ip.is_multicast() && !is_broadcast(ip))),
            "MULTICAST" => ip.map(|ip| Tri::from(ip.is_multicast())),
            "BROADCAST" => ip.filter(|ip| is_broadcast(*ip)).map(|_| Tri::Yes),
            _ => None,
        };
        match r {
            Some(Tri::Yes) => return Tri::Yes,
            Some(_) => {}
            None => unknown = true,
        }
    }
    if unknown { Tri::Unknown } else { Tri::No }
}

fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v) if v.is_broadcast())
}

fn mark_match(val: Option<&str>, mark: Mark) -> Tri {
    let Some((v, m)) = val.and_then(value_mask) else {
        return Tri::Unknown;
    };
    if m & !mark.known != 0 {
        return Tri::Unknown;
    }
    Tri::from(mark.value & m == v)
}

/// The rule as `-A CHAIN tokens…`, for messages.
pub fn rule_text(rule: &Rule) -> String {
    let mut s = format!("-A {}", rule.chain);
    for t in rule.tokens.iter() {
        s.push(' ');
        if t.is_empty() || t.contains(char::is_whitespace) {
            s.push('"');
            s.push_str(t);
            s.push('"');
        } else {
            s.push_str(t);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::iptables::parse_iptables_save;

    fn eval(save: &str, table: &str, chain: &str, pkt: &Packet) -> Evaluation {
        let dump = parse_iptables_save(save);
        let t = dump.table(table).expect("table");
        TableIndex::new(t).evaluate(chain, pkt)
    }

    fn pod_pkt() -> Packet {
        Packet {
            src: Some("10.244.1.5".parse().unwrap()),
            dst: Some("10.244.2.9".parse().unwrap()),
            proto: Some("tcp".into()),
            sport: Some(40000),
            dport: Some(80),
            ctstate: Some("NEW".into()),
            mark: Mark::known(0),
            src_local: Some(false),
            dst_local: Some(false),
            ..Packet::default()
        }
    }

    #[test]
    fn reject_before_accept_wins() {
        let save = "*filter\n:FORWARD ACCEPT [0:0]\n:FLANNEL-FWD - [0:0]\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n-A FORWARD -j FLANNEL-FWD\n-A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT\nCOMMIT\n";
        let e = eval(save, "filter", "FORWARD", &pod_pkt());
        assert_eq!(e.paths.len(), 1);
        assert!(e.always_blocks());
        assert_eq!(e.paths[0].decided_at, Some(("FORWARD".into(), 4)));
        assert_eq!(
            e.paths[0].verdict,
            Verdict::Reject {
                with: Some("icmp-host-prohibited".into())
            }
        );
        // The same rules in the other order accept.
        let save = save.replace(
            "-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n-A FORWARD -j FLANNEL-FWD\n",
            "-A FORWARD -j FLANNEL-FWD\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n",
        );
        let e = eval(&save, "filter", "FORWARD", &pod_pkt());
        assert_eq!(e.summary(), "accept");
        assert_eq!(e.paths[0].decided_at, Some(("FLANNEL-FWD".into(), 6)));
        let actions: Vec<_> = e.paths[0].steps.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(actions, ["jump FLANNEL-FWD", "ACCEPT"]);
    }

    #[test]
    fn goto_return_and_policy() {
        let save = "*filter\n:FORWARD DROP [0:0]\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -g A\n-A FORWARD -j ACCEPT\n-A A -j B\n-A A -d 10.244.2.0/24 -j RETURN\n-A A -j ACCEPT\n-A B -p udp -j ACCEPT\nCOMMIT\n";
        // tcp: B falls through, A returns (goto: back to FORWARD's caller = the policy).
        let e = eval(save, "filter", "FORWARD", &pod_pkt());
        assert_eq!(e.summary(), "drop");
        assert_eq!(e.paths[0].decided_at, Some(("FORWARD".into(), 2)));
        let actions: Vec<_> = e.paths[0].steps.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(actions, ["goto A", "jump B", "return", "policy DROP"]);
        // Another destination: A accepts.
        let mut p = pod_pkt();
        p.dst = Some("10.244.3.1".parse().unwrap());
        let e = eval(save, "filter", "FORWARD", &p);
        assert_eq!(e.summary(), "accept");
        assert_eq!(e.paths[0].decided_at, Some(("A".into(), 9)));
    }

    #[test]
    fn unknown_match_forks_both_ways() {
        let save = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i cni0 -m set --match-set allow src -j ACCEPT\nCOMMIT\n";
        let e = eval(save, "filter", "FORWARD", &pod_pkt());
        assert_eq!(e.paths.len(), 2);
        assert_eq!(e.summary(), "mixed");
        assert!(e.may_pass());
        assert!(!e.always_blocks());
        let a = &e.paths[0].assumptions[0];
        assert!(a.assumed_match);
        assert_eq!(a.matches, ["-i cni0", "-m set --match-set allow src"]);
        assert_eq!(e.paths[0].verdict, Verdict::Accept);
        assert!(!e.paths[1].assumptions[0].assumed_match);
        assert_eq!(e.paths[1].verdict, Verdict::Drop);
        assert!(
            e.paths[0].assumptions[0]
                .to_string()
                .contains("unknown: -i cni0 -m set --match-set allow src: assumed to match")
        );
        // Known interface that does not match: no fork on it.
        let mut p = pod_pkt();
        p.in_iface = Some("eth0".into());
        let e = eval(save, "filter", "FORWARD", &p);
        assert_eq!(e.summary(), "drop");
    }

    #[test]
    fn matches_ports_states_addrtype_marks() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -j DROP\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j DROP\n-A INPUT -p tcp -m multiport --dports 22,1000:2000 -j DROP\n-A INPUT ! -s 10.244.0.0/16 -j DROP\n-A INPUT -m addrtype --dst-type LOCAL -j DROP\n-A INPUT -m mark --mark 0x4000/0x4000 -j DROP\n-A INPUT -m comment --comment \"a b\" -p tcp --dport 80 -j REJECT\nCOMMIT\n";
        let e = eval(save, "filter", "INPUT", &pod_pkt());
        assert_eq!(e.paths.len(), 1);
        assert_eq!(e.paths[0].decided_at, Some(("INPUT".into(), 9)));
        let mut p = pod_pkt();
        p.mark = Mark::known(0x4000);
        assert_eq!(
            eval(save, "filter", "INPUT", &p).paths[0].decided_at,
            Some(("INPUT".into(), 8))
        );
        p.dst_local = Some(true);
        assert_eq!(
            eval(save, "filter", "INPUT", &p).paths[0].decided_at,
            Some(("INPUT".into(), 7))
        );
        p.src = Some("192.0.2.1".parse().unwrap());
        assert_eq!(
            eval(save, "filter", "INPUT", &p).paths[0].decided_at,
            Some(("INPUT".into(), 6))
        );
        p.dport = Some(1500);
        assert_eq!(
            eval(save, "filter", "INPUT", &p).paths[0].decided_at,
            Some(("INPUT".into(), 5))
        );
        p.ctstate = Some("ESTABLISHED".into());
        assert_eq!(
            eval(save, "filter", "INPUT", &p).paths[0].decided_at,
            Some(("INPUT".into(), 4))
        );
        p.proto = Some("udp".into());
        assert_eq!(
            eval(save, "filter", "INPUT", &p).paths[0].decided_at,
            Some(("INPUT".into(), 3))
        );
        // Unknown mark: the mark rule forks.
        let mut p = pod_pkt();
        p.mark = Mark::default();
        assert_eq!(eval(save, "filter", "INPUT", &p).paths.len(), 2);
    }

    #[test]
    fn mark_target_sets_known_bits() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-MARK-MASQ - [0:0]\n-A PREROUTING -j KUBE-MARK-MASQ\n-A PREROUTING -m mark --mark 0x4000/0x4000 -j DNAT --to-destination 10.0.0.1:81\nCOMMIT\n*nat\n:KUBE-MARK-MASQ - [0:0]\nCOMMIT\n";
        let save = save.replace(
            "-A PREROUTING -j KUBE-MARK-MASQ\n",
            "-A PREROUTING -j KUBE-MARK-MASQ\n-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n",
        );
        let mut p = pod_pkt();
        p.mark = Mark::default();
        let e = eval(&save, "nat", "PREROUTING", &p);
        assert_eq!(e.paths.len(), 1, "{e:?}");
        assert_eq!(
            e.paths[0].verdict,
            Verdict::Dnat {
                to: "10.0.0.1:81".into()
            }
        );
        assert_eq!(e.paths[0].packet.dst, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(e.paths[0].packet.dport, Some(81));
    }

    #[test]
    fn kube_proxy_service_endpoints_with_probabilities() {
        let save = include_str!("../../../fixtures/raw/iptables/kube-proxy-v1.29-legacy.txt");
        let mut p = pod_pkt();
        p.dst = Some("10.96.0.10".parse().unwrap());
        p.dport = Some(53);
        p.proto = Some("udp".into());
        let e = eval(save, "nat", "PREROUTING", &p);
        let dnat: Vec<(String, f64)> = e
            .paths
            .iter()
            .map(|p| (p.verdict.to_string(), p.probability))
            .collect();
        assert_eq!(
            dnat,
            [
                ("DNAT to 10.244.0.2:53".to_string(), 0.5),
                ("DNAT to 10.244.0.3:53".to_string(), 0.5)
            ]
        );
        let chains: Vec<&str> = e.paths[0].steps.iter().map(|s| s.chain.as_str()).collect();
        assert_eq!(chains[0], "PREROUTING");
        assert_eq!(chains[1], "KUBE-SERVICES");
        assert!(chains.contains(&"KUBE-SVC-TCOU7JCQXEZGVUNU"));
        assert_eq!(e.paths[0].packet.dst, Some("10.244.0.2".parse().unwrap()));
        // From outside the pod range the Service chain marks for masquerade first.
        p.src = Some("192.0.2.7".parse().unwrap());
        let e = eval(save, "nat", "PREROUTING", &p);
        assert_eq!(e.paths.len(), 2);
        assert_eq!(e.paths[0].packet.mark.value & 0x4000, 0x4000);
    }

    #[test]
    fn jump_loop_is_abandoned() {
        let save = "*filter\n:FORWARD ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -j A\n-A A -j B\n-A B -j A\nCOMMIT\n";
        let e = eval(save, "filter", "FORWARD", &pod_pkt());
        assert_eq!(e.paths.len(), 1);
        assert_eq!(e.paths[0].verdict.name(), "abandoned");
        assert!(!e.always_blocks());
    }

    #[test]
    fn fork_count_is_capped() {
        let mut save = String::from("*filter\n:FORWARD DROP [0:0]\n");
        for i in 0..20 {
            save.push_str(&format!("-A FORWARD -i eth{i} -j LOG\n"));
        }
        save.push_str("COMMIT\n");
        let e = eval(&save, "filter", "FORWARD", &pod_pkt());
        assert!(e.truncated);
        assert_eq!(e.paths.len(), MAX_PATHS);
        assert_eq!(e.summary(), "mixed");
        assert!(!e.always_blocks());
    }
}
