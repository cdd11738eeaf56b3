//! A rule's data needs, derived from the facts its CEL expressions read.
//!
//! Every fact path a rule touches (`node.proxy_mode`, `services[].ports[].iptables.present`,
//! followed through `exists`/`filter`/`map` bindings) maps to the data sources it comes
//! from ([`crate::facts::sources::FACT_NEEDS`]). A rule must `require` them, so a rule
//! author cannot forget that `node.proxy_mode == 'none'` means nothing when the nft
//! ruleset timed out: the rule fails to load and says what to add. The walk is a lower
//! bound (a value built into a map literal is not followed), which is why the rule file
//! still declares its needs.

use std::collections::{BTreeMap, BTreeSet};

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr};

use super::spec::Scope;
use crate::facts::sources;

/// Top-level fact variables (the fields of [`crate::facts::Facts`]).
const FACT_ROOTS: &[&str] = &[
    "schema_version",
    "node",
    "collection",
    "pods",
    "services",
    "netns",
    "links",
    "ips",
    "conntrack",
    "iptables",
    "nft",
    "snat",
    "ipvs",
    "dns",
    "kernel_log",
];

/// Functions whose result is (a part of) their target, so a path survives them.
const PATH_PRESERVING: &[&str] = &["orValue", "value", "distinct", "slice", "sort", "reverse"];

/// Every fact path the expression reads.
pub fn fact_paths(expr: &IdedExpr) -> BTreeSet<String> {
    fact_paths_in(expr, Scope::Node)
}

/// Every fact path the expression reads, in the fact document of a rule of `scope`.
pub fn fact_paths_in(expr: &IdedExpr, scope: Scope) -> BTreeSet<String> {
    let roots = match scope {
        Scope::Node => FACT_ROOTS,
        Scope::Cluster => crate::facts::cluster::CLUSTER_FACT_ROOTS,
    };
    let mut out = BTreeSet::new();
    walk(expr, &BTreeMap::new(), roots, &mut out);
    out
}

/// The element path of a list path: `services` -> `services[]`; a mapped list
/// (`services[].ports*`, see [`walk`]) -> `services[].ports`.
fn element(path: &str) -> String {
    match path.strip_suffix('*') {
        Some(p) => p.to_string(),
        None => format!("{path}[]"),
    }
}

/// Records the paths `expr` reads into `out` and returns the fact path of its value, if
/// it is one. `bound` maps comprehension variables to the path of their element.
fn walk(
    expr: &IdedExpr,
    bound: &BTreeMap<String, Option<String>>,
    roots: &[&str],
    out: &mut BTreeSet<String>,
) -> Option<String> {
    let path = match &expr.expr {
        Expr::Ident(name) => match bound.get(name) {
            Some(p) => p.clone(),
            None if roots.contains(&name.as_str()) => Some(name.clone()),
            None => None,
        },
        Expr::Select(s) => {
            let base = walk(&s.operand, bound, roots, out);
            base.map(|b| format!("{b}.{}", s.field))
        }
        Expr::Call(c) => {
            let target = c.target.as_ref().and_then(|t| walk(t, bound, roots, out));
            let args: Vec<Option<String>> =
                c.args.iter().map(|a| walk(a, bound, roots, out)).collect();
            let literal = |i: usize| match c.args.get(i).map(|a| &a.expr) {
                Some(Expr::Literal(cel::common::ast::LiteralValue::String(s))) => {
                    Some(s.to_string())
                }
                _ => None,
            };
            match c.func_name.as_str() {
                // `a.?b` and `a['b']`: a field; `a[i]`: an element.
                "_?._" | "_[_]" | "_[?_]" => {
                    let base = args.first().cloned().flatten();
                    base.map(|b| match literal(1) {
                        Some(field) => format!("{b}.{field}"),
                        None => element(&b),
                    })
                }
                "flatten" => target.map(|t| match t.strip_suffix('*') {
                    Some(inner) => inner.to_string(),
                    None => t,
                }),
                f if PATH_PRESERVING.contains(&f) => target,
                _ => None,
            }
        }
        Expr::Comprehension(c) => {
            let range = walk(&c.iter_range, bound, roots, out);
            let mut inner = bound.clone();
            inner.insert(c.iter_var.clone(), range.as_deref().map(element));
            if let Some(v2) = &c.iter_var2 {
                inner.insert(v2.clone(), None);
            }
            inner.insert(c.accu_var.clone(), None);
            walk(&c.accu_init, &inner, roots, out);
            walk(&c.loop_cond, &inner, roots, out);
            walk(&c.loop_step, &inner, roots, out);
            walk(&c.result, &inner, roots, out);
            comprehension_result(c, &inner, roots, range, out)
        }
        Expr::List(l) => {
            for e in &l.elements {
                walk(e, bound, roots, out);
            }
            None
        }
        Expr::Map(m) => {
            for e in &m.entries {
                if let EntryExpr::MapEntry(me) = &e.expr {
                    walk(&me.key, bound, roots, out);
                    walk(&me.value, bound, roots, out);
                }
            }
            None
        }
        Expr::Struct(s) => {
            for e in &s.entries {
                if let EntryExpr::StructField(f) = &e.expr {
                    walk(&f.value, bound, roots, out);
                }
            }
            None
        }
        Expr::Literal(_) | Expr::Unspecified => None,
    };
    if let Some(p) = &path {
        out.insert(p.trim_end_matches('*').to_string());
    }
    path
}

