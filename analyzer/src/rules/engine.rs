//! Loading, compiling and evaluating rules.
//!
//! Rules are compiled once (every CEL expression and template is parsed at load
//! time, so a broken rule fails before any bundle is read) and evaluated over
//! the fact document converted once to a CEL value; every expression is also checked
//! against the fact schema ([`super::typecheck`]). Evaluation never panics: a runtime
//! CEL error is a *rule error* (the rule's fault), never *passed* and never "missing data".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::{Context, Env, Program, Value};
use serde::Serialize;

use super::budget::{Budget, EXCEEDED, Meter, instrument};
use super::spec::{RuleSpec, Scope, Severity, is_kebab_case};
use super::typecheck::{self, Ty};
use super::value::{Node, to_node, to_value};
use crate::facts::cluster::ClusterFacts;
use crate::facts::model::{Facts, Source, SourceStatus};
use crate::facts::sources;

/// A rule-loading error; the message names the file, the line and the rule id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The file could not be read.
    #[error("{file}: cannot read rule file: {source}")]
    Read {
        /// File.
        file: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the rule schema.
    #[error("{file}:{line}: invalid rule file: {message}")]
    Yaml {
        /// File.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// serde_yaml_ng's message.
        message: String,
    },
    /// A semantic error in a rule (bad id, unknown source, bad template, CEL syntax).
    #[error("{file}:{line}: rule {id}: {message}")]
    Invalid {
        /// File.
        file: String,
        /// 1-based line of the offending field.
        line: usize,
        /// Rule id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The file is too large or too deeply nested to be a rule (refused before parsing).
    #[error("{file}: {message}")]
    Limit {
        /// File.
        file: String,
        /// Which limit, and the figure.
        message: String,
    },
    /// `--set`, `--disable` or `rules explain` named something unknown.
    #[error("{0}")]
    Usage(String),
    /// Several rule files are broken: each error on its own line, so one run names them all.
    #[error("{} rule errors:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Several(Vec<RuleError>),
}

/// A fact document rules are evaluated over: a node's [`Facts`] or the [`ClusterFacts`].
pub trait FactDoc {
    /// Data sources by id, as `requires` names them.
    fn sources(&self) -> &BTreeMap<String, SourceStatus>;
    /// A finding's subject when the rule has no `subject` template.
    fn default_subject(&self) -> &str;
}

impl FactDoc for Facts {
    fn sources(&self) -> &BTreeMap<String, SourceStatus> {
        &self.collection.sources
    }
    fn default_subject(&self) -> &str {
        &self.node.name
    }
}

impl FactDoc for ClusterFacts {
    fn sources(&self) -> &BTreeMap<String, SourceStatus> {
        &self.collection.sources
    }
    fn default_subject(&self) -> &str {
        "cluster"
    }
}

/// A compiled template: literal text and `{{ cel }}` spans.
#[derive(Debug)]
struct Template {
    parts: Vec<TemplatePart>,
}

#[derive(Debug)]
enum TemplatePart {
    Text(String),
    /// Index into the per-finding record the combined program yields.
    Expr(usize),
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule as written.
    pub spec: RuleSpec,
    /// Where it came from (file path, or `builtin:<file>`).
    pub origin: String,
    /// Compiled and instrumented for the evaluation budget ([`super::budget`]).
    precondition: Option<cel::IdedExpr>,
    /// One program yielding, for every finding, the record
    /// `[severity_when..., template spans..., evidence]`: the condition, the iteration and
    /// the per-finding values all run inside the CEL interpreter, so facts are never copied.
    /// Instrumented like `precondition`.
    combined: cel::IdedExpr,
    subject: Option<Template>,
    message: Template,
    severity_when: Vec<Severity>,
    evidence_index: Option<usize>,
}

/// One finding before rendering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawFinding {
    /// Rule id.
    pub rule_id: String,
    /// Severity.
    pub severity: Severity,
    /// Subject.
    pub subject: String,
    /// Message.
    pub message: String,
    /// Evidence pointers.
    pub evidence: Vec<Source>,
}

