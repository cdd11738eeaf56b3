//! Load-time check of a rule's CEL against the fact schema.
//!
//! The `cel` crate compiles without a type checker, so a misspelt field
//! (`node.proxymode`) or a string compared with a number would only fail when the rule
//! runs, and then only on the branch that reaches it. This module walks every expression
//! once, with the JSON schema of [`crate::facts::Facts`] (the schemars types behind
//! `docs/facts.md`) and the rule's `params`, and refuses what can never work: a field the
//! schema does not have, a field of a scalar, iterating or sizing a number, ordering or
//! adding values of different kinds, a non-boolean where a boolean is needed. Where the
//! type is unknown (a schema-less value, an extension function) the check stays silent:
//! it is a lower bound, and evaluation errors left over are rule errors at run time.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators};
use serde_json::Value as Json;

use super::spec::Scope as RuleScope;

/// A static type, as far as the schema tells.
#[derive(Debug, Clone)]
pub enum Ty {
    /// Unknown: anything goes.
    Any,
    /// `null` (also compatible with every other type).
    Null,
    /// Boolean.
    Bool,
    /// int, uint or double (CEL compares across them).
    Number,
    /// String (also enums serialized as strings).
    String,
    /// List of an element type.
    List(Box<Ty>),
    /// Map with string keys and one value type.
    Map(Box<Ty>),
    /// A fact struct: the document's schema (for `$ref`s) and the struct's own
    /// (`properties`, no other keys).
    Object(&'static Json, &'static Json),
}

impl Ty {
    /// The kind's name in messages.
    fn name(&self) -> String {
        match self {
            Ty::Any => "any".into(),
            Ty::Null => "null".into(),
            Ty::Bool => "bool".into(),
            Ty::Number => "number".into(),
            Ty::String => "string".into(),
            Ty::List(e) => format!("list of {}", e.name()),
            Ty::Map(v) => format!("map of string to {}", v.name()),
            Ty::Object(_, s) => s
                .get("title")
                .and_then(Json::as_str)
                .map(|t| format!("object {t}"))
                .unwrap_or_else(|| "object".into()),
        }
    }

    /// A coarse kind for compatibility checks; `None` for `Any`/`Null` (compatible with all).
    fn kind(&self) -> Option<&'static str> {
        match self {
            Ty::Any | Ty::Null => None,
            Ty::Bool => Some("bool"),
            Ty::Number => Some("number"),
            Ty::String => Some("string"),
            Ty::List(_) => Some("list"),
            Ty::Map(_) | Ty::Object(..) => Some("map"),
        }
    }
}

/// The JSON schema of the document a rule of `scope` is evaluated over, generated once:
/// a node's facts, or the cluster fact document.
fn schema(scope: RuleScope) -> &'static Json {
    static NODE: OnceLock<Json> = OnceLock::new();
    static CLUSTER: OnceLock<Json> = OnceLock::new();
    let titled = |mut s: Json| {
        // Titles make messages name the struct (`unknown field x of NodeFacts`).
        if let Some(defs) = s.get_mut("$defs").and_then(Json::as_object_mut) {
            for (name, def) in defs.iter_mut() {
                if let Some(o) = def.as_object_mut() {
                    o.insert("title".into(), Json::String(name.clone()));
                }
            }
        }
        s
    };
    match scope {
        RuleScope::Node => NODE.get_or_init(|| {
            titled(
                serde_json::to_value(schemars::schema_for!(crate::facts::Facts))
                    .unwrap_or(Json::Null),
            )
        }),
        RuleScope::Cluster => CLUSTER.get_or_init(|| {
            titled(
                serde_json::to_value(schemars::schema_for!(crate::facts::cluster::ClusterFacts))
                    .unwrap_or(Json::Null),
            )
        }),
    }
}

