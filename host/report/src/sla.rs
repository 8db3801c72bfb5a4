//! The SLA search's section: perf's `sla_search.json` (every probe with its verdict, and the
//! answers), else evalscope's `sla_summary.json` (averaged metrics per probe).

use serde_json::{Map, Value};

use crate::load::{read_json, Benchmark};
use crate::page::{table_of_rows, Table};

/// Titled tables for the SLA section (empty without an SLA search).
pub fn tables(b: &Benchmark) -> Vec<(String, Table)> {
    let mut out = Vec::new();
    if let Ok(search) = read_json(&b.dir.join("sla_search.json")) {
        let variable = search
            .get("variable")
            .and_then(Value::as_str)
            .unwrap_or("value")
            .to_string();
        let probes = rows(&search, "probes", |p| {
            let mut row = Map::new();
            row.insert(
                variable.clone(),
                p.get("value").cloned().unwrap_or_default(),
            );
            for k in ["runs", "success_rate", "valid", "reasons", "group_passes"] {
                row.insert(k.into(), p.get(k).cloned().unwrap_or_default());
            }
            if let Some(Value::Object(m)) = p.get("metric_values") {
                row.extend(m.clone());
            }
            row
        });
        if !probes.is_empty() {
            out.push(("Probes".to_string(), table_of_rows(&probes)));
        }
        let answers = rows(&search, "selections", |s| {
            let mut row = Map::new();
            for k in [
                "criteria",
                "mode",
                "selected_value",
                "observed_metric",
                "reason",
            ] {
                row.insert(k.into(), s.get(k).cloned().unwrap_or_default());
            }
            row
        });
        if !answers.is_empty() {
            out.push(("Answers".to_string(), table_of_rows(&answers)));
        }
    } else if let Some(Value::Object(summary)) = &b.sla {
        let probes: Vec<Map<String, Value>> = summary
            .iter()
            .map(|(probe, v)| {
                let mut row = Map::new();
                row.insert("probe".into(), Value::String(probe.clone()));
                if let Some(Value::Object(m)) = v.get("metrics") {
                    row.extend(m.clone());
                }
                row
            })
            .collect();
        out.push(("Probes (averaged)".to_string(), table_of_rows(&probes)));
    }
    out
}

fn rows(v: &Value, key: &str, f: impl Fn(&Value) -> Map<String, Value>) -> Vec<Map<String, Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}
