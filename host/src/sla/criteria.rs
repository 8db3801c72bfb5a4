//! `--sla-params`: groups of criteria, evalscope 1.14.1's grammar. A group's criteria must all
//! hold (AND); each group is searched on its own. A criterion is an operator (`<= < >= >`,
//! Unicode `≤ ≥` too) and a threshold, or `max`/`min` (optimisation: one group, one metric).
//! A threshold may carry `s` or `ms`; a bare number is in the unit the report uses for that
//! metric (latency seconds, TTFT and TPOT milliseconds), so a value can be copied off a report.

use serde_json::Value;

use crate::aggregate::{metric, Percentiles, Summary};
use crate::error::usage;

/// Where a metric's value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// A key of `benchmark_summary.json`.
    Summary(&'static str),
    /// A row and a column of `benchmark_percentile.json`.
    Percentile(&'static str, &'static str),
}

/// An SLA metric: its name in `--sla-params`, its source and its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// The name.
    pub name: &'static str,
    /// Where its value is.
    pub source: Source,
    /// The unit of that value.
    pub unit: &'static str,
}

/// evalscope's SLA metrics, then perf's `goodput`.
pub const METRICS: [Metric; 13] = [
    summary_metric("avg_latency", "Avg Latency (s)", "s"),
    summary_metric("avg_ttft", "Avg TTFT (ms)", "ms"),
    summary_metric("avg_tpot", "Avg TPOT (ms)", "ms"),
    summary_metric("rps", "Req Throughput (req/s)", "req/s"),
    summary_metric("tps", "Output Throughput (tok/s)", "tok/s"),
    percentile_metric("p99_latency", "99%", metric::LATENCY, "s"),
    percentile_metric("p99_ttft", "99%", metric::TTFT, "ms"),
    percentile_metric("p90_ttft", "90%", metric::TTFT, "ms"),
    percentile_metric("p50_ttft", "50%", metric::TTFT, "ms"),
    percentile_metric("p99_tpot", "99%", metric::TPOT, "ms"),
    percentile_metric("p90_tpot", "90%", metric::TPOT, "ms"),
    percentile_metric("p50_tpot", "50%", metric::TPOT, "ms"),
    summary_metric("goodput", "Goodput (req/s)", "req/s"),
];

/// The metrics an input-only API (embeddings, rerank) has.
const INPUT_ONLY: [&str; 3] = ["avg_latency", "p99_latency", "rps"];

const fn summary_metric(name: &'static str, key: &'static str, unit: &'static str) -> Metric {
    Metric {
        name,
        source: Source::Summary(key),
        unit,
    }
}

const fn percentile_metric(
    name: &'static str,
    row: &'static str,
    column: &'static str,
    unit: &'static str,
) -> Metric {
    Metric {
        name,
        source: Source::Percentile(row, column),
        unit,
    }
}

impl Metric {
    /// The metric's value in a run's results, when it has a finite one.
    pub fn value(&self, summary: &Summary, percentiles: &Percentiles) -> Option<f64> {
        let v = match self.source {
            Source::Summary(key) => summary.to_json().get(key).and_then(Value::as_f64),
            Source::Percentile(row, column) => percentiles.get(row, column),
        };
        v.filter(|x| x.is_finite())
    }

    /// `value` with its unit.
    pub fn show(&self, value: f64) -> String {
        format!("{} {}", crate::output::console::num(value), self.unit)
    }
}

/// A comparison or an optimisation direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `max`: the value of the variable with the highest metric.
    Max,
    /// `min`: the lowest.
    Min,
}

/// One criterion of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// The metric.
    pub metric: Metric,
    /// The operator.
    pub op: Op,
    /// The threshold, in the metric's unit (0 for max/min).
    pub target: f64,
}

impl Criterion {
    /// Whether `value` meets it (always, for max/min).
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::Le => value <= self.target,
            Op::Lt => value < self.target,
            Op::Ge => value >= self.target,
            Op::Gt => value > self.target,
            Op::Max | Op::Min => true,
        }
    }

    /// The condition in words: `<= 0.5 s`, `max`.
    pub fn condition(&self) -> String {
        let op = match self.op {
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Max => return "max".into(),
            Op::Min => return "min".into(),
        };
        format!("{op} {}", self.metric.show(self.target))
    }
}

/// A group of criteria that must all hold.
pub type Group = Vec<Criterion>;

fn seconds_per(unit: &str) -> Option<f64> {
    match unit {
        "s" => Some(1.0),
        "ms" => Some(0.001),
        _ => None,
    }
}

