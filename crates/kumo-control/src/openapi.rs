//! The OpenAPI document, generated from the handlers' annotations. It is checked in at
//! `openapi/kumo.json`; a test fails when it differs from what the code generates
//! (regenerate with `kumod openapi > openapi/kumo.json`).

use crate::http::{access_keys, buckets, floating_ips, placement_groups, security_groups, ssh_keys, vpcs, zones};
use crate::http::{
    audit, backups, billing, events, hosts, images, instance_types, instances, login, members, metrics, projects,
    quotas, snapshots, system, tokens, users, volumes,
};
use crate::App;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Kumo API", version = "1", description = "The Kumo IaaS cloud. Every call but `POST /v1/login` needs `Authorization: Bearer <token>`."),
    components(schemas(kumo_types::ErrorCode, kumo_types::InstanceState, kumo_types::ImageBoot, kumo_types::SortBy, kumo_types::VolumeState, kumo_types::HostState, kumo_types::HostRole, kumo_types::PlacementPolicy)),
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
        .routes(routes!(instances::instance_migrate))
        .routes(routes!(instances::instance_serial_console))
        .routes(routes!(metrics::instance_metrics))
        .routes(routes!(events::event_list))
        .routes(routes!(events::event_stream))
        .routes(routes!(hosts::host_list))
        .routes(routes!(hosts::host_view, hosts::host_delete))
        .routes(routes!(hosts::host_cordon))
        .routes(routes!(hosts::host_uncordon))
        .routes(routes!(hosts::host_labels_set))
        .routes(routes!(hosts::host_drain))
        .routes(routes!(hosts::join_token_create))
        .routes(routes!(zones::zone_list, zones::zone_create))
        .routes(routes!(zones::zone_view))
        .routes(routes!(placement_groups::placement_group_list, placement_groups::placement_group_create))
        .routes(routes!(placement_groups::placement_group_view, placement_groups::placement_group_delete))
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
        .routes(routes!(access_keys::access_key_list, access_keys::access_key_create))
        .routes(routes!(access_keys::access_key_view, access_keys::access_key_delete))
        .routes(routes!(buckets::bucket_list, buckets::bucket_create))
        .routes(routes!(buckets::bucket_view, buckets::bucket_update, buckets::bucket_delete))
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
    complete(&mut doc);
    doc
}

/// The error answers every operation can give, whatever its handler does, with what causes them.
/// `complete` adds them (with the [`kumo_types::ErrorBody`] schema) to every operation that does
/// not list them already; the handlers' annotations list only their own ones (409, 507, …).
const COMMON_ERRORS: [(&str, &str); 5] = [
    ("400", "InvalidValue: a parameter or the body is malformed, out of range, or names something that does not exist"),
    ("401", "Unauthenticated: no, an expired or an unknown bearer token"),
    ("403", "Forbidden (the caller's role or token may not do this) or QuotaExceeded"),
    ("404", "NotFound: the resource, or the project it is in, does not exist or the caller may not see it"),
    ("500", "Internal: a bug or an unexpected failure; the server log has details under the request id"),
];

/// What the public login answers besides its own statuses.
const LOGIN_ERRORS: [(&str, &str); 3] = [
    ("400", "InvalidValue: the body is malformed"),
    ("429", "TooManyRequests: too many failed logins; retry after the Retry-After header's seconds"),
    ("500", "Internal: a bug or an unexpected failure; the server log has details under the request id"),
];

/// What an error status means, for the responses the handlers list without a description.
fn describe(status: &str) -> Option<&'static str> {
    let mut all = COMMON_ERRORS.iter().chain(LOGIN_ERRORS.iter()).chain(std::iter::once(&PAYLOAD_TOO_LARGE));
    let d = match status {
        "409" => {
            "ObjectAlreadyExists (the name is taken) or InvalidState (the resource's current state does not allow it)"
        }
        "507" => {
            "InsufficientCapacity: no host (or address pool, or network zone) has room; the message names what is short"
        }
        s => all.find(|(c, _)| *c == s)?.1,
    };
    Some(d)
}

const PAYLOAD_TOO_LARGE: (&str, &str) = ("413", "PayloadTooLarge: the request body is larger than the server takes");

/// Makes the document tell every answer the server can give: the common error responses (see
/// [`COMMON_ERRORS`]); 404 only where a path or query parameter names something; 413 where there
/// is a request body. Path parameters without a pattern are `{name-or-id}` selectors and get
/// [`kumo_types::name::NAME_OR_ID_PATTERN`].
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            let params = op.parameters.get_or_insert_with(Vec::new);
            for p in params.iter_mut().filter(|p| p.parameter_in == ParameterIn::Path) {
                if let Some(RefOr::T(Schema::Object(o))) = &mut p.schema {
                    if o.pattern.is_none() {
                        o.pattern = Some(kumo_types::name::NAME_OR_ID_PATTERN.to_string());
                    }
                }
            }
            let names_something = params.iter().any(|p| {
                p.parameter_in == ParameterIn::Path
                    || matches!(&p.schema, Some(RefOr::T(Schema::Object(o)))
                        if o.pattern.as_deref() == Some(kumo_types::name::NAME_OR_ID_PATTERN))
            });
            if params.is_empty() {
                op.parameters = None;
            }
            let mut add: Vec<(&str, &str)> = if path == "/v1/login" {
                LOGIN_ERRORS.to_vec()
            } else {
                COMMON_ERRORS.iter().copied().filter(|(s, _)| *s != "404" || names_something).collect()
            };
            if op.request_body.is_some() {
                add.push(PAYLOAD_TOO_LARGE);
            }
            for (status, description) in add {
                op.responses.responses.entry(status.to_string()).or_insert_with(|| error(description));
            }
            // The handlers' own error answers, described once here.
            for (status, response) in op.responses.responses.iter_mut() {
                if let (RefOr::T(r), Some(d)) = (response, describe(status)) {
                    if r.description.is_empty() {
                        r.description = d.to_string();
                    }
                }
            }
        }
    }
}

/// The document as pretty JSON (what `openapi/kumo.json` holds).
pub fn document_json() -> String {
    let doc = document();
    let mut s = doc.to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}
