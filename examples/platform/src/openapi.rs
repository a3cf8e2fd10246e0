//! The gateway's public API as OpenAPI 3.1: the operations are listed here,
//! every body schema is generated from the Rust types the services decode
//! and encode (schemars, JSON Schema 2020-12, which OpenAPI 3.1 uses), and
//! every error answer is documented as `application/problem+json`.
//!
//! `GET /openapi.json` serves it, `GET /docs` a page that renders it (no
//! script from elsewhere).

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::services::notification::Notification;
use crate::services::order::{Order, PlaceOrder};
use crate::services::product::{NewProduct, Product, ProductChange, ProductPage};
use crate::services::user::{Login, LogoutBody, Refresh, Register, TokenResponse, User};

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<fn(&mut SchemaGenerator) -> Value>,
    ok: (u16, fn(&mut SchemaGenerator) -> Value),
    /// Other successes with the same body: (status, when).
    also_ok: &'static [(u16, &'static str)],
    /// Optional request headers: (name, what it does).
    headers: &'static [(&'static str, &'static str)],
    errors: &'static [(u16, &'static str)],
    params: &'static [(&'static str, &'static str, bool)],
    idempotent_key: bool,
    /// Needs `Authorization: Bearer <access token>` (401 without).
    auth: bool,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn list_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<Vec<T>>().to_value()
}

const COMMON_ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Malformed request (version, headers, query, JSON body)",
    ),
    (
        429,
        "Rate limited; see RateLimit, RateLimit-Policy and Retry-After",
    ),
    (502, "The service behind the gateway could not be reached"),
    (504, "The service behind the gateway did not answer in time"),
];

/// What an operation that needs a token can also answer.
const AUTH_ERRORS: &[(u16, &str)] = &[(
    401,
    "No token, or one that is invalid, expired or revoked (WWW-Authenticate: Bearer)",
)];

/// A token is optional there, but one that is sent must be valid.
const ANONYMOUS_ERRORS: &[(u16, &str)] = &[(401, "An invalid, expired or revoked token")];

/// What every operation with a JSON body can also answer.
const BODY_ERRORS: &[(u16, &str)] = &[
    (413, "Body larger than the service accepts"),
    (415, "Content-Type is not application/json"),
];

