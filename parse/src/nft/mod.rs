//! `nft list ruleset` text output: tables, chains, rules, sets, maps, stateful objects.
//!
//! Guarantees: every table, chain, rule, set/map element keeps its 1-based line
//! number; multi-line constructs (element lists, rules with anonymous sets split
//! over lines) are joined and keep the line they start on; lines not understood
//! are kept as [`Unparsed`]; parsing never fails and never panics, and every input
//! line is counted exactly once in [`LineCounts`].
//!
//! Tables written by iptables-nft are recognised ([`NftTable::iptables_nft`]), and
//! the kube-proxy nftables-mode table is modelled in [`kube_proxy`].

pub mod kube_proxy;

use serde::{Deserialize, Serialize};

use super::Unparsed;
pub use super::iptables::{Counters, LineCounts};
pub use kube_proxy::{KubeProxyNft, kube_proxy_nft_model};

/// Why a table is believed to be managed by iptables-nft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IptablesNftEvidence {
    /// nft printed `# Warning: table ... is managed by iptables-nft, do not touch!` in the output.
    WarningComment,
    /// A rule uses `xt match` / `xt target` (an iptables extension nft cannot translate).
    XtExpression,
    /// iptables table name and family with only iptables built-in base chain names.
    Layout,
}

/// Base-chain properties (`type filter hook input priority filter; policy accept;`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChainHook {
    /// Chain type: `filter`, `nat`, `route`.
    pub chain_type: String,
    /// Hook: `prerouting`, `input`, `forward`, `output`, `postrouting`, `ingress`, ...
    pub hook: String,
    /// Priority as printed (`filter`, `dstnat - 10`, `-100`).
    pub priority: String,
    /// Device for netdev/ingress chains.
    pub device: Option<String>,
    /// Policy (`accept`/`drop`), if printed.
    pub policy: Option<String>,
}

/// One rule (statement line) of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftRule {
    /// 1-based line where the rule starts.
    pub line: usize,
    /// Rule text, trimmed; continuation lines joined with a space.
    pub text: String,
    /// `comment "..."` text.
    pub comment: Option<String>,
    /// `jump`/`goto` targets, in order (including those inside verdict maps).
    pub targets: Vec<String>,
    /// `counter packets N bytes M`, if present.
    pub counter: Option<Counters>,
    /// `# handle N` (with `nft -a`).
    pub handle: Option<u64>,
    /// True if the rule contains an `xt match`/`xt target` expression.
    pub xt: bool,
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftChain {
    /// Chain name.
    pub name: String,
    /// 1-based line of `chain NAME {`.
    pub line: usize,
    /// Hook properties for base chains; `None` for regular chains.
    pub hook: Option<ChainHook>,
    /// Chain comment.
    pub comment: Option<String>,
    /// Rules in order.
    pub rules: Vec<NftRule>,
    /// `# handle N` after the `{` (with `nft -a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

/// Whether a [`NftSet`] is a set or a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetKind {
    /// `set NAME { ... }`.
    Set,
    /// `map NAME { ... }` (including verdict maps).
    Map,
}

/// One set or map element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftElement {
    /// 1-based line where the element starts.
    pub line: usize,
    /// Key parts (a concatenation `a . b . c` gives three parts).
    pub key: Vec<String>,
    /// Map value (`goto chain`, `accept`, `10.0.0.1`), `None` for sets.
    pub value: Option<String>,
    /// Element `comment "..."`.
    pub comment: Option<String>,
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftSet {
    /// Set or map.
    pub kind: SetKind,
    /// Name.
    pub name: String,
    /// 1-based line of `set NAME {`.
    pub line: usize,
    /// `type ...` or `typeof ...` text.
    pub key_type: Option<String>,
    /// `flags` values.
    pub flags: Vec<String>,
    /// Set comment.
    pub comment: Option<String>,
    /// Other property lines (`timeout 3h`, `size 65535`, `policy memory`, ...).
    pub properties: Vec<String>,
    /// Elements in printed order.
    pub elements: Vec<NftElement>,
}

