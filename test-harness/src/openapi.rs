//! Checks of a service's `/openapi.json`: its shape, a validation as OpenAPI 3.1 by
//! `openapi-spec-validator` (PyPI, in the deploy-test venv that `scripts/test-deps.sh` installs),
//! and that every route the service registers is documented and every documented route exists.
//!
//! The registered routes are found without help from the service: the resource paths are the
//! `resource("...")` literals of the crate's `src/` (with the scope prefix of the folders given),
//! and the methods of each are found by asking the running service: every resource answers a
//! method it does not route with 405, so any other answer means the method is routed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The methods probed on every registered path.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// One operation: `(path template, METHOD)`.
pub type Operation = (String, String);

/// What the external validator said.
#[derive(Debug)]
pub enum Validation {
    /// `openapi-spec-validator` accepted the document.
    Valid,
    /// It refused it, with its message.
    Invalid(String),
    /// It is not installed (the reason); a failure in CI, a skip elsewhere.
    Unavailable(String),
}

/// Problems with the document's shape, found without any external tool: version 3.1.x, a
/// title and version, operations with responses, declared path parameters, resolvable `$ref`s.
pub fn structural_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match doc.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.1.") => {}
        other => problems.push(format!("openapi is {other:?}, expected 3.1.x")),
    }
    for key in ["title", "version"] {
        if doc["info"][key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("info.{key} is missing"));
        }
    }
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        problems.push("paths is missing".to_owned());
        return problems;
    };
    if paths.is_empty() {
        problems.push("paths is empty".to_owned());
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let Some(op) = op.as_object() else { continue };
            let declared: BTreeSet<&str> = op
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path" && p["required"] == true)
                .filter_map(|p| p["name"].as_str())
                .collect();
            for name in template_params(path) {
                if !declared.contains(name.as_str()) {
                    problems.push(format!(
                        "{method} {path}: path parameter {{{name}}} is not declared"
                    ));
                }
            }
            if op
                .get("responses")
                .and_then(Value::as_object)
                .is_none_or(|r| r.is_empty())
            {
                problems.push(format!("{method} {path}: no responses"));
            }
        }
    }
    collect_refs(doc, &mut |reference| {
        let resolves = reference
            .strip_prefix('#')
            .is_some_and(|pointer| doc.pointer(pointer).is_some());
        if !resolves {
            problems.push(format!("$ref {reference} does not resolve"));
        }
    });
    problems
}

fn collect_refs(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(reference)) => found(reference),
                    _ => collect_refs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, found)),
        _ => {}
    }
}

/// The `{name}`s of a path template.
pub fn template_params(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The python of the deploy-test venv (`DEPLOY_TEST_VENV`, default `~/.cache/deploy-test-venv`).
fn venv_python() -> PathBuf {
    let venv = std::env::var("DEPLOY_TEST_VENV")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/deploy-test-venv")
        });
    venv.join("bin/python")
}

/// Validates `doc` as OpenAPI 3.1 with `openapi-spec-validator`.
pub fn validate_with_openapi_spec_validator(doc: &Value) -> Validation {
    let python = venv_python();
    if !python.is_file() {
        return Validation::Unavailable(format!(
            "{} is missing (scripts/test-deps.sh)",
            python.display()
        ));
    }
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return Validation::Unavailable(format!("no temp dir: {e}")),
    };
    let file = dir.path().join("openapi.json");
    if let Err(e) = std::fs::write(&file, doc.to_string()) {
        return Validation::Unavailable(format!("cannot write {}: {e}", file.display()));
    }
    let script = "import json, sys\n\
                  try:\n    from openapi_spec_validator import OpenAPIV31SpecValidator\n\
                  except ImportError as e:\n    print(e); sys.exit(3)\n\
                  errors = [str(e.message) + ' at ' + '/'.join(map(str, e.absolute_path)) \
                  for e in OpenAPIV31SpecValidator(json.load(open(sys.argv[1]))).iter_errors()]\n\
                  print('\\n'.join(errors)); sys.exit(1 if errors else 0)\n";
    match Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => Validation::Valid,
                Some(3) => {
                    Validation::Unavailable(format!("openapi-spec-validator: {}", text.trim()))
                }
                _ => Validation::Invalid(text),
            }
        }
        Err(e) => Validation::Unavailable(format!("cannot run {}: {e}", python.display())),
    }
}

/// Asserts the document validates; without the validator, fails in CI (`CI` set) and only
/// warns elsewhere.
pub fn assert_valid_openapi_31(doc: &Value) {
    let problems = structural_problems(doc);
    assert!(
        problems.is_empty(),
        "OpenAPI document problems:\n{}",
        problems.join("\n")
    );
    match validate_with_openapi_spec_validator(doc) {
        Validation::Valid => {}
        Validation::Invalid(why) => panic!("not a valid OpenAPI 3.1 document:\n{why}"),
        Validation::Unavailable(why) if std::env::var_os("CI").is_some() => {
            panic!("cannot validate the OpenAPI document in CI: {why}")
        }
        Validation::Unavailable(why) => {
            eprintln!("openapi-spec-validator unavailable ({why}); checked the shape only")
        }
    }
}

/// The documented operations.
pub fn documented(doc: &Value) -> BTreeSet<Operation> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            let upper = method.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) || upper == "HEAD" || upper == "OPTIONS" {
                ops.insert((path.clone(), upper));
            }
        }
    }
    ops
}

