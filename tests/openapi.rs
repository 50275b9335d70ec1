//! The OpenAPI document: generated from the route table the router is
//! built from, shipped as schema/openapi.json, served at
//! /api/v1/openapi.json; every route in it answers, and nothing answers
//! that it lacks.

mod support;

use std::collections::BTreeSet;

use dr_reactor::http::routes::{Access, table};
use serde_json::Value;
use support::{Server, repo_path};

const REGENERATE: &str = "cargo run -- schema openapi > schema/openapi.json";

fn spec() -> Value {
    serde_json::from_str(&dr_reactor::http::OPENAPI_JSON).unwrap()
}

/// (path, method) of every operation in the document.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((path.clone(), method.to_uppercase()));
        }
    }
    out
}

#[test]
fn the_shipped_document_is_what_the_code_generates() {
    let shipped = std::fs::read_to_string(repo_path("schema/openapi.json")).unwrap_or_default();
    assert!(
        shipped == *dr_reactor::http::OPENAPI_JSON,
        "schema/openapi.json is not what the code generates; regenerate it: {REGENERATE}"
    );
    assert!(shipped.ends_with("}\n"));
}

#[test]
fn every_route_of_the_table_is_documented_once_and_nothing_else() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let documented = operations(&spec);
    let routes: Vec<_> = table().iter().map(|r| (r.endpoint(), r.access)).collect();
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|((path, method), _)| (path.clone(), method.to_string()))
        .collect();
    assert_eq!(served.len(), routes.len(), "a route is listed twice");
    assert_eq!(documented, served);
    for ((path, method), access) in &routes {
        let op = &spec["paths"][path][method.as_str().to_lowercase()];
        let security = op["security"].as_array();
        match access {
            Access::Probe | Access::Open => {
                // Only /readyz takes an optional token.
                if let Some(s) = security {
                    assert!(s.iter().any(|r| r == &serde_json::json!({})), "{path}");
                }
            }
            _ => {
                assert!(
                    security.is_some_and(|s| !s.is_empty()),
                    "{method} {path} documents no credentials"
                );
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
            }
        }
        if method != "GET" && !matches!(access, Access::Probe) {
            assert!(
                op["responses"]["413"].is_object(),
                "{method} {path}: no 413"
            );
        }
    }
    // The answers the layers give, written from the same table.
    let approve = &spec["paths"]["/api/v1/incidents/{id}/approve"]["post"];
    for status in ["200", "401", "403", "404", "409", "413", "503"] {
        assert!(
            approve["responses"][status].is_object(),
            "approve: {status}"
        );
    }
    assert_eq!(
        approve["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/VoteBody"
    );
    let list = &spec["paths"]["/api/v1/incidents"]["get"];
    assert_eq!(
        list["security"],
        serde_json::json!([{"read_token": []}, {"user_token": []}, {"admin_token": []}])
    );
    let page = &spec["components"]["schemas"]["IncidentPage"];
    assert!(page["properties"]["incidents"].is_object(), "{page}");
    assert!(spec["paths"]["/"]["get"]["responses"]["200"]["content"]["text/html"].is_object());
}

/// A path of the document with each `{param}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x-test" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_route_answers_and_the_served_document_is_the_shipped_one() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path()).await;
    let client = &srv.client;

    // Served without credentials, byte for byte the shipped file.
    let resp = client
        .get(format!("{}/api/v1/openapi.json", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = resp.text().await.unwrap();
    let shipped = std::fs::read_to_string(repo_path("schema/openapi.json")).unwrap();
    assert!(served == shipped, "served ≠ shipped; {REGENERATE}");
    let served: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(served["openapi"], "3.1.0");

    // What the router's own fallback answers: 404 or 405 with no body.
    let fallback = |status: u16, body: &str| (status == 404 && body.is_empty()) || status == 405;
    let answer = |method: reqwest::Method, path: String| {
        let req = client.request(method, format!("{}{path}", srv.base));
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let (s, b) = answer(reqwest::Method::GET, "/api/v1/no-such-route".into()).await;
    assert!(fallback(s, &b), "an unknown path: {s} {b:?}");
    let (s, b) = answer(reqwest::Method::PUT, "/api/v1/incidents".into()).await;
    assert!(fallback(s, &b), "an unknown method: {s} {b:?}");

    // Every documented operation reaches its route: no credentials, so the
    // authenticated ones stop at their access check (which runs only on a
    // matched route), and the open ones answer themselves.
    let ops = operations(&served);
    assert!(ops.len() >= 26, "{ops:?}");
    for (path, method) in ops {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = answer(m, concrete(&path)).await;
        assert!(
            !fallback(status, &body),
            "{method} {path}: the router has no such route ({status})"
        );
    }
    srv.stop().await;
}
