//! The rule file format (`rules/<id>.yaml`): typed with serde (`deny_unknown_fields`)
//! and schemars, so a typo in a rule file is an error and `docs/rules.md` can
//! document every field.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `info < warning < error < critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not a fault (or a fault by design).
    Info,
    /// A risk or a partial fault.
    Warning,
    /// Something is broken for some traffic.
    Error,
    /// Node-wide or cluster-critical outage.
    Critical,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL_DESC: [Severity; 4] = [
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Info,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule is evaluated over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Once per bundle, over that node's fact document (`docs/facts.md`).
    #[default]
    Node,
    /// Once per analysis of two or more node bundles, over the cluster fact document
    /// (`docs/facts.md#cluster-fact-document`).
    Cluster,
}

impl Scope {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Node => "node",
            Scope::Cluster => "cluster",
        }
    }
}

/// One rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable kebab-case identifier, equal to the file name without `.yaml`; never reused.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// Default severity of its findings.
    pub severity: Severity,
    /// Area: `conntrack`, `kube-proxy`, `dns`, `netns`, `sysctl`, `links`, …
    pub category: String,
    /// `node` (the default: once per bundle, over its fact document) or `cluster` (once
    /// over the cluster fact document of all the node bundles analyzed together).
    #[serde(default, skip_serializing_if = "is_node_scope")]
    pub scope: Scope,
    /// What the rule checks and why it matters (markdown).
    pub description: String,
    /// Data sources (ids of `collection.sources`) the rule needs; when one is missing the
    /// rule is reported as not evaluated, with the manifest's reason.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Data sources the rule reads only to add to a finding (a count in the message, a
    /// severity raise): when one is missing the rule still runs and its findings say what
    /// was not collected. The rule must never conclude from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
    /// CEL boolean evaluated once; when false the rule does not apply to this node.
    #[serde(default)]
    pub precondition: Option<String>,
    /// Iterate a CEL list, binding each item to a name; `condition` is evaluated per item.
    #[serde(default)]
    pub for_each: Option<ForEach>,
    /// CEL boolean: true means a finding.
    pub condition: String,
    /// Template naming what the finding is about (default: the node name).
    #[serde(default)]
    pub subject: Option<String>,
    /// Message template; `{{ cel }}` spans are replaced by their values.
    pub message: String,
    /// Severity raises (or lowers): the first entry whose `when` is true wins.
    #[serde(default)]
    pub severity_when: Vec<SeverityWhen>,
    /// What to do about it.
    pub remediation: String,
    /// Upstream issues or docs.
    pub references: Vec<String>,
    /// CEL expression yielding evidence: a source `{path, line}`, or a (nested) list of them.
    #[serde(default)]
    pub evidence: Option<String>,
    /// Parameters with their defaults, bound as `params.<name>`; overridable with `--set id.name=value`.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Test cases: facts in, findings out.
    #[serde(default)]
    pub tests: Vec<RuleTest>,
}

fn is_node_scope(s: &Scope) -> bool {
    *s == Scope::Node
}

/// `for_each` clause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForEach {
    /// CEL expression yielding a list.
    #[serde(rename = "in")]
    pub list: String,
    /// Name each item is bound to.
    #[serde(rename = "as")]
    pub name: String,
}

/// A conditional severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityWhen {
    /// Severity to use.
    pub severity: Severity,
    /// CEL boolean, evaluated with the item bound.
    pub when: String,
}

/// One test case of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    /// What the case shows.
    pub name: String,
    /// A fact document snippet (missing fields take their defaults; unknown fields are errors).
    #[serde(default)]
    pub facts: serde_json::Value,
    /// Parameter overrides for this case.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Expected outcome.
    pub expect: TestExpect,
}

/// Expected outcome of a rule test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestExpect {
    /// Number of findings.
    #[serde(default)]
    pub count: usize,
    /// Subjects of the findings, in order (when given).
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    /// Severity of every finding (when given).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// The rule must be reported as not evaluated (missing data).
    #[serde(default)]
    pub not_evaluated: bool,
    /// Text every finding's message must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_contains: Vec<String>,
}

/// True for a kebab-case id: lower-case ASCII letters and digits in dash-separated words.
pub fn is_kebab_case(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