/// The type schema node `s` of document schema `root` describes (following `$ref`,
/// dropping `null` alternatives).
fn of_schema(root: &'static Json, s: &'static Json) -> Ty {
    if let Some(r) = s.get("$ref").and_then(Json::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return match root.get("$defs").and_then(|d| d.get(name)) {
            Some(def) => of_schema(root, def),
            None => Ty::Any,
        };
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Json::as_array) {
            let tys: Vec<Ty> = alts
                .iter()
                .map(|a| of_schema(root, a))
                .filter(|t| !matches!(t, Ty::Null))
                .collect();
            return match tys.as_slice() {
                [one] => one.clone(),
                [first, rest @ ..] if rest.iter().all(|t| t.kind() == first.kind()) => {
                    first.clone()
                }
                _ => Ty::Any,
            };
        }
    }
    let kinds: Vec<&str> = match s.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => return Ty::Any,
    };
    match kinds.as_slice() {
        ["null"] => Ty::Null,
        ["boolean"] => Ty::Bool,
        ["integer" | "number"] => Ty::Number,
        ["string"] => Ty::String,
        ["array"] => Ty::List(Box::new(
            s.get("items").map_or(Ty::Any, |i| of_schema(root, i)),
        )),
        ["object"] => match s.get("additionalProperties") {
            Some(ap) if ap.is_object() => Ty::Map(Box::new(of_schema(root, ap))),
            Some(Json::Bool(false)) if s.get("properties").is_some() => Ty::Object(root, s),
            _ => Ty::Map(Box::new(Ty::Any)),
        },
        _ => Ty::Any,
    }
}

/// The type of a parameter from its default value.
fn of_json(v: &Json) -> Ty {
    match v {
        Json::Null => Ty::Null,
        Json::Bool(_) => Ty::Bool,
        Json::Number(_) => Ty::Number,
        Json::String(_) => Ty::String,
        Json::Array(a) => Ty::List(Box::new(a.first().map_or(Ty::Any, of_json))),
        Json::Object(_) => Ty::Map(Box::new(Ty::Any)),
    }
}

/// The closest of `known` to `name`, when close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Names in scope: fact roots, `params`, and comprehension variables.
#[derive(Debug, Clone)]
pub struct Scope {
    vars: BTreeMap<String, Ty>,
    params: BTreeMap<String, Ty>,
}

impl Scope {
    /// The roots of the document a rule of `scope` sees (a node's facts or the cluster
    /// document) plus the rule's parameters (typed by their defaults).
    pub fn new(params: &BTreeMap<String, Json>, scope: RuleScope) -> Scope {
        let mut vars = BTreeMap::new();
        let root = schema(scope);
        if let Some(props) = root.get("properties").and_then(Json::as_object) {
            for (k, v) in props {
                vars.insert(k.clone(), of_schema(root, v));
            }
        }
        Scope {
            vars,
            params: params
                .iter()
                .map(|(k, v)| (k.clone(), of_json(v)))
                .collect(),
        }
    }

    /// Binds a name (a `for_each` item).
    pub fn bind(&mut self, name: &str, ty: Ty) {
        self.vars.insert(name.to_string(), ty);
    }

    /// The element type of a list (or the key type of a map) `ty`, to bind a `for_each` to.
    pub fn element(ty: &Ty) -> Ty {
        match ty {
            Ty::List(e) => (**e).clone(),
            Ty::Map(_) | Ty::Object(..) => Ty::String,
            _ => Ty::Any,
        }
    }
}

/// Checks an expression; returns its type, or what is wrong with it.
pub fn check(expr: &IdedExpr, scope: &Scope) -> Result<Ty, String> {
    let mut c = Checker {
        bound: scope.vars.clone(),
        params: &scope.params,
    };
    c.expr(expr)
}

struct Checker<'p> {
    bound: BTreeMap<String, Ty>,
    params: &'p BTreeMap<String, Ty>,
}

/// Methods that need a string target.
const STRING_METHODS: &[&str] = &[
    "startsWith",
    "endsWith",
    "matches",
    "lowerAscii",
    "upperAscii",
    "split",
    "trim",
    "replace",
    "indexOf",
    "lastIndexOf",
    "substring",
    "charAt",
];