/// One criterion from its metric name and its text (`<=2s`, `max`).
pub fn criterion(name: &str, text: &str) -> anyhow::Result<Criterion> {
    let known = || {
        METRICS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let metric = *METRICS.iter().find(|m| m.name == name).ok_or_else(|| {
        usage(format!(
            "--sla-params: unknown SLA metric '{name}'; supported: {}",
            known()
        ))
    })?;
    let normal: String = text
        .trim()
        .replace('≤', "<=")
        .replace(['≥', '≧'], ">=")
        .replace('\u{2009}', "");
    let bad = |why: String| {
        usage(format!(
            "--sla-params: {name} \"{text}\": {why}; write an operator and a threshold such as \"<=2s\", \"<50ms\", \">=10\", or \"max\" / \"min\""
        ))
    };
    match normal.as_str() {
        "max" => {
            return Ok(Criterion {
                metric,
                op: Op::Max,
                target: 0.0,
            })
        }
        "min" => {
            return Ok(Criterion {
                metric,
                op: Op::Min,
                target: 0.0,
            })
        }
        _ => {}
    }
    let (op, rest) = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
        .iter()
        .find_map(|(prefix, op)| normal.strip_prefix(prefix).map(|rest| (*op, rest.trim())))
        .ok_or_else(|| bad("no operator".into()))?;
    // The longest prefix that reads as a number is the threshold; the rest is its unit.
    let split = (1..=rest.len())
        .rev()
        .filter(|&i| rest.is_char_boundary(i))
        .find(|&i| rest[..i].trim().parse::<f64>().is_ok())
        .unwrap_or(0);
    let (number, suffix) = (rest[..split].trim(), rest[split..].trim());
    let mut target: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| bad(format!("'{rest}' is not a number")))?;
    if !suffix.is_empty() && suffix != metric.unit {
        match (seconds_per(suffix), seconds_per(metric.unit)) {
            (Some(from), Some(to)) => target *= from / to,
            _ => {
                return Err(bad(format!(
                    "unit '{suffix}' does not match the unit of {name} ('{}')",
                    metric.unit
                )))
            }
        }
    }
    Ok(Criterion { metric, op, target })
}

/// `--sla-params`: a JSON object (one group) or a list of them.
pub fn parse(text: &str, input_only: bool) -> anyhow::Result<Vec<Group>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        usage(format!(
            "--sla-params is not valid JSON ({e}); give a list of groups such as '[{{\"p99_latency\": \"<=2s\"}}]'"
        ))
    })?;
    let records = match value {
        Value::Array(list) => list,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(usage(
                "--sla-params must be a JSON object or a list of objects, such as '[{\"avg_ttft\": \"<=500ms\"}]'",
            ))
        }
    };
    if records.is_empty() {
        return Err(usage(
            "--sla-params must contain at least one non-empty criterion group",
        ));
    }
    let mut groups = Vec::new();
    for record in records {
        let Value::Object(map) = record else {
            return Err(usage(
                "--sla-params must contain only non-empty criterion groups (JSON objects)",
            ));
        };
        if map.is_empty() {
            return Err(usage(
                "--sla-params must contain only non-empty criterion groups",
            ));
        }
        let mut group = Vec::new();
        for (name, v) in &map {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let c = criterion(name, &text)?;
            if input_only && !INPUT_ONLY.contains(&c.metric.name) {
                return Err(usage(format!(
                    "--sla-params: {name} is not measured for an embedding or rerank API; use {}",
                    INPUT_ONLY.join(", ")
                )));
            }
            group.push(c);
        }
        groups.push(group);
    }
    let extrema = groups
        .iter()
        .flatten()
        .any(|c| matches!(c.op, Op::Max | Op::Min));
    if extrema && (groups.len() != 1 || groups[0].len() != 1) {
        return Err(usage(
            "--sla-params: max/min requires exactly one SLA group containing one metric",
        ));
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_in_the_report_unit_or_with_a_suffix() {
        let c = criterion("p99_latency", "<=2s").expect("parses");
        assert_eq!((c.op, c.target), (Op::Le, 2.0));
        let c = criterion("p99_latency", "< 500ms").expect("parses");
        assert_eq!((c.op, c.target), (Op::Lt, 0.5));
        let c = criterion("avg_ttft", "≤0.2s").expect("parses");
        assert_eq!((c.op, c.target), (Op::Le, 200.0));
        let c = criterion("avg_ttft", "<=300").expect("parses");
        assert_eq!(c.target, 300.0);
        let c = criterion("rps", ">=1e1").expect("parses");
        assert_eq!((c.op, c.target), (Op::Ge, 10.0));
        let c = criterion("tps", "max").expect("parses");
        assert_eq!(c.op, Op::Max);
        assert_eq!(
            criterion("avg_ttft", "<=300ms")
                .expect("parses")
                .condition(),
            "<= 300 ms"
        );
    }

    #[test]
    fn bad_criteria_say_what_is_wrong() {
        for (name, text, why) in [
            ("p99_itl", "<=1", "unknown SLA metric"),
            ("avg_ttft", "300", "no operator"),
            ("avg_ttft", "<=abc", "not a number"),
            ("rps", "<=2s", "does not match the unit"),
        ] {
            let e = format!("{:#}", criterion(name, text).expect_err(text));
            assert!(e.contains(why), "{name} {text}: {e}");
        }
        for (text, why) in [
            ("[]", "at least one"),
            ("[{}]", "non-empty"),
            ("5", "JSON object"),
            ("{", "not valid JSON"),
            (r#"[{"tps": "max", "rps": ">=1"}]"#, "exactly one SLA group"),
            (
                r#"[{"tps": "max"}, {"rps": ">=1"}]"#,
                "exactly one SLA group",
            ),
        ] {
            let e = format!("{:#}", parse(text, false).expect_err(text));
            assert!(e.contains(why), "{text}: {e}");
        }
        let e = format!(
            "{:#}",
            parse(r#"{"avg_ttft": "<=1s"}"#, true).expect_err("input only")
        );
        assert!(e.contains("embedding or rerank"), "{e}");
    }

    #[test]
    fn groups_and_their_criteria_keep_their_order() {
        let groups = parse(
            r#"[{"avg_ttft": "<=2s", "avg_tpot": "<=50ms"}, {"p99_latency": "<5"}]"#,
            false,
        )
        .expect("parses");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0][0].metric.name, "avg_ttft");
        assert_eq!(groups[0][0].target, 2000.0);
        assert_eq!(groups[0][1].target, 50.0);
        assert_eq!(groups[1][0].metric.name, "p99_latency");
    }
}