/// The outcome of one rule on one fact document.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Data the rule requires is missing: reason.
    NotEvaluated(String),
    /// The rule itself failed (a CEL error at evaluation, or it exceeded its evaluation
    /// budget): no answer, and not because data is missing.
    RuleError(String),
    /// Precondition false.
    NotApplicable,
    /// Evaluated: findings (possibly none).
    Findings(Vec<RawFinding>),
}

/// The CEL environment shared by all rules: stdlib plus the strings and lists extensions.
pub fn cel_env() -> Arc<Env> {
    let mut env = Env::stdlib();
    // Extensions are optional conveniences; failing to add one only removes functions.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    Arc::new(env)
}

/// Finds the 1-based line of `key:` in a YAML text (first occurrence at any indent).
fn key_line(text: &str, key: &str) -> usize {
    let needle = format!("{key}:");
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&needle)
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Largest rule file accepted (the largest built-in rule is under 10 KiB).
pub const MAX_RULE_FILE_BYTES: u64 = 256 * 1024;
/// Deepest YAML nesting accepted: flow collections (`[`, `{`) plus indentation levels.
pub const MAX_RULE_YAML_DEPTH: usize = 32;

/// Refuses a rule text that is too large or too deep, in one linear pass and before the YAML
/// parser (which is slow on pathological nesting) sees it.
fn check_limits(file: &str, text: &str) -> Result<(), RuleError> {
    let limit = |message: String| RuleError::Limit {
        file: file.to_string(),
        message,
    };
    if text.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(limit(format!(
            "rule file is {} bytes, more than the {} KiB limit",
            text.len(),
            MAX_RULE_FILE_BYTES / 1024
        )));
    }
    // Flow nesting, outside quoted strings and comments, and block nesting by indentation
    // (counted in steps of the smallest indent seen, at least one column).
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        let mut quote: Option<char> = None;
        let mut deepest_flow = flow;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    deepest_flow = deepest_flow.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        let depth = deepest_flow + indent / 2;
        if depth > MAX_RULE_YAML_DEPTH {
            return Err(limit(format!(
                "line {}: YAML nested more than {MAX_RULE_YAML_DEPTH} levels deep",
                n + 1
            )));
        }
    }
    Ok(())
}

