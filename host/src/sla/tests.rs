use super::*;
use crate::aggregate::{metric, PercentileRow};

/// A server of `capacity` slots: latency 0.4 s up to it, growing in proportion past it;
/// throughput rises with the load up to the capacity, then falls a little.
struct Model {
    capacity: u64,
    /// Every request fails at or above this load.
    breaks_at: u64,
    /// Each run's latency differs by this fraction, alternating (noise).
    jitter: f64,
    calls: Vec<(u64, u32)>,
}

impl Prober for &mut Model {
    fn run(&mut self, value: u64, i: u32) -> anyhow::Result<Option<ProbeRun>> {
        self.calls.push((value, i));
        let base = if value <= self.capacity {
            0.4
        } else {
            0.4 * value as f64 / self.capacity as f64
        };
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        let latency = base * (1.0 + sign * self.jitter);
        let tps = if value <= self.capacity {
            value as f64 * 10.0
        } else {
            self.capacity as f64 * 10.0 - (value - self.capacity) as f64
        };
        let total = value * 2;
        let succeeded = if value >= self.breaks_at { 0 } else { total };
        Ok(Some(ProbeRun {
            summary: Summary {
                total,
                succeeded,
                failed: total - succeeded,
                concurrency: value as i64,
                avg_latency_s: latency,
                output_tok_per_s: tps,
                ..Summary::default()
            },
            percentiles: Percentiles {
                metrics: vec![metric::LATENCY],
                rows: vec![
                    PercentileRow {
                        label: "50%",
                        values: vec![Some(latency)],
                    },
                    PercentileRow {
                        label: "99%",
                        values: vec![Some(latency * 1.1)],
                    },
                ],
            },
        }))
    }
}

fn model(capacity: u64) -> Model {
    Model {
        capacity,
        breaks_at: u64::MAX,
        jitter: 0.0,
        calls: Vec::new(),
    }
}

fn plan(params: &str, start: u64, lower: u64, upper: u64, runs: u32) -> SlaPlan {
    SlaPlan {
        variable: Variable::Parallel,
        groups: criteria::parse(params, false).expect("criteria"),
        params_text: params.into(),
        num_runs: runs,
        lower,
        upper,
        fixed_parallel: upper,
        multiplier: 2.0,
        start,
        warmup_num: 0.0,
    }
}

