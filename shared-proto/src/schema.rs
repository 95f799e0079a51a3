//! Machine-readable descriptions of the wire types, all generated from the Rust types of this
//! crate (feature `schema`):
//!
//! - [`json_schemas`]: JSON Schemas (draft-07, by `schemars` from the serde derives) of every
//!   WebSocket frame and message payload, the HTTP bodies the services share and the gateway
//!   token's claims; checked in as `docs/schemas/wire.schema.json`;
//! - [`asyncapi`]: the AsyncAPI 3.0 document of the gateway's `/ws`, whose message payloads are
//!   those schemas; checked in as `docs/asyncapi.json`;
//! - [`typescript`]: TypeScript declarations of the same types, translated from the schemas;
//!   checked in as `library/static/js/protocol.d.ts` (the browser client type-checks against it).
//!
//! `cargo run -p shared-proto --features schema --example gen-schemas` rewrites the three files;
//! `shared-proto/tests/schemas.rs` fails while a checked-in file differs from what is generated.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::error::ErrorBody;
use crate::library_api::TokenResponse;
use crate::ws::{ClientFrame, ClientMessage, PresenceCounts, ServerFrame, ServerMessage};

/// Where the generated files live, relative to the workspace root.
pub const JSON_SCHEMA_PATH: &str = "docs/schemas/wire.schema.json";
/// The AsyncAPI document, relative to the workspace root.
pub const ASYNCAPI_PATH: &str = "docs/asyncapi.json";
/// The TypeScript declarations, relative to the workspace root.
pub const TYPESCRIPT_PATH: &str = "library/static/js/protocol.d.ts";

/// How to regenerate the files; written into each of them.
pub const REGENERATE: &str = "cargo run -p shared-proto --features schema --example gen-schemas";

/// The generated files: `(path relative to the workspace root, contents)`.
pub fn files() -> Vec<(&'static str, String)> {
    vec![
        (JSON_SCHEMA_PATH, pretty(json_schemas())),
        (ASYNCAPI_PATH, pretty(asyncapi())),
        (TYPESCRIPT_PATH, typescript()),
    ]
}

fn pretty(value: Value) -> String {
    // Serializing a Value cannot fail.
    serde_json::to_string_pretty(&sorted(value)).unwrap_or_default() + "\n"
}

/// The request each client message answers with (besides `error`), for the AsyncAPI replies.
const REPLIES: &[(&str, &[&str])] = &[
    ("subscribe", &["subscribed", "error"]),
    ("unsubscribe", &["unsubscribed", "error"]),
    ("post", &["ack", "error"]),
    ("edit", &["ack", "error"]),
    ("delete", &["ack", "error"]),
    ("react", &["ack", "error"]),
    ("typing", &["error"]),
    ("history", &["history", "error"]),
    ("ping", &["pong"]),
];

fn generator() -> SchemaGenerator {
    // What the services put on the wire (serde's serialize side): a field skipped when empty is
    // optional, every other one is present (possibly `null`).
    SchemaSettings::draft07().for_serialize().into_generator()
}

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    let _ = generator.subschema_for::<T>();
}

/// The definitions of every wire type, by type name; `$ref`s inside point at
/// `#/definitions/NAME`.
pub fn definitions() -> Map<String, Value> {
    let mut generator = generator();
    add::<ClientFrame>(&mut generator);
    add::<ClientMessage>(&mut generator);
    add::<ServerFrame>(&mut generator);
    add::<ServerMessage>(&mut generator);
    add::<PresenceCounts>(&mut generator);
    add::<ErrorBody>(&mut generator);
    add::<TokenResponse>(&mut generator);
    // The HTTP bodies the services share (their OpenAPI documents describe the calls) and
    // the gateway token's claims.
    add::<crate::library_api::Book>(&mut generator);
    add::<crate::library_api::UserEnvelope>(&mut generator);
    add::<crate::library_api::MessageBody>(&mut generator);
    add::<crate::library_api::SignupRequest>(&mut generator);
    add::<crate::library_api::LoginRequest>(&mut generator);
    add::<crate::counter::CountResponse>(&mut generator);
    add::<crate::counter::CountsResponse>(&mut generator);
    add::<crate::auth::Claims>(&mut generator);
    add::<crate::ids::ClientId>(&mut generator);
    add::<crate::ids::CommentId>(&mut generator);
    add::<crate::ids::Username>(&mut generator);
    add::<crate::comment::CommentText>(&mut generator);
    match sorted(Value::Object(generator.take_definitions(true))) {
        Value::Object(definitions) => definitions,
        _ => Map::new(),
    }
}