impl Rule {
    /// Parses and compiles a rule file's text; `file` names it in errors.
    pub fn from_yaml(env: &Env, file: &str, text: &str) -> Result<Rule, RuleError> {
        check_limits(file, text)?;
        let spec: RuleSpec = serde_yaml_ng::from_str(text).map_err(|e| RuleError::Yaml {
            file: file.to_string(),
            line: e.location().map(|l| l.line()).unwrap_or(0),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, message: String| RuleError::Invalid {
            file: file.to_string(),
            line: key_line(text, key),
            id: spec.id.clone(),
            message,
        };
        if !is_kebab_case(&spec.id) {
            return Err(invalid("id", format!("id {:?} is not kebab-case", spec.id)));
        }
        let stem = Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != spec.id {
            return Err(invalid(
                "id",
                format!("id must equal the file name ({stem:?})"),
            ));
        }
        for r in spec.requires.iter().chain(&spec.optional) {
            if sources::find(r).is_none() {
                let known: Vec<_> = sources::DATA_SOURCES.iter().map(|s| s.id).collect();
                return Err(invalid(
                    "requires",
                    format!("unknown data source {r:?} (known: {})", known.join(", ")),
                ));
            }
        }
        if spec.references.is_empty() {
            return Err(invalid(
                "references",
                "at least one reference is required".into(),
            ));
        }
        let compile = |key: &str, src: &str| -> Result<Program, RuleError> {
            env.compile(src).map_err(|e| {
                let first = e.errors.first();
                let (l, c) = first.map(|x| x.pos).unwrap_or((0, 0));
                let msg = first
                    .map(|x| x.msg.clone())
                    .unwrap_or_else(|| e.to_string());
                let base = key_line(text, key);
                // Block scalars start on the line after the key.
                let offset = if l > 0 { l as usize - 1 } else { 0 };
                RuleError::Invalid {
                    file: file.to_string(),
                    line: base + offset + usize::from(src.contains('\n')),
                    id: spec.id.clone(),
                    message: format!("CEL error in {key} (column {c}): {msg}"),
                }
            })
        };
        // Every expression is also checked against the fact schema: a misspelt field or a
        // type error fails the load instead of erroring (or silently not firing) later.
        let base_scope = typecheck::Scope::new(&spec.params, spec.scope);
        let checked =
            |key: &str, src: &str, scope: &typecheck::Scope| -> Result<(Program, Ty), RuleError> {
                let p = compile(key, src)?;
                let ty = typecheck::check(p.expression(), scope)
                    .map_err(|m| invalid(key, format!("type error in {key}: {m}")))?;
                Ok((p, ty))
            };
        let mut item_scope = base_scope.clone();
        // Every per-finding expression, in record order, as CEL source.
        let mut record: Vec<String> = Vec::new();
        let template = |key: &str,
                        src: &str,
                        record: &mut Vec<String>,
                        scope: &typecheck::Scope|
         -> Result<Template, RuleError> {
            let mut parts = Vec::new();
            let mut rest = src;
            while let Some(start) = rest.find("{{") {
                if start > 0 {
                    parts.push(TemplatePart::Text(rest[..start].to_string()));
                }
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else {
                    return Err(invalid(key, "unclosed {{ in template".into()));
                };
                let expr = after[..end].trim();
                checked(key, expr, scope)?;
                parts.push(TemplatePart::Expr(record.len()));
                record.push(expr.to_string());
                rest = &after[end + 2..];
            }
            if !rest.is_empty() {
                parts.push(TemplatePart::Text(rest.to_string()));
            }
            Ok(Template { parts })
        };
        let precondition = spec
            .precondition
            .as_deref()
            .map(|s| checked("precondition", s, &base_scope).map(|(p, _)| p))
            .transpose()?;
        if let Some(fe) = &spec.for_each {
            if !is_identifier(&fe.name) {
                return Err(invalid("as", format!("{:?} is not an identifier", fe.name)));
            }
            let (_, list) = checked("in", &fe.list, &base_scope)?;
            if matches!(list, Ty::Bool | Ty::Number | Ty::String) {
                return Err(invalid(
                    "in",
                    format!("type error in in: for_each needs a list, got a {list:?}"),
                ));
            }
            item_scope.bind(&fe.name, typecheck::Scope::element(&list));
        }
        checked("condition", &spec.condition, &item_scope)?;
        let mut severity_when = Vec::new();
        for w in &spec.severity_when {
            checked("when", &w.when, &item_scope)?;
            severity_when.push(w.severity);
            record.push(w.when.clone());
        }
        let subject = spec
            .subject
            .as_deref()
            .map(|s| template("subject", s, &mut record, &item_scope))
            .transpose()?;
        let message = template("message", &spec.message, &mut record, &item_scope)?;
        let evidence_index = match spec.evidence.as_deref() {
            Some(e) => {
                checked("evidence", e, &item_scope)?;
                record.push(e.to_string());
                Some(record.len() - 1)
            }
            None => None,
        };
        let combined_of = |record: &[String]| {
            let record_src = format!(
                "[{}]",
                record
                    .iter()
                    .map(|r| format!("({r})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match &spec.for_each {
                Some(fe) => format!(
                    "({}).filter({n}, ({})).map({n}, {record_src})",
                    fe.list,
                    spec.condition,
                    n = fe.name
                ),
                None => format!("({}) ? [{record_src}] : []", spec.condition),
            }
        };
        let combined_program = compile("condition", &combined_of(&record))?;
        // The data a rule needs is what every expression reads, except a `severity_when`
        // that only raises the severity: without its data the finding stays at the lower
        // severity, which is still true (a kernel log that failed must not hide a full
        // conntrack table); and the evidence, which only points at lines.
        let needs_record: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, r)| match spec.severity_when.get(i) {
                Some(w) if w.severity > spec.severity => "false".to_string(),
                // Evidence only points at lines; without its artifact there are fewer.
                _ if Some(i) == evidence_index => "[]".to_string(),
                _ => r.clone(),
            })
            .collect();
        let needs_program = compile("condition", &combined_of(&needs_record))?;
        check_needs(&spec, precondition.as_ref(), &needs_program)
            .map_err(|m| invalid("requires", m))?;
        let mut combined = combined_program.expression().clone();
        instrument(&mut combined);
        let precondition = precondition.map(|p| {
            let mut e = p.expression().clone();
            instrument(&mut e);
            e
        });
        for t in &spec.tests {
            for p in t.params.keys() {
                if !spec.params.contains_key(p) {
                    return Err(invalid(
                        "params",
                        format!("test {:?} sets unknown param {p:?}", t.name),
                    ));
                }
            }
        }
        Ok(Rule {
            spec,
            origin: file.to_string(),
            precondition,
            combined,
            subject,
            message,
            severity_when,
            evidence_index,
        })
    }

    /// Evaluates the rule over facts prepared once with [`prepare_facts`].
    pub fn evaluate<D: FactDoc + ?Sized>(
        &self,
        env: &Arc<Env>,
        facts: &D,
        prepared: &PreparedFacts,
        params: &BTreeMap<String, serde_json::Value>,
    ) -> Outcome {
        for req in &self.spec.requires {
            // Sources absent from the map are unknown to the producer: treat as available
            // (rule test snippets list only what they make unavailable).
            if let Some(s) = facts.sources().get(req)
                && !s.available
                && !s.absent_on_node
            {
                let reason = s.reason.clone().unwrap_or_else(|| "not collected".into());
                return Outcome::NotEvaluated(format!("needs {req}: {reason}"));
            }
        }
        self.evaluate_with_budget(env, facts, prepared, params, Budget::default())
    }

    /// [`Rule::evaluate`] with an explicit evaluation budget (the checks of `requires` aside).
    pub fn evaluate_with_budget<D: FactDoc + ?Sized>(
        &self,
        env: &Arc<Env>,
        facts: &D,
        prepared: &PreparedFacts,
        params: &BTreeMap<String, serde_json::Value>,
        budget: Budget,
    ) -> Outcome {
        let meter = Meter::start(budget);
        let result = self.evaluate_inner(env, facts, prepared, params, &meter);
        // A spent budget wins over any result: an `exists` can absorb the error and answer.
        if meter.exceeded() {
            return Outcome::RuleError(format!(
                "{EXCEEDED} ({} steps, {:.1} s; limits {} steps, {} s)",
                meter.steps(),
                meter.elapsed().as_secs_f64(),
                budget.steps,
                budget.time.as_secs()
            ));
        }
        match result {
            Ok(Some(mut f)) => {
                if let Some(note) = self.data_note(facts) {
                    for finding in &mut f {
                        finding.message = format!("{} ({note})", finding.message);
                    }
                }
                Outcome::Findings(f)
            }
            Ok(None) => Outcome::NotApplicable,
            // The data was there (missing data returned above): an error is the rule's
            // own fault, never "missing data".
            Err(e) => Outcome::RuleError(format!("evaluation error: {e}")),
        }
    }

    /// What the rule ran without: a required source seen only as a sample (a capped
    /// conntrack listing) or an optional source that was not collected. Findings carry
    /// it in their message; `None` when the rule saw all its data.
    pub fn data_note<D: FactDoc + ?Sized>(&self, facts: &D) -> Option<String> {
        let mut notes = Vec::new();
        for req in &self.spec.requires {
            if let Some(sample) = facts.sources().get(req).and_then(|s| s.sample.as_ref()) {
                notes.push(format!("seen in a sample only: {sample}"));
            }
        }
        for opt in &self.spec.optional {
            if let Some(s) = facts.sources().get(opt)
                && !s.available
                && !s.absent_on_node
            {
                let reason = s.reason.as_deref().unwrap_or("not collected");
                notes.push(format!("without {opt}: {reason}"));
            }
        }
        notes.dedup();
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    /// A guess at the rule's cost for scheduling: the length of the fact list its
    /// `for_each` starts from (`services`, `pods`, ...), 0 without `for_each`.
    fn iteration_hint(&self, prepared: &PreparedFacts) -> usize {
        let Some(fe) = &self.spec.for_each else {
            return 0;
        };
        let src = fe.list.trim_start().trim_start_matches('(');
        let root: String = src
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        match prepared.vars.get(&root) {
            Some(Node::List(l)) => l.len().max(1),
            _ => 1,
        }
    }

    fn evaluate_inner<D: FactDoc + ?Sized>(
        &self,
        env: &Arc<Env>,
        facts: &D,
        prepared: &PreparedFacts,
        params: &BTreeMap<String, serde_json::Value>,
        meter: &Arc<Meter>,
    ) -> Result<Option<Vec<RawFinding>>, String> {
        let mut ctx = Context::with_env(env.clone());
        ctx.set_variable_resolver(prepared);
        meter.install(&mut ctx);
        let mut merged = self.spec.params.clone();
        for (k, v) in params {
            merged.insert(k.clone(), v.clone());
        }
        let params_value = json_to_cel(&serde_json::to_value(&merged).map_err(|e| e.to_string())?);
        ctx.add_variable_from_value("params", params_value);

        if let Some(p) = &self.precondition
            && !as_bool(run(p, &ctx).map_err(|e| format!("precondition: {e}"))?)?
        {
            return Ok(None);
        }
        let records = match run(&self.combined, &ctx)? {
            Value::List(l) => l,
            other => {
                return Err(format!(
                    "for_each: expected a list, got {:?}",
                    other.type_of()
                ));
            }
        };
        let mut findings = Vec::with_capacity(records.len());
        for rec in records.iter() {
            let Value::List(values) = rec else {
                return Err("internal: finding record is not a list".into());
            };
            findings.push(self.finding(values, facts)?);
        }
        Ok(Some(findings))
    }

    fn finding<D: FactDoc + ?Sized>(
        &self,
        values: &[Value],
        facts: &D,
    ) -> Result<RawFinding, String> {
        let mut severity = self.spec.severity;
        for (i, s) in self.severity_when.iter().enumerate() {
            match values.get(i) {
                Some(Value::Bool(true)) => {
                    severity = *s;
                    break;
                }
                Some(Value::Bool(false)) => {}
                other => return Err(format!("severity_when: expected a bool, got {other:?}")),
            }
        }
        let subject = match &self.subject {
            Some(t) => render(t, values),
            None => facts.default_subject().to_string(),
        };
        let message = render(&self.message, values);
        let mut evidence = Vec::new();
        if let Some(i) = self.evidence_index
            && let Some(v) = values.get(i)
        {
            collect_sources(v, &mut evidence);
        }
        let mut seen = BTreeSet::new();
        evidence.retain(|s| seen.insert(s.clone()));
        Ok(RawFinding {
            rule_id: self.spec.id.clone(),
            severity,
            subject,
            message: message.trim().to_string(),
            evidence,
        })
    }
}

/// Checks that `requires` names every data source the rule's expressions read facts
/// from (see [`super::needs`]): a rule cannot conclude from data it did not ask for.
fn check_needs(
    spec: &RuleSpec,
    precondition: Option<&Program>,
    combined: &Program,
) -> Result<(), String> {
    let mut paths = super::needs::fact_paths_in(combined.expression(), spec.scope);
    if let Some(p) = precondition {
        paths.extend(super::needs::fact_paths_in(p.expression(), spec.scope));
    }
    let needed = super::needs::needed_sources_in(&paths, spec.scope);
    let missing: Vec<String> = needed
        .iter()
        .filter(|(n, _)| {
            !spec
                .requires
                .iter()
                .chain(&spec.optional)
                .any(|d| sources::covers(d, n))
        })
        .map(|(n, path)| format!("{n} (it reads {path})"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "requires must name every data source the rule reads; add {}",
            missing.join(", ")
        ));
    }
    if spec.requires.is_empty() {
        return Err(
            "requires is empty: list the data sources the rule concludes from (docs/rules.md#data-sources-requires)"
                .into(),
        );
    }
    Ok(())
}

/// Runs a program; the result may hold fact nodes, which [`to_value`] understands.
fn run(p: &cel::IdedExpr, ctx: &Context) -> Result<Value, String> {
    let v = Value::resolve_val(p, ctx).map_err(|e| e.to_string())?;
    to_value(v.as_ref())
}

/// Facts converted once into CEL values and served to every rule by reference.
pub struct PreparedFacts {
    vars: std::collections::HashMap<String, Node>,
}

impl std::fmt::Debug for PreparedFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedFacts")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl VariableResolver for PreparedFacts {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.vars
            .get(variable)
            .map(|v| CowVal::Borrowed(v.as_val()))
    }
}