impl Checker<'_> {
    fn field(&self, base: &Ty, field: &str) -> Result<Ty, String> {
        match base {
            Ty::Object(root, s) => {
                let props = s.get("properties").and_then(Json::as_object);
                match props.and_then(|p| p.get(field)) {
                    Some(f) => Ok(of_schema(root, f)),
                    None => {
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let hint = did_you_mean(field, known.iter().copied())
                            .map(|k| format!("did you mean {k:?}? "))
                            .unwrap_or_default();
                        Err(format!(
                            "unknown field {field:?} of {} ({hint}fields: {}; see docs/facts.md)",
                            base.name(),
                            known.join(", ")
                        ))
                    }
                }
            }
            Ty::Map(v) => Ok((**v).clone()),
            Ty::Any | Ty::Null => Ok(Ty::Any),
            other => Err(format!("field {field:?} of a {}", other.name())),
        }
    }

    fn expr(&mut self, e: &IdedExpr) -> Result<Ty, String> {
        match &e.expr {
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Int(_) | LiteralValue::UInt(_) | LiteralValue::Double(_) => {
                    Ty::Number
                }
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Null => Ty::Null,
                LiteralValue::Bytes(_) => Ty::Any,
            }),
            Expr::Ident(name) => Ok(match name.as_str() {
                "params" => Ty::Any,
                n => self.bound.get(n).cloned().unwrap_or(Ty::Any),
            }),
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr
                    && root == "params"
                    && !self.bound.contains_key("params")
                {
                    return match self.params.get(&s.field) {
                        Some(t) => Ok(t.clone()),
                        None => Err(format!(
                            "unknown param {:?} (params: {})",
                            s.field,
                            if self.params.is_empty() {
                                "none".to_string()
                            } else {
                                self.params.keys().cloned().collect::<Vec<_>>().join(", ")
                            }
                        )),
                    };
                }
                let base = self.expr(&s.operand)?;
                let t = self.field(&base, &s.field)?;
                Ok(if s.test { Ty::Bool } else { t })
            }
            Expr::List(l) => {
                let mut elem: Option<Ty> = None;
                for x in &l.elements {
                    let t = self.expr(x)?;
                    elem = Some(match elem {
                        None => t,
                        Some(prev) if prev.kind() == t.kind() => prev,
                        Some(_) => Ty::Any,
                    });
                }
                Ok(Ty::List(Box::new(elem.unwrap_or(Ty::Any))))
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.expr(&me.key)?;
                        self.expr(&me.value)?;
                    }
                }
                Ok(Ty::Map(Box::new(Ty::Any)))
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.expr(&f.value)?;
                    }
                }
                Ok(Ty::Any)
            }
            Expr::Comprehension(c) => {
                let range = self.expr(&c.iter_range)?;
                let item = match &range {
                    Ty::List(e) => (**e).clone(),
                    Ty::Map(_) | Ty::Object(..) => Ty::String,
                    Ty::Any | Ty::Null => Ty::Any,
                    other => return Err(format!("cannot iterate over a {}", other.name())),
                };
                let saved = self.bound.clone();
                self.bound.insert(c.iter_var.clone(), item.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.bound.insert(v2.clone(), Ty::Any);
                }
                let mut accu = self.expr(&c.accu_init)?;
                self.bound.insert(c.accu_var.clone(), accu.clone());
                self.expr(&c.loop_cond)?;
                let step = self.expr(&c.loop_step)?;
                // `map`/`filter` start from `[]`: the step says what they collect.
                if matches!(&accu, Ty::List(e) if matches!(**e, Ty::Any)) {
                    accu = step;
                }
                self.bound.insert(c.accu_var.clone(), accu);
                let result = self.expr(&c.result)?;
                self.bound = saved;
                Ok(result)
            }
            Expr::Call(call) => self.call(call),
            Expr::Unspecified => Ok(Ty::Any),
        }
    }

    fn call(&mut self, call: &cel::common::ast::CallExpr) -> Result<Ty, String> {
        let name = call.func_name.as_str();
        let target = match &call.target {
            Some(t) => Some(self.expr(t)?),
            None => None,
        };
        let args = call
            .args
            .iter()
            .map(|a| self.expr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Ty::Any);
        let need_bool = |what: &str, t: &Ty| match t.kind() {
            None | Some("bool") => Ok(()),
            _ => Err(format!("{what} needs a bool, got a {}", t.name())),
        };
        let same = |op: &str, a: &Ty, b: &Ty| match (a.kind(), b.kind()) {
            (Some(x), Some(y)) if x != y => {
                Err(format!("{op} between a {} and a {}", a.name(), b.name()))
            }
            _ => Ok(()),
        };
        let op = |n: &str| n.trim_matches('_').to_string();
        match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR => {
                need_bool(&format!("'{}'", op(name)), &arg(0))?;
                need_bool(&format!("'{}'", op(name)), &arg(1))?;
                Ok(Ty::Bool)
            }
            operators::LOGICAL_NOT | operators::NOT_STRICTLY_FALSE => {
                need_bool("'!'", &arg(0))?;
                Ok(Ty::Bool)
            }
            operators::EQUALS | operators::NOT_EQUALS => {
                same(&format!("'{}'", op(name)), &arg(0), &arg(1))?;
                Ok(Ty::Bool)
            }
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => {
                let (a, b) = (arg(0), arg(1));
                for t in [&a, &b] {
                    if matches!(t.kind(), Some("list" | "map")) {
                        return Err(format!("'{}' on a {}", op(name), t.name()));
                    }
                }
                same(&format!("'{}'", op(name)), &a, &b)?;
                Ok(Ty::Bool)
            }
            operators::ADD => {
                let (a, b) = (arg(0), arg(1));
                same("'+'", &a, &b)?;
                if matches!(a.kind(), Some("bool" | "map")) {
                    return Err(format!("'+' on a {}", a.name()));
                }
                Ok(match (&a, &b) {
                    (Ty::List(x), Ty::List(_)) if matches!(**x, Ty::Any) => b,
                    (Ty::List(x), Ty::List(y)) if x.kind() != y.kind() => {
                        Ty::List(Box::new(Ty::Any))
                    }
                    (Ty::Any | Ty::Null, _) => b,
                    _ => a,
                })
            }
            operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO => {
                for t in [arg(0), arg(1)] {
                    if !matches!(t.kind(), None | Some("number")) {
                        return Err(format!("'{}' on a {}", op(name), t.name()));
                    }
                }
                Ok(Ty::Number)
            }
            operators::NEGATE => {
                let a = arg(0);
                if !matches!(a.kind(), None | Some("number")) {
                    return Err(format!("'-' on a {}", a.name()));
                }
                Ok(Ty::Number)
            }
            operators::CONDITIONAL => {
                need_bool("'? :'", &arg(0))?;
                let (a, b) = (arg(1), arg(2));
                Ok(match (a.kind(), b.kind()) {
                    (Some(x), Some(y)) if x == y => a,
                    (None, Some(_)) if matches!(a, Ty::Null) => b,
                    (Some(_), None) if matches!(b, Ty::Null) => a,
                    _ => Ty::Any,
                })
            }
            operators::INDEX | operators::OPT_INDEX => {
                let (base, key) = (arg(0), arg(1));
                match &base {
                    Ty::List(e) => {
                        if !matches!(key.kind(), None | Some("number")) {
                            return Err(format!("a list indexed by a {}", key.name()));
                        }
                        Ok((**e).clone())
                    }
                    Ty::Object(..) => match call.args.get(1).map(|a| &a.expr) {
                        Some(Expr::Literal(LiteralValue::String(f))) => self.field(&base, f),
                        _ => Ok(Ty::Any),
                    },
                    Ty::Map(v) => Ok((**v).clone()),
                    Ty::Any | Ty::Null => Ok(Ty::Any),
                    other => Err(format!("indexing a {}", other.name())),
                }
            }
            operators::OPT_SELECT => match call.args.get(1).map(|a| &a.expr) {
                Some(Expr::Literal(LiteralValue::String(f))) => self.field(&arg(0), f),
                _ => Ok(Ty::Any),
            },
            operators::IN => match arg(1).kind() {
                None | Some("list" | "map") => Ok(Ty::Bool),
                _ => Err(format!("'in' a {}", arg(1).name())),
            },
            "size" => {
                let t = target.clone().unwrap_or_else(|| arg(0));
                match t.kind() {
                    Some("bool" | "number") => Err(format!("size() of a {}", t.name())),
                    _ => Ok(Ty::Number),
                }
            }
            "contains" => {
                let t = target.clone().unwrap_or(Ty::Any);
                match t.kind() {
                    Some("bool" | "number") => Err(format!("contains() on a {}", t.name())),
                    _ => Ok(Ty::Bool),
                }
            }
            m if STRING_METHODS.contains(&m) && target.is_some() => {
                let t = target.clone().unwrap_or(Ty::Any);
                if !matches!(t.kind(), None | Some("string")) {
                    return Err(format!("{m}() on a {} (it needs a string)", t.name()));
                }
                Ok(match m {
                    "startsWith" | "endsWith" | "matches" => Ty::Bool,
                    "split" => Ty::List(Box::new(Ty::String)),
                    "indexOf" | "lastIndexOf" => Ty::Number,
                    _ => Ty::String,
                })
            }
            "join" if target.is_some() => {
                let t = target.clone().unwrap_or(Ty::Any);
                if !matches!(t.kind(), None | Some("list")) {
                    return Err(format!("join() on a {} (it needs a list)", t.name()));
                }
                Ok(Ty::String)
            }
            "flatten" => Ok(match target.clone().unwrap_or(Ty::Any) {
                Ty::List(inner) => match *inner {
                    Ty::List(e) => Ty::List(e),
                    _ => Ty::List(Box::new(Ty::Any)),
                },
                _ => Ty::Any,
            }),
            "orValue" | "value" | "distinct" | "sort" | "reverse" | "slice" => {
                Ok(target.unwrap_or(Ty::Any))
            }
            "int" | "uint" | "double" => Ok(Ty::Number),
            "string" => Ok(Ty::String),
            "bool" => Ok(Ty::Bool),
            _ => Ok(Ty::Any),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_src(src: &str) -> Result<Ty, String> {
        let env = crate::rules::engine::cel_env();
        let p = env.compile(src).expect("compiles");
        let mut params = BTreeMap::new();
        params.insert("ratio".to_string(), serde_json::json!(0.9));
        check(p.expression(), &Scope::new(&params, RuleScope::Node))
    }

    #[test]
    fn known_fields_and_macros_pass() {
        for ok in [
            "node.name == 'x' && conntrack.count > params.ratio * 2.0",
            "services.exists(s, s.ports.exists(p, !p.iptables.present))",
            "services.filter(s, s.proxied).map(s, s.ports).flatten().exists(p, p.nft.present)",
            "conntrack.by_state.?TIME_WAIT.orValue(0) > 0",
            "node.cluster_pod_cidrs.exists(c, !c.contains(':'))",
            "snat.routable_pod_cni != null || node.proxy_mode == 'ipvs'",
            "has(node.uplink) && size(pods) > 0",
        ] {
            assert!(check_src(ok).is_ok(), "{ok}: {:?}", check_src(ok));
        }
    }

    #[test]
    fn typos_and_type_errors_are_refused() {
        for (bad, want) in [
            ("node.proxymode == 'ipvs'", "did you mean \"proxy_mode\""),
            (
                "services.exists(s, s.portz.size() > 0)",
                "unknown field \"portz\" of object ServiceFacts",
            ),
            ("node.name > 5", "'>' between a string and a number"),
            ("conntrack.count.size() > 0", "size() of a number"),
            (
                "node.name.exists(c, c == 'a')",
                "cannot iterate over a string",
            ),
            ("node.name && true", "needs a bool"),
            ("params.ratoi > 1.0", "unknown param \"ratoi\""),
            ("node.name.foo == 1", "field \"foo\" of a string"),
            (
                "pods.map(p, p.name).exists(n, n.startsWith(1) || n > 1)",
                "between",
            ),
        ] {
            let err = check_src(bad).expect_err(bad);
            assert!(err.contains(want), "{bad}: {err}");
        }
    }
}
