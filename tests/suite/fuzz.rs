//! The tool surface under generated calls (docs/reliability.md): every tool, with arguments
//! shaped by its schema, of the wrong types, or made up, from a seeded generator. Each call
//! must get a well-formed reply: a result, a tool error carrying a kind, or a JSON-RPC error;
//! the server must never panic nor go away. CI makes `TASKBOX_FUZZ_CALLS` (1,000 by default)
//! calls; the long form is `TASKBOX_FUZZ_CALLS=10000 cargo test --test all -- suite::fuzz`.

use std::collections::BTreeMap;

use rmcp::model::CallToolRequestParams;
use serde_json::{Map, Value, json};

use crate::common::*;

fn below(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[below(rng, items.len())]
}

fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

const STRINGS: &[&str] = &[
    "fz-a",
    "fz-b",
    "fz-a:1",
    "",
    " ",
    "../../etc/passwd",
    "/workspace/x",
    "t-00000000000000000000000000",
    "c-00000000000000000000000000",
    "e-00000000000000000000000000",
    "true",
    "echo fuzz",
    "exit 3",
    "cat /etc/hostname",
    "taskbox-base",
    "none",
    "egress",
    "root",
    "\u{0}",
    "é漢字🙂",
    "a\nb",
    "; rm -rf / #",
    "$(id)",
    "*",
];

fn string(rng: &mut Rng) -> Value {
    if chance(rng, 3) {
        return Value::String("x".repeat(below(rng, 200_000)));
    }
    Value::String(pick(rng, STRINGS).to_string())
}

fn integer(rng: &mut Rng) -> Value {
    json!(*pick(
        rng,
        &[0i64, 1, 2, 3, 5, 60, 120, 3600, 3601, -1, i64::MAX, i64::MIN]
    ))
}

/// A value of any type, nested a little.
fn anything(rng: &mut Rng, depth: u32) -> Value {
    match below(rng, if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(chance(rng, 50)),
        2 => integer(rng),
        3 => json!(*pick(rng, &[0.5f64, -1.5, 1e300, 64.0, 0.0])),
        4 => string(rng),
        5 => Value::Array((0..below(rng, 4)).map(|_| anything(rng, depth + 1)).collect()),
        _ => Value::Object(
            (0..below(rng, 4))
                .map(|_| {
                    (
                        string(rng).as_str().unwrap_or("k").chars().take(20).collect(),
                        anything(rng, depth + 1),
                    )
                })
                .collect(),
        ),
    }
}

/// A value for a property of this schema: of its type most of the time, anything otherwise.
fn for_schema(rng: &mut Rng, schema: &Value, defs: &Value) -> Value {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => defs
            .get(reference.rsplit('/').next().unwrap_or_default())
            .unwrap_or(schema),
        None => schema,
    };
    if chance(rng, 15) {
        return anything(rng, 0);
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.is_empty()
    {
        return pick(rng, options).clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array)
            && !options.is_empty()
        {
            let option = pick(rng, options).clone();
            return for_schema(rng, &option, defs);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null"),
        Some(Value::String(kind)) => Some(kind.as_str()),
        _ => None,
    };
    match kind {
        Some("string") => string(rng),
        Some("integer") => integer(rng),
        Some("number") => json!(*pick(rng, &[0.25f64, 1.0, 2.0, 64.0, -1.0, 1e9])),
        Some("boolean") => json!(chance(rng, 50)),
        Some("array") => {
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            Value::Array((0..below(rng, 3)).map(|_| for_schema(rng, &items, defs)).collect())
        }
        Some("object") => {
            let mut object = Map::new();
            for (key, property) in schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if chance(rng, 70) {
                    object.insert(key.clone(), for_schema(rng, property, defs));
                }
            }
            Value::Object(object)
        }
        _ => anything(rng, 0),
    }
}

fn arguments(rng: &mut Rng, schema: &Value) -> Map<String, Value> {
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let mut args = match for_schema(rng, schema, &defs) {
        Value::Object(object) if !chance(rng, 10) => object,
        _ => Map::new(),
    };
    if chance(rng, 20) {
        args.insert(format!("unknown_{}", below(rng, 5)), anything(rng, 0));
    }
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_calls_over_every_tool_get_well_formed_replies() {
    require!(docker);
    let calls: usize = std::env::var("TASKBOX_FUZZ_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("TASKBOX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x7a5b_0c5e);
    eprintln!("fuzz: {calls} calls, seed {seed} (TASKBOX_FUZZ_CALLS, TASKBOX_FUZZ_SEED)");
    let home = Home::new();
    // Small outputs and short timeouts keep a generated `sleep` or flood from slowing the run.
    write_config(&home.path(), "[execution]\nmax_timeout_s = 5\ndefault_timeout_s = 5\n");
    let log = home.path().join("server.log");
    let (client, _) = connect_logged(&home.path(), "fuzz", &log).await;
    // Two tasks for the generated names to hit.
    create(&client, "fz-a").await;
    create(&client, "fz-b").await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.len() >= 20, "{} tools", tools.len());

    let mut rng = Rng(seed);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_tool: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..calls {
        let tool = pick(&mut rng, &tools).clone();
        let schema = Value::Object((*tool.input_schema).clone());
        let args = arguments(&mut rng, &schema);
        *per_tool.entry(tool.name.to_string()).or_default() += 1;
        let shown = serde_json::to_string(&args)
            .unwrap()
            .chars()
            .take(300)
            .collect::<String>();
        let reply = client
            .call_tool(CallToolRequestParams::new(tool.name.to_string()).with_arguments(args))
            .await;
        let outcome = match reply {
            Ok(result) if result.is_error == Some(true) => {
                let error = &result.structured_content.as_ref().unwrap_or(&Value::Null)["error"];
                let kind = error["kind"].as_str().unwrap_or_default();
                assert!(
                    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "call {i} {}({shown}): a tool error without a kind: {}",
                    tool.name,
                    text(&result)
                );
                assert!(!error["message"].as_str().unwrap_or_default().is_empty());
                format!("tool error {kind}")
            }
            Ok(_) => "ok".to_string(),
            Err(rmcp::ServiceError::McpError(error)) => format!("json-rpc error {}", error.code.0),
            Err(other) => panic!("call {i} {}({shown}): the protocol broke: {other}", tool.name),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    // Still serving, and never panicked.
    call(&client, "list_tasks", json!({})).await;
    client.cancel().await.unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    eprintln!("fuzz: outcomes {outcomes:?}");
    eprintln!("fuzz: calls per tool {per_tool:?}");
    assert_eq!(per_tool.len(), tools.len(), "every tool was called");
}
