//! Enforces the module layering inside the broker crate, as ARCHITECTURE.md states it in its table under
//! "Layers of the broker crate": a module may use modules of its own layer or of lower ones, never a higher
//! one, and a transport never uses another transport. The table is read from ARCHITECTURE.md itself, so the
//! document and the check cannot drift apart, and every module of `broker/src` must be placed in it.

use std::collections::BTreeMap;
use std::path::Path;

/// The layer that transports sit in: its modules must not use each other.
const TRANSPORT_LAYER: &str = "transports";

/// A layer of the table: its rank (row order, lowest first) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layer {
    rank: usize,
    name: String,
}

/// Reads the table under the heading `## Layers of the broker crate`: rows `| layer | modules |`, lowest layer
/// first, modules named as in `crate::name` and separated by commas (in backticks or not).
fn layers_from(architecture: &str) -> BTreeMap<String, Layer> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Layers of the broker crate"))
        .expect("ARCHITECTURE.md has a section 'Layers of the broker crate'");
    let mut layers = BTreeMap::new();
    let rows = section.lines().filter(|l| l.starts_with('|')).skip(2);
    for (rank, row) in rows.enumerate() {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let [name, modules, ..] = cells.as_slice() else { panic!("bad layer row: {row}") };
        for module in modules.split(',').map(|m| m.trim().trim_matches('`')).filter(|m| !m.is_empty()) {
            let layer = Layer { rank, name: name.to_string() };
            assert!(layers.insert(module.to_string(), layer).is_none(), "module {module} is listed twice");
        }
    }
    layers
}

/// The crate modules a source file names through `crate::module` paths.
fn crate_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let preceded_by_ident = rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !preceded_by_ident && !name.is_empty() {
                found.push(name);
            }
            rest = after;
        }
    }
    found
}

/// Every violation of the layering in the files given as (top-level module, source).
fn violations(layers: &BTreeMap<String, Layer>, files: &[(String, String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, module, source) in files {
        let Some(own) = layers.get(module) else {
            found.push(format!("{path}: module `{module}` is not placed in ARCHITECTURE.md's layer table"));
            continue;
        };
        for used in crate_paths(source) {
            if used == *module {
                continue;
            }
            let Some(theirs) = layers.get(&used) else {
                found.push(format!("{path}: uses `crate::{used}`, which the layer table does not place"));
                continue;
            };
            if theirs.rank > own.rank {
                found.push(format!(
                    "{path}: `{module}` ({}) uses `crate::{used}` ({}), a higher layer",
                    own.name, theirs.name
                ));
            } else if own.name == TRANSPORT_LAYER && theirs.name == TRANSPORT_LAYER {
                found.push(format!("{path}: transport `{module}` uses another transport, `crate::{used}`"));
            }
        }
    }
    found
}

/// (path, top-level module, source) of every `.rs` file under `dir`.
fn broker_sources(dir: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap_or_else(|e| panic!("cannot read {}: {e}", next.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(dir).expect("under the source directory");
            let first = relative.components().next().expect("a file name").as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            let source = std::fs::read_to_string(&path).expect("readable source");
            files.push((format!("broker/src/{}", relative.display()), module, source));
        }
    }
    files
}

#[test]
fn no_broker_module_uses_a_higher_layer() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let architecture = std::fs::read_to_string(workspace.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let layers = layers_from(&architecture);
    let files = broker_sources(&workspace.join("broker/src"));
    assert!(files.len() > 20, "found the broker's sources");
    let found = violations(&layers, &files);
    assert!(found.is_empty(), "broker layering violations (ARCHITECTURE.md, 'Layers'):\n{}", found.join("\n"));
}

const SAMPLE_TABLE: &str = "# A\n\n## Layers of the broker crate\n\n| layer | modules |\n|---|---|\n\
    | leaf | `clock` |\n| core state | `partition`, `group` |\n| request core | `requests` |\n\
    | transports | `service`, `kafka` |\n| wiring | `server` |\n\n## Next\n";

fn sample(module: &str, source: &str) -> Vec<(String, String, String)> {
    vec![(format!("broker/src/{module}.rs"), module.to_string(), source.to_string())]
}

#[test]
fn an_upward_import_is_reported() {
    let layers = layers_from(SAMPLE_TABLE);
    assert_eq!(layers["group"].rank, 1);
    assert_eq!(layers["server"].name, "wiring");
    let upward = violations(&layers, &sample("partition", "use crate::service::now_ms;\n"));
    assert_eq!(upward.len(), 1, "{upward:?}");
    assert!(upward[0].contains("a higher layer"));
    let inline = violations(&layers, &sample("group", "let x = crate::requests::Error::invalid(m);"));
    assert_eq!(inline.len(), 1, "{inline:?}");
}

#[test]
fn downward_and_same_layer_imports_pass_but_transports_stay_apart() {
    let layers = layers_from(SAMPLE_TABLE);
    let fine = "use crate::clock::now_ms;\nuse crate::group::X;\n// crate::server in a comment\n";
    assert!(violations(&layers, &sample("partition", fine)).is_empty());
    assert!(violations(&layers, &sample("kafka", "use crate::requests::BrokerCore;")).is_empty());
    assert_eq!(violations(&layers, &sample("kafka", "use crate::service::errors;")).len(), 1);
    assert_eq!(violations(&layers, &sample("metrics", "use crate::clock;")).len(), 1, "unplaced module");
    assert!(violations(&layers, &sample("server", "use rill_proto::v1::crate_like;")).is_empty());
}