/// A stateful object or other block (`counter`, `quota`, `flowtable`, `ct helper`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftObject {
    /// Object kind (`counter`, `quota`, `flowtable`, `ct helper`, ...).
    pub kind: String,
    /// Name.
    pub name: String,
    /// 1-based line of the header.
    pub line: usize,
    /// Body lines, trimmed.
    pub body: Vec<String>,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftTable {
    /// Family: `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub family: String,
    /// Name.
    pub name: String,
    /// 1-based line of `table ... {`.
    pub line: usize,
    /// Table comment.
    pub comment: Option<String>,
    /// Table flags (`dormant`, `owner`, ...).
    pub flags: Vec<String>,
    /// Chains in order.
    pub chains: Vec<NftChain>,
    /// Sets and maps in order.
    pub sets: Vec<NftSet>,
    /// Other blocks in order.
    pub objects: Vec<NftObject>,
    /// Set when the table looks managed by iptables-nft.
    pub iptables_nft: Option<IptablesNftEvidence>,
    /// `# handle N` after the `{` (with `nft -a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

impl NftTable {
    /// A chain by name.
    pub fn chain(&self, name: &str) -> Option<&NftChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// A set or map by name.
    pub fn set(&self, name: &str) -> Option<&NftSet> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// Number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

/// Which form of nft text the input was.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NftForm {
    /// `nft list ruleset` (with or without `-a`): `table … { … }` blocks.
    #[default]
    Listing,
    /// `nft -f` input: `add table`, `add chain`, `add rule`, `add element`, … commands
    /// (kube-proxy's transactions and test fixtures), replayed into tables.
    Commands,
    /// `nft list tables`: table names only, no chains or rules ([`NftRuleset::listed_tables`]).
    TableList,
}

/// A table named by `nft list tables` (no content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftTableName {
    /// Family.
    pub family: String,
    /// Name.
    pub name: String,
    /// 1-based line.
    pub line: usize,
}

/// A parsed `nft list ruleset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NftRuleset {
    /// Tables in order.
    pub tables: Vec<NftTable>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
    /// Line accounting.
    pub lines: LineCounts,
    /// Which form the input was.
    #[serde(default)]
    pub form: NftForm,
    /// Tables named by `nft list tables` (form [`NftForm::TableList`]); they carry no
    /// chains, so they are not in `tables`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listed_tables: Vec<NftTableName>,
}

impl NftRuleset {
    /// A table by family and name.
    pub fn table(&self, family: &str, name: &str) -> Option<&NftTable> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
    }
}

/// Where the line-oriented parser is.
enum Ctx {
    Top,
    Table,
    Chain,
    Set,
    Object,
}

/// Parses `nft list ruleset` output. Never fails.
pub fn parse_nft_ruleset(text: &str) -> NftRuleset {
    let mut p = Parser {
        out: NftRuleset {
            tables: Vec::new(),
            unparsed: Vec::new(),
            lines: LineCounts::default(),
            form: NftForm::Listing,
            listed_tables: Vec::new(),
        },
        pending_command: None,
        saw_block: false,
        ctx: Ctx::Top,
        pending: None,
        pending_elements: None,
        warned: Vec::new(),
    };
    for (idx, raw) in text.lines().enumerate() {
        p.line(idx + 1, raw.trim_end_matches('\r'));
    }
    p.finish();
    p.out
}

/// A statement spanning several lines (open braces not yet closed).
struct Pending {
    line: usize,
    text: String,
}

/// An `elements = { ... }` list still open.
struct PendingElements {
    segments: Vec<(usize, String)>,
}

struct Parser {
    out: NftRuleset,
    /// An `nft -f` command whose `{ … }` spans lines.
    pending_command: Option<Pending>,
    /// A `table … {` block was seen (the input is a listing, not a table list).
    saw_block: bool,
    ctx: Ctx,
    pending: Option<Pending>,
    pending_elements: Option<PendingElements>,
    /// (family, name) of tables named by a warning before they appeared.
    warned: Vec<(String, String)>,
}

impl Parser {
    fn unparsed(&mut self, lineno: usize, line: &str, reason: &str) {
        self.out.lines.unparsed += 1;
        self.out.unparsed.push(Unparsed::new(lineno, line, reason));
    }

    fn table(&mut self) -> Option<&mut NftTable> {
        self.out.tables.last_mut()
    }