/// Converts facts to CEL once: every top-level field becomes a variable.
///
/// Each field is serialized straight into [`Node`]s (no intermediate JSON).
pub fn prepare_facts(facts: &Facts) -> Result<PreparedFacts, String> {
    let mut vars = std::collections::HashMap::new();
    let mut add = |name: &str, v: Result<Node, String>| -> Result<(), String> {
        let v = v.map_err(|e| format!("{name}: {e}"))?;
        vars.insert(name.to_string(), v);
        Ok(())
    };
    let Facts {
        schema_version,
        node,
        collection,
        pods,
        services,
        netns,
        links,
        ips,
        conntrack,
        iptables,
        nft,
        snat,
        ipvs,
        dns,
        kernel_log,
    } = facts;
    add("schema_version", to_node(schema_version))?;
    add("node", to_node(node))?;
    add("collection", to_node(collection))?;
    add("pods", to_node(pods))?;
    add("services", to_node(services))?;
    add("netns", to_node(netns))?;
    add("links", to_node(links))?;
    add("ips", to_node(ips))?;
    add("conntrack", to_node(conntrack))?;
    add("iptables", to_node(iptables))?;
    add("nft", to_node(nft))?;
    add("snat", to_node(snat))?;
    add("ipvs", to_node(ipvs))?;
    add("dns", to_node(dns))?;
    add("kernel_log", to_node(kernel_log))?;
    Ok(PreparedFacts { vars })
}

