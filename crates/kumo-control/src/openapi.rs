//! The OpenAPI document, generated from the handlers' annotations. It is checked in at
//! `openapi/kumo.json`; a test fails when it differs from what the code generates
//! (regenerate with `kumod openapi > openapi/kumo.json`).

use crate::http::{
    audit, backups, billing, events, hosts, images, instance_types, instances, login, members, metrics, projects,
    quotas, snapshots, system, tokens, users, volumes,
};
use crate::http::{floating_ips, security_groups, ssh_keys, vpcs};
use crate::App;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Kumo API", version = "1", description = "The Kumo IaaS cloud. Every call but `POST /v1/login` needs `Authorization: Bearer <token>`."),
    components(schemas(kumo_types::ErrorCode, kumo_types::InstanceState, kumo_types::ImageBoot, kumo_types::SortBy, kumo_types::VolumeState)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every API route, with its OpenAPI description.
pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(projects::project_list, projects::project_create))
        .routes(routes!(projects::project_view, projects::project_delete))
        .routes(routes!(images::image_list))
        .routes(routes!(images::image_import))
        .routes(routes!(images::image_view, images::image_delete))
        .routes(routes!(instance_types::instance_type_list, instance_types::instance_type_create))
        .routes(routes!(instance_types::instance_type_view, instance_types::instance_type_delete))
        .routes(routes!(instances::instance_list, instances::instance_create))
        .routes(routes!(instances::instance_view, instances::instance_delete))
        .routes(routes!(instances::instance_start))
        .routes(routes!(instances::instance_stop))
        .routes(routes!(instances::instance_reboot))
        .routes(routes!(instances::instance_resize))
        .routes(routes!(instances::instance_serial_console))
        .routes(routes!(metrics::instance_metrics))
        .routes(routes!(events::event_list))
        .routes(routes!(events::event_stream))
        .routes(routes!(hosts::host_list))
        .routes(routes!(hosts::host_view))
        .routes(routes!(system::me_view))
        .routes(routes!(system::reconciler_list))
        .routes(routes!(users::user_list, users::user_create))
        .routes(routes!(users::user_view, users::user_delete))
        .routes(routes!(tokens::token_list, tokens::token_create))
        .routes(routes!(tokens::token_delete))
        .routes(routes!(members::member_list, members::member_add))
        .routes(routes!(members::member_remove))
        .routes(routes!(audit::audit_log_list))
        .routes(routes!(quotas::quota_view, quotas::quota_update))
        .routes(routes!(quotas::quota_list))
        .routes(routes!(billing::price_list, billing::price_update))
        .routes(routes!(billing::usage_view))
        .routes(routes!(billing::invoice_list))
        .routes(routes!(billing::invoice_view))
        .routes(routes!(billing::budget_view, billing::budget_update))
        .routes(routes!(volumes::volume_list, volumes::volume_create))
        .routes(routes!(volumes::volume_view, volumes::volume_delete))
        .routes(routes!(volumes::volume_attach))
        .routes(routes!(volumes::volume_detach))
        .routes(routes!(volumes::volume_resize))
        .routes(routes!(snapshots::snapshot_list, snapshots::snapshot_create))
        .routes(routes!(snapshots::snapshot_view, snapshots::snapshot_delete))
        .routes(routes!(backups::volume_backup_list, backups::volume_backup_create))
        .routes(routes!(backups::volume_backup_view, backups::volume_backup_delete))
        .routes(routes!(volumes::volume_io_limits_update))
        .routes(routes!(images::image_create))
        .routes(routes!(images::image_export))
        .routes(routes!(vpcs::vpc_list, vpcs::vpc_create))
        .routes(routes!(vpcs::vpc_view, vpcs::vpc_delete))
        .routes(routes!(vpcs::vpc_subnet_list, vpcs::vpc_subnet_create))
        .routes(routes!(vpcs::vpc_subnet_view, vpcs::vpc_subnet_delete))
        .routes(routes!(security_groups::security_group_list, security_groups::security_group_create))
        .routes(routes!(security_groups::security_group_view, security_groups::security_group_delete))
        .routes(routes!(security_groups::security_group_rules_view, security_groups::security_group_rules_update))
        .routes(routes!(ssh_keys::ssh_key_list, ssh_keys::ssh_key_create))
        .routes(routes!(ssh_keys::ssh_key_view, ssh_keys::ssh_key_delete))
        .routes(routes!(floating_ips::floating_ip_list, floating_ips::floating_ip_create))
        .routes(routes!(floating_ips::floating_ip_view, floating_ips::floating_ip_delete))
        .routes(routes!(floating_ips::floating_ip_attach))
        .routes(routes!(floating_ips::floating_ip_detach))
}

/// The routes that take no bearer token (login); served outside the authentication layer.
pub fn public_router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(login::session_create))
}

/// The whole document: every route of [`router`] and [`public_router`].
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = router().split_for_parts();
    let (_, public) = public_router().split_for_parts();
    doc.merge(public);
    doc
}

/// The document as pretty JSON (what `openapi/kumo.json` holds).
pub fn document_json() -> String {
    let doc = document();
    let mut s = doc.to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}
