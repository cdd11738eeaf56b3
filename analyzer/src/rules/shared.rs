//! Copy-free CEL values for the fact document.
//!
//! cel-rust clones a comprehension's item for every iteration (`clone_as_boxed`),
//! and its built-in maps and lists clone deeply. Iterating 10,000 Services would
//! copy each Service (endpoints, ports, sources) once per rule. These wrappers keep
//! the built-in map/list behind an `Arc` and expose it as the built-in type, so a
//! clone is a reference-count increment and every CEL operation works unchanged.

use std::sync::Arc;

use cel::common::traits::{Container, Indexer, Iterable, Sizer, Zeroer};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, LIST_TYPE,
    MAP_TYPE, Type,
};
use cel::common::value::{Builtin, BuiltinRef, Val};

/// A map shared by reference.
#[derive(Debug, Clone)]
pub struct SharedMap(Arc<CelMap<'static>>);

/// A list shared by reference.
#[derive(Debug, Clone)]
pub struct SharedList(Arc<CelList<'static>>);

/// Implements `Val` for an `Arc`-shared builtin container by delegating to it,
/// so CEL reads the value in place instead of deep-copying it.
macro_rules! shared_val {
    ($shared:ident, $ty:ident, $variant:ident) => {
        impl Val for $shared {
            fn get_type(&self) -> &Type {
                &$ty
            }
            fn cel_type() -> &'static Type
            where
                Self: Sized,
            {
                &$ty
            }
            fn as_container(&self) -> Option<&dyn Container> {
                self.0.as_container()
            }
            fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
            where
                Self: 'v,
            {
                self.0.as_indexer()
            }
            fn into_indexer<'v>(self: Box<Self>) -> Option<Box<dyn Indexer + 'v>>
            where
                Self: 'v,
            {
                Box::new(Arc::unwrap_or_clone(self.0)).into_indexer()
            }
            fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
            where
                Self: 'v,
            {
                self.0.as_iterable()
            }
            fn as_sizer(&self) -> Option<&dyn Sizer> {
                self.0.as_sizer()
            }
            fn as_zeroer(&self) -> Option<&dyn Zeroer> {
                self.0.as_zeroer()
            }
            fn equals(&self, other: &dyn Val) -> bool {
                self.0.equals(other)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
            where
                Self: 'v,
            {
                Box::new(self.clone())
            }
            fn as_builtin<'b, 'v>(&'b self) -> BuiltinRef<'b, 'v>
            where
                Self: 'v,
            {
                BuiltinRef::$variant(&self.0)
            }
            fn into_builtin<'v>(self: Box<Self>) -> Option<Builtin<'v>>
            where
                Self: 'v,
            {
                Some(Builtin::$variant(Arc::unwrap_or_clone(self.0)))
            }
        }
    };
}

shared_val!(SharedMap, MAP_TYPE, Map);
shared_val!(SharedList, LIST_TYPE, List);

/// Converts JSON to a shared CEL value: integers become `int`, other numbers `double`.
pub fn json_to_val(v: &serde_json::Value) -> Box<dyn Val> {
    match v {
        serde_json::Value::Array(a) => {
            let items: Vec<Box<dyn Val>> = a.iter().map(json_to_val).collect();
            Box::new(SharedList(Arc::new(CelList::from(items))))
        }
        serde_json::Value::Object(o) => {
            let map: std::collections::HashMap<CelMapKey<'static>, Box<dyn Val>> = o
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), json_to_val(v)))
                .collect();
            Box::new(SharedMap(Arc::new(CelMap::from(map))))
        }
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Box::new(CelInt::from(i)),
            None => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::MAX))),
        },
        serde_json::Value::String(s) => Box::new(CelString::from(s.clone())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cel::Context;
    use cel::context::VariableResolver;

    use super::*;
    use crate::rules::engine::cel_env;

    struct One(Box<dyn Val>);
    impl VariableResolver for One {
        fn resolve<'b>(&'b self, v: &str) -> Option<cel::common::value::CowVal<'b, 'b>> {
            (v == "x").then(|| cel::common::value::CowVal::Borrowed(self.0.as_ref()))
        }
    }

    #[test]
    fn shared_values_behave_like_builtin_ones() {
        let env = cel_env();
        let x = One(json_to_val(&serde_json::json!({
            "m": {"a": 1, "b": [1, 2, 3]},
            "l": [{"k": "p"}, {"k": "q"}]
        })));
        let mut ctx = Context::with_env(Arc::clone(&env));
        ctx.set_variable_resolver(&x);
        for (expr, want) in [
            ("x.m == {'a': 1, 'b': [1, 2, 3]}", true),
            ("'a' in x.m && !('z' in x.m)", true),
            ("x.m.b == [1, 2, 3] && 2 in x.m.b", true),
            ("size(x.l) == 2 && size(x.m) == 2", true),
            ("x.l.filter(i, i.k == 'q').map(i, i.k) == ['q']", true),
            ("x.l.exists(i, i == {'k': 'p'})", true),
            ("has(x.m.a) && !has(x.m.z)", true),
            ("x.l[1].k == 'q'", true),
            ("x.m == {'a': 2, 'b': [1, 2, 3]}", false),
        ] {
            let got = env.compile(expr).unwrap().execute(&ctx).unwrap();
            assert_eq!(got, cel::Value::Bool(want), "{expr}");
        }
        // Results convert back to plain values.
        let got = env.compile("x.l[0]").unwrap().execute(&ctx).unwrap();
        assert_eq!(crate::rules::engine::display(&got), "k=p");
    }
}