/// Converts any fact document to CEL once: every top-level field of its JSON object becomes
/// a variable (how the [`ClusterFacts`] are served to cluster rules).
pub fn prepare_doc<T: Serialize>(doc: &T) -> Result<PreparedFacts, String> {
    // Through JSON: the cluster document is small (a few rows per node).
    match serde_json::to_value(doc).map_err(|e| e.to_string())? {
        serde_json::Value::Object(fields) => {
            let mut vars = std::collections::HashMap::new();
            for (k, v) in fields {
                let node = to_node(&v).map_err(|e| format!("{k}: {e}"))?;
                vars.insert(k, node);
            }
            Ok(PreparedFacts { vars })
        }
        _ => Err("a fact document must be an object".into()),
    }
}

impl PreparedFacts {
    /// Names of the variables rules can use.
    pub fn variables(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn as_bool(v: Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(format!("expected a bool, got {:?}", other.type_of())),
    }
}

fn render(t: &Template, values: &[Value]) -> String {
    let mut out = String::new();
    for p in &t.parts {
        match p {
            TemplatePart::Text(s) => out.push_str(s),
            TemplatePart::Expr(i) => out.push_str(&values.get(*i).map(display).unwrap_or_default()),
        }
    }
    out
}

/// Renders a CEL value for a message: strings bare, lists comma-separated.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{f:.0}")
            } else {
                format!("{f:.3}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Null => "none".into(),
        Value::List(l) => l.iter().map(display).collect::<Vec<_>>().join(", "),
        Value::Map(m) => {
            let mut parts: Vec<String> = m
                .map
                .iter()
                .map(|(k, v)| format!("{}={}", key_string(k), display(v)))
                .collect();
            parts.sort();
            parts.join(", ")
        }
        other => format!("{other:?}"),
    }
}

