//! Enforces the dependency table of DESIGN.md: each workspace crate's Cargo.toml must not name a crate that
//! sits above it (normal, build and dev dependencies alike, including target-specific ones).

use std::path::Path;

/// (crate directory, package name, workspace crates it must not depend on).
const RULES: &[(&str, &str, &[&str])] = &[
    ("proto", "rill-proto", &["rill-storage", "rill-broker", "rill-client", "rill-tests", "rill-bench"]),
    ("storage", "rill-storage", &["rill-broker", "rill-client", "rill-tests", "rill-bench"]),
    ("broker", "rill-broker", &["rill-client", "rill-tests", "rill-bench"]),
    ("client", "rill-client", &["rill-broker", "rill-storage", "rill-tests", "rill-bench"]),
    // The simulator drives the broker's pure cores and uses the tests' checker; it never talks to a real client.
    ("sim", "rill-sim", &["rill-client", "rill-bench"]),
];

const DEPENDENCY_TABLES: &[&str] = &["dependencies", "dev-dependencies", "build-dependencies"];

/// Every dependency a manifest declares, as (table, package name). A renamed dependency
/// (`alias = { package = "..." }`) counts under its real package name.
fn dependencies(manifest: &toml::Table) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut collect = |prefix: &str, table: &toml::Table| {
        for section in DEPENDENCY_TABLES {
            let Some(deps) = table.get(*section).and_then(toml::Value::as_table) else { continue };
            for (name, spec) in deps {
                let package = spec.get("package").and_then(toml::Value::as_str).unwrap_or(name);
                found.push((format!("{prefix}{section}"), package.to_owned()));
            }
        }
    };
    collect("", manifest);
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (target, table) in targets {
            if let Some(table) = table.as_table() {
                collect(&format!("target.{target}."), table);
            }
        }
    }
    found
}

fn read_manifest(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

#[test]
fn no_crate_depends_on_a_crate_above_it() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut violations = Vec::new();
    for (dir, package, forbidden) in RULES {
        let manifest = read_manifest(&workspace.join(dir).join("Cargo.toml"));
        let name = manifest.get("package").and_then(|p| p.get("name")).and_then(toml::Value::as_str);
        assert_eq!(name, Some(*package), "{dir}/Cargo.toml should be package {package}");
        for (section, dependency) in dependencies(&manifest) {
            if forbidden.contains(&dependency.as_str()) {
                violations.push(format!("{package} depends on {dependency} in [{section}]"));
            }
        }
    }
    assert!(violations.is_empty(), "forbidden dependency edges (see DESIGN.md):\n{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_renamed_and_target_specific_dependencies() {
    let manifest: toml::Table = r#"
        [package]
        name = "x"
        [dependencies]
        client = { package = "rill-client", path = "../client" }
        [target.'cfg(unix)'.dev-dependencies]
        rill-broker = { path = "../broker" }
    "#
    .parse()
    .unwrap();
    let found = dependencies(&manifest);
    assert!(found.contains(&("dependencies".into(), "rill-client".into())));
    assert!(found.contains(&("target.cfg(unix).dev-dependencies".into(), "rill-broker".into())));
}

#[test]
fn every_workspace_member_is_covered_or_unrestricted() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let root = read_manifest(&workspace.join("Cargo.toml"));
    let members = root["workspace"]["members"].as_array().expect("workspace members");
    // tests/ and benches/ sit on top and may depend on anything.
    let unrestricted = ["tests", "benches"];
    for member in members {
        let member = member.as_str().expect("member path");
        assert!(
            unrestricted.contains(&member) || RULES.iter().any(|(dir, _, _)| *dir == member),
            "workspace member {member} has no layering rule; add it to RULES"
        );
    }
}
