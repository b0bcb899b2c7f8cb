//! `/v1/security-groups`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::security_groups;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, ResultsPage, SecurityGroupCreate, SecurityGroupView, SecurityRules};
use std::sync::Arc;

/// Largest rule list body: room for the most rules a group may hold.
const RULES_BODY_MAX: usize = 1 << 20;

/// List a project's security groups
#[utoipa::path(get, path = "/v1/security-groups", tag = "security-groups", operation_id = "security_group_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<SecurityGroupView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn security_group_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<SecurityGroupView>>> {
    Ok(Json(security_groups::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create a security group
#[utoipa::path(post, path = "/v1/security-groups", tag = "security-groups", operation_id = "security_group_create",
    params(ProjectSelector), request_body = SecurityGroupCreate,
    responses((status = 201, body = SecurityGroupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn security_group_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<SecurityGroupCreate>,
) -> ApiResult<(StatusCode, Json<SecurityGroupView>)> {
    Ok((StatusCode::CREATED, Json(security_groups::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a security group
#[utoipa::path(get, path = "/v1/security-groups/{security_group}", tag = "security-groups", operation_id = "security_group_view",
    params(("security_group" = String, Path, description = "Security group name or id"), ProjectSelector),
    responses((status = 200, body = SecurityGroupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn security_group_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<SecurityGroupView>> {
    Ok(Json(security_groups::view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Delete a security group
#[utoipa::path(delete, path = "/v1/security-groups/{security_group}", tag = "security-groups", operation_id = "security_group_delete",
    params(("security_group" = String, Path, description = "Security group name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn security_group_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    security_groups::delete(&app, &ctx, sel.project.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List a security group's rules
#[utoipa::path(get, path = "/v1/security-groups/{security_group}/rules", tag = "security-groups",
    operation_id = "security_group_rules_view",
    params(("security_group" = String, Path, description = "Security group name or id"), ProjectSelector),
    responses((status = 200, body = SecurityRules), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn security_group_rules_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<SecurityRules>> {
    Ok(Json(security_groups::rules_view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Replace a security group's rules atomically; hosts apply them within a second
#[utoipa::path(put, path = "/v1/security-groups/{security_group}/rules", tag = "security-groups",
    operation_id = "security_group_rules_update",
    params(("security_group" = String, Path, description = "Security group name or id"), ProjectSelector),
    request_body = SecurityRules,
    responses((status = 200, body = SecurityRules), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn security_group_rules_update(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<SecurityRules, RULES_BODY_MAX>,
) -> ApiResult<Json<SecurityRules>> {
    Ok(Json(security_groups::rules_update(&app, &ctx, sel.project.as_deref(), &name, &body).await?))
}
