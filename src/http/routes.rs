//! Every HTTP route, listed once in [`table`]: its handler, whose
//! `#[utoipa::path]` gives the method, the path and the answers, and who
//! may call it. The router ([`router`]) and the OpenAPI document
//! ([`openapi`]) are both built from that list, so neither has a route the
//! other lacks; what the route layers add (credentials, body limits, the
//! in-flight limit) is written into the document from the same [`Access`].
//!
//! To add a route: annotate its handler with `#[utoipa::path(...)]`
//! (method, path, parameters, body, the answers the handler itself gives)
//! and add one line to [`table`] with its [`Part`] and [`Access`]; then
//! run `dr-reactor schema openapi > schema/openapi.json`.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, ResponseBuilder,
};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use super::{
    AppState, api, auth, console, drill, incidents, kill_switch, operator, report, serve, silences,
    slack, webhook,
};

/// Operator request bodies (a vote) are a few hundred bytes.
const OPERATOR_BODY_MAX: usize = 64 << 10;
/// Slack's interaction payloads carry the whole message they came from.
const SLACK_BODY_MAX: usize = 1 << 20;
/// Console form bodies (a reason, a token) are tiny.
const FORM_BODY_MAX: usize = 16 << 10;

/// Who may call a route. Checked by a route layer, before the handler's
/// extractors run and before any body is read, so a caller without
/// credentials learns nothing from how its body would have been parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, readiness and metrics: no credentials (`/readyz` checks an
    /// optional read token itself), and outside the in-flight limit, so an
    /// overloaded replica still answers its probes.
    Probe,
    /// No credentials: the OpenAPI document (it holds no data) and the
    /// console's sign-in form (which checks the token it is sent).
    Open,
    /// Alertmanager: the webhook's bearer token or basic auth.
    Webhook,
    /// The admin token.
    Admin,
    /// A person's own token (`api.users`), or the admin token as
    /// break-glass; the handler learns which.
    Operator,
    /// A read token, or the admin token.
    Read,
    /// Slack's request signature, checked by the handler on the body.
    Slack,
    /// The console's viewer: a session cookie, a bearer token or the
    /// trusted auth proxy's header.
    Console,
}

/// Where a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Api,
    /// Only with `console.enabled`.
    Console,
    /// On the API's listener unless `server.metrics_listen` is set, and on
    /// that listener then.
    Metrics,
}

/// One route: where it is served, who may call it, and its handler with
/// its documentation.
pub struct Route {
    pub part: Part,
    pub access: Access,
    handler: UtoipaMethodRouter<Arc<AppState>>,
}

impl Route {
    /// The path and the method (one per route), as the handler's
    /// `#[utoipa::path]` says.
    pub fn endpoint(&self) -> (String, axum::http::Method) {
        let mut paths = self.handler.1.paths.clone();
        let Some((path, mut item)) = paths.pop_first() else {
            unreachable!("routes! registers one path per handler")
        };
        let method = match operations(&mut item).as_slice() {
            [(m, _)] => m.clone(),
            _ => unreachable!("a handler's #[utoipa::path] names one method"),
        };
        (path, method)
    }
}

fn route(part: Part, access: Access, handler: UtoipaMethodRouter<Arc<AppState>>) -> Route {
    Route {
        part,
        access,
        handler,
    }
}

/// Every route, once.
pub fn table() -> Vec<Route> {
    use Access::*;
    use Part::{Api, Console as Page, Metrics};
    vec![
        route(Api, Webhook, routes!(webhook::alertmanager)),
        route(Api, Operator, routes!(api::reload)),
        route(Api, Operator, routes!(kill_switch::put)),
        route(Api, Read, routes!(kill_switch::get)),
        route(Api, Operator, routes!(api::approve)),
        route(Api, Operator, routes!(api::deny)),
        route(Api, Operator, routes!(api::abort)),
        route(Api, Operator, routes!(operator::retry)),
        route(Api, Operator, routes!(operator::declare)),
        route(Api, Operator, routes!(drill::start)),
        route(Api, Operator, routes!(silences::create)),
        route(Api, Operator, routes!(silences::expire)),
        route(Api, Read, routes!(incidents::list_incidents)),
        route(Api, Read, routes!(incidents::get_incident)),
        route(Api, Read, routes!(report::get)),
        route(Api, Read, routes!(silences::list)),
        route(Api, Slack, routes!(api::slack_interaction)),
        route(Api, Slack, routes!(slack::command)),
        route(Api, Open, routes!(openapi_json)),
        route(Api, Probe, routes!(api::healthz)),
        route(Api, Probe, routes!(api::readyz)),
        route(Metrics, Probe, routes!(api::metrics)),
        route(Page, Console, routes!(console::incidents::list)),
        route(Page, Console, routes!(console::incidents::show)),
        route(Page, Console, routes!(console::incidents::act)),
        route(Page, Console, routes!(console::overview::catalogue)),
        route(Page, Console, routes!(console::overview::rules)),
        route(Page, Console, routes!(console::overview::health)),
        route(Page, Console, routes!(console::sign_out)),
        route(Page, Open, routes!(console::sign_in)),
    ]
}

