//! The OpenAPI 3 document, generated from the code: each handler's
//! `#[utoipa::path]` and the `ToSchema` derives of the types it takes and gives.
//!
//! The routes the router serves and the operations of the document come from
//! one list, [`super::routes`] (plus [`super::public_routes`]), built with
//! utoipa-axum's `routes!`: a route is registered from its annotation, so the
//! two cannot drift. Served at `GET /v1/openapi.json`.

use super::error::ErrorBody;
use axum::Json;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// Document-wide parts: info, tags, the bearer scheme, the error body.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "herd",
        description = "Supervisor for fleets of interactive sessions in pseudo-terminals. \
            Every route but /healthz and a session's hook route needs `Authorization: Bearer \
            <token>` (the token is in `<data dir>/token`). Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    tags(
        (name = "sessions", description = "Create, list, drive and stop sessions"),
        (name = "events", description = "State transitions of sessions"),
        (name = "daemon", description = "Health, statistics, metrics and this document"),
        (name = "cluster", description = "The nodes of a cluster coordinated by etcd"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme that [`ApiDoc`] requires.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token in `<data dir>/token`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "hook_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Herd-Hook-Token",
                "A Claude session's own hook secret (set in its environment by herd)",
            ))),
        );
    }
}

/// The document of every served route, built once, as served: JSON in which
/// every duration is a humantime string (see [`humantime_durations`]).
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = super::routes().into_openapi();
        add_unauthorized(&mut doc);
        doc.merge(super::public_routes().into_openapi());
        let mut json = serde_json::to_value(&doc).unwrap_or_default();
        humantime_durations(&mut json);
        json
    })
}

/// Rewrites every `{"secs": S, "nanos": N}` object into a humantime string.
///
/// utoipa fills a field's `default` from `Default::default()` serialized
/// with serde's plain `Duration` form, not the field's `humantime_serde`: the
/// schema then says `"type": "string"` and shows an object, which validators
/// reject and clients cannot send back. Walking the finished document catches
/// every such default, today's and any added later.
pub fn humantime_durations(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let is_duration = map.len() == 2
                && map.get("secs").is_some_and(Value::is_u64)
                && map.get("nanos").is_some_and(Value::is_u64);
            if is_duration {
                let secs = map.get("secs").and_then(Value::as_u64).unwrap_or(0);
                let nanos = map.get("nanos").and_then(Value::as_u64).unwrap_or(0);
                let d = std::time::Duration::new(secs, nanos as u32);
                *v = Value::String(humantime::format_duration(d).to_string());
                return;
            }
            map.values_mut().for_each(humantime_durations);
        }
        Value::Array(items) => items.iter_mut().for_each(humantime_durations),
        _ => {}
    }
}

/// Every operation of `doc` sits behind the token: each can answer 401.
fn add_unauthorized(doc: &mut Document) {
    let response = ResponseBuilder::new()
        .description("Missing or wrong `Authorization: Bearer <token>`")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            op.responses
                .responses
                .entry("401".into())
                .or_insert_with(|| response.clone().into());
        }
    }
}

