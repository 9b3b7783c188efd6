//! Creating sessions: the one place a create request becomes the spec that
//! is stored — its template applied, its worktree made, its Claude home built.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiJson, ApiPath, AppState};
use crate::config::template::WorktreeRequest;
use crate::daemon::cluster::placement::Wants;
use crate::daemon::cluster::PlaceRefused;
use crate::daemon::worktree::{self, WorktreeError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_actors::{Profile, SessionInfo, SessionSpec};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The body of `POST /v1/sessions`: a session spec, optionally from a template and in a worktree.
// The OpenAPI schema of the body. The handler reads the body as JSON first,
// to tell the fields a request gives from those it leaves to the template.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSession {
    /// The session's own fields; they override the template's.
    #[serde(flatten)]
    pub spec: SessionSpec,
    /// A `[templates.NAME]` of the daemon's config to start from.
    #[serde(default)]
    pub template: Option<String>,
    /// Run in a new git worktree of the repository at `cwd`: `true` on a new
    /// branch `herd/<name or short id>`, or a branch name (checked out if it
    /// exists, else made from HEAD).
    #[serde(default)]
    pub worktree: Option<WorktreeRequest>,
    /// In a cluster: the node to start on, or labels the node must carry
    /// (else the least-loaded node that fits).
    #[serde(default)]
    pub placement: Option<Wants>,
}

/// `POST /v1/sessions`
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    summary = "Start a session",
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created", body = SessionInfo),
        (status = 400, description = "Invalid spec, unknown template or a worktree git refuses; the message names the field", body = ErrorBody),
        (status = 409, description = "The worktree's branch is checked out in another worktree", body = ErrorBody),
        (status = 413, description = "Body larger than server.body_limit", body = ErrorBody),
        (status = 429, description = "max_sessions live sessions already", body = ErrorBody),
        (status = 503, description = "The store cannot take the write; nothing was changed", body = ErrorBody),
        (status = 507, description = "The data dir's disk is full; nothing was changed", body = ErrorBody),
    )
)]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let Value::Object(body) = body else {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    };
    create_from(app, body, &headers).await
}

/// `POST /v1/projects/{project}/sessions`
#[utoipa::path(
    post,
    path = "/v1/projects/{project}/sessions",
    tag = "sessions",
    summary = "Start a session within a project",
    params(("project" = String, Path, description = "Project id")),
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created", body = SessionInfo),
        (status = 400, description = "Invalid spec, unknown template, a worktree git refuses, or project_id differs from the path", body = ErrorBody),
        (status = 409, description = "The worktree's branch is checked out in another worktree", body = ErrorBody),
        (status = 413, description = "Body larger than server.body_limit", body = ErrorBody),
        (status = 429, description = "max_sessions live sessions already", body = ErrorBody),
        (status = 503, description = "The store cannot take the write; nothing was changed", body = ErrorBody),
        (status = 507, description = "The data dir's disk is full; nothing was changed", body = ErrorBody),
    )
)]
pub async fn create_in_project(
    State(app): State<AppState>,
    ApiPath(project): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    };
    match body.get("project_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if *p == project => {}
        Some(p) => {
            return Err(ApiError::invalid(
                "project_id",
                format!("{p} differs from the project in the path, {project:?}"),
            ))
        }
    }
    body.insert("project_id".into(), Value::String(project));
    create_from(app, body, &headers).await
}

/// Places the session: here, or forwarded to the node placement picks.
async fn create_from(
    app: AppState,
    mut body: Map<String, Value>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let wants: Wants = match body.remove("placement") {
        None | Some(Value::Null) => Wants::default(),
        Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "placement".to_string()
            } else {
                format!("placement.{path}")
            };
            ApiError::invalid(&field, e.into_inner())
        })?,
    };
    let forwarded = headers.contains_key(crate::daemon::cluster::FORWARDED_HEADER);
    match app.cluster.place(&wants, forwarded).await {
        Ok(None) => {}
        Ok(Some(node)) => return forward_create(&app, &node, body, wants).await,
        Err(e @ PlaceRefused::NoRoom(_)) => {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "no_room",
                message: e.to_string(),
            })
        }
        Err(e @ PlaceRefused::Unavailable(_)) => {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "cluster_unavailable",
                message: e.to_string(),
            })
        }
    }
    let (status, info) = create_here(app, body, wants).await?;
    Ok((status, info).into_response())
}