    fn line(&mut self, lineno: usize, line: &str) {
        self.out.lines.total += 1;
        let t = line.trim();

        if let Some(mut pe) = self.pending_elements.take() {
            self.out.lines.parsed += 1;
            pe.segments.push((lineno, t.to_string()));
            if brace_balance(&pe.segments) <= 0 {
                self.flush_elements(pe);
            } else {
                self.pending_elements = Some(pe);
            }
            return;
        }
        if let Some(mut pending) = self.pending_command.take() {
            self.out.lines.parsed += 1;
            pending.text.push(' ');
            pending.text.push_str(t);
            if balance(&pending.text) <= 0 {
                self.command(pending.line, &pending.text);
            } else {
                self.pending_command = Some(pending);
            }
            return;
        }
        if let Some(mut pending) = self.pending.take() {
            self.out.lines.parsed += 1;
            pending.text.push(' ');
            pending.text.push_str(t);
            if balance(&pending.text) <= 0 {
                self.push_rule(pending.line, &pending.text);
            } else {
                self.pending = Some(pending);
            }
            return;
        }

        if t.is_empty() {
            self.out.lines.blank += 1;
            return;
        }
        if t.starts_with('#') {
            self.out.lines.comments += 1;
            if t.contains("is managed by iptables-nft") {
                self.note_warning(t);
            }
            return;
        }

        match self.ctx {
            Ctx::Top => self.top_line(lineno, line, t),
            Ctx::Table => self.table_line(lineno, line, t),
            Ctx::Chain => self.chain_line(lineno, line, t),
            Ctx::Set => self.set_line(lineno, line, t),
            Ctx::Object => {
                self.out.lines.parsed += 1;
                if t == "}" {
                    self.ctx = Ctx::Table;
                } else if let Some(o) = self.table().and_then(|tb| tb.objects.last_mut()) {
                    o.body.push(t.to_string());
                }
            }
        }
    }

    /// Records a `# Warning: table ip nat is managed by iptables-nft` line; the
    /// warning may come before, inside or after the table it names.
    fn note_warning(&mut self, t: &str) {
        let Some(rest) = t.split("table ").nth(1) else {
            return;
        };
        let mut w = rest.split_whitespace();
        let (Some(family), Some(name)) = (w.next(), w.next()) else {
            return;
        };
        let key = (family.to_string(), name.to_string());
        if let Some(tb) = self
            .out
            .tables
            .iter_mut()
            .find(|x| x.family == key.0 && x.name == key.1)
        {
            tb.iptables_nft = Some(IptablesNftEvidence::WarningComment);
        } else {
            self.warned.push(key);
        }
    }

    fn top_line(&mut self, lineno: usize, line: &str, t: &str) {
        let first = t.split_ascii_whitespace().next().unwrap_or("");
        if COMMANDS.contains(&first) {
            self.out.lines.parsed += 1;
            if balance(t) > 0 {
                self.pending_command = Some(Pending {
                    line: lineno,
                    text: t.to_string(),
                });
            } else {
                self.command(lineno, t);
            }
            return;
        }
        let (t, handle) = split_handle(t);
        let Some(rest) = t.strip_prefix("table ") else {
            self.unparsed(lineno, line, "expected `table`");
            return;
        };
        let Some(head) = rest.strip_suffix('{') else {
            // `nft list tables` prints `table FAMILY NAME` without a block.
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [family, name] = words.as_slice()
                && FAMILIES.contains(family)
            {
                self.out.lines.parsed += 1;
                self.out.listed_tables.push(NftTableName {
                    family: family.to_string(),
                    name: name.to_string(),
                    line: lineno,
                });
                return;
            }
            self.unparsed(lineno, line, "table header without `{`");
            return;
        };
        self.saw_block = true;
        let words: Vec<&str> = head.split_whitespace().collect();
        let (family, name) = match words.as_slice() {
            [family, name] => (*family, *name),
            [name] => ("ip", *name),
            _ => {
                self.unparsed(lineno, line, "bad table header");
                return;
            }
        };
        self.out.lines.parsed += 1;
        self.out.tables.push(NftTable {
            family: family.to_string(),
            name: name.to_string(),
            line: lineno,
            comment: None,
            flags: Vec::new(),
            chains: Vec::new(),
            sets: Vec::new(),
            objects: Vec::new(),
            iptables_nft: None,
            handle,
        });
        self.ctx = Ctx::Table;
    }