/// Resource paths registered in the crate's source: every `resource("...")` and
/// `resource(["...", ...])` literal in `src/**/*.rs`. A file under one of `scopes`' folders
/// (relative to `src/`, e.g. `("routes/api", "/api/v1")`) gets that scope's prefix.
pub fn source_paths(crate_dir: &Path, scopes: &[(&str, &str)]) -> BTreeSet<String> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut paths = BTreeSet::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let relative = file.strip_prefix(&src).unwrap_or(&file);
        let prefix = scopes
            .iter()
            .find(|(folder, _)| relative.starts_with(folder))
            .map_or("", |(_, prefix)| *prefix);
        for literal in resource_literals(&text) {
            paths.insert(format!("{prefix}{literal}"));
        }
    }
    paths
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literals passed to `resource(...)` in `text`.
fn resource_literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("resource(") {
        let preceded_by_ident = text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded_by_ident {
            continue;
        }
        let rest = text[at + "resource(".len()..].trim_start();
        let list = match rest.strip_prefix('[') {
            Some(inner) => inner.split(']').next().unwrap_or_default(),
            None => rest.split(')').next().unwrap_or_default(),
        };
        for part in list.split(',') {
            let part = part.trim();
            if let Some(literal) = part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                found.push(literal.to_owned());
            }
        }
    }
    found
}

/// A concrete path for a template, each `{name}` replaced by its sample (or `1`).
pub fn concrete(template: &str, samples: &[(&str, &str)]) -> String {
    let mut path = template.to_owned();
    for name in template_params(template) {
        let value = samples
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("1", |(_, v)| *v);
        path = path.replace(&format!("{{{name}}}"), value);
    }
    path
}

/// Asks the running service at `base` which of [`METHODS`] each path routes (anything but
/// 405 means routed).
pub async fn routed_operations(
    client: &reqwest::Client,
    base: &str,
    paths: &BTreeSet<String>,
    samples: &[(&str, &str)],
) -> BTreeSet<Operation> {
    let mut ops = BTreeSet::new();
    for path in paths {
        let url = format!("{base}{}", concrete(path, samples));
        for method in METHODS {
            let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
                continue;
            };
            let response = client
                .request(m, &url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            if response.status() != reqwest::StatusCode::METHOD_NOT_ALLOWED {
                ops.insert((path.clone(), method.to_owned()));
            }
        }
    }
    ops
}

/// Asserts that the service's registered routes and its document agree: every routed
/// operation of a source path is documented, and every documented operation is routed.
/// `excluded` lists source paths that are not routes of their own, each with its reason.
pub async fn assert_routes_documented(
    client: &reqwest::Client,
    base: &str,
    doc: &Value,
    crate_dir: &Path,
    scopes: &[(&str, &str)],
    samples: &[(&str, &str)],
    excluded: &[(&str, &str)],
) {
    let mut paths = source_paths(crate_dir, scopes);
    assert!(
        !paths.is_empty(),
        "no resource(\"...\") found under {}",
        crate_dir.display()
    );
    for (path, _reason) in excluded {
        assert!(
            paths.remove(*path),
            "excluded path {path} is not registered any more"
        );
    }
    let documented = documented(doc);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(p, _)| p.clone()).collect();
    let mut all = paths.clone();
    all.extend(documented_paths.iter().cloned());
    let routed = routed_operations(client, base, &all, samples).await;

    let undocumented: Vec<String> = routed
        .iter()
        .filter(|(p, _)| paths.contains(p))
        .filter(|op| !documented.contains(*op))
        .map(|(p, m)| format!("{m} {p}"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "registered but not in /openapi.json (add #[utoipa::path] to the handler and list it in \
         the crate's openapi.rs):\n{}",
        undocumented.join("\n")
    );
    let phantom: Vec<String> = documented
        .iter()
        .filter(|(p, m)| !paths.contains(p) || !routed.contains(&(p.clone(), m.clone())))
        .map(|(p, m)| format!("{m} {p}"))
        .collect();
    assert!(
        phantom.is_empty(),
        "in /openapi.json but not registered (or answering 405):\n{}",
        phantom.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_resource_literals() {
        let text = r#"
            cfg.service(web::resource("/a/{id}").route(web::get().to(a)))
               .service(resource("/b"))
               .service(web::resource(["/c/", "/c//d"]).to(c));
            let resource = |path: &str| web::resource(path);
            my_resource("/not-this");
        "#;
        assert_eq!(resource_literals(text), ["/a/{id}", "/b", "/c/", "/c//d"]);
    }

    #[test]
    fn templates() {
        assert_eq!(
            template_params("/rooms/{room}/comments/{id}"),
            ["room", "id"]
        );
        assert_eq!(
            concrete("/rooms/{room}/x/{id}", &[("room", "index")]),
            "/rooms/index/x/1"
        );
    }

    #[test]
    fn shape_problems_are_found() {
        let doc = serde_json::json!({
            "openapi": "3.0.0", "info": {"title": "t", "version": "1"},
            "paths": {"/a/{id}": {"get": {"responses": {"200": {"$ref": "#/components/responses/X"}}}}}
        });
        let problems = structural_problems(&doc);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