/// `GET /v1/openapi.json`
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "daemon",
    summary = "This API's OpenAPI 3 document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = serde_json::Value))
)]
pub async fn openapi_json() -> Json<&'static serde_json::Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::api::{router, AppState};
    use herd_actors::{Registry, SessionDefaults};
    use reqwest::{Method, StatusCode};
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Instant;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// (METHOD, path) of every operation in the document.
    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(m).is_some() {
                    out.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn document_is_openapi_3_and_self_contained() {
        let doc = document().clone();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "SessionInfo",
            "SessionSpec",
            "SessionState",
            "Metrics",
            "Event",
            "ErrorBody",
            "RestartConfig",
            "LimitsConfig",
            "RestartOverrides",
            "LimitOverrides",
            "RestartPolicy",
            "ByteSize",
            "Stats",
        ] {
            assert!(schemas.contains_key(name), "no schema {name}");
        }
        // Every reference resolves.
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        // Humantime durations and RFC 3339 times are strings, byte sizes integers.
        let info = &schemas["SessionInfo"]["properties"];
        assert_eq!(info["created_at"]["type"], "string");
        assert_eq!(info["created_at"]["format"], "date-time");
        assert_eq!(
            schemas["RestartConfig"]["properties"]["backoff_max"]["type"],
            "string"
        );
        assert_eq!(schemas["ByteSize"]["type"], "integer");
        // Defaults are what the API takes: humantime strings, never {secs, nanos}.
        let limits = &schemas["LimitsConfig"]["properties"];
        assert_eq!(limits["idle_timeout"]["default"], "30m");
        assert_eq!(limits["quiet_after"]["default"], "500ms");
        assert_eq!(
            schemas["RestartConfig"]["properties"]["backoff_initial"]["default"],
            "100ms"
        );
        assert!(!text.contains("\"secs\""), "a duration left as an object");
        // Every operation but /healthz requires the token and documents the 401.
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.to_lowercase()];
            if path == "/healthz" {
                assert_eq!(op["security"], serde_json::json!([{}]), "{path}");
                continue;
            }
            if path == "/v1/sessions/{id}/hooks" {
                // A session's hooks carry its own secret instead.
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"hook_token": []}]),
                    "{path}"
                );
                assert!(op["responses"]["401"].is_object(), "{path}");
                continue;
            }
            assert!(
                op["security"].is_null(),
                "{method} {path} overrides security"
            );
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} lacks 401"
            );
        }
        assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    }

    /// Probes the real router: without a token every request but /healthz is
    /// 401 (no route can be mapped by a stranger); with it, a documented
    /// operation is served and any other method on a documented path is 405,
    /// so the router serves exactly the document.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn served_routes_match_the_document() {
        let registry = Registry::start(SessionDefaults::default()).await.unwrap();
        let state = AppState {
            registry: registry.clone(),
            token: Arc::new("secret".into()),
            started: Instant::now(),
            claude: Arc::new(crate::daemon::claude::ClaudeProfile::new(
                Default::default(),
                std::env::temp_dir(),
            )),
            data_dir: std::env::temp_dir(),
            store_health: Default::default(),
            notifier: crate::daemon::notify::Notifier::none().unwrap(),
            web: Arc::new(crate::daemon::web::WebAuth::new("secret", 0, false)),
            public_url: None,
            retention: crate::daemon::retention::Policy {
                max_age: std::time::Duration::from_secs(3600),
                keep: 10,
            },
            recordings: crate::daemon::recorder::Recordings::new(std::env::temp_dir(), None),
            idempotency: Default::default(),
            loopback_only: true,
            templates: Default::default(),
            worktrees: Default::default(),
            cluster: crate::daemon::cluster::Cluster::single("http://127.0.0.1:0".into(), 10),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router(state, 1 << 20, std::time::Duration::from_secs(30)),
            )
            .await
            .unwrap();
        });
        let doc = document().clone();
        let documented = operations(&doc);
        assert!(documented.len() >= 20, "{documented:?}");
        let paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
        let http = reqwest::Client::new();
        for path in &paths {
            // Any value passes the router; the token check comes first.
            let concrete: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
                let method = Method::from_bytes(m.as_bytes()).unwrap();
                let url = format!("http://{addr}{concrete}");
                let is_documented = documented.contains(&(m.to_string(), path.clone()));
                // A stranger learns nothing: 401 before any 404 or 405.
                let status = http
                    .request(method.clone(), &url)
                    .send()
                    .await
                    .unwrap()
                    .status();
                let expected = match (is_documented, path.as_str()) {
                    (true, "/healthz") => StatusCode::OK,
                    (false, "/healthz") => StatusCode::METHOD_NOT_ALLOWED,
                    _ => StatusCode::UNAUTHORIZED,
                };
                assert_eq!(status, expected, "{m} {path} without a token");
                // A session's hook route answers to the session's own secret,
                // not the API token.
                if path == "/healthz"
                    || (m == "POST" && path == "/v1/gc")
                    || path == "/v1/sessions/{id}/hooks"
                {
                    continue;
                }
                // With the token, the router serves exactly the document.
                let status = http
                    .request(method, &url)
                    .bearer_auth("secret")
                    .send()
                    .await
                    .unwrap()
                    .status();
                if is_documented {
                    assert!(
                        status != StatusCode::METHOD_NOT_ALLOWED
                            && status != StatusCode::UNAUTHORIZED,
                        "{m} {path}: {status}"
                    );
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
                }
            }
        }
        let probe = |token: Option<&'static str>| {
            let mut r = http.get(format!("http://{addr}/v1/no-such-route"));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        assert_eq!(
            probe(None).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            probe(Some("secret")).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        server.abort();
        registry.shutdown(std::time::Duration::from_secs(5)).await;
    }
}