    fn table_line(&mut self, lineno: usize, line: &str, t: &str) {
        if t == "}" {
            self.out.lines.parsed += 1;
            self.close_table();
            self.ctx = Ctx::Top;
            return;
        }
        if let Some(c) = t.strip_prefix("comment ") {
            self.out.lines.parsed += 1;
            let c = unquote(c.trim());
            if let Some(tb) = self.table() {
                tb.comment = Some(c);
            }
            return;
        }
        if let Some(f) = t.strip_prefix("flags ") {
            self.out.lines.parsed += 1;
            let flags = split_flags(f);
            if let Some(tb) = self.table() {
                tb.flags = flags;
            }
            return;
        }
        let (t, handle) = split_handle(t);
        let Some(head) = t.strip_suffix('{').map(str::trim) else {
            self.unparsed(lineno, line, "unexpected line in table");
            return;
        };
        let (kw, name) = match head.rsplit_once(' ') {
            Some((kw, name)) => (kw.trim(), name.trim()),
            None => {
                self.unparsed(lineno, line, "block without a name");
                return;
            }
        };
        let name = unquote(name);
        let Some(tb) = self.out.tables.last_mut() else {
            return;
        };
        match kw {
            "chain" => {
                tb.chains.push(NftChain {
                    name,
                    line: lineno,
                    hook: None,
                    comment: None,
                    rules: Vec::new(),
                    handle,
                });
                self.ctx = Ctx::Chain;
            }
            "set" | "map" => {
                tb.sets.push(NftSet {
                    kind: if kw == "set" {
                        SetKind::Set
                    } else {
                        SetKind::Map
                    },
                    name,
                    line: lineno,
                    key_type: None,
                    flags: Vec::new(),
                    comment: None,
                    properties: Vec::new(),
                    elements: Vec::new(),
                });
                self.ctx = Ctx::Set;
            }
            _ => {
                tb.objects.push(NftObject {
                    kind: kw.to_string(),
                    name,
                    line: lineno,
                    body: Vec::new(),
                });
                self.ctx = Ctx::Object;
            }
        }
        self.out.lines.parsed += 1;
    }

    fn chain_line(&mut self, lineno: usize, _line: &str, t: &str) {
        self.out.lines.parsed += 1;
        if t == "}" {
            self.ctx = Ctx::Table;
            return;
        }
        let Some(chain) = self
            .out
            .tables
            .last_mut()
            .and_then(|tb| tb.chains.last_mut())
        else {
            return;
        };
        if chain.rules.is_empty() {
            if let Some(h) = t.strip_prefix("type ").and_then(parse_hook) {
                chain.hook = Some(h);
                return;
            }
            if let Some(p) = t.strip_prefix("policy ") {
                if let Some(h) = chain.hook.as_mut() {
                    h.policy = Some(p.trim_end_matches(';').trim().to_string());
                }
                return;
            }
            if let Some(c) = t.strip_prefix("comment ")
                && is_single_quoted(c.trim())
            {
                chain.comment = Some(unquote(c.trim()));
                return;
            }
        }
        if balance(t) > 0 {
            self.pending = Some(Pending {
                line: lineno,
                text: t.to_string(),
            });
            return;
        }
        self.push_rule(lineno, t);
    }

    fn push_rule(&mut self, lineno: usize, text: &str) {
        let rule = parse_rule(lineno, text);
        if let Some(c) = self
            .out
            .tables
            .last_mut()
            .and_then(|tb| tb.chains.last_mut())
        {
            c.rules.push(rule);
        }
    }

    fn set_line(&mut self, lineno: usize, _line: &str, t: &str) {
        self.out.lines.parsed += 1;
        if t == "}" {
            self.ctx = Ctx::Table;
            return;
        }
        if let Some(rest) = t.strip_prefix("elements = ") {
            let pe = PendingElements {
                segments: vec![(lineno, rest.to_string())],
            };
            if brace_balance(&pe.segments) <= 0 {
                self.flush_elements(pe);
            } else {
                self.pending_elements = Some(pe);
            }
            return;
        }
        let Some(set) = self.out.tables.last_mut().and_then(|tb| tb.sets.last_mut()) else {
            return;
        };
        if t.starts_with("type ") || t.starts_with("typeof ") {
            set.key_type = Some(t.to_string());
        } else if let Some(f) = t.strip_prefix("flags ") {
            set.flags = split_flags(f);
        } else if let Some(c) = t.strip_prefix("comment ") {
            set.comment = Some(unquote(c.trim()));
        } else {
            set.properties.push(t.to_string());
        }
    }

    fn flush_elements(&mut self, pe: PendingElements) {
        let elements = split_elements(&pe.segments);
        if let Some(set) = self.out.tables.last_mut().and_then(|tb| tb.sets.last_mut()) {
            set.elements.extend(elements);
        }
    }

    fn close_table(&mut self) {
        let Some(i) = self.out.tables.len().checked_sub(1) else {
            return;
        };
        self.close_table_at(i);
    }

