//! What a run's rows do not keep, carried into the merged summary from each shard's own
//! `benchmark_summary.json` of the run. The client's load stays visible after a merge, because
//! a saturated shard distorts the whole benchmark's numbers: its CPU seconds are added up, its
//! utilisation and event-loop delay are the busiest shard's, and the run counts as saturated
//! if any shard was. Resends after a reused connection closed, fresh-connection requests and
//! how token counts were had are added up; the transport and the timestamps are the shards'
//! common one, or each named when they differ.

use std::path::Path;

use crate::aggregate::Summary;

/// Each shard's summary of the run in its `run_dirs` entry; `None` for a shard without one
/// (killed before it wrote it), which is said.
pub fn read(run_dirs: &[std::path::PathBuf]) -> Vec<Option<Summary>> {
    run_dirs
        .iter()
        .map(|dir| {
            let path = dir.join("benchmark_summary.json");
            summary(&path)
                .map_err(|e| {
                    eprintln!(
                        "WARNING: {}: {e}; the merged client load leaves this shard out",
                        path.display()
                    )
                })
                .ok()
        })
        .collect()
}

/// The indices of the shards whose client was saturated in the run.
pub fn saturated(indices: &[u64], own: &[Option<Summary>]) -> Vec<u64> {
    indices
        .iter()
        .zip(own)
        .filter(|(_, s)| s.as_ref().and_then(|s| s.client_saturated) == Some(true))
        .map(|(i, _)| *i)
        .collect()
}

fn summary(path: &Path) -> Result<Summary, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("not a run summary: {e}"))
}

/// `merged` with what only the shards' own summaries know.
pub fn carry(merged: &mut Summary, own: &[Option<Summary>]) {
    let shards: Vec<&Summary> = own.iter().flatten().collect();
    let round = |v: f64, digits: i32| {
        let p = 10f64.powi(digits);
        (v * p).round() / p
    };
    let sum =
        |f: fn(&Summary) -> Option<f64>| shards.iter().copied().filter_map(f).reduce(|a, b| a + b);
    let max =
        |f: fn(&Summary) -> Option<f64>| shards.iter().copied().filter_map(f).reduce(f64::max);
    merged.client_cpu_s = sum(|s| s.client_cpu_s).map(|v| round(v, 4));
    merged.client_cpu_util_percent = max(|s| s.client_cpu_util_percent);
    merged.loop_delay_p99_ms = max(|s| s.loop_delay_p99_ms);
    merged.loop_delay_max_ms = max(|s| s.loop_delay_max_ms);
    merged.client_saturated = shards
        .iter()
        .filter_map(|s| s.client_saturated)
        .reduce(|a, b| a || b);
    merged.reused_connection_retries = shards.iter().map(|s| s.reused_connection_retries).sum();
    // Each shard's mean, weighted by its resends.
    let costs: Vec<(f64, f64)> = shards
        .iter()
        .filter(|s| s.reused_connection_retries > 0 && s.avg_retry_cost_ms >= 0.0)
        .map(|s| (s.avg_retry_cost_ms, s.reused_connection_retries as f64))
        .collect();
    let weight: f64 = costs.iter().map(|(_, w)| w).sum();
    merged.avg_retry_cost_ms = if weight > 0.0 {
        round(costs.iter().map(|(c, w)| c * w).sum::<f64>() / weight, 2)
    } else {
        -1.0
    };
    merged.fresh_connection_requests = shards.iter().map(|s| s.fresh_connection_requests).sum();
    merged.estimated_token_counts = shards.iter().map(|s| s.estimated_token_counts).sum();
    merged.client_counted_token_counts = shards.iter().map(|s| s.client_counted_token_counts).sum();
    merged.transport = common(shards.iter().map(|s| s.transport.as_deref()));
    merged.timestamps = common(shards.iter().map(|s| s.timestamps.as_deref()));
}

/// The one value the shards share, or each of theirs, `mixed: a; b`.
fn common<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for v in values.flatten() {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    match seen.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(format!("mixed: {}", many.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(cpu: f64, util: f64, saturated: bool, retries: u64, cost: f64) -> Summary {
        Summary {
            client_cpu_s: Some(cpu),
            client_cpu_util_percent: Some(util),
            loop_delay_p99_ms: Some(util / 10.0),
            loop_delay_max_ms: Some(util / 5.0),
            client_saturated: Some(saturated),
            reused_connection_retries: retries,
            avg_retry_cost_ms: cost,
            fresh_connection_requests: 3,
            estimated_token_counts: 2,
            transport: Some("HTTP/1.1".into()),
            timestamps: Some("kernel receive time".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_busiest_shard_speaks_for_the_client_and_counts_add_up() {
        let mut merged = Summary::default();
        let mut third = shard(0.3, 30.0, false, 0, -1.0);
        third.timestamps = Some("read time".into());
        let own = [
            Some(shard(0.1, 10.0, false, 1, 4.0)),
            Some(shard(0.2, 95.0, true, 3, 8.0)),
            None,
            Some(third),
        ];
        carry(&mut merged, &own);
        assert_eq!(saturated(&[0, 1, 2, 3], &own), [1], "named by index");
        assert_eq!(merged.client_cpu_s, Some(0.6));
        assert_eq!(merged.client_cpu_util_percent, Some(95.0));
        assert_eq!(merged.loop_delay_max_ms, Some(19.0));
        assert_eq!(merged.client_saturated, Some(true), "one saturated shard");
        assert_eq!(merged.reused_connection_retries, 4);
        assert_eq!(merged.avg_retry_cost_ms, 7.0, "(4 x 1 + 8 x 3) / 4");
        assert_eq!(merged.fresh_connection_requests, 9);
        assert_eq!(merged.estimated_token_counts, 6);
        assert_eq!(merged.transport.as_deref(), Some("HTTP/1.1"));
        assert_eq!(
            merged.timestamps.as_deref(),
            Some("mixed: kernel receive time; read time")
        );
    }

    #[test]
    fn shards_that_measured_no_client_load_leave_it_absent() {
        let mut merged = Summary::default();
        carry(
            &mut merged,
            &[Some(Summary::default()), Some(Summary::default())],
        );
        assert_eq!(merged.client_cpu_s, None);
        assert_eq!(merged.client_saturated, None);
        assert_eq!(merged.avg_retry_cost_ms, -1.0);
    }
}
