//! Access and limits, from outside: who may read what, authentication
//! before any body is read, bounded metric labels, pagination bounds, and
//! the HTTP server's timeouts and connection and request limits.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ADMIN: &str = "admin-secret";

async fn start(dir: &Path, extra: &str) -> Server {
    Server::start_with(dir, &config_text(dir, extra)).await
}

async fn get(srv: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = srv.client.get(format!("{}{path}", srv.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn reads_need_a_read_token_and_probes_get_only_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &format!("api:\n  admin_token: {ADMIN}\n")).await;

    for path in ["/api/v1/incidents", "/api/v1/incidents/some-id"] {
        assert_eq!(get(&srv, path, None).await.0, 401, "{path}");
        assert_eq!(get(&srv, path, Some("guess")).await.0, 401, "{path}");
        assert_eq!(
            get(&srv, path, Some(TOKEN)).await.0,
            401,
            "{path}: the webhook token does not read"
        );
    }
    assert_eq!(
        get(&srv, "/api/v1/incidents", Some(READ_TOKEN)).await.0,
        200
    );
    assert_eq!(
        get(&srv, "/api/v1/incidents", Some(ADMIN)).await.0,
        200,
        "the admin token implies read"
    );
    assert_eq!(
        get(&srv, "/api/v1/incidents/nope", Some(READ_TOKEN))
            .await
            .0,
        404
    );

    let (code, body) = get(&srv, "/readyz", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        body,
        serde_json::json!({"status": "ready"}),
        "no store error text, no lease holder"
    );
    assert_eq!(get(&srv, "/readyz", Some("guess")).await.0, 401);
    let (code, full) = get(&srv, "/readyz", Some(READ_TOKEN)).await;
    assert_eq!(code, 200);
    assert_eq!(full["store"]["ok"], true);
    assert!(full["leadership"].is_object(), "{full}");
    assert!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="missing_credentials"}"#)
            .await
            >= 2.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn operator_endpoints_check_credentials_before_reading_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &format!("api:\n  admin_token: {ADMIN}\n")).await;
    let big = vec![b'x'; 2 << 20];
    for path in [
        "/api/v1/incidents/x/approve",
        "/api/v1/incidents/x/deny",
        "/-/reload",
    ] {
        for (what, body) in [("{}", b"{}".to_vec()), ("2 MB", big.clone())] {
            let resp = srv
                .client
                .post(format!("{}{path}", srv.base))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401, "{path} with {what} and no credentials");
        }
    }
    // With the token, the body's own limits apply.
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents/x/approve", srv.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    srv.stop().await;
}

#[tokio::test]
async fn made_up_methods_are_one_label() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), "").await;
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("FROB{i}").as_bytes()).unwrap();
        srv.client
            .request(method, format!("{}/x{i}", srv.base))
            .send()
            .await
            .unwrap();
    }
    let text = srv.metrics().await;
    assert!(!text.contains("FROB"), "a raw method became a label");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("dr_reactor_http_request_duration_seconds_count"))
        .filter(|l| l.contains(r#"method="other""#))
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(series[0].contains(r#"route="unmatched""#), "{}", series[0]);
    assert!(series[0].ends_with(" 50"), "{}", series[0]);
    srv.stop().await;
}

#[tokio::test]
async fn pages_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), "").await;
    for bad in ["limit=0", "limit=1001", "before=yesterday", "limit=x"] {
        let (code, _) = get(&srv, &format!("/api/v1/incidents?{bad}"), Some(READ_TOKEN)).await;
        assert_eq!(code, 400, "{bad}");
    }
    let list = srv.get("/api/v1/incidents?limit=1000").await;
    assert!(list["next_before"].is_null(), "{list}");
    srv.stop().await;
}

/// A client that sends its headers, or its body, too slowly is cut off.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(
        dir.path(),
        "server:\n  header_read_timeout: 300ms\n  body_read_timeout: 300ms\n",
    )
    .await;
    let addr = srv.base.trim_start_matches("http://").to_owned();

    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    // Closed by the server; without the timeout this read waits forever.
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "a client that never finishes its headers was kept"
    );
    assert!(start.elapsed() < Duration::from_secs(3));

    let mut trickle = unfinished_webhook_post(&srv).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle.read_to_end(&mut buf)).await;
    let reply = String::from_utf8_lossy(&buf);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert_eq!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="body_timeout"}"#)
            .await,
        1.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn connections_past_the_limit_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), "server:\n  max_connections: 2\n").await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let held = vec![
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
    ];
    srv.wait_for("a connection refused with 503", || async {
        fresh_get(&srv, "/healthz")
            .await
            .is_some_and(|(code, retry_after, _)| code == 503 && retry_after)
    })
    .await;
    drop(held);
    srv.wait_for("the refusal counted, once slots are free", || async {
        fresh_get(&srv, "/metrics")
            .await
            .is_some_and(|(code, _, text)| {
                code == 200
                    && metric_value(
                        &text,
                        r#"dr_reactor_requests_rejected_total{reason="too_many_connections"}"#,
                    ) >= 1.0
            })
    })
    .await;
    srv.stop().await;
}