fn operations() -> Vec<Op> {
    vec![
        Op {
            method: "post",
            path: "/v1/users",
            summary: "Register a user",
            body: Some(schema::<Register>),
            ok: (201, schema::<User>),
            also_ok: &[],
            headers: &[],
            errors: &[
                (409, "Email already registered"),
                (422, "Invalid body (a pointer per violation)"),
            ],
            params: &[],
            idempotent_key: false,
            auth: false,
        },
        Op {
            method: "get",
            path: "/v1/users/{id}",
            summary: "Look a user up (yourself, or anyone for an admin)",
            body: None,
            ok: (200, schema::<User>),
            also_ok: &[],
            headers: &[],
            errors: &[(404, "No such user, or not yours")],
            params: &[("id", "path", true)],
            idempotent_key: false,
            auth: true,
        },
        Op {
            method: "get",
            path: "/v1/products",
            summary: "Browse the catalogue",
            body: None,
            ok: (200, schema::<ProductPage>),
            also_ok: &[],
            headers: &[],
            errors: &[],
            params: &[("page", "query", false), ("per_page", "query", false)],
            idempotent_key: false,
            auth: false,
        },
        Op {
            method: "get",
            path: "/v1/products/{sku}",
            summary: "One product, with its stock",
            body: None,
            ok: (200, schema::<Product>),
            also_ok: &[],
            headers: &[],
            errors: &[(404, "No such product")],
            params: &[("sku", "path", true)],
            idempotent_key: false,
            auth: false,
        },
        Op {
            method: "post",
            path: "/v1/orders",
            summary: "Place an order: reserve the stock, then charge and confirm",
            body: Some(schema::<PlaceOrder>),
            ok: (202, schema::<Order>),
            also_ok: &[(
                201,
                "Paid and confirmed: with Prefer: wait when settled within N seconds (Preference-Applied: wait=N), or the order was confirmed before the answer (a repeat of its key, or its charge job was quicker)",
            )],
            headers: &[(
                "Prefer",
                "wait=N (RFC 7240, 1-60 s): settle within the request and answer with the outcome (201, or 402 when declined); past N seconds, or when a step's outcome is unknown, the charge job takes over and the answer is 202",
            )],
            errors: &[
                (
                    402,
                    "Payment declined, the stock released: with Prefer: wait, or before the answer (a repeat of its key, or its charge job was quicker)",
                ),
                (
                    409,
                    "Out of stock (out-of-stock; order-rejected for an order that ended so), the order failed (order-failed: the payment service refused its charge), or a request with this Idempotency-Key is still running",
                ),
                (
                    422,
                    "Invalid body, unknown user or product, or the key reused with another body",
                ),
                (
                    503,
                    "The order could not be recorded or handed to its charge job; it is kept pending and nothing is undone: send the same request with the same Idempotency-Key again",
                ),
            ],
            params: &[],
            idempotent_key: true,
            auth: true,
        },
        Op {
            method: "get",
            path: "/v1/orders/{id}",
            summary: "An order and its status",
            body: None,
            ok: (200, schema::<Order>),
            also_ok: &[],
            headers: &[],
            errors: &[(404, "No such order, or not yours")],
            params: &[("id", "path", true)],
            idempotent_key: false,
            auth: true,
        },
        Op {
            method: "get",
            path: "/v1/notifications",
            summary: "What was sent to you for an order (an admin: to anyone)",
            body: None,
            ok: (200, list_of::<Notification>),
            also_ok: &[],
            headers: &[],
            errors: &[],
            params: &[("order_id", "query", true)],
            idempotent_key: false,
            auth: true,
        },
        Op {
            method: "post",
            path: "/v1/auth/token",
            summary: "Log in: an access token (Bearer) and a refresh token",
            body: Some(schema::<Login>),
            ok: (200, schema::<TokenResponse>),
            also_ok: &[],
            headers: &[],
            errors: &[
                (401, "Wrong email or password (one answer for both)"),
                (422, "Invalid body"),
            ],
            params: &[],
            idempotent_key: false,
            auth: false,
        },
        Op {
            method: "post",
            path: "/v1/auth/refresh",
            summary: "Trade a refresh token for a new pair (each refresh token works once; a reused one ends the session)",
            body: Some(schema::<Refresh>),
            ok: (200, schema::<TokenResponse>),
            also_ok: &[],
            headers: &[],
            errors: &[
                (401, "Unknown, expired, revoked or reused refresh token"),
                (422, "Invalid body"),
            ],
            params: &[],
            idempotent_key: false,
            auth: false,
        },
        Op {
            method: "post",
            path: "/v1/auth/logout",
            summary: "Log out: the access token is revoked everywhere, and the session's refresh tokens (body optional)",
            body: Some(schema::<LogoutBody>),
            ok: (204, schema::<()>),
            also_ok: &[],
            headers: &[],
            errors: &[],
            params: &[],
            idempotent_key: false,
            auth: true,
        },
        Op {
            method: "get",
            path: "/v1/users/me",
            summary: "Your own user record",
            body: None,
            ok: (200, schema::<User>),
            also_ok: &[],
            headers: &[],
            errors: &[],
            params: &[],
            idempotent_key: false,
            auth: true,
        },
        Op {
            method: "post",
            path: "/v1/products",
            summary: "Add a product (admin)",
            body: Some(schema::<NewProduct>),
            ok: (201, schema::<Product>),
            also_ok: &[],
            headers: &[],
            errors: &[
                (403, "Not an admin"),
                (409, "SKU taken"),
                (422, "Invalid body"),
            ],
            params: &[],
            idempotent_key: false,
            auth: true,
        },
        Op {
            method: "patch",
            path: "/v1/products/{sku}",
            summary: "Change a product's name, description, price or stock (admin)",
            body: Some(schema::<ProductChange>),
            ok: (200, schema::<Product>),
            also_ok: &[],
            headers: &[],
            errors: &[
                (403, "Not an admin"),
                (404, "No such product"),
                (422, "Invalid body"),
            ],
            params: &[("sku", "path", true)],
            idempotent_key: false,
            auth: true,
        },
    ]
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    let mut paths = Map::new();
    for op in operations() {
        let mut responses = Map::new();
        let body = (op.ok.1)(&mut g);
        let success = if op.ok.0 == 202 {
            "Accepted: the stock is reserved and the order pending; the payment follows (Location: the order, GET it for its status)"
        } else {
            "Success"
        };
        // An accepted order's answers say where it is.
        let headers = if op.ok.0 == 202 {
            json!({"Location": {"description": "The order: /v1/orders/{id}", "schema": {"type": "string"}}})
        } else {
            json!({})
        };
        let answer = if op.ok.0 == 204 {
            json!({"description": "Done, no content"})
        } else {
            json!({
                "description": success,
                "headers": headers,
                "content": {"application/json": {"schema": body}}
            })
        };
        responses.insert(op.ok.0.to_string(), answer);
        for (status, when) in op.also_ok {
            responses.insert(
                status.to_string(),
                json!({
                    "description": when,
                    "headers": headers,
                    "content": {"application/json": {"schema": body}}
                }),
            );
        }
        let body_errors: &[(u16, &str)] = if op.body.is_some() { BODY_ERRORS } else { &[] };
        let auth_errors: &[(u16, &str)] = if op.auth {
            AUTH_ERRORS
        } else {
            ANONYMOUS_ERRORS
        };
        for (status, why) in op
            .errors
            .iter()
            .chain(body_errors)
            .chain(auth_errors)
            .chain(COMMON_ERRORS)
        {
            if responses.contains_key(&status.to_string()) {
                continue;
            }
            responses.insert(
                status.to_string(),
                json!({
                    "description": why,
                    "content": {"application/problem+json": {"schema": problem}}
                }),
            );
        }
        let mut params: Vec<Value> = op
            .params
            .iter()
            .map(|(name, at, required)| {
                json!({"name": name, "in": at, "required": required, "schema": {"type": "string"}})
            })
            .collect();
        for (name, what) in op.headers {
            params.push(json!({
                "name": name, "in": "header", "required": false,
                "description": what, "schema": {"type": "string"}
            }));
        }
        if op.idempotent_key {
            params.push(json!({
                "name": "Idempotency-Key", "in": "header", "required": true,
                "description": "A structured-field string, e.g. \"8e03978e-40d5\"; a retry with the same key and body gets the first answer (Idempotent-Replayed: true)",
                "schema": {"type": "string", "maxLength": 255}
            }));
        }
        let mut operation = json!({
            "summary": op.summary,
            "parameters": params,
            "responses": responses,
        });
        if op.auth {
            operation["security"] = json!([{"bearer": []}]);
        }
        if let Some(body) = op.body {
            operation["requestBody"] = json!({
                "required": op.method != "post" || op.path != "/v1/auth/logout",
                "content": {"application/json": {"schema": body(&mut g)}}
            });
        }
        paths
            .entry(op.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object")
            .insert(op.method.to_owned(), operation);
    }
    let mut schemas: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    schemas.insert(
        "Problem".to_owned(),
        json!({
            "description": "RFC 9457 problem details",
            "type": "object",
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "errors": {
                    "type": "array",
                    "description": "Validation failures: one per violation, with a JSON pointer",
                    "items": {"type": "object", "properties": {
                        "pointer": {"type": "string"}, "detail": {"type": "string"}
                    }}
                }
            },
            "additionalProperties": true
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ee reference shop",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The public API of the ee reference platform, through its gateway. Money is in integer minor units."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from POST /v1/auth/token (15 minutes; renew with POST /v1/auth/refresh)"
            }}
        },
    })
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());

