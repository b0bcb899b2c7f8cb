//! The checked-in OpenAPI document must be what the code generates, and complete.

use serde_json::Value;

fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/kumo.json")
}

#[test]
fn checked_in_openapi_document_is_current() {
    let generated = kumo_control::openapi::document_json();
    if std::env::var_os("KUMO_UPDATE_OPENAPI").is_some() {
        std::fs::write(checked_in_path(), &generated).expect("write openapi/kumo.json");
    }
    let checked_in = std::fs::read_to_string(checked_in_path()).unwrap_or_default();
    assert!(
        checked_in == generated,
        "openapi/kumo.json is stale: regenerate it with `cargo run -p kumod -- openapi > openapi/kumo.json` \
         (or KUMO_UPDATE_OPENAPI=1 cargo test -p kumo-control --test openapi)"
    );
}

#[test]
fn every_operation_is_named_and_summarised_and_every_field_described() {
    let doc: Value = serde_json::from_str(&kumo_control::openapi::document_json()).expect("valid JSON");
    let re = regex_lite_op();
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        assert!(path.starts_with("/v1/"), "{path} is outside /v1");
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().unwrap_or("");
            if !re(id) {
                problems.push(format!("{method} {path}: operationId '{id}' is not <resource>_<verb>"));
            }
            if op["summary"].as_str().unwrap_or("").is_empty() {
                problems.push(format!("{method} {path}: no summary"));
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        if let Some(props) = schema["properties"].as_object() {
            for (field, p) in props {
                let described = p["description"].as_str().is_some_and(|d| !d.is_empty())
                    || p["allOf"].as_array().is_some_and(|a| a.iter().any(|x| x["description"].is_string()))
                    || p["oneOf"].as_array().is_some_and(|a| a.iter().any(|x| x["description"].is_string()));
                if !described {
                    problems.push(format!("schema {name}.{field} has no description"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `<resource>_<verb>`: lowercase words joined by '_', at least two.
fn regex_lite_op() -> impl Fn(&str) -> bool {
    |s: &str| {
        let parts: Vec<&str> = s.split('_').collect();
        parts.len() >= 2 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
    }
}

/// Every operation documents the error answers any operation can give (with the error body and a
/// description), 413 where it takes a body, and its path parameters' patterns.
#[test]
fn every_operation_documents_its_error_answers() {
    let doc: Value = serde_json::from_str(&kumo_control::openapi::document_json()).expect("valid JSON");
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            let mut want =
                if path == "/v1/login" { vec!["400", "429", "500"] } else { vec!["400", "401", "403", "500"] };
            if op.get("requestBody").is_some() {
                want.push("413");
            }
            for status in want {
                if !responses.contains_key(status) {
                    problems.push(format!("{method} {path}: no {status} response"));
                }
            }
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    if r["content"]["application/json"]["schema"]["$ref"] != "#/components/schemas/ErrorBody" {
                        problems.push(format!("{method} {path}: {status} without the ErrorBody schema"));
                    }
                    if r["description"].as_str().unwrap_or("").is_empty() {
                        problems.push(format!("{method} {path}: {status} without a description"));
                    }
                }
            }
            for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
                if p["schema"]["pattern"].as_str().is_none() {
                    problems.push(format!("{method} {path}: path parameter {} has no pattern", p["name"]));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