/// The path of a macro's result: `filter` keeps its range's path; `map(x, f)` yields a
/// list of `f`'s path (marked with a trailing `*`); the rest (`exists`, `all`) are booleans.
fn comprehension_result(
    c: &cel::common::ast::ComprehensionExpr,
    bound: &BTreeMap<String, Option<String>>,
    roots: &[&str],
    range: Option<String>,
    out: &mut BTreeSet<String>,
) -> Option<String> {
    // The macros append `[x]` (filter) or `[f(x)]` (map) to the accumulator.
    let appended = appended_element(&c.loop_step.expr, &c.accu_var)?;
    match &appended.expr {
        Expr::Ident(v) if *v == c.iter_var => range,
        _ => walk(appended, bound, roots, out).map(|p| format!("{p}*")),
    }
}

/// The element a `@result + [e]` step (possibly under `cond ? … : @result`) appends.
fn appended_element<'e>(step: &'e Expr, accu: &str) -> Option<&'e IdedExpr> {
    let Expr::Call(c) = step else { return None };
    match c.func_name.as_str() {
        "_?_:_" => appended_element(&c.args.get(1)?.expr, accu),
        "_+_" => {
            let is_accu = matches!(&c.args.first()?.expr, Expr::Ident(a) if a == accu);
            match &c.args.get(1)?.expr {
                Expr::List(l) if is_accu && l.elements.len() == 1 => l.elements.first(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The data sources the paths need, each once, in order.
pub fn needed_sources(paths: &BTreeSet<String>) -> BTreeMap<&'static str, String> {
    needed_sources_in(paths, Scope::Node)
}

/// The data sources the paths of a rule of `scope` need, each once, in order.
pub fn needed_sources_in(paths: &BTreeSet<String>, scope: Scope) -> BTreeMap<&'static str, String> {
    let needs_of = match scope {
        Scope::Node => sources::needs_of,
        Scope::Cluster => crate::facts::cluster::cluster_needs_of,
    };
    let mut out: BTreeMap<&'static str, String> = BTreeMap::new();
    for p in paths {
        for s in needs_of(p) {
            out.entry(s).or_insert_with(|| p.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        let env = crate::rules::engine::cel_env();
        let p = env.compile(src).expect("compiles");
        fact_paths(p.expression()).into_iter().collect()
    }

    #[test]
    fn bindings_are_followed_through_macros() {
        let p = paths(
            "services.filter(s, s.proxied).map(s, s.ports).flatten()\
             .exists(p, p.nft.present) && params.x > 0 && conntrack.stats.?insert_failed.orValue(0) > 0",
        );
        for want in [
            "services",
            "services[].proxied",
            "services[].ports",
            "services[].ports[].nft.present",
            "conntrack.stats.insert_failed",
        ] {
            assert!(p.contains(&want.to_string()), "{want} not in {p:?}");
        }
        // Parameters and macro accumulators are not facts.
        assert!(
            p.iter()
                .all(|x| !x.starts_with("params") && !x.contains('@')),
            "{p:?}"
        );
    }

    #[test]
    fn needed_sources_follow_the_longest_prefix() {
        let p: BTreeSet<String> =
            paths("services.exists(s, s.ports.exists(p, !p.iptables.present))")
                .into_iter()
                .collect();
        let n: Vec<&str> = needed_sources(&p).into_keys().collect();
        assert_eq!(n, ["iptables", "k8s-services"]);
        let p: BTreeSet<String> = paths("node.name == 'x' && collection.outcome == 'complete'")
            .into_iter()
            .collect();
        assert!(needed_sources(&p).is_empty());
    }
}