/// `GET /openapi.json` and `GET /docs`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    DOCUMENT.as_str(),
                )
                    .into_response()
            }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ee reference shop: API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}.m{display:inline-block;min-width:4rem;font-weight:bold;text-transform:uppercase}
.get{color:#075}.post{color:#a50}code,pre{background:#f5f5f5;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto;font-size:13px}
details{margin:.3rem 0 1rem 4rem}
</style></head><body>
<h1>ee reference shop: API</h1>
<p>Generated from <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Errors are <code>application/problem+json</code> (RFC 9457).</p>
<div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const ops = document.getElementById('ops'); ops.textContent = '';
  const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const div = document.createElement('div');
      const codes = Object.entries(op.responses).map(([c, r]) => `<li><b>${c}</b> ${esc(r.description)}</li>`).join('');
      const body = op.requestBody ? `<pre>${esc(JSON.stringify(op.requestBody.content['application/json'].schema, null, 1))}</pre>` : '';
      div.innerHTML = `<h2><span class="m ${method}">${method}</span> <code>${esc(path)}</code></h2><p>${esc(op.summary)}</p>
        <details><summary>Request and responses</summary>${body}<ul>${codes}</ul></details>`;
      ops.appendChild(div);
    }
  }
  const s = document.createElement('details');
  s.innerHTML = `<summary>Schemas</summary><pre>${esc(JSON.stringify(doc.components.schemas, null, 1))}</pre>`;
  ops.appendChild(s);
});
</script></body></html>"#;
