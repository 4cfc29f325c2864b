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

/// The interactive API reference page: renders `/api/openapi.json` and lets
/// the reader try each operation with their token.
pub const REFERENCE_PAGE: &str = include_str!("../assets/reference.html");