/// A webhook POST, authenticated, whose body stops after its first byte.
async fn unfinished_webhook_post(srv: &Server) -> tokio::net::TcpStream {
    let addr = srv.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/alerts/alertmanager HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// A GET on a new connection: status, whether Retry-After came, body.
async fn fresh_get(srv: &Server, path: &str) -> Option<(u16, bool, String)> {
    fresh_get_url(&format!("{}{path}", srv.base)).await
}

async fn fresh_get_url(url: &str) -> Option<(u16, bool, String)> {
    let r = reqwest::Client::new().get(url).send().await.ok()?;
    let code = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    Some((code, retry_after, r.text().await.ok()?))
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_get_503_and_probes_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(
        dir.path(),
        "server:\n  max_in_flight: 1\n  body_read_timeout: 10s\n",
    )
    .await;
    // One webhook request whose body never finishes holds the one slot.
    let slow = unfinished_webhook_post(&srv).await;
    srv.wait_for("the API to shed load", || async {
        get(&srv, "/api/v1/incidents", Some(READ_TOKEN)).await.0 == 503
    })
    .await;
    let resp = srv
        .client
        .get(format!("{}/api/v1/incidents", srv.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(get(&srv, "/healthz", None).await.0, 200);
    assert_eq!(get(&srv, "/readyz", None).await.0, 200);
    assert!(
        srv.metric(r#"dr_reactor_requests_rejected_total{reason="overloaded"}"#)
            .await
            >= 1.0
    );
    drop(slow);
    srv.wait_for("the slot to free", || async {
        get(&srv, "/api/v1/incidents", Some(READ_TOKEN)).await.0 == 200
    })
    .await;
    srv.stop().await;
}

/// With `server.metrics_listen`, `/metrics` is there and only there.
#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::binary::free_port();
    let srv = start(
        dir.path(),
        &format!("server:\n  metrics_listen: 127.0.0.1:{port}\n"),
    )
    .await;
    assert_eq!(
        srv.client
            .get(format!("{}/metrics", srv.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let (code, _, text) = fresh_get_url(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(text.contains("dr_reactor_rules_loaded"), "{text}");
    srv.stop().await;
}

/// An incident's signals and events come a page at a time.
#[tokio::test]
async fn an_incidents_signals_and_events_are_paged() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), "").await;
    let alerts = ["orders", "payment", "auth", "search"]
        .iter()
        .map(|svc| pod_alert("firing", svc, "ap-northeast-2a"))
        .collect();
    srv.post(&payload(alerts)).await;
    let az = || async {
        srv.incidents()
            .await
            .into_iter()
            .find(|i| i["scenario"] == "az_failure")
    };
    // Its signals are attached after it opens, and before its hold ends:
    // settled (dry-run), it has them all, and the pages below and the
    // whole read after them see the same set.
    srv.wait_for("the zone's incident, settled", || async {
        az().await.is_some_and(|i| i["state"] == "suppressed")
    })
    .await;
    let id = az().await.unwrap()["id"].as_str().unwrap().to_owned();
    let mut signals = 0;
    let mut path = format!("/api/v1/incidents/{id}?limit=1");
    loop {
        let page = srv.get(&path).await;
        assert!(page["signals"].as_array().unwrap().len() <= 1);
        assert!(page["events"].as_array().unwrap().len() <= 1);
        signals += page["signals"].as_array().unwrap().len();
        match page["next_signals_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/incidents/{id}?limit=1&signals_cursor={c}"),
            None => break,
        }
        assert!(signals < 100, "paging does not end");
    }
    let all = srv.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(signals, all["signals"].as_array().unwrap().len());
    assert!(signals >= 2, "{all}");
    let first = srv.get(&format!("/api/v1/incidents/{id}?limit=1")).await;
    let cursor = first["next_cursor"].as_i64().unwrap();
    let second = srv
        .get(&format!("/api/v1/incidents/{id}?limit=1&cursor={cursor}"))
        .await;
    assert!(second["events"][0]["seq"].as_i64().unwrap() > cursor);
    srv.stop().await;
}