/// `value` with every object's keys in sorted order, whatever the map type serde_json was
/// built with (its `preserve_order` feature, which another crate of the workspace may turn on,
/// keeps insertion order), so the generated files are the same in every build.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The JSON Schema bundle: every definition, and at the root "a frame, either way".
pub fn json_schemas() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://book-library.invalid/schemas/wire.schema.json",
        "title": "Book library wire types",
        "description": format!(
            "JSON Schemas of every WebSocket frame of comments-gateway (/ws) and the bodies the \
             services share, generated from the Rust types of shared-proto by schemars. Do not \
             edit: regenerate with `{REGENERATE}`. A frame is a ClientFrame (client to server) or \
             a ServerFrame (server to client); docs/protocol.md explains them."
        ),
        "oneOf": [
            {"$ref": "#/definitions/ClientFrame"},
            {"$ref": "#/definitions/ServerFrame"},
        ],
        "definitions": definitions(),
    })
}

/// `#[schemars(transform)]` of request payloads whose `limit` the gateway defaults (the Rust
/// type always has one after decoding; the wire may omit it).
pub fn limit_is_optional(schema: &mut schemars::Schema) {
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|name| name != "limit");
    }
}

/// A self-contained draft-07 schema that validates one definition of the bundle (e.g.
/// `ServerFrame`), for a JSON Schema validator.
pub fn schema_for(definition: &str) -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "allOf": [{"$ref": format!("#/definitions/{definition}")}],
        "definitions": definitions(),
    })
}

/// A self-contained schema of one AsyncAPI message's payload (`side` is `client` or
/// `server`, `kind` the wire `type`): the document's message payload with the document's
/// components beside it, so its `$ref`s resolve. `None` for an unknown message.
pub fn message_schema(side: &str, kind: &str) -> Option<Value> {
    let doc = asyncapi();
    let mut schema = doc
        .pointer(&format!(
            "/components/messages/{}/payload",
            message_key(side, kind)
        ))?
        .clone();
    schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    schema["components"] = json!({"schemas": doc["components"]["schemas"].clone()});
    Some(schema)
}

/// One variant of an adjacently tagged message enum: its wire `type`, its doc and its payload
/// schema.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The wire `type`.
    pub kind: String,
    /// The variant's doc comment.
    pub description: String,
    /// The `payload` schema (a `$ref` into the definitions).
    pub payload: Value,
}

/// The variants of `ClientMessage` or `ServerMessage` as the generated schema has them.
pub fn variants(definitions: &Map<String, Value>, enum_name: &str) -> Vec<Variant> {
    let Some(options) = definitions
        .get(enum_name)
        .and_then(|d| d.get("oneOf").or_else(|| d.get("anyOf")))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    options
        .iter()
        .filter_map(|option| {
            let properties = option.get("properties")?;
            let tag = &properties["type"];
            let kind = tag
                .get("const")
                .or_else(|| tag.get("enum").and_then(|e| e.get(0)))
                .and_then(Value::as_str)?;
            Some(Variant {
                kind: kind.to_owned(),
                description: option
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                payload: properties.get("payload").cloned().unwrap_or(json!({})),
            })
        })
        .collect()
}

/// The schema of one whole frame of a given message: `{type, ref?, payload}`.
pub fn frame_schema(variant: &Variant, refs_prefix: &str) -> Value {
    json!({
        "type": "object",
        "description": variant.description,
        "properties": {
            "type": {"type": "string", "const": variant.kind},
            "ref": {"$ref": format!("{refs_prefix}Ref")},
            "payload": variant.payload,
        },
        "required": ["type", "payload"],
        "additionalProperties": false,
    })
}

