//! The fact document as CEL values, built straight from the Rust types.
//!
//! Converting facts through `serde_json::Value` into cel's built-in maps cost one
//! hash map, one boxed value per field and one owned key string per field: on a
//! 10,000-Service node that was ~1 s and ~300 MB before any rule ran. A [`Node`]
//! instead keeps scalars as the built-in CEL values inline (so operators and
//! functions see real `int`/`string`/...), objects as a flat slice of
//! `(field, value)` pairs whose names borrow serde's `&'static str`, and lists as
//! a slice, each behind an `Arc` so that binding a comprehension variable is a
//! reference-count increment. A serde [`Serializer`](serde::Serializer) builds it
//! in one pass from any `Serialize` value (the facts, or the JSON of a rule test).
//!
//! CEL reads these through the capability traits (`Indexer`, `Iterable`,
//! `Container`, `Sizer`); results leave through [`to_value`], which understands
//! them (cel's own conversion only knows its built-in containers).

use std::collections::HashMap;
use std::sync::Arc;

use cel::ExecutionError;
use cel::common::traits::{Container, Indexer, Iterable, Iterator as CelIterator, Sizer, Zeroer};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelNull, CelString, CelUInt, Kind, LIST_TYPE, MAP_TYPE, Type,
};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::objects::{Key, Map, Value};
use serde::Serialize;

/// One fact value: a built-in CEL scalar, or a shared list or map of nodes.
#[derive(Debug, Clone)]
pub enum Node {
    /// `null`.
    Null(CelNull),
    /// `bool`.
    Bool(CelBool),
    /// `int` (every integer that fits; larger ones become `double`, as JSON did).
    Int(CelInt),
    /// `double`.
    Double(CelDouble),
    /// `string`.
    Str(CelString<'static>),
    /// `list`.
    List(NodeList),
    /// `map` with string keys.
    Map(NodeMap),
}

impl Node {
    /// The value as CEL sees it: the built-in scalar itself, or the shared container.
    pub fn as_val(&self) -> &(dyn Val + 'static) {
        match self {
            Node::Null(v) => v,
            Node::Bool(v) => v,
            Node::Int(v) => v,
            Node::Double(v) => v,
            Node::Str(v) => v,
            Node::List(v) => v,
            Node::Map(v) => v,
        }
    }
}

/// A list of nodes shared by reference.
#[derive(Debug, Clone)]
pub struct NodeList(Arc<[Node]>);

impl NodeList {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the list has no items.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A map of string keys to nodes shared by reference; small maps are searched in
/// order, larger ones are sorted by key and binary-searched.
#[derive(Debug, Clone)]
pub struct NodeMap {
    entries: Arc<[(CelString<'static>, Node)]>,
    sorted: bool,
}

/// Maps with more entries than this are sorted for binary search.
const LINEAR_MAP_MAX: usize = 12;

impl NodeMap {
    fn new(mut entries: Vec<(CelString<'static>, Node)>) -> NodeMap {
        let sorted = entries.len() > LINEAR_MAP_MAX;
        if sorted {
            entries.sort_by(|a, b| a.0.inner().cmp(b.0.inner()));
        }
        NodeMap {
            entries: entries.into(),
            sorted,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        if self.sorted {
            self.entries
                .binary_search_by(|(k, _)| k.inner().cmp(key))
                .ok()
                .map(|i| &self.entries[i].1)
        } else {
            self.entries
                .iter()
                .find(|(k, _)| k.inner() == key)
                .map(|(_, v)| v)
        }
    }

    fn lookup(&self, key: &dyn Val) -> Option<&Node> {
        key.downcast_ref::<CelString>()
            .and_then(|k| self.get(k.inner()))
    }
}

impl Indexer for NodeList {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let i = list_index(idx)?;
        usize::try_from(i)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|n| CowVal::Borrowed(n.as_val()))
            .ok_or(ExecutionError::IndexOutOfBounds(Value::Int(i)))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// A list index: an `int`, a `uint` or a whole `double`.
fn list_index(idx: &dyn Val) -> Result<i64, ExecutionError> {
    if let Some(i) = idx.downcast_ref::<CelInt>() {
        return Ok(*i.inner());
    }
    if let Some(u) = idx.downcast_ref::<CelUInt>() {
        return i64::try_from(*u.inner())
            .map_err(|_| ExecutionError::IndexOutOfBounds(Value::UInt(*u.inner())));
    }
    if let Some(d) = idx.downcast_ref::<CelDouble>() {
        let d = *d.inner();
        if d.fract() == 0.0 && d.abs() < 9.0e15 {
            return Ok(d as i64);
        }
    }
    Err(ExecutionError::UnexpectedType {
        got: idx.get_type().name().to_owned(),
        want: "list index".to_owned(),
    })
}

impl Indexer for NodeMap {
    fn get<'b, 'v>(&'b self, key: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match self.lookup(key) {
            Some(n) => Ok(CowVal::Borrowed(n.as_val())),
            None => Err(ExecutionError::no_such_key(
                key.downcast_ref::<CelString>()
                    .map(|k| k.inner())
                    .unwrap_or("non-string key"),
            )),
        }
    }

    fn steal<'v>(self: Box<Self>, key: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        Indexer::get(self.as_ref(), key).map(CowVal::into_owned)
    }
}

struct NodeIter<'b> {
    nodes: std::slice::Iter<'b, Node>,
}

impl<'b, 'v> CelIterator<'b, 'v> for NodeIter<'b> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'v)> {
        self.nodes.next().map(|n| n.as_val() as &(dyn Val + 'v))
    }
}

struct KeyIter<'b> {
    entries: std::slice::Iter<'b, (CelString<'static>, Node)>,
}

impl<'b, 'v> CelIterator<'b, 'v> for KeyIter<'b> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'v)> {
        self.entries.next().map(|(k, _)| k as &(dyn Val + 'v))
    }
}

impl Iterable for NodeList {
    fn iter<'b, 'v>(&'b self) -> Box<dyn CelIterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        Box::new(NodeIter {
            nodes: self.0.iter(),
        })
    }
}