fn key_string(k: &cel::objects::Key) -> String {
    match k {
        cel::objects::Key::String(s) => s.to_string(),
        cel::objects::Key::Int(i) => i.to_string(),
        cel::objects::Key::Uint(u) => u.to_string(),
        cel::objects::Key::Bool(b) => b.to_string(),
    }
}

fn collect_sources(v: &Value, out: &mut Vec<Source>) {
    match v {
        Value::List(l) => l.iter().for_each(|x| collect_sources(x, out)),
        Value::Map(m) => {
            let get = |name: &str| {
                m.map
                    .get(&cel::objects::Key::String(Arc::new(name.to_string())))
            };
            if let Some(Value::String(path)) = get("path") {
                let line = match get("line") {
                    Some(Value::Int(i)) => u64::try_from(*i).ok(),
                    Some(Value::UInt(u)) => Some(*u),
                    _ => None,
                };
                let node = match get("node") {
                    Some(Value::String(n)) => Some(n.to_string()),
                    _ => None,
                };
                out.push(Source {
                    path: path.to_string(),
                    line,
                    node,
                });
            }
        }
        _ => {}
    }
}

/// Converts JSON to a CEL value; integers become `int` (so `x > 0` works), others `double`.
pub fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::MAX)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(o) => {
            let map: std::collections::HashMap<cel::objects::Key, Value> = o
                .iter()
                .map(|(k, v)| {
                    (
                        cel::objects::Key::String(Arc::new(k.clone())),
                        json_to_cel(v),
                    )
                })
                .collect();
            Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// A set of compiled rules with per-rule parameter overrides.
pub struct RuleSet {
    env: Arc<Env>,
    rules: Vec<Rule>,
    overrides: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("overrides", &self.overrides)
            .finish()
    }
}

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));
}