/// Replaces every `$ref` prefix `from` with `to`.
fn rewrite_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(rest) = reference.strip_prefix(from) {
                            *reference = format!("{to}{rest}");
                        }
                    }
                    (_, v) => rewrite_refs(v, from, to),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, from, to)),
        _ => {}
    }
}

/// The definitions `roots` refer to, directly or not (the roots included).
fn reachable(definitions: &Map<String, Value>, roots: &[&str]) -> Map<String, Value> {
    let mut wanted: Vec<String> = roots.iter().map(|r| (*r).to_owned()).collect();
    let mut found = Map::new();
    while let Some(name) = wanted.pop() {
        if found.contains_key(&name) {
            continue;
        }
        let Some(schema) = definitions.get(&name) else {
            continue;
        };
        let mut refs = Vec::new();
        collect_refs(schema, &mut refs);
        wanted.extend(
            refs.iter()
                .filter_map(|r| r.strip_prefix("#/definitions/"))
                .map(str::to_owned),
        );
        found.insert(name, schema.clone());
    }
    found
}

/// Appends every `$ref` found anywhere in `value` to `found`.
pub fn collect_refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => found.push(r.clone()),
                    _ => collect_refs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, found)),
        _ => {}
    }
}

/// The AsyncAPI key of a message: `client.<type>` or `server.<type>`.
pub fn message_key(side: &str, kind: &str) -> String {
    format!("{side}.{kind}")
}

fn description_of(definitions: &Map<String, Value>, name: &str) -> String {
    definitions
        .get(name)
        .and_then(|d| d.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The AsyncAPI 3.0 document of `/ws`.
pub fn asyncapi() -> Value {
    let definitions = reachable(
        &definitions(),
        &[
            "ClientFrame",
            "ClientMessage",
            "ServerFrame",
            "ServerMessage",
        ],
    );
    let prefix = "#/components/schemas/";
    let mut schemas = Value::Object(definitions);
    rewrite_refs(&mut schemas, "#/definitions/", prefix);
    let Value::Object(schemas) = schemas else {
        return Value::Null;
    };

    let client = variants(&schemas, "ClientMessage");
    let server = variants(&schemas, "ServerMessage");
    let server_kinds: BTreeSet<&str> = server.iter().map(|v| v.kind.as_str()).collect();

    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    for (side, list, payload_of) in [
        ("client", &client, "ClientFrame"),
        ("server", &server, "ServerFrame"),
    ] {
        for variant in list {
            let key = message_key(side, &variant.kind);
            let payload_name = variant.payload["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix(prefix))
                .unwrap_or_default();
            messages.insert(
                key.clone(),
                json!({
                    "name": variant.kind,
                    "title": format!("{} ({side} to {})", variant.kind,
                        if side == "client" { "server" } else { "client" }),
                    "summary": variant.description,
                    "description": description_of(&schemas, payload_name),
                    "contentType": "application/json",
                    "payload": frame_schema(variant, prefix),
                    "x-frame-schema": {"$ref": format!("{prefix}{payload_of}")},
                }),
            );
            channel_messages.insert(
                key.clone(),
                json!({"$ref": format!("#/components/messages/{key}")}),
            );
        }
    }

    let channel_ref = json!({"$ref": "#/channels/ws"});
    let message_ref = |side: &str, kind: &str| json!({"$ref": format!("#/channels/ws/messages/{}", message_key(side, kind))});
    let mut operations = Map::new();
    for variant in &client {
        let replies: Vec<Value> = REPLIES
            .iter()
            .find(|(kind, _)| *kind == variant.kind)
            .map(|(_, replies)| replies.to_vec())
            .unwrap_or_else(|| vec!["error"])
            .into_iter()
            .filter(|kind| server_kinds.contains(kind))
            .map(|kind| message_ref("server", kind))
            .collect();
        operations.insert(
            format!("receive.{}", variant.kind),
            json!({
                "action": "receive",
                "channel": channel_ref,
                "summary": variant.description,
                "messages": [message_ref("client", &variant.kind)],
                "reply": {"channel": channel_ref, "messages": replies},
            }),
        );
    }
    for variant in &server {
        operations.insert(
            format!("send.{}", variant.kind),
            json!({
                "action": "send",
                "channel": channel_ref,
                "summary": variant.description,
                "messages": [message_ref("server", &variant.kind)],
            }),
        );
    }

    json!({
        "asyncapi": "3.0.0",
        "id": "urn:book-library:comments-gateway",
        "info": {
            "title": "comments-gateway WebSocket protocol",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Live comment rooms of the book library over one WebSocket, `/ws`. Each text \
                 frame is one JSON message `{{\"type\", \"ref\"?, \"payload\"}}`; a client's \
                 `ref` is echoed in the reply to its request. The guide with errors, limits, \
                 ordering and resuming is docs/protocol.md. The message schemas are generated \
                 from the Rust types of shared-proto (docs/schemas/wire.schema.json); do not \
                 edit this file, regenerate it with `{REGENERATE}`."
            ),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:3003",
                "protocol": "ws",
                "description": "A gateway started with the defaults (`cargo run -p comments-gateway` or the `stack` launcher); behind TLS the protocol is wss.",
            },
        },
        "channels": {
            "ws": {
                "address": "/ws",
                "title": "Comments WebSocket",
                "description": "GET /ws?token=TOKEN upgrades to the WebSocket. TOKEN is the library's GET /api/v1/user/token value (an HS256 JWT); without it the connection is anonymous (may read, not write). A bad or expired token: HTTP 401 before the upgrade; too many connections from one address: 429; an Origin outside ALLOWED_ORIGINS: 403. Close codes: 1001 shutdown, 1009 frame over 65536 bytes, 1013 the client could not keep up.",
                "servers": [{"$ref": "#/servers/local"}],
                "messages": channel_messages,
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "token": {
                                    "type": "string",
                                    "description": "The library's gateway token (GET /api/v1/user/token); omitted for an anonymous connection.",
                                },
                            },
                        },
                        "bindingVersion": "0.1.0",
                    },
                },
            },
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
        },
    })
}