    fn close_table_at(&mut self, i: usize) {
        let Some(tb) = self.out.tables.get_mut(i) else {
            return;
        };
        if self
            .warned
            .iter()
            .any(|(f, n)| *f == tb.family && *n == tb.name)
        {
            tb.iptables_nft = Some(IptablesNftEvidence::WarningComment);
        }
        if tb.iptables_nft.is_some() {
            return;
        }
        if tb.chains.iter().flat_map(|c| &c.rules).any(|r| r.xt) {
            tb.iptables_nft = Some(IptablesNftEvidence::XtExpression);
            return;
        }
        const TABLES: [&str; 6] = ["filter", "nat", "mangle", "raw", "security", "broute"];
        const BUILTIN: [&str; 8] = [
            "INPUT",
            "OUTPUT",
            "FORWARD",
            "PREROUTING",
            "POSTROUTING",
            "BROUTING",
            "IN",
            "OUT",
        ];
        let family_ok = matches!(tb.family.as_str(), "ip" | "ip6" | "arp" | "bridge");
        let mut base = tb.chains.iter().filter(|c| c.hook.is_some()).peekable();
        let has_base = base.peek().is_some();
        let base_ok = base.all(|c| BUILTIN.contains(&c.name.as_str()));
        if family_ok
            && TABLES.contains(&tb.name.as_str())
            && has_base
            && base_ok
            && tb.sets.is_empty()
        {
            tb.iptables_nft = Some(IptablesNftEvidence::Layout);
        }
    }

    fn finish(&mut self) {
        // A cut-off dump: keep what was gathered rather than dropping it.
        if let Some(pe) = self.pending_elements.take() {
            self.flush_elements(pe);
        }
        if let Some(p) = self.pending.take() {
            self.push_rule(p.line, &p.text);
        }
        if let Some(p) = self.pending_command.take() {
            self.command(p.line, &p.text);
        }
        if matches!(self.ctx, Ctx::Table | Ctx::Chain | Ctx::Set | Ctx::Object) {
            self.close_table();
        }
        if self.out.form == NftForm::Commands {
            for i in 0..self.out.tables.len() {
                self.close_table_at(i);
            }
        } else if !self.saw_block && !self.out.listed_tables.is_empty() {
            self.out.form = NftForm::TableList;
        }
    }

    /// Index of the table `family name`, created on first mention (an `nft -f`
    /// transaction may add rules to a table it does not declare).
    fn table_index(&mut self, family: &str, name: &str, lineno: usize) -> usize {
        if let Some(i) = self
            .out
            .tables
            .iter()
            .position(|t| t.family == family && t.name == name)
        {
            return i;
        }
        self.out.tables.push(NftTable {
            family: family.to_string(),
            name: name.to_string(),
            line: lineno,
            comment: None,
            flags: Vec::new(),
            chains: Vec::new(),
            sets: Vec::new(),
            objects: Vec::new(),
            iptables_nft: None,
            handle: None,
        });
        self.out.tables.len() - 1
    }

    fn chain_index(&mut self, ti: usize, name: &str, lineno: usize) -> usize {
        let tb = &mut self.out.tables[ti];
        if let Some(i) = tb.chains.iter().position(|c| c.name == name) {
            return i;
        }
        tb.chains.push(NftChain {
            name: name.to_string(),
            line: lineno,
            hook: None,
            comment: None,
            rules: Vec::new(),
            handle: None,
        });
        tb.chains.len() - 1
    }