/// The API's router: every route of [`table`] this replica serves, each
/// behind its access check, then its body read within its time and size
/// limits. Work routes share one in-flight limit, past which they answer
/// 503 at once.
pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    // One semaphore for every limited route (a plain concurrency limit
    // would give each route its own).
    let in_flight = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            move |e: tower::BoxError| {
                let r = serve::overloaded(&metrics, &e);
                async move { r }
            },
        ))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.server.max_in_flight,
        ));
    let mut app = Router::new();
    for r in table() {
        let served = match r.part {
            Part::Api => true,
            Part::Console => state.console.enabled,
            Part::Metrics => state.server.metrics_listen.is_none(),
        };
        if !served {
            continue;
        }
        let (path, method) = r.endpoint();
        let mut handler = guarded(&state, r.access, &method, r.handler.2);
        if r.access != Access::Probe {
            handler = handler.route_layer(in_flight.clone());
        }
        app = app.route(&path, handler);
    }
    app.layer(middleware::from_fn(console::security_headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::observe,
        ))
        .with_state(state)
}

/// `/metrics` alone, for `server.metrics_listen`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    let mut app = Router::new();
    for r in table().into_iter().filter(|r| r.part == Part::Metrics) {
        let (path, _) = r.endpoint();
        app = app.route(&path, r.handler.2);
    }
    app.with_state(state)
}

/// `handler` behind `access`'s check and, for a method with a body, the
/// body limit of its kind (route layers run last-added first).
fn guarded(
    state: &Arc<AppState>,
    access: Access,
    method: &axum::http::Method,
    handler: MethodRouter<Arc<AppState>>,
) -> MethodRouter<Arc<AppState>> {
    // Added first, so it runs after the access check: an unauthenticated
    // caller learns nothing of how its parameters would have been judged.
    let handler = handler.route_layer(middleware::from_fn(super::params::checked));
    let limit = match access {
        Access::Webhook => state.webhook.max_body_bytes,
        Access::Slack => SLACK_BODY_MAX,
        Access::Admin | Access::Operator => OPERATOR_BODY_MAX,
        Access::Probe | Access::Open | Access::Read | Access::Console => FORM_BODY_MAX,
    };
    let handler = if *method == axum::http::Method::GET {
        handler
    } else {
        handler.route_layer(middleware::from_fn_with_state(
            (state.clone(), limit),
            serve::read_body,
        ))
    };
    let s = state.clone();
    match access {
        Access::Probe | Access::Open | Access::Slack => handler,
        Access::Webhook => handler
            .route_layer(middleware::from_fn_with_state(s, auth::webhook_auth))
            .layer(axum::extract::DefaultBodyLimit::max(
                state.webhook.max_body_bytes,
            )),
        Access::Admin => {
            handler.route_layer(middleware::from_fn_with_state(s, auth::require_admin))
        }
        Access::Operator => {
            handler.route_layer(middleware::from_fn_with_state(s, auth::require_operator))
        }
        Access::Read => handler.route_layer(middleware::from_fn_with_state(s, auth::require_read)),
        Access::Console => handler.route_layer(middleware::from_fn_with_state(
            s,
            console::session::require_viewer,
        )),
    }
}