// ---------------------------------------------------------------- TypeScript

/// TypeScript declarations of every definition (`export type NAME = ...;`), translated from
/// the JSON Schemas so they cannot say anything else.
pub fn typescript() -> String {
    let definitions = definitions();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Wire types of the book library's comments protocol (docs/protocol.md, docs/asyncapi.json).\n\
         // Generated from the Rust types of shared-proto through their JSON Schemas\n\
         // (docs/schemas/wire.schema.json). Do not edit: regenerate with\n\
         //   {REGENERATE}\n"
    );
    for (name, schema) in &definitions {
        if let Some(doc) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}", doc_comment(doc, ""));
        }
        let _ = writeln!(out, "export type {name} = {};\n", ts_type(schema, ""));
    }
    let client = variants(&definitions, "ClientMessage");
    let server = variants(&definitions, "ServerMessage");
    let _ = writeln!(
        out,
        "/** Every `type` a client may send. */\nexport type ClientMessageType = {};\n",
        union_of_literals(client.iter().map(|v| v.kind.as_str()))
    );
    let _ = writeln!(
        out,
        "/** Every `type` the server sends. */\nexport type ServerMessageType = {};\n",
        union_of_literals(server.iter().map(|v| v.kind.as_str()))
    );
    let _ = writeln!(
        out,
        "/** The frame of one server message type, e.g. `ServerFrameOf<'ack'>`. */\n\
         export type ServerFrameOf<T extends ServerMessageType> = Extract<ServerFrame, {{ type: T }}>;\n\n\
         /** The frame of one client message type, e.g. `ClientFrameOf<'post'>`. */\n\
         export type ClientFrameOf<T extends ClientMessageType> = Extract<ClientFrame, {{ type: T }}>;"
    );
    out
}

fn union_of_literals<'a>(kinds: impl Iterator<Item = &'a str>) -> String {
    let parts: Vec<String> = kinds.map(ts_string).collect();
    if parts.is_empty() {
        "never".to_owned()
    } else {
        parts.join(" | ")
    }
}

