//! The OpenAPI document's frame (info, security, tags) and the reference page.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Info, tags and the bearer scheme; the paths come from the route table.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tributary API",
        description = "REST API of Tributary, the IoT telemetry platform. Errors are application/problem+json (RFC 9457). Authenticate with `Authorization: Bearer <access token or API key>`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Login, sessions, invitations, password"),
        (name = "tenants", description = "Tenants and membership"),
        (name = "members", description = "Users of a tenant and invitations"),
        (name = "api-keys", description = "API keys"),
        (name = "devices", description = "Devices and their credentials"),
        (name = "groups", description = "Device groups"),
        (name = "profiles", description = "Device profiles: the telemetry key schema"),
        (name = "attributes", description = "Device attributes (client, server, shared)"),
        (name = "telemetry", description = "Telemetry queries and the live feed"),
        (name = "device-api", description = "ThingsBoard-compatible device API (authenticated by the device token in the path)"),
        (name = "line-protocol", description = "InfluxDB line-protocol writes (v1 and v2 APIs), for Telegraf and InfluxDB client libraries; authenticated by an API key"),
        (name = "audit", description = "Audit log"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from /api/v1/auth/login, or an API key (trb_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every operation of the document.
pub fn operations_mut(
    doc: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}

/// Makes the document's errors what the server sends: every 4xx/5xx body
/// is `application/problem+json`, and every operation with a JSON body
/// declares the 413 and 415 that body can earn.
pub fn error_contract(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{SchemaType, Type};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
    const JSON: &str = "application/json";
    const PROBLEM: &str = "application/problem+json";
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    PROBLEM,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ApiError")))
                        .build(),
                )
                .build(),
        )
    };
    for op in operations_mut(doc) {
        // A parameter in a path, query or header is absent or a string,
        // never JSON null: an `Option` field says only "not required".
        for param in op.parameters.iter_mut().flatten() {
            if let Some(RefOr::T(Schema::Object(o))) = &mut param.schema {
                if let SchemaType::Array(types) = &o.schema_type {
                    let types: Vec<Type> = types
                        .iter()
                        .filter(|t| **t != Type::Null)
                        .cloned()
                        .collect();
                    if let [one] = types.as_slice() {
                        o.schema_type = SchemaType::Type(one.clone());
                    }
                }
            }
        }
        for (status, response) in op.responses.responses.iter_mut() {
            let RefOr::T(r) = response else { continue };
            if status.starts_with(['4', '5']) {
                if let Some(content) = r.content.shift_remove(JSON) {
                    r.content.insert(PROBLEM.into(), content);
                }
            }
        }
        let json_body = op
            .request_body
            .as_ref()
            .is_some_and(|b| b.content.contains_key(JSON));
        if json_body {
            let responses = &mut op.responses.responses;
            responses
                .entry("413".into())
                .or_insert_with(|| problem("the body is larger than http_max_body_bytes"));
            responses
                .entry("415".into())
                .or_insert_with(|| problem("the body is not sent as application/json"));
        }
    }
}

/// The interactive API reference page: renders `/api/openapi.json` and lets
/// the reader try each operation with their token.
pub const REFERENCE_PAGE: &str = include_str!("../assets/reference.html");