#[test]
fn a_constraint_search_finds_the_capacity_from_below_and_from_above() {
    for start in [1, 40] {
        let mut m = model(12);
        let p = plan(r#"[{"p99_latency": "<=0.45s"}]"#, start, 1, 64, 1);
        let out = Tuner::new(&p, &mut m).tune().expect("tunes");
        assert_eq!(out.selections.len(), 1);
        assert_eq!(out.selections[0].selected, Some(12), "start {start}");
        assert_eq!(out.selections[0].at_bound, None);
        // Each value ran once.
        let mut values: Vec<u64> = m.calls.iter().map(|c| c.0).collect();
        let n = values.len();
        values.dedup();
        assert_eq!(values.len(), n, "{:?}", m.calls);
    }
}

#[test]
fn an_answer_at_a_bound_says_so_and_failures_fail_the_gate() {
    let mut m = model(1000);
    let p = plan(r#"{"avg_latency": "<=1"}"#, 1, 1, 16, 1);
    let out = Tuner::new(&p, &mut m).tune().expect("tunes");
    assert_eq!(out.selections[0].selected, Some(16));
    assert_eq!(out.selections[0].at_bound, Some("upper"));
    assert!(out.tables().contains("raise --sla-upper-bound"));

    let mut m = model(1000);
    m.breaks_at = 5;
    let p = plan(r#"{"avg_latency": "<=1"}"#, 1, 1, 64, 1);
    let out = Tuner::new(&p, &mut m).tune().expect("tunes");
    assert_eq!(out.selections[0].selected, Some(4));
    let failed = out.probes.iter().find(|p| p.value == 8).expect("8 probed");
    assert!(!failed.gate && failed.reasons[0].contains("0/16 requests succeeded"));

    let mut m = model(1000);
    m.breaks_at = 1;
    let out = Tuner::new(&p, &mut m).tune().expect("tunes");
    assert_eq!(out.selections[0].selected, None);
    assert!(out.selections[0].reason.contains("lower bound"));
}

#[test]
fn groups_are_searched_on_their_own() {
    let mut m = model(8);
    let p = plan(
        r#"[{"p99_latency": "<=450ms"}, {"avg_latency": "<=0.8", "p99_latency": "<=0.9s"}]"#,
        1,
        1,
        64,
        1,
    );
    let out = Tuner::new(&p, &mut m).tune().expect("tunes");
    let picked: Vec<Option<u64>> = out.selections.iter().map(|s| s.selected).collect();
    // Group 1: p99 0.44 s up to 8, 0.495 s at 9. Group 2: the mean 0.4 * p / 8 <= 0.8 up to
    // 16, the p99 1.1 times that <= 0.9 up to 16.
    assert_eq!(picked, vec![Some(8), Some(16)]);
}

#[test]
fn max_finds_the_peak_of_a_single_peaked_objective() {
    for start in [1, 3, 50] {
        let mut m = model(20);
        let p = plan(r#"[{"tps": "max"}]"#, start, 1, 128, 1);
        let out = Tuner::new(&p, &mut m).tune().expect("tunes");
        assert_eq!(
            out.selections[0].selected,
            Some(20),
            "start {start}: {:?}",
            m.calls
        );
        assert_eq!(out.selections[0].observed, Some(200.0));
        assert_eq!(out.selections[0].mode, "max");
    }
    let mut m = model(20);
    let p = plan(r#"[{"avg_latency": "min"}]"#, 30, 1, 128, 1);
    let out = Tuner::new(&p, &mut m).tune().expect("tunes");
    // Flat at 0.4 s up to the capacity: the smallest value with the best latency it saw.
    let s = out.selections[0].selected.expect("selected");
    assert!(s <= 20, "{s}");
}

#[test]
fn repeated_runs_are_averaged_and_their_spread_reported() {
    let mut m = model(12);
    m.jitter = 0.1;
    let p = plan(r#"[{"avg_latency": "<=0.5"}]"#, 4, 1, 64, 2);
    let out = Tuner::new(&p, &mut m).tune().expect("tunes");
    let probe = out.probes.iter().find(|p| p.value == 4).expect("probed");
    assert_eq!(probe.runs.len(), 2);
    assert!((probe.values["avg_latency"] - 0.4).abs() < 1e-12);
    let (lo, hi, cv) = probe.spread("avg_latency").expect("spread");
    assert!(
        (lo - 0.36).abs() < 1e-12 && (hi - 0.44).abs() < 1e-12,
        "{lo} {hi}"
    );
    assert!(cv > 10.0 && cv < 15.0, "{cv}");
    assert!(out.tables().contains("0.36-0.44"), "{}", out.tables());

    let summary = out.summary_json();
    let first = summary.as_object().expect("object").keys().next().cloned();
    assert_eq!(first.as_deref(), Some("parallel_4"));
    let at4 = &summary["parallel_4"];
    // Counts are summed over the runs, other numbers averaged.
    assert_eq!(at4["metrics"]["Total Requests"], json!(16));
    assert_eq!(at4["metrics"]["Concurrency"], json!(4.0));
    assert!((at4["metrics"]["Avg Latency (s)"].as_f64().expect("number") - 0.4).abs() < 1e-12);
    assert_eq!(at4["percentiles"]["Percentiles"], json!(["50%", "99%"]));
    assert!(
        (at4["percentiles"]["Latency (s)"][1]
            .as_f64()
            .expect("number")
            - 0.44)
            .abs()
            < 1e-9
    );
    let search = out.search_json();
    assert_eq!(search["probes"][0]["value"], json!(4));
    assert_eq!(search["selections"][0]["selected_value"], json!(15));
}

#[test]
fn probe_sizes_follow_the_multiplier_with_pythons_rounding() {
    let mut p = plan(r#"{"rps": ">=1"}"#, 1, 1, 8, 1);
    assert_eq!(p.number(7), 14);
    p.multiplier = 1.5;
    assert_eq!(p.number(3), 4); // 4.5 rounds to even
    assert_eq!(p.number(5), 8); // 7.5 rounds to even
    p.multiplier = 0.1;
    assert_eq!(p.number(1), 1);
    assert_eq!(p.run_label(8, 2), "sla_tuning/sla_parallel_8_run_2");
}