fn doc_comment(text: &str, indent: &str) -> String {
    let text = text.replace("*/", "*\\/");
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 1 {
        return format!("{indent}/** {} */", text.trim());
    }
    let mut out = format!("{indent}/**\n");
    for line in lines {
        let _ = writeln!(out, "{indent} * {}", line.trim_end());
    }
    out.push_str(indent);
    out.push_str(" */");
    out
}

fn ts_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "string".to_owned())
}

fn ts_key(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain {
        key.to_owned()
    } else {
        ts_string(key)
    }
}

fn join(parts: Vec<String>, separator: &str) -> String {
    let mut unique: Vec<String> = Vec::new();
    for part in parts {
        if !unique.contains(&part) {
            unique.push(part);
        }
    }
    match unique.len() {
        0 => "never".to_owned(),
        1 => unique.remove(0),
        _ => unique
            .into_iter()
            .map(|p| {
                if p.contains(" | ") || p.contains(" & ") {
                    format!("({p})")
                } else {
                    p
                }
            })
            .collect::<Vec<_>>()
            .join(separator),
    }
}

/// The TypeScript type of a schema (the subset schemars emits).
fn ts_type(schema: &Value, indent: &str) -> String {
    let Some(map) = schema.as_object() else {
        return match schema {
            Value::Bool(false) => "never".to_owned(),
            _ => "unknown".to_owned(),
        };
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or("unknown").to_owned();
    }
    if let Some(value) = map.get("const") {
        return literal(value);
    }
    if let Some(values) = map.get("enum").and_then(Value::as_array) {
        return join(values.iter().map(literal).collect(), " | ");
    }
    let mut parts = Vec::new();
    // The object part (properties, maps) of this schema, if any.
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let has_object_keywords = map.contains_key("properties")
        || map.contains_key("additionalProperties")
        || map.contains_key("patternProperties");
    let mut base = Vec::new();
    for t in &types {
        base.push(match *t {
            "string" => "string".to_owned(),
            "integer" | "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => {
                let item = map
                    .get("items")
                    .map_or("unknown".to_owned(), |i| ts_type(i, indent));
                if item.contains(' ') {
                    format!("Array<{item}>")
                } else {
                    format!("{item}[]")
                }
            }
            "object" => ts_object(map, indent),
            _ => "unknown".to_owned(),
        });
    }
    if types.is_empty() && has_object_keywords {
        base.push(ts_object(map, indent));
    }
    if !base.is_empty() {
        parts.push(join(base, " | "));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = map.get(key).and_then(Value::as_array) {
            parts.push(join(
                options.iter().map(|o| ts_type(o, indent)).collect(),
                " | ",
            ));
        }
    }
    if let Some(all) = map.get("allOf").and_then(Value::as_array) {
        for schema in all {
            parts.push(ts_type(schema, indent));
        }
    }
    if parts.is_empty() {
        return "unknown".to_owned();
    }
    join(parts, " & ")
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => ts_string(s),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

fn ts_object(map: &Map<String, Value>, indent: &str) -> String {
    let inner = format!("{indent}  ");
    let required: BTreeSet<&str> = map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut lines = Vec::new();
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        for (key, schema) in properties {
            if schema == &Value::Bool(true) {
                // Listed only so `additionalProperties: false` lets a flattened field through;
                // its type comes from the other part of the schema.
                continue;
            }
            if let Some(doc) = schema.get("description").and_then(Value::as_str) {
                lines.push(doc_comment(doc, &inner));
            }
            let optional = if required.contains(key.as_str()) {
                ""
            } else {
                "?"
            };
            lines.push(format!(
                "{inner}{}{optional}: {};",
                ts_key(key),
                ts_type(schema, &inner)
            ));
        }
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(false)) | None => {}
        Some(Value::Bool(true)) => lines.push(format!("{inner}[key: string]: unknown;")),
        Some(schema) => lines.push(format!(
            "{inner}[key: string]: {};",
            ts_type(schema, &inner)
        )),
    }
    if lines.is_empty() {
        return if matches!(map.get("additionalProperties"), Some(Value::Bool(false))) {
            "Record<string, never>".to_owned()
        } else {
            "Record<string, unknown>".to_owned()
        };
    }
    format!("{{\n{}\n{indent}}}", lines.join("\n"))
}