    /// Replays one `nft -f` command (`add table ip kube-proxy { comment "…" ; }`,
    /// `add rule ip kube-proxy services ip daddr … vmap @service-ips`, …) into the
    /// tables. The line was already counted as parsed; what cannot be applied is
    /// reported as unparsed with the reason.
    fn command(&mut self, lineno: usize, t: &str) {
        self.out.form = NftForm::Commands;
        let fail = |p: &mut Parser, why: &str| {
            p.out.lines.parsed -= 1;
            p.unparsed(lineno, t, why);
        };
        let (verb, rest) = split_word(t);
        let (object, rest) = split_word(rest);
        let (family, rest) = match split_word(rest) {
            (f, r) if FAMILIES.contains(&f) => (f, r),
            _ => ("ip", rest),
        };
        let (table, rest) = split_word(rest);
        // `flush ruleset` / `delete table x` need no more words.
        match (verb, object) {
            ("flush", "ruleset") => {
                self.out.tables.clear();
                return;
            }
            ("define" | "include", _) => {
                fail(self, "`define`/`include` are not expanded");
                return;
            }
            _ => {}
        }
        if table.is_empty() {
            fail(self, "command without a table");
            return;
        }
        let ti = match (verb, object) {
            ("delete" | "destroy", "table") => {
                self.out
                    .tables
                    .retain(|tb| !(tb.family == family && tb.name == table));
                return;
            }
            _ => self.table_index(family, table, lineno),
        };
        let (name, body) = split_word(rest);
        let body = body.trim();
        match (verb, object) {
            ("add" | "create", "table") => {
                for part in block_parts(rest) {
                    if let Some(c) = part.strip_prefix("comment ") {
                        self.out.tables[ti].comment = Some(unquote(c.trim()));
                    } else if let Some(f) = part.strip_prefix("flags ") {
                        self.out.tables[ti].flags = split_flags(f);
                    }
                }
            }
            ("flush", "table") => {
                for c in &mut self.out.tables[ti].chains {
                    c.rules.clear();
                }
            }
            ("add" | "create", "chain") => {
                let ci = self.chain_index(ti, name, lineno);
                let chain = &mut self.out.tables[ti].chains[ci];
                for part in block_parts(body) {
                    if let Some(h) = part.strip_prefix("type ").and_then(parse_hook) {
                        chain.hook = Some(h);
                    } else if let Some(p) = part.strip_prefix("policy ") {
                        if let Some(h) = chain.hook.as_mut() {
                            h.policy = Some(p.trim().to_string());
                        }
                    } else if let Some(c) = part.strip_prefix("comment ") {
                        chain.comment = Some(unquote(c.trim()));
                    }
                }
            }
            ("flush", "chain") => {
                let ci = self.chain_index(ti, name, lineno);
                self.out.tables[ti].chains[ci].rules.clear();
            }
            ("delete" | "destroy", "chain") => {
                self.out.tables[ti].chains.retain(|c| c.name != name);
            }
            ("add" | "insert", "rule") => {
                let ci = self.chain_index(ti, name, lineno);
                let mut stmt = body;
                // `add rule t c position N …` / `index N` / `handle N` place the rule.
                for kw in ["position ", "index ", "handle "] {
                    if let Some(r) = stmt.strip_prefix(kw) {
                        stmt = split_word(r).1;
                    }
                }
                let rule = parse_rule(lineno, stmt);
                let rules = &mut self.out.tables[ti].chains[ci].rules;
                if verb == "insert" {
                    rules.insert(0, rule);
                } else {
                    rules.push(rule);
                }
            }
            ("delete" | "destroy" | "replace", "rule") => {
                fail(
                    self,
                    "rule deletion/replacement by handle is not applied to the model",
                );
            }
            ("add" | "create", "set" | "map") => {
                let tb = &mut self.out.tables[ti];
                let si = match tb.sets.iter().position(|x| x.name == name) {
                    Some(i) => i,
                    None => {
                        tb.sets.push(NftSet {
                            kind: if object == "set" {
                                SetKind::Set
                            } else {
                                SetKind::Map
                            },
                            name: name.to_string(),
                            line: lineno,
                            key_type: None,
                            flags: Vec::new(),
                            comment: None,
                            properties: Vec::new(),
                            elements: Vec::new(),
                        });
                        tb.sets.len() - 1
                    }
                };
                let set = &mut tb.sets[si];
                for part in block_parts(body) {
                    if part.starts_with("type ") || part.starts_with("typeof ") {
                        set.key_type = Some(part.to_string());
                    } else if let Some(f) = part.strip_prefix("flags ") {
                        set.flags = split_flags(f);
                    } else if let Some(c) = part.strip_prefix("comment ") {
                        set.comment = Some(unquote(c.trim()));
                    } else if let Some(e) = part.strip_prefix("elements = ") {
                        set.elements
                            .extend(split_elements(&[(lineno, e.to_string())]));
                    } else if !part.is_empty() {
                        set.properties.push(part.to_string());
                    }
                }
            }
            ("flush", "set" | "map") => {
                if let Some(set) = self.out.tables[ti].sets.iter_mut().find(|x| x.name == name) {
                    set.elements.clear();
                }
            }
            ("delete" | "destroy", "set" | "map") => {
                self.out.tables[ti].sets.retain(|x| x.name != name);
            }
            ("add" | "create" | "delete" | "destroy", "element") => {
                let elements = split_elements(&[(lineno, body.to_string())]);
                let tb = &mut self.out.tables[ti];
                let Some(set) = tb.sets.iter_mut().find(|x| x.name == name) else {
                    fail(self, "element of a set that was not declared");
                    return;
                };
                if verb == "add" || verb == "create" {
                    set.elements.extend(elements);
                } else {
                    set.elements
                        .retain(|e| !elements.iter().any(|d| d.key == e.key));
                }
            }
            ("add" | "create", kind) if OBJECTS.contains(&kind) => {
                self.out.tables[ti].objects.push(NftObject {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    line: lineno,
                    body: block_parts(body).map(str::to_string).collect(),
                });
            }
            _ => fail(self, "nft command not understood"),
        }
    }
}

