//! The rule engine: YAML rule files with CEL conditions evaluated over the facts.