/// Applies the template, reads the spec, makes the worktree, starts the
/// session and records it in the cluster; undoes it all if refused.
async fn create_here(
    app: AppState,
    mut body: Map<String, Value>,
    wants: Wants,
) -> ApiResult<(StatusCode, Json<SessionInfo>)> {
    match body.remove("template") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => {
            let Some(t) = app.templates.get(&name) else {
                let known: Vec<&str> = app.templates.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none is configured (add [templates.NAME] to the config)".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                return Err(ApiError::invalid(
                    "template",
                    format!("{name:?} is not a template; {known}"),
                ));
            };
            t.apply(&mut body)
                .map_err(|e| ApiError::invalid("template", e))?;
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "template",
                format!("{other}: expected a template name"),
            ))
        }
    }
    let wanted = match body.remove("worktree") {
        None | Some(Value::Null) => None,
        Some(v) => serde_json::from_value::<WorktreeRequest>(v.clone())
            .map_err(|_| {
                ApiError::invalid(
                    "worktree",
                    format!("{v}: expected true, false or a branch name"),
                )
            })?
            .branch()
            .map(|b| b.map(str::to_string)),
    };
    let mut spec: SessionSpec =
        serde_path_to_error::deserialize(Value::Object(body)).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                ApiError::invalid("body", e.into_inner())
            } else {
                ApiError::invalid("body", format!("{path}: {}", e.into_inner()))
            }
        })?;
    let id = uuid::Uuid::new_v4();
    let made = match wanted {
        None => None,
        Some(branch) => Some(make_worktree(&app, &mut spec, id, branch.as_deref()).await?),
    };
    let requested = spec.clone();
    let result = match app.claude.prepare(&mut spec, id) {
        Ok(()) => app.registry.create_with_id(spec, Some(id)).await,
        Err(e) => Err(e),
    };
    let undo = |app: AppState| async move {
        app.claude.discard(id);
        if let Some(w) = &made {
            worktree::undo(w).await;
        }
    };
    let mut info = match result {
        Ok(info) => info,
        Err(e) => {
            undo(app).await;
            return Err(e.into());
        }
    };
    // Acknowledged only once the cluster knows it too: a session etcd never
    // heard of could not fail over.
    if let Err(e) = app.cluster.record_created(id, requested, wants).await {
        let _ = app.registry.stop(id, true).await;
        crate::daemon::cluster::wait_removed(&app.registry, id).await;
        undo(app).await;
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "cluster_unavailable",
            message: format!("the session was not created: the cluster cannot record it ({e})"),
        });
    }
    info.node = app.cluster.node_name().map(str::to_string);
    Ok((StatusCode::CREATED, Json(info)))
}

/// Sends the create to the node placement picked, with the placement made
/// explicit (so it does not place again), and passes its answer back.
async fn forward_create(
    app: &AppState,
    node: &crate::daemon::cluster::info::NodeRecord,
    mut body: Map<String, Value>,
    mut wants: Wants,
) -> ApiResult<Response> {
    wants.node = Some(node.node.clone());
    body.insert(
        "placement".into(),
        serde_json::to_value(&wants).unwrap_or(Value::Null),
    );
    app.cluster
        .forward_json(
            node,
            axum::http::Method::POST,
            "/v1/sessions",
            &Value::Object(body),
        )
        .await
        .map_err(|e| ApiError {
            status: StatusCode::BAD_GATEWAY,
            code: "node_unreachable",
            message: e,
        })
}

/// Makes the session's worktree and moves its cwd into it.
async fn make_worktree(
    app: &AppState,
    spec: &mut SessionSpec,
    id: uuid::Uuid,
    branch: Option<&str>,
) -> ApiResult<herd_actors::Worktree> {
    let Some(cwd) = spec.cwd.clone() else {
        return Err(ApiError::invalid(
            "cwd",
            "a worktree session needs cwd: a directory in the git repository to branch from",
        ));
    };
    // Everything else about the spec is checked before git runs, so a bad
    // request leaves no worktree behind (the Claude profile builds its
    // command later and is checked then).
    if spec.profile != Profile::Claude {
        spec.validate()?;
    } else if !cwd.is_absolute() || !cwd.is_dir() {
        return Err(ApiError::invalid(
            "cwd",
            format!(
                "{:?} is not an absolute path to a directory",
                cwd.display().to_string()
            ),
        ));
    }
    let made = worktree::create(&app.data_dir, &cwd, branch, id, spec.name.as_deref())
        .await
        .map_err(worktree_error)?;
    spec.cwd = Some(made.cwd);
    spec.worktree = Some(made.worktree.clone());
    Ok(made.worktree)
}

/// The API's answer to a git refusal: the request's fault is 400 (409 for
/// a branch in use), the machine's is 500.
fn worktree_error(e: WorktreeError) -> ApiError {
    match &e {
        WorktreeError::CheckedOut { .. } | WorktreeError::Gone { .. } => ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: e.to_string(),
        },
        WorktreeError::NotARepo { .. } => ApiError::invalid("cwd", e),
        _ if e.is_client_error() => ApiError::invalid("worktree", e),
        _ => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: e.to_string(),
        },
    }
}
