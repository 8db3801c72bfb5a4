//! `speed_benchmark.json`, for the speed-benchmark datasets: per prompt length, the mean output
//! tokens per second of latency and the mean accelerator memory, read back from
//! `benchmark_data.db` with evalscope's query (so the grouping, rounding and order are its).

use std::path::Path;

use serde_json::{json, Value};

/// The table's rows, from the run's finished database.
pub fn rows(db: &Path) -> anyhow::Result<Vec<(i64, f64, f64)>> {
    let con = rusqlite::Connection::open(db)?;
    let mut stmt = con.prepare(
        "SELECT prompt_tokens, ROUND(AVG(completion_tokens / latency), 2), \
         ROUND(AVG(max_gpu_memory_cost), 2) FROM result \
         WHERE success = 1 AND latency > 0 GROUP BY prompt_tokens",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Option<i64>>(0)?.unwrap_or(0),
                r.get::<_, Option<f64>>(1)?.unwrap_or(0.0),
                r.get::<_, Option<f64>>(2)?.unwrap_or(0.0),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The file's content: a list of `{Prompt Tokens, Speed(tokens/s), GPU Memory(GB)}`.
pub fn to_json(rows: &[(i64, f64, f64)]) -> Value {
    Value::Array(
        rows.iter()
            .map(|(tokens, speed, memory)| {
                json!({"Prompt Tokens": tokens, "Speed(tokens/s)": speed, "GPU Memory(GB)": memory})
            })
            .collect(),
    )
}