impl Iterable for NodeMap {
    fn iter<'b, 'v>(&'b self) -> Box<dyn CelIterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        Box::new(KeyIter {
            entries: self.entries.iter(),
        })
    }
}

impl Container for NodeList {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(self.0.iter().any(|n| n.as_val().equals(value)))
    }
}

impl Container for NodeMap {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(self.lookup(value).is_some())
    }
}

impl Sizer for NodeList {
    fn size(&self) -> CelInt {
        (self.0.len() as i64).into()
    }
}

impl Sizer for NodeMap {
    fn size(&self) -> CelInt {
        (self.entries.len() as i64).into()
    }
}

impl Zeroer for NodeList {
    fn is_zero_value(&self) -> bool {
        self.0.is_empty()
    }
}

impl Zeroer for NodeMap {
    fn is_zero_value(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Element-wise equality with any CEL list (built-in or not).
fn list_equals(items: &[Node], other: &dyn Val) -> bool {
    if other.get_type().kind() != Kind::List {
        return false;
    }
    let (Some(size), Some(it)) = (other.as_sizer(), other.as_iterable()) else {
        return false;
    };
    if usize::try_from(*size.size().inner()).ok() != Some(items.len()) {
        return false;
    }
    let mut it = it.iter();
    items.iter().all(|n| match it.next() {
        Some(o) => n.as_val().equals(o),
        None => false,
    })
}

/// Key-wise equality with any CEL map (built-in or not).
fn map_equals(entries: &[(CelString<'static>, Node)], other: &dyn Val) -> bool {
    if other.get_type().kind() != Kind::Map {
        return false;
    }
    let (Some(size), Some(ix)) = (other.as_sizer(), other.as_indexer()) else {
        return false;
    };
    usize::try_from(*size.size().inner()).ok() == Some(entries.len())
        && entries.iter().all(|(k, v)| match ix.get(k) {
            Ok(o) => v.as_val().equals(o.as_ref()),
            Err(_) => false,
        })
}

/// Implements `Val` for a shared node container.
macro_rules! node_val {
    ($ty:ident, $cel_type:ident, $eq:expr) => {
        impl Val for $ty {
            fn get_type(&self) -> &Type {
                &$cel_type
            }
            fn cel_type() -> &'static Type
            where
                Self: Sized,
            {
                &$cel_type
            }
            fn as_container(&self) -> Option<&dyn Container> {
                Some(self)
            }
            fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn into_indexer<'v>(self: Box<Self>) -> Option<Box<dyn Indexer + 'v>>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn as_sizer(&self) -> Option<&dyn Sizer> {
                Some(self)
            }
            fn as_zeroer(&self) -> Option<&dyn Zeroer> {
                Some(self)
            }
            fn equals(&self, other: &dyn Val) -> bool {
                $eq(self, other)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
            where
                Self: 'v,
            {
                Box::new(self.clone())
            }
            fn as_any(&self) -> Option<&dyn std::any::Any> {
                Some(self)
            }
        }
        impl StaticVal for $ty {}
    };
}

node_val!(
    NodeList,
    LIST_TYPE,
    |s: &NodeList, o: &dyn Val| list_equals(&s.0, o)
);
node_val!(NodeMap, MAP_TYPE, |s: &NodeMap, o: &dyn Val| map_equals(
    &s.entries, o
));

/// Converts any serializable value (the facts, a JSON test snippet) to a [`Node`].
pub fn to_node<T: Serialize + ?Sized>(value: &T) -> Result<Node, String> {
    value.serialize(NodeSerializer).map_err(|e| e.0)
}

/// Converts a CEL result to a plain [`Value`], including the node containers
/// (cel's own conversion fails on containers it does not know).
pub fn to_value(v: &dyn Val) -> Result<Value, String> {
    if let Some(l) = v.downcast_ref::<NodeList>() {
        return l
            .0
            .iter()
            .map(|n| to_value(n.as_val()))
            .collect::<Result<Vec<_>, _>>()
            .map(|items| Value::List(Arc::new(items)));
    }
    if let Some(m) = v.downcast_ref::<NodeMap>() {
        let mut map = HashMap::with_capacity(m.entries.len());
        for (k, n) in m.entries.iter() {
            map.insert(
                Key::String(Arc::new(k.inner().to_string())),
                to_value(n.as_val())?,
            );
        }
        return Ok(Value::Map(Map { map: Arc::new(map) }));
    }
    match v.get_type().kind() {
        Kind::List => {
            let it = v.as_iterable().ok_or("list without elements")?;
            let mut it = it.iter();
            let mut items = Vec::new();
            while let Some(x) = it.next() {
                items.push(to_value(x)?);
            }
            Ok(Value::List(Arc::new(items)))
        }
        Kind::Map => {
            let (Some(keys), Some(ix)) = (v.as_iterable(), v.as_indexer()) else {
                return Err("map without entries".into());
            };
            let mut keys = keys.iter();
            let mut map = HashMap::new();
            while let Some(k) = keys.next() {
                let key = match Value::try_from(k).map_err(|e| e.to_string())? {
                    Value::String(s) => Key::String(s),
                    Value::Int(i) => Key::Int(i),
                    Value::UInt(u) => Key::Uint(u),
                    Value::Bool(b) => Key::Bool(b),
                    other => return Err(format!("unsupported map key {other:?}")),
                };
                let val = ix.get(k).map_err(|e| e.to_string())?;
                map.insert(key, to_value(val.as_ref())?);
            }
            Ok(Value::Map(Map { map: Arc::new(map) }))
        }
        _ => Value::try_from(v).map_err(|e| e.to_string()),
    }
}

/// Why a value could not become a [`Node`].
#[derive(Debug)]
pub struct NodeError(String);

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeError {}

impl serde::ser::Error for NodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        NodeError(msg.to_string())
    }
}

/// Builds a [`Node`] the way `serde_json` builds a JSON value (same shapes).
struct NodeSerializer;

fn int(v: i64) -> Result<Node, NodeError> {
    Ok(Node::Int(v.into()))
}

fn uint(v: u64) -> Result<Node, NodeError> {
    Ok(match i64::try_from(v) {
        Ok(i) => Node::Int(i.into()),
        Err(_) => Node::Double((v as f64).into()),
    })
}

fn string(s: impl Into<CelString<'static>>) -> Node {
    Node::Str(s.into())
}

fn list(items: Vec<Node>) -> Node {
    Node::List(NodeList(items.into()))
}

fn single(key: &'static str, value: Node) -> Node {
    Node::Map(NodeMap::new(vec![(key.into(), value)]))
}

impl serde::Serializer for NodeSerializer {
    type Ok = Node;
    type Error = NodeError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Node, NodeError> {
        Ok(Node::Bool(v.into()))
    }
    fn serialize_i8(self, v: i8) -> Result<Node, NodeError> {
        int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Node, NodeError> {
        int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Node, NodeError> {
        int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<Node, NodeError> {
        int(v)
    }
    fn serialize_i128(self, v: i128) -> Result<Node, NodeError> {
        Ok(match i64::try_from(v) {
            Ok(i) => Node::Int(i.into()),
            Err(_) => Node::Double((v as f64).into()),
        })
    }
    fn serialize_u8(self, v: u8) -> Result<Node, NodeError> {
        int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Node, NodeError> {
        int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Node, NodeError> {
        int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<Node, NodeError> {
        uint(v)
    }
    fn serialize_u128(self, v: u128) -> Result<Node, NodeError> {
        Ok(match i64::try_from(v) {
            Ok(i) => Node::Int(i.into()),
            Err(_) => Node::Double((v as f64).into()),
        })
    }
    fn serialize_f32(self, v: f32) -> Result<Node, NodeError> {
        Ok(Node::Double(f64::from(v).into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Node, NodeError> {
        Ok(Node::Double(v.into()))
    }
    fn serialize_char(self, v: char) -> Result<Node, NodeError> {
        Ok(string(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Node, NodeError> {
        Ok(string(v.to_string()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Node, NodeError> {
        // As serde_json: a list of numbers.
        Ok(list(
            v.iter().map(|b| Node::Int(i64::from(*b).into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Node, NodeError> {
        Ok(Node::Null(CelNull))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Node, NodeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Node, NodeError> {
        Ok(Node::Null(CelNull))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Node, NodeError> {
        Ok(Node::Null(CelNull))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Node, NodeError> {
        Ok(string(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Node, NodeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Node, NodeError> {
        Ok(single(variant, value.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, NodeError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.unwrap_or(0)),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, NodeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, NodeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, NodeError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len),
            variant: Some(variant),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, NodeError> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            next_key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder, NodeError> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len),
            next_key: None,
            variant: None,
        })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, NodeError> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len),
            next_key: None,
            variant: Some(variant),
        })
    }
}

/// Collects a sequence (or a tuple variant's fields).
struct SeqBuilder {
    items: Vec<Node>,
    variant: Option<&'static str>,
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NodeError> {
        self.items.push(value.serialize(NodeSerializer)?);
        Ok(())
    }
    fn done(self) -> Result<Node, NodeError> {
        let l = list(self.items);
        Ok(match self.variant {
            Some(v) => single(v, l),
            None => l,
        })
    }
}

impl serde::ser::SerializeSeq for SeqBuilder {
    type Ok = Node;
    type Error = NodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NodeError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, NodeError> {
        self.done()
    }
}

impl serde::ser::SerializeTuple for SeqBuilder {
    type Ok = Node;
    type Error = NodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NodeError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, NodeError> {
        self.done()
    }
}

impl serde::ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Node;
    type Error = NodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NodeError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, NodeError> {
        self.done()
    }
}

impl serde::ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Node;
    type Error = NodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NodeError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, NodeError> {
        self.done()
    }
}

/// Collects a map, a struct or a struct variant's fields.
struct MapBuilder {
    entries: Vec<(CelString<'static>, Node)>,
    next_key: Option<CelString<'static>>,
    variant: Option<&'static str>,
}

impl MapBuilder {
    fn done(self) -> Result<Node, NodeError> {
        let m = Node::Map(NodeMap::new(self.entries));
        Ok(match self.variant {
            Some(v) => single(v, m),
            None => m,
        })
    }
}

impl serde::ser::SerializeMap for MapBuilder {
    type Ok = Node;
    type Error = NodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), NodeError> {
        // Map keys become strings, as in JSON.
        let k = match key.serialize(NodeSerializer)? {
            Node::Str(s) => s,
            Node::Int(i) => i.inner().to_string().into(),
            Node::Double(d) => d.inner().to_string().into(),
            Node::Bool(b) => b.inner().to_string().into(),
            _ => return Err(NodeError("map key must be a string or a number".into())),
        };
        self.next_key = Some(k);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NodeError> {
        let k = self
            .next_key
            .take()
            .ok_or_else(|| NodeError("map value without a key".into()))?;
        self.entries.push((k, value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Node, NodeError> {
        self.done()
    }
}

impl serde::ser::SerializeStruct for MapBuilder {
    type Ok = Node;
    type Error = NodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), NodeError> {
        self.entries
            .push((key.into(), value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Node, NodeError> {
        self.done()
    }
}

impl serde::ser::SerializeStructVariant for MapBuilder {
    type Ok = Node;
    type Error = NodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), NodeError> {
        self.entries
            .push((key.into(), value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Node, NodeError> {
        self.done()
    }
}

#[cfg(test)]
mod tests {
    use cel::Context;
    use cel::context::VariableResolver;

    use super::*;
    use crate::rules::engine::cel_env;

    struct One(Node);
    impl VariableResolver for One {
        fn resolve<'b>(&'b self, v: &str) -> Option<CowVal<'b, 'b>> {
            (v == "x").then(|| CowVal::Borrowed(self.0.as_val()))
        }
    }

    fn eval(x: &serde_json::Value, expr: &str) -> Result<Value, String> {
        let env = cel_env();
        let x = One(to_node(x).unwrap());
        let mut ctx = Context::with_env(Arc::clone(&env));
        ctx.set_variable_resolver(&x);
        let p = env.compile(expr).map_err(|e| e.to_string())?;
        let v = Value::resolve_val(p.expression(), &ctx).map_err(|e| e.to_string())?;
        to_value(v.as_ref())
    }

    #[test]
    fn nodes_behave_like_builtin_values() {
        // More than LINEAR_MAP_MAX keys, so the sorted lookup is exercised too.
        let big: serde_json::Map<String, serde_json::Value> = (0..40)
            .map(|i| (format!("k{i:02}"), serde_json::json!(i)))
            .collect();
        let x = serde_json::json!({
            "m": {"a": 1, "b": [1, 2, 3]},
            "l": [{"k": "p"}, {"k": "q"}],
            "s": "10.96.0.10",
            "n": null,
            "f": 0.5,
            "u": u64::MAX,
            "big": big,
        });
        for (expr, want) in [
            ("x.m == {'a': 1, 'b': [1, 2, 3]}", true),
            ("x.m == {'a': 1, 'b': [1, 2, 4]}", false),
            ("x.m == {'a': 1}", false),
            ("'a' in x.m && !('z' in x.m)", true),
            ("x.m.b == [1, 2, 3] && 2 in x.m.b && !(4 in x.m.b)", true),
            ("x.m.b == [1, 2]", false),
            ("size(x.l) == 2 && size(x.m) == 2 && x.l.size() == 2", true),
            ("x.l.filter(i, i.k == 'q').map(i, i.k) == ['q']", true),
            ("x.l.exists(i, i == {'k': 'p'})", true),
            ("x.l.all(i, i.k.startsWith('p') || i.k.endsWith('q'))", true),
            ("has(x.m.a) && !has(x.m.z)", true),
            (
                "x.l[1].k == 'q' && x.l[1u].k == 'q' && x.l[1.0].k == 'q'",
                true,
            ),
            ("'q' == x.l[1].k", true),
            (
                "x.s.split('.').size() == 4 && x.s + ':53' == '10.96.0.10:53'",
                true,
            ),
            ("x.n == null && x.f < 1 && x.f == 0.5", true),
            ("type(x.u) == double", true),
            (
                "x.big.k07 == 7 && x.big['k39'] == 39 && !('k40' in x.big)",
                true,
            ),
            ("size(x.big) == 40 && x.big.all(k, x.big[k] >= 0)", true),
            ("x.m.?z.orValue(5) == 5 && x.m.?a.orValue(5) == 1", true),
            ("x.l.map(i, i.k).join(',') == 'p,q'", true),
            ("[x.l, [x.m.b]].flatten().size() == 3", true),
            (
                "x.m.b.distinct().size() == 3 && math.greatest(x.m.b) == 3",
                true,
            ),
        ] {
            assert_eq!(eval(&x, expr), Ok(Value::Bool(want)), "{expr}");
        }
        // Missing keys and bad indexes are errors, never false.
        assert!(eval(&x, "x.m.z == 1").is_err());
        assert!(eval(&x, "x.l[5].k == 'p'").is_err());
        // Results with nodes inside convert back to plain values.
        assert_eq!(
            crate::rules::engine::display(&eval(&x, "x.l[0]").unwrap()),
            "k=p"
        );
        assert_eq!(
            crate::rules::engine::display(&eval(&x, "x.l.map(i, i)").unwrap()),
            "k=p, k=q"
        );
        assert_eq!(
            crate::rules::engine::display(&eval(&x, "x.m.b").unwrap()),
            "1, 2, 3"
        );
    }

    #[test]
    fn shapes_match_serde_json() {
        #[derive(Serialize)]
        enum E {
            Unit,
            New(u8),
            Tup(u8, u8),
            Rec { a: u8 },
        }
        #[derive(Serialize)]
        struct S {
            e: Vec<E>,
            t: (i32, String),
            o: Option<u8>,
            #[serde(skip_serializing_if = "Option::is_none")]
            gone: Option<u8>,
            keys: std::collections::BTreeMap<u16, bool>,
        }
        let s = S {
            e: vec![E::Unit, E::New(1), E::Tup(1, 2), E::Rec { a: 3 }],
            t: (-1, "x".into()),
            o: None,
            gone: None,
            keys: [(80, true)].into(),
        };
        let via_json = to_node(&serde_json::to_value(&s).unwrap()).unwrap();
        let direct = to_node(&s).unwrap();
        assert_eq!(
            to_value(direct.as_val()).unwrap(),
            to_value(via_json.as_val()).unwrap()
        );
        let v = to_value(direct.as_val()).unwrap();
        assert_eq!(
            crate::rules::engine::display(&v),
            "e=Unit, New=1, Tup=1, 2, Rec=a=3, keys=80=true, o=none, t=-1, x"
        );
    }
}
