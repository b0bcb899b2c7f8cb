//! `/v1/vpcs` and `/v1/vpc-subnets`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::vpcs;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, ResultsPage, SubnetCreate, SubnetView, VpcCreate, VpcView};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// The selectors of subnet operations.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubnetSelector {
    /// Project name or id.
    #[param(
        required = true,
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub project: Option<String>,
    /// VPC name or id (the server lets a subnet given by id go without it; the document asks for it always).
    #[param(
        required = true,
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub vpc: Option<String>,
}

/// List a project's VPCs
#[utoipa::path(get, path = "/v1/vpcs", tag = "vpcs", operation_id = "vpc_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<VpcView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn vpc_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<VpcView>>> {
    Ok(Json(vpcs::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create a VPC
#[utoipa::path(post, path = "/v1/vpcs", tag = "vpcs", operation_id = "vpc_create",
    params(ProjectSelector), request_body = VpcCreate,
    responses((status = 201, body = VpcView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn vpc_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<VpcCreate>,
) -> ApiResult<(StatusCode, Json<VpcView>)> {
    Ok((StatusCode::CREATED, Json(vpcs::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a VPC
#[utoipa::path(get, path = "/v1/vpcs/{vpc}", tag = "vpcs", operation_id = "vpc_view",
    params(("vpc" = String, Path, description = "Vpc name or id"), ProjectSelector),
    responses((status = 200, body = VpcView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn vpc_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<VpcView>> {
    Ok(Json(vpcs::view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Delete a VPC
#[utoipa::path(delete, path = "/v1/vpcs/{vpc}", tag = "vpcs", operation_id = "vpc_delete",
    params(("vpc" = String, Path, description = "Vpc name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn vpc_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    vpcs::delete(&app, &ctx, sel.project.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List a project's subnets
#[utoipa::path(get, path = "/v1/vpc-subnets", tag = "vpcs", operation_id = "vpc_subnet_list",
    params(SubnetSelector, PageParams),
    responses((status = 200, body = ResultsPage<SubnetView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn vpc_subnet_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<SubnetSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<SubnetView>>> {
    Ok(Json(vpcs::subnet_list(&app, &ctx, sel.project.as_deref(), sel.vpc.as_deref(), &page(&p)?).await?))
}

/// Create a subnet
#[utoipa::path(post, path = "/v1/vpc-subnets", tag = "vpcs", operation_id = "vpc_subnet_create",
    params(SubnetSelector), request_body = SubnetCreate,
    responses((status = 201, body = SubnetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn vpc_subnet_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<SubnetSelector>,
    ApiJson(body): ApiJson<SubnetCreate>,
) -> ApiResult<(StatusCode, Json<SubnetView>)> {
    Ok((
        StatusCode::CREATED,
        Json(vpcs::subnet_create(&app, &ctx, sel.project.as_deref(), sel.vpc.as_deref(), &body).await?),
    ))
}

/// View a subnet
#[utoipa::path(get, path = "/v1/vpc-subnets/{subnet}", tag = "vpcs", operation_id = "vpc_subnet_view",
    params(("subnet" = String, Path, description = "Subnet name or id"), SubnetSelector),
    responses((status = 200, body = SubnetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn vpc_subnet_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<SubnetSelector>,
) -> ApiResult<Json<SubnetView>> {
    Ok(Json(vpcs::subnet_view(&app, &ctx, sel.project.as_deref(), sel.vpc.as_deref(), &name).await?))
}

/// Delete a subnet
#[utoipa::path(delete, path = "/v1/vpc-subnets/{subnet}", tag = "vpcs", operation_id = "vpc_subnet_delete",
    params(("subnet" = String, Path, description = "Subnet name or id"), SubnetSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn vpc_subnet_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<SubnetSelector>,
) -> ApiResult<StatusCode> {
    vpcs::subnet_delete(&app, &ctx, sel.project.as_deref(), sel.vpc.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