/// The OpenAPI 3.1 document of [`table`]: each handler's own, with what
/// its [`Access`] adds (who may call, and the refusals the layers give).
pub fn openapi() -> OpenApi {
    let mut paths = utoipa::openapi::path::Paths::new();
    let mut schemas = Vec::new();
    for r in table() {
        let (mut found, mut item_paths, _) = r.handler;
        for item in item_paths.paths.values_mut() {
            for (method, op) in operations(item) {
                layered(op, r.access, method != axum::http::Method::GET);
            }
        }
        paths.merge(item_paths);
        schemas.append(&mut found);
    }
    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    schemas.dedup_by(|a, b| a.0 == b.0);
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme("webhook_token", bearer("The webhook's `bearer_token`"))
        .security_scheme(
            "webhook_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("The webhook's `basic_auth`"))
                    .build(),
            ),
        )
        .security_scheme("admin_token", bearer("`api.admin_token`: break-glass"))
        .security_scheme(
            "user_token",
            bearer("A person's own token from `api.users`"),
        )
        .security_scheme("read_token", bearer("One of `api.read_tokens`"))
        .security_scheme(
            "slack_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Slack-Signature",
                "Slack's request signature over `X-Slack-Request-Timestamp` and the body",
            ))),
        )
        .security_scheme(
            "console_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "drr_session",
                "The token the console's sign-in form keeps (a read or a person's token)",
            ))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("dr-reactor")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Alerts and events in, approved recovery plans out. Every route of the \
                     service, generated from its route table (`src/http/routes.rs`).",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description))
            .build(),
    )
}

/// Each operation of `item` with its method.
fn operations(item: &mut PathItem) -> Vec<(axum::http::Method, &mut Operation)> {
    use axum::http::Method;
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::PATCH, &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
    .collect()
}

/// What `access`'s layers add to an operation: who may call it, and the
/// answers they give before the handler runs (unless the handler's own
/// documentation already says more about that status).
fn layered(op: &mut Operation, access: Access, has_body: bool) {
    let any = |names: &[&str]| -> Vec<SecurityRequirement> {
        names
            .iter()
            .map(|n| SecurityRequirement::new::<_, [&str; 0], &str>(*n, []))
            .collect()
    };
    let (security, refusals): (Option<Vec<SecurityRequirement>>, &[(&str, &str)]) = match access {
        Access::Probe | Access::Open => (None, &[]),
        Access::Webhook => (
            Some(any(&["webhook_token", "webhook_basic"])),
            &[("401", "No credentials, or wrong ones")],
        ),
        Access::Admin => (
            Some(any(&["admin_token"])),
            &[
                (
                    "401",
                    "No token, not the admin token, or one expired or removed",
                ),
                (
                    "403",
                    "The operator API is disabled (no admin token configured)",
                ),
            ],
        ),
        Access::Operator => (
            Some(any(&["user_token", "admin_token"])),
            &[
                ("401", "No token, an unknown one, or one expired or removed"),
                (
                    "403",
                    "The operator API is disabled (no admin token nor users)",
                ),
            ],
        ),
        Access::Read => (
            Some(any(&["read_token", "user_token", "admin_token"])),
            &[
                ("401", "No token, an unknown one, or one expired or removed"),
                (
                    "403",
                    "Reading is disabled (no token of any kind configured)",
                ),
            ],
        ),
        Access::Slack => (
            Some(any(&["slack_signature"])),
            &[("401", "A bad or stale signature, or a replayed request")],
        ),
        Access::Console => (
            Some(any(&[
                "console_session",
                "read_token",
                "user_token",
                "admin_token",
            ])),
            &[],
        ),
    };
    if security.is_some() {
        op.security = security;
    }
    let mut answers: Vec<(&str, &str)> = refusals.to_vec();
    if has_body {
        answers.push(("408", "The body did not arrive in time"));
        answers.push(("413", "The body is larger than the route's limit"));
    }
    if access != Access::Probe {
        answers.push((
            "503",
            "Overloaded (`Retry-After: 1`), or the store is unavailable",
        ));
    }
    if access == Access::Console {
        let page = ResponseBuilder::new()
            .description("Not signed in: the sign-in page")
            .content(
                "text/html",
                ContentBuilder::new()
                    .schema(Some(Schema::Object(
                        ObjectBuilder::new().schema_type(Type::String).build(),
                    )))
                    .build(),
            )
            .build();
        op.responses
            .responses
            .entry("401".into())
            .or_insert(page.into());
    }
    for (status, description) in answers {
        let refusal = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        op.responses
            .responses
            .entry(status.into())
            .or_insert(refusal.into());
    }
}

/// The document as served and shipped (`schema/openapi.json`): pretty
/// JSON with a trailing newline, built once.
pub static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    // A document of plain maps and strings always serialises.
    let mut text = openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
});

/// This document. It holds no data, so it needs no credentials.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", body = serde_json::Value)))]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
}