impl RuleSet {
    /// An empty set.
    pub fn empty() -> RuleSet {
        RuleSet {
            env: cel_env(),
            rules: Vec::new(),
            overrides: BTreeMap::new(),
        }
    }

    /// The rules embedded at build time from `rules/`.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::empty();
        for (name, text) in builtin::RULES {
            let rule = Rule::from_yaml(&set.env, &format!("rules/{name}"), text)?;
            set.insert(rule);
        }
        Ok(set)
    }

    /// Adds every `*.yaml`/`*.yml` file of `dir` (recursively), replacing rules with the same id.
    pub fn add_dir(&mut self, dir: &Path) -> Result<usize, RuleError> {
        let mut files = Vec::new();
        collect_yaml(dir, &mut files).map_err(|source| RuleError::Read {
            file: dir.display().to_string(),
            source,
        })?;
        files.sort();
        let mut ids = BTreeMap::new();
        let mut errors = Vec::new();
        for f in &files {
            let name = f.display().to_string();
            let bytes = read_capped(f).map_err(|source| RuleError::Read {
                file: name.clone(),
                source,
            })?;
            if bytes.len() as u64 > MAX_RULE_FILE_BYTES {
                return Err(RuleError::Limit {
                    file: name,
                    message: format!(
                        "rule file is larger than the {} KiB limit",
                        MAX_RULE_FILE_BYTES / 1024
                    ),
                });
            }
            let text = String::from_utf8(bytes).map_err(|e| RuleError::Read {
                file: name.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "not UTF-8 text (first invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                ),
            })?;
            let rule = match Rule::from_yaml(&self.env, &name, &text) {
                Ok(r) => r,
                Err(e) => {
                    // Go on: every broken file is named in one run.
                    errors.push(e);
                    continue;
                }
            };
            if let Some(prev) = ids.insert(rule.spec.id.clone(), name.clone()) {
                errors.push(RuleError::Invalid {
                    file: name,
                    line: key_line(&text, "id"),
                    id: rule.spec.id.clone(),
                    message: format!("duplicate id (also in {prev})"),
                });
                continue;
            }
            self.insert(rule);
        }
        match errors.len() {
            0 => Ok(files.len()),
            1 => Err(errors.remove(0)),
            _ => Err(RuleError::Several(errors)),
        }
    }

    fn insert(&mut self, rule: Rule) {
        match self.rules.iter_mut().find(|r| r.spec.id == rule.spec.id) {
            Some(slot) => *slot = rule,
            None => self.rules.push(rule),
        }
        self.rules.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
    }

    /// Removes a rule; unknown ids are a usage error.
    pub fn disable(&mut self, id: &str) -> Result<(), RuleError> {
        let before = self.rules.len();
        self.rules.retain(|r| r.spec.id != id);
        if self.rules.len() == before {
            return Err(RuleError::Usage(format!("--disable {id}: no such rule")));
        }
        Ok(())
    }

    /// Applies `id.param=value` (value parsed as YAML: `0.95`, `true`, `text`).
    pub fn set_param(&mut self, assignment: &str) -> Result<(), RuleError> {
        let usage = |m: &str| RuleError::Usage(format!("--set {assignment}: {m}"));
        let (lhs, value) = assignment
            .split_once('=')
            .ok_or_else(|| usage("expected RULE.PARAM=VALUE"))?;
        let (id, param) = lhs
            .split_once('.')
            .ok_or_else(|| usage("expected RULE.PARAM=VALUE"))?;
        let rule = self
            .get(id)
            .ok_or_else(|| usage(&format!("no rule {id:?}")))?;
        let Some(default) = rule.spec.params.get(param) else {
            let known: Vec<_> = rule.spec.params.keys().cloned().collect();
            return Err(usage(&format!(
                "rule {id} has no param {param:?} (params: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        let parsed: serde_json::Value =
            serde_yaml_ng::from_str(value).map_err(|e| usage(&e.to_string()))?;
        let same_kind = matches!(
            (default, &parsed),
            (serde_json::Value::Number(_), serde_json::Value::Number(_))
                | (serde_json::Value::Bool(_), serde_json::Value::Bool(_))
                | (serde_json::Value::String(_), serde_json::Value::String(_))
                | (serde_json::Value::Array(_), serde_json::Value::Array(_))
        );
        if !same_kind {
            return Err(usage(&format!("value must be like the default {default}")));
        }
        self.overrides
            .entry(id.to_string())
            .or_default()
            .insert(param.to_string(), parsed);
        Ok(())
    }

    /// The rule with `id`.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.spec.id == id)
    }

    /// All rules, sorted by id.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The CEL environment.
    pub fn env(&self) -> &Arc<Env> {
        &self.env
    }

    /// Evaluates every rule over `facts`; results in rule-id order.
    pub fn evaluate(&self, facts: &Facts) -> Result<Vec<(&Rule, Outcome)>, String> {
        let start = std::time::Instant::now();
        let value = prepare_facts(facts)?;
        tracing::debug!(
            ms = start.elapsed().as_millis() as u64,
            "facts prepared for CEL"
        );
        let empty = BTreeMap::new();
        let eval_one = |r: &Rule| {
            let params = self.overrides.get(&r.spec.id).unwrap_or(&empty);
            let t = std::time::Instant::now();
            let outcome = r.evaluate(&self.env, facts, &value, params);
            tracing::debug!(rule = %r.spec.id, ms = t.elapsed().as_millis() as u64, "rule evaluated");
            outcome
        };
        // Rules are independent and read the shared facts only: spread them over the
        // cores, each worker taking the next rule not yet taken. The rules that iterate
        // over the longest fact lists go first, so that the last rule to start is a
        // short one and the workers finish together.
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(self.rules.len())
            .max(1);
        // Cluster rules run once over the cluster document ([`RuleSet::evaluate_cluster`]).
        let mut order: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].spec.scope == Scope::Node)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.rules[i].iteration_hint(&value)));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&i) = order.get(k) else { break };
                done.push((i, eval_one(&self.rules[i])));
            }
            done
        };
        let mut outcomes: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
            let mut all = work();
            for h in helpers {
                // A worker only panics if the interpreter does; report, never hide it.
                all.extend(h.join().map_err(|_| "a rule worker panicked".to_string())?);
            }
            Ok::<_, String>(all)
        })?;
        // Freeing a large node tree takes a while: do it beside the report instead of
        // before it.
        std::thread::spawn(move || drop(value));
        outcomes.sort_by_key(|(i, _)| *i);
        Ok(outcomes
            .into_iter()
            .map(|(i, o)| (&self.rules[i], o))
            .collect())
    }
}

impl RuleSet {
    /// Evaluates the cluster-scope rules over the cluster document; results in rule-id order.
    /// They are few and their data small: one thread.
    pub fn evaluate_cluster(&self, facts: &ClusterFacts) -> Result<Vec<(&Rule, Outcome)>, String> {
        let value = prepare_doc(facts)?;
        let empty = BTreeMap::new();
        Ok(self
            .rules
            .iter()
            .filter(|r| r.spec.scope == Scope::Cluster)
            .map(|r| {
                let params = self.overrides.get(&r.spec.id).unwrap_or(&empty);
                (r, r.evaluate(&self.env, facts, &value, params))
            })
            .collect())
    }
}

/// Reads a rule file, at most one byte past [`MAX_RULE_FILE_BYTES`] (enough to refuse it).
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_RULE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}