/// Commands of `nft -f` input.
const COMMANDS: [&str; 8] = [
    "add", "create", "insert", "replace", "flush", "delete", "destroy", "define",
];

/// Families nft prints.
const FAMILIES: [&str; 6] = ["ip", "ip6", "inet", "arp", "bridge", "netdev"];

/// Stateful object kinds an `add` command may create.
const OBJECTS: [&str; 8] = [
    "counter",
    "quota",
    "limit",
    "flowtable",
    "ct",
    "secmark",
    "synproxy",
    "tunnel",
];

/// First whitespace-separated word and the trimmed rest.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((w, r)) => (w, r.trim_start()),
        None => (s, ""),
    }
}

/// The `;`-separated parts of a `{ a ; b ; }` block (outer braces removed); `;`
/// inside quotes or nested braces does not split.
fn block_parts(s: &str) -> impl Iterator<Item = &str> {
    let s = s.trim();
    let inner = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or("");
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i64, false, 0usize);
    for (i, b) in inner.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'{' if !quoted => depth += 1,
            b'}' if !quoted => depth -= 1,
            b';' if !quoted && depth == 0 => {
                parts.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(inner[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// Splits a header's trailing `# handle N` comment (`nft -a`) off.
fn split_handle(t: &str) -> (&str, Option<u64>) {
    match find_unquoted(t, "# handle ") {
        Some(i) => (
            t[..i].trim_end(),
            t[i + 9..]
                .split_whitespace()
                .next()
                .and_then(|h| h.parse().ok()),
        ),
        None => (t, None),
    }
}

/// `filter hook input priority filter; policy accept;` (after `type `).
fn parse_hook(s: &str) -> Option<ChainHook> {
    let mut policy = None;
    let mut head = "";
    for (i, part) in s.split(';').map(str::trim).enumerate() {
        if i == 0 {
            head = part;
        } else if let Some(p) = part.strip_prefix("policy ") {
            policy = Some(p.trim().to_string());
        }
    }
    let (chain_type, rest) = head.split_once(" hook ")?;
    let (hook_dev, priority) = rest.split_once(" priority ")?;
    let (hook, device) = match hook_dev.split_once(" device ") {
        Some((h, d)) => (h.trim(), Some(unquote(d.trim()))),
        None => (hook_dev.trim(), None),
    };
    Some(ChainHook {
        chain_type: chain_type.trim().to_string(),
        hook: hook.to_string(),
        priority: priority.trim().to_string(),
        device,
        policy,
    })
}

fn split_flags(s: &str) -> Vec<String> {
    s.split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

fn is_single_quoted(s: &str) -> bool {
    s.len() >= 2 && s.starts_with('"') && s.ends_with('"') && !s[1..s.len() - 1].contains('"')
}

/// Strips surrounding double quotes (nft does not escape inside them).
fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

/// `{` minus `}` outside double quotes.
fn balance(s: &str) -> i64 {
    let mut depth = 0i64;
    let mut quoted = false;
    for b in s.bytes() {
        match b {
            b'"' => quoted = !quoted,
            b'{' if !quoted => depth += 1,
            b'}' if !quoted => depth -= 1,
            _ => {}
        }
    }
    depth
}

fn brace_balance(segments: &[(usize, String)]) -> i64 {
    segments.iter().map(|(_, s)| balance(s)).sum()
}

/// Splits `{ a, b . c : goto x, ... }` (spread over lines) into elements.
fn split_elements(segments: &[(usize, String)]) -> Vec<NftElement> {
    let mut out = Vec::new();
    let mut depth = 0i64;
    let mut quoted = false;
    let mut cur = String::new();
    let mut cur_line = 0usize;
    for (lineno, seg) in segments {
        for c in seg.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                '{' if !quoted => {
                    depth += 1;
                    if depth > 1 {
                        cur.push(c);
                    }
                }
                '}' if !quoted => {
                    depth -= 1;
                    if depth >= 1 {
                        cur.push(c);
                    } else {
                        push_element(&mut out, &cur, cur_line);
                        cur.clear();
                    }
                }
                ',' if !quoted && depth == 1 => {
                    push_element(&mut out, &cur, cur_line);
                    cur.clear();
                }
                _ => {
                    if cur.trim().is_empty() && !c.is_whitespace() {
                        cur.clear();
                        cur_line = *lineno;
                    }
                    cur.push(c);
                }
            }
        }
        cur.push(' ');
    }
    push_element(&mut out, &cur, cur_line);
    out
}

fn push_element(out: &mut Vec<NftElement>, text: &str, line: usize) {
    let t = text.trim();
    if t.is_empty() {
        return;
    }
    let (key_part, value) = match find_unquoted(t, " : ") {
        Some(i) => (&t[..i], Some(t[i + 3..].trim().to_string())),
        None => (t, None),
    };
    let (key_text, comment) = match find_unquoted(key_part, " comment ") {
        Some(i) => (&key_part[..i], Some(unquote(key_part[i + 9..].trim()))),
        None => (key_part, None),
    };
    // Element options (`timeout 3h expires 2h`, `counter packets ...`) follow the key.
    let mut key_text = key_text;
    for opt in [" timeout ", " expires ", " counter ", " limit "] {
        if let Some(i) = find_unquoted(key_text, opt) {
            key_text = &key_text[..i];
        }
    }
    out.push(NftElement {
        line,
        key: key_text
            .split(" . ")
            .map(|k| k.trim().to_string())
            .collect(),
        value,
        comment,
    });
}

fn find_unquoted(s: &str, pat: &str) -> Option<usize> {
    let mut quoted = false;
    let bytes = s.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'"' {
            quoted = !quoted;
        } else if !quoted && s.is_char_boundary(i) && s[i..].starts_with(pat) {
            return Some(i);
        }
    }
    None
}

fn parse_rule(line: usize, text: &str) -> NftRule {
    let mut text = text.trim();
    let mut handle = None;
    if let Some(i) = find_unquoted(text, "# handle ") {
        handle = text[i + 9..].trim().parse().ok();
        text = text[..i].trim_end();
    }
    let comment = find_unquoted(text, "comment \"").map(|i| {
        let rest = &text[i + 9..];
        rest.split('"').next().unwrap_or("").to_string()
    });
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut targets = Vec::new();
    let mut counter = None;
    for (i, w) in words.iter().enumerate() {
        match *w {
            "jump" | "goto" => {
                if let Some(t) = words.get(i + 1) {
                    let t = t.trim_end_matches([',', '}', ';']);
                    if !t.is_empty() {
                        targets.push(t.to_string());
                    }
                }
            }
            "counter" => {
                if let (Some(&"packets"), Some(p), Some(&"bytes"), Some(b)) = (
                    words.get(i + 1),
                    words.get(i + 2),
                    words.get(i + 3),
                    words.get(i + 4),
                ) && let (Ok(packets), Ok(bytes)) = (p.parse(), b.parse())
                {
                    counter = Some(Counters { packets, bytes });
                }
            }
            _ => {}
        }
    }
    NftRule {
        line,
        text: text.to_string(),
        comment,
        targets,
        counter,
        handle,
        xt: text.contains("xt match ") || text.contains("xt target "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_elements_with_comments() {
        let r = parse_nft_ruleset(
            "table ip t {\n\tmap m {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = { 10.0.0.1 . tcp . 80 comment \"a/b:c\" : goto x,\n\t\t\t     10.0.0.2 . udp . 53 : drop }\n\t}\n}\n",
        );
        let m = r.table("ip", "t").unwrap().set("m").unwrap();
        assert_eq!(m.elements.len(), 2);
        assert_eq!(m.elements[0].key, ["10.0.0.1", "tcp", "80"]);
        assert_eq!(m.elements[0].comment.as_deref(), Some("a/b:c"));
        assert_eq!(m.elements[0].value.as_deref(), Some("goto x"));
        assert_eq!(m.elements[1].line, 5);
        assert_eq!(
            r.lines.parsed + r.lines.blank + r.lines.comments + r.lines.unparsed,
            r.lines.total
        );
    }

    #[test]
    fn hook_and_rule() {
        let r = parse_nft_ruleset(
            "table inet f {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport 22 counter packets 3 bytes 180 accept comment \"ssh\"\n\t}\n}\n",
        );
        let c = &r.tables[0].chains[0];
        let h = c.hook.as_ref().unwrap();
        assert_eq!(
            (h.hook.as_str(), h.policy.as_deref()),
            ("input", Some("drop"))
        );
        assert_eq!(
            c.rules[0].counter,
            Some(Counters {
                packets: 3,
                bytes: 180
            })
        );
        assert_eq!(c.rules[0].comment.as_deref(), Some("ssh"));
    }
}
