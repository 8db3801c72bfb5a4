//! `--sla-auto-tune`: the search for the largest `--parallel` (or `--rate`) that meets
//! `--sla-params`, evalscope 1.14.1's algorithm and files.
//!
//! Every probed value runs `--sla-num-runs` times with `round(value * multiplier)` requests
//! (default multiplier 2) in `sla_tuning/sla_<variable>_<value>_run_<i>/`; its metrics are the
//! mean over those runs, and it passes only when every request of every run succeeded (the
//! 100 % gate) and its group's criteria hold on the means.
//!
//! - A constraint group is searched under the assumption that meeting it is monotonic in the
//!   load: from the start value (`--parallel` / `--rate`, clamped to the bounds) it doubles
//!   until a probe fails (or halves until one passes), then bisects between the last pass
//!   and the first failure. Each group is searched on its own; probes are shared.
//! - `max`/`min` of one metric assumes a single-peaked objective: it finds the slope from the
//!   neighbours of the start value, gallops along it with doubling steps while the objective
//!   does not get worse, then bisects on the slope between adjacent values.
//!
//! Beyond evalscope: the answer says when it sits at a search bound (the true limit may lie
//! past it), and each probe's repeated runs show their spread (min, max and the coefficient of
//! variation of the criteria's metrics), so a noisy answer is visible; both go to the console
//! and to `sla_search.json` beside evalscope's `sla_summary.json`.

pub mod criteria;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::aggregate::{Percentiles, Summary};
use crate::cli::RunArgs;
use crate::error::usage;
pub use criteria::{Criterion, Group, Op};

/// The tuned variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    /// Concurrency.
    Parallel,
    /// Requests per second, at `--sla-fixed-parallel`.
    Rate,
}

impl Variable {
    /// `parallel` or `rate`.
    pub fn name(self) -> &'static str {
        match self {
            Variable::Parallel => "parallel",
            Variable::Rate => "rate",
        }
    }
}

/// The search the flags ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaPlan {
    /// `--sla-variable`.
    pub variable: Variable,
    /// `--sla-params`, parsed.
    pub groups: Vec<Group>,
    /// `--sla-params` as given (for the log).
    pub params_text: String,
    /// `--sla-num-runs`.
    pub num_runs: u32,
    /// `--sla-lower-bound`.
    pub lower: u64,
    /// `--sla-upper-bound`.
    pub upper: u64,
    /// `--sla-fixed-parallel` (default: the upper bound).
    pub fixed_parallel: u64,
    /// `--sla-number-multiplier` (default 2).
    pub multiplier: f64,
    /// Where the search starts: `--parallel` or `--rate`, clamped to the bounds.
    pub start: u64,
    /// `--warmup-num`, applied to each probe run.
    pub warmup_num: f64,
}

impl SlaPlan {
    /// The search, when `--sla-auto-tune` is given; `input_only` when the API adapter's
    /// requests produce no text (embeddings, rerank), which limits the metrics.
    pub fn from_args(a: &RunArgs, input_only: bool) -> anyhow::Result<Option<SlaPlan>> {
        if !a.sla_auto_tune {
            return Ok(None);
        }
        let variable = match a.sla_variable.as_str() {
            "parallel" => Variable::Parallel,
            "rate" => Variable::Rate,
            other => {
                return Err(usage(format!(
                    "--sla-variable must be parallel or rate, not '{other}'"
                )))
            }
        };
        let text = a.sla_params.as_deref().ok_or_else(|| {
            usage("--sla-auto-tune needs --sla-params, such as '[{\"p99_latency\": \"<=2s\"}]'")
        })?;
        let groups = criteria::parse(text, input_only)?;
        if a.sla_lower_bound > a.sla_upper_bound {
            return Err(usage(format!(
                "--sla-lower-bound {} is above --sla-upper-bound {}",
                a.sla_lower_bound, a.sla_upper_bound
            )));
        }
        if a.open_loop {
            return Err(usage(
                "--sla-auto-tune runs closed-loop probes (the rate search at --sla-fixed-parallel); drop --open-loop",
            ));
        }
        let current = match variable {
            Variable::Parallel => a.parallel.first().copied().unwrap_or(1) as f64,
            Variable::Rate => a.rate.first().copied().unwrap_or(-1.0),
        };
        let start = (current.max(0.0) as u64).clamp(a.sla_lower_bound, a.sla_upper_bound);
        Ok(Some(SlaPlan {
            variable,
            groups,
            params_text: text.to_string(),
            num_runs: a.sla_num_runs.max(1),
            lower: a.sla_lower_bound,
            upper: a.sla_upper_bound,
            fixed_parallel: a.sla_fixed_parallel.unwrap_or(a.sla_upper_bound),
            multiplier: a.sla_number_multiplier.unwrap_or(2.0),
            start,
            warmup_num: a.warmup_num,
        }))
    }

    /// Requests of one probe run at `value`: `round(value * multiplier)` (Python's rounding,
    /// half to even), at least 1.
    pub fn number(&self, value: u64) -> u64 {
        ((value as f64 * self.multiplier).round_ties_even() as u64).max(1)
    }

    /// Probe run `i` at `value`: its load, requests, warmup and directory.
    pub fn spec(&self, value: u64, i: u32) -> crate::plan::RunSpec {
        let number = self.number(value);
        let (parallel, rate) = match self.variable {
            Variable::Parallel => (value, None),
            Variable::Rate => (self.fixed_parallel, Some(value as f64)),
        };
        crate::plan::RunSpec {
            parallel: Some(parallel.max(1) as usize),
            number,
            rate,
            warmup: crate::plan::warmup(self.warmup_num, number),
            label: self.run_label(value, i),
            share: None,
        }
    }

    /// The directory of run `i` at `value`, relative to the output directory.
    pub fn run_label(&self, value: u64, i: u32) -> String {
        format!("sla_tuning/sla_{}_{value}_run_{i}", self.variable.name())
    }
}

/// One run of a probe.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// Its summary.
    pub summary: Summary,
    /// Its percentiles.
    pub percentiles: Percentiles,
}

/// Runs the probes: `Ok(None)` when the run was interrupted (the search stops).
pub trait Prober {
    /// Run `i` of the probe at `value`.
    fn run(&mut self, value: u64, i: u32) -> anyhow::Result<Option<ProbeRun>>;
}

/// A probed value and what decided it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The value.
    pub value: u64,
    /// Its runs.
    pub runs: Vec<ProbeRun>,
    /// Requests over all runs, and the successful ones.
    pub total: u64,
    /// Successful requests.
    pub succeeded: u64,
    /// Every request of every run succeeded.
    pub gate: bool,
    /// Why the probe is not valid (failed requests, missing metrics).
    pub reasons: Vec<String>,
    /// The criteria's metrics, mean over the runs (only those every run has).
    pub values: BTreeMap<&'static str, f64>,
    /// Each run's values of those metrics.
    pub per_run: Vec<BTreeMap<&'static str, f64>>,
}

impl Probe {
    fn passes(&self, group: &[Criterion]) -> bool {
        self.gate
            && group
                .iter()
                .all(|c| self.values.get(c.metric.name).is_some_and(|v| c.holds(*v)))
    }

    /// min, max and coefficient of variation (percent) of a metric over the runs.
    pub fn spread(&self, metric: &str) -> Option<(f64, f64, f64)> {
        let v: Vec<f64> = self
            .per_run
            .iter()
            .filter_map(|m| m.get(metric).copied())
            .collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = if v.len() > 1 {
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        let cv = if mean.abs() > 0.0 {
            100.0 * var.sqrt() / mean.abs()
        } else {
            0.0
        };
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        Some((lo, hi, cv))
    }
}

/// The answer for one group (or the optimisation).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The criteria, as `metric condition`.
    pub criteria: Vec<(String, String)>,
    /// `constraint`, `max` or `min`.
    pub mode: &'static str,
    /// The value found.
    pub selected: Option<u64>,
    /// The metric's value there (optimisation).
    pub observed: Option<f64>,
    /// Why.
    pub reason: String,
    /// What the search assumed.
    pub assumption: &'static str,
    /// perf: the answer sits at a search bound.
    pub at_bound: Option<&'static str>,
}

/// The search's state.
pub struct Tuner<'a, P: Prober> {
    plan: &'a SlaPlan,
    prober: P,
    probes: Vec<Probe>,
    selections: Vec<Selection>,
    interrupted: bool,
}

/// The search stopped (interrupted).
struct Stopped;

impl<'a, P: Prober> Tuner<'a, P> {
    /// A search with `prober`.
    pub fn new(plan: &'a SlaPlan, prober: P) -> Self {
        Tuner {
            plan,
            prober,
            probes: Vec::new(),
            selections: Vec::new(),
            interrupted: false,
        }
    }

    /// Runs the search; returns the probes in the order they ran and the answers.
    pub fn tune(mut self) -> anyhow::Result<Outcome> {
        let plan = self.plan;
        crate::output::log::info(format!(
            "SLA auto-tune of {} in [{}, {}] for {}",
            plan.variable.name(),
            plan.lower,
            plan.upper,
            plan.params_text
        ));
        let single = plan.groups.len() == 1 && plan.groups[0].len() == 1;
        let result = match plan.groups[0][0].op {
            Op::Max | Op::Min if single => {
                let c = plan.groups[0][0].clone();
                self.optimise(&c)
            }
            _ => {
                let mut r = Ok(Ok(()));
                for group in plan.groups.clone() {
                    r = self.constraint(&group);
                    if !matches!(r, Ok(Ok(()))) {
                        break;
                    }
                }
                r
            }
        };
        match result? {
            Ok(()) => {}
            Err(Stopped) => self.interrupted = true,
        }
        Ok(Outcome {
            probes: self.probes,
            selections: self.selections,
            interrupted: self.interrupted,
            variable: plan.variable,
            groups: plan.groups.clone(),
        })
    }

    /// The probe at `value`, run now unless it ran before.
    fn probe(&mut self, value: u64) -> anyhow::Result<Result<&Probe, Stopped>> {
        if let Some(i) = self.probes.iter().position(|p| p.value == value) {
            return Ok(Ok(&self.probes[i]));
        }
        let metrics: Vec<criteria::Metric> = self
            .plan
            .groups
            .iter()
            .flatten()
            .map(|c| c.metric)
            .fold(Vec::new(), |mut v, m| {
                if !v.contains(&m) {
                    v.push(m);
                }
                v
            });
        let mut probe = Probe {
            value,
            runs: Vec::new(),
            total: 0,
            succeeded: 0,
            gate: true,
            reasons: Vec::new(),
            values: BTreeMap::new(),
            per_run: Vec::new(),
        };
        for i in 0..self.plan.num_runs {
            crate::output::log::info(format!(
                "probing {}={value}, run {}/{}",
                self.plan.variable.name(),
                i + 1,
                self.plan.num_runs
            ));
            let Some(run) = self.prober.run(value, i)? else {
                return Ok(Err(Stopped));
            };
            let (total, ok) = (run.summary.total, run.summary.succeeded);
            probe.total += total;
            probe.succeeded += ok;
            if total == 0 || ok != total {
                probe.gate = false;
                probe
                    .reasons
                    .push(format!("run {}: {ok}/{total} requests succeeded", i + 1));
            }
            let mut values = BTreeMap::new();
            for m in &metrics {
                match m.value(&run.summary, &run.percentiles) {
                    Some(v) => {
                        values.insert(m.name, v);
                    }
                    None => probe.reasons.push(format!(
                        "run {}: missing or non-finite {}",
                        i + 1,
                        m.name
                    )),
                }
            }
            probe.per_run.push(values);
            probe.runs.push(run);
        }
        for m in &metrics {
            let vs: Vec<f64> = probe
                .per_run
                .iter()
                .filter_map(|r| r.get(m.name).copied())
                .collect();
            if vs.len() == probe.per_run.len() && !vs.is_empty() {
                probe
                    .values
                    .insert(m.name, vs.iter().sum::<f64>() / vs.len() as f64);
            }
        }
        let verdicts: Vec<String> = self
            .plan
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                format!(
                    "group {}: {}",
                    g + 1,
                    if probe.passes(group) { "PASS" } else { "FAIL" }
                )
            })
            .collect();
        crate::output::log::info(format!(
            "{}={value}: {}/{} succeeded; {}",
            self.plan.variable.name(),
            probe.succeeded,
            probe.total,
            verdicts.join(", ")
        ));
        self.probes.push(probe);
        Ok(Ok(self.probes.last().expect("just pushed")))
    }

    fn check(&mut self, value: u64, group: &[Criterion]) -> anyhow::Result<Result<bool, Stopped>> {
        Ok(self.probe(value)?.map(|p| p.passes(group)))
    }

    fn at_bound(&self, value: Option<u64>) -> Option<&'static str> {
        match value {
            Some(v) if v == self.plan.upper => Some("upper"),
            Some(v) if v == self.plan.lower => Some("lower"),
            _ => None,
        }
    }

    /// The largest value that meets `group`, assuming meeting it is monotonic in the load.
    fn constraint(&mut self, group: &[Criterion]) -> anyhow::Result<Result<(), Stopped>> {
        macro_rules! check {
            ($v:expr) => {
                match self.check($v, group)? {
                    Ok(passed) => passed,
                    Err(Stopped) => return Ok(Err(Stopped)),
                }
            };
        }
        let (lo_bound, hi_bound) = (self.plan.lower, self.plan.upper);
        let start = self.plan.start;
        let mut best: Option<u64> = None;
        let note = |v: u64, passed: bool, best: &mut Option<u64>| {
            if passed {
                *best = Some(best.map_or(v, |b| b.max(v)));
            }
        };
        let (mut lower, mut upper);
        let passed = check!(start);
        note(start, passed, &mut best);
        if passed {
            lower = start;
            upper = (start.saturating_mul(2)).min(hi_bound);
            loop {
                let ok = check!(upper);
                note(upper, ok, &mut best);
                if !ok {
                    break;
                }
                lower = upper;
                if upper == hi_bound {
                    break;
                }
                upper = (upper.saturating_mul(2)).min(hi_bound);
            }
        } else {
            upper = start;
            lower = (start / 2).max(lo_bound);
            let mut found = false;
            loop {
                let ok = check!(lower);
                note(lower, ok, &mut best);
                if ok {
                    found = true;
                    break;
                }
                upper = lower;
                if lower == lo_bound {
                    break;
                }
                lower = (lower / 2).max(lo_bound);
            }
            if !found {
                crate::output::log::warn(format!(
                    "even {}={lo_bound} fails {}",
                    self.plan.variable.name(),
                    describe(group)
                ));
                self.selections.push(Selection {
                    criteria: criteria_text(group),
                    mode: "constraint",
                    selected: None,
                    observed: None,
                    reason: format!("Failed at lower bound ({lo_bound})"),
                    assumption: "SLA satisfaction is monotonic as pressure increases",
                    at_bound: Some("lower"),
                });
                return Ok(Ok(()));
            }
        }
        let mut answer = lower;
        let (mut left, mut right) = (lower + 1, upper.saturating_sub(1));
        if check!(upper) {
            answer = upper;
            left = right + 1;
        }
        while left <= right {
            let mid = left + (right - left) / 2;
            let ok = check!(mid);
            note(mid, ok, &mut best);
            if ok {
                answer = mid;
                left = mid + 1;
            } else {
                right = mid - 1;
            }
        }
        let answer = best.map_or(answer, |b| b.max(answer));
        crate::output::log::info(format!(
            "SLA auto-tune for {}: {}={answer}",
            describe(group),
            self.plan.variable.name()
        ));
        let at_bound = self.at_bound(Some(answer));
        self.selections.push(Selection {
            criteria: criteria_text(group),
            mode: "constraint",
            selected: Some(answer),
            observed: None,
            reason: "Satisfied at the selected tested pressure".into(),
            assumption: "SLA satisfaction is monotonic as pressure increases",
            at_bound,
        });
        Ok(Ok(()))
    }

    /// The value with the best metric, assuming a single-peaked objective.
    fn optimise(&mut self, c: &Criterion) -> anyhow::Result<Result<(), Stopped>> {
        let name = c.metric.name;
        let maximise = c.op == Op::Max;
        macro_rules! score {
            ($v:expr) => {
                match self.probe($v)? {
                    Ok(p) => p.gate.then(|| p.values.get(name).copied()).flatten(),
                    Err(Stopped) => return Ok(Err(Stopped)),
                }
            };
        }
        let better = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(x), Some(y)) => {
                if maximise {
                    x > y
                } else {
                    x < y
                }
            }
        };
        let not_worse = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(x), Some(y)) => {
                if maximise {
                    x >= y
                } else {
                    x <= y
                }
            }
        };
        let (lo_bound, hi_bound) = (self.plan.lower, self.plan.upper);
        let start = self.plan.start;
        let start_score = score!(start);
        // The interval the peak lies in.
        let bracket: Option<(u64, u64)> = if start_score.is_none() {
            // A failed start may still have a valid prefix of lower loads.
            if score!(lo_bound).is_some() {
                let (mut left, mut right) = (lo_bound, start.saturating_sub(1).max(lo_bound));
                while left < right {
                    let mid = left + (right - left).div_ceil(2);
                    if score!(mid).is_some() {
                        left = mid;
                    } else {
                        right = mid - 1;
                    }
                }
                Some((lo_bound, left))
            } else {
                None
            }
        } else {
            let left_score = if start > lo_bound {
                score!(start - 1)
            } else {
                None
            };
            let right_score = if start < hi_bound {
                score!(start + 1)
            } else {
                None
            };
            let direction: i64 = if better(left_score, start_score) {
                -1
            } else if better(right_score, start_score) {
                1
            } else {
                0
            };
            if direction == 0 {
                Some((start, start))
            } else {
                let step_to = |v: u64, step: u64| -> Option<u64> {
                    if direction > 0 {
                        v.checked_add(step).filter(|x| *x <= hi_bound)
                    } else {
                        v.checked_sub(step).filter(|x| *x >= lo_bound)
                    }
                };
                let mut previous = start;
                let mut current = (start as i64 + direction) as u64;
                let mut step = 1u64;
                let mut bracket = sorted(previous, current);
                loop {
                    let Some(candidate) = step_to(current, step) else {
                        let edge = if direction > 0 { hi_bound } else { lo_bound };
                        if current != edge {
                            let _ = score!(edge);
                            bracket = sorted(previous, edge);
                        }
                        break;
                    };
                    let (cand, cur) = (score!(candidate), score!(current));
                    if not_worse(cand, cur) {
                        previous = current;
                        current = candidate;
                        bracket = sorted(previous, current);
                        step = step.saturating_mul(2);
                    } else {
                        bracket = sorted(previous, candidate);
                        break;
                    }
                }
                Some(bracket)
            }
        };
        // Bisect on the slope between adjacent values.
        if let Some((mut left, mut right)) = bracket {
            while left < right {
                let mid = left + (right - left) / 2;
                let (here, next) = (score!(mid), score!(mid + 1));
                if here.is_none() {
                    if next.is_none() {
                        right = mid;
                    } else {
                        left = mid + 1;
                    }
                } else if next.is_none() || not_worse(here, next) {
                    right = mid;
                } else {
                    left = mid + 1;
                }
            }
        }
        let best = self
            .probes
            .iter()
            .filter(|p| p.gate)
            .filter_map(|p| p.values.get(name).map(|v| (p.value, *v)))
            .fold(None::<(u64, f64)>, |acc, (v, m)| match acc {
                None => Some((v, m)),
                Some((bv, bm)) => {
                    let wins = if maximise { m > bm } else { m < bm };
                    if wins || (m == bm && v < bv) {
                        Some((v, m))
                    } else {
                        Some((bv, bm))
                    }
                }
            });
        let (selected, observed, reason) = match best {
            Some((v, m)) => (
                Some(v),
                Some(m),
                format!("Best observed {name}: {}", c.metric.show(m)),
            ),
            None => (
                None,
                None,
                "No run passed the 100% success gate with the required metric".into(),
            ),
        };
        let at_bound = self.at_bound(selected);
        self.selections.push(Selection {
            criteria: vec![(
                name.to_string(),
                if maximise { "max" } else { "min" }.into(),
            )],
            mode: if maximise { "max" } else { "min" },
            selected,
            observed,
            reason,
            assumption: "single-peaked objective within a valid low-pressure prefix",
            at_bound,
        });
        Ok(Ok(()))
    }
}

fn sorted(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

fn criteria_text(group: &[Criterion]) -> Vec<(String, String)> {
    group
        .iter()
        .map(|c| (c.metric.name.to_string(), c.condition()))
        .collect()
}

fn describe(group: &[Criterion]) -> String {
    group
        .iter()
        .map(|c| format!("{} {}", c.metric.name, c.condition()))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// What the search found.
pub struct Outcome {
    /// The probes in the order they ran.
    pub probes: Vec<Probe>,
    /// One answer per group (or the optimisation's).
    pub selections: Vec<Selection>,
    /// Whether an interruption cut the search short.
    pub interrupted: bool,
    /// The tuned variable.
    pub variable: Variable,
    /// The criteria.
    pub groups: Vec<Group>,
}

/// The mean of each numeric key over the runs' summaries (the key order of the first), with
/// the request counts summed as evalscope sums them.
fn averaged_metrics(runs: &[ProbeRun]) -> Map<String, Value> {
    let maps: Vec<Map<String, Value>> = runs
        .iter()
        .filter_map(|r| match r.summary.to_json() {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    let mut out = Map::new();
    let Some(first) = maps.first() else {
        return out;
    };
    const COUNTS: [&str; 5] = [
        "Total Requests",
        "Success Requests",
        "Failed Requests",
        "Stream Requests",
        "Non-Stream Requests",
    ];
    for key in first.keys() {
        let vals: Vec<f64> = maps
            .iter()
            .filter_map(|m| m.get(key).filter(|v| v.is_number()).and_then(Value::as_f64))
            .collect();
        if vals.is_empty() {
            continue;
        }
        if COUNTS.contains(&key.as_str()) {
            out.insert(key.clone(), json!(vals.iter().sum::<f64>() as u64));
        } else {
            out.insert(
                key.clone(),
                json!(vals.iter().sum::<f64>() / vals.len() as f64),
            );
        }
    }
    out
}

/// The mean of each percentile column over the runs: `{"Percentiles": [labels], column:
/// [values]}`, `null` (written `NaN`) where no run has a value.
fn averaged_percentiles(runs: &[ProbeRun]) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(first) = runs.first().map(|r| &r.percentiles) else {
        return out;
    };
    if first.rows.is_empty() {
        return out;
    }
    out.insert(
        "Percentiles".into(),
        json!(first.rows.iter().map(|r| r.label).collect::<Vec<_>>()),
    );
    for metric in &first.metrics {
        let column: Vec<Value> = first
            .rows
            .iter()
            .map(|row| {
                let vals: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.percentiles.get(row.label, metric))
                    .collect();
                if vals.is_empty() {
                    Value::Null
                } else {
                    json!(vals.iter().sum::<f64>() / vals.len() as f64)
                }
            })
            .collect();
        out.insert(metric.to_string(), Value::Array(column));
    }
    out
}

impl Outcome {
    /// `sla_summary.json`, evalscope's shape: `{"<variable>_<value>": {"metrics": {...},
    /// "percentiles": {...}}}` in probe order, the metrics averaged over the probe's runs.
    pub fn summary_json(&self) -> Value {
        let mut out = Map::new();
        for p in &self.probes {
            out.insert(
                format!("{}_{}", self.variable.name(), p.value),
                json!({
                    "metrics": averaged_metrics(&p.runs),
                    "percentiles": averaged_percentiles(&p.runs),
                }),
            );
        }
        Value::Object(out)
    }

    fn group_passes(&self, p: &Probe) -> Vec<bool> {
        self.groups.iter().map(|g| p.passes(g)).collect()
    }

    /// `sla_search.json`, perf's: every probe with its verdicts, means and spread, and the
    /// answers with their bound notes.
    pub fn search_json(&self) -> Value {
        let probes: Vec<Value> = self
            .probes
            .iter()
            .map(|p| {
                let spread: Map<String, Value> = p
                    .values
                    .keys()
                    .filter_map(|m| {
                        p.spread(m).map(|(lo, hi, cv)| {
                            (m.to_string(), json!({"min": lo, "max": hi, "cv_percent": cv}))
                        })
                    })
                    .collect();
                json!({
                    "value": p.value,
                    "runs": p.runs.len(),
                    "total_requests": p.total,
                    "succeeded_requests": p.succeeded,
                    "success_rate": if p.total > 0 { 100.0 * p.succeeded as f64 / p.total as f64 } else { 0.0 },
                    "request_gate_passed": p.gate,
                    "valid": p.reasons.is_empty(),
                    "reasons": p.reasons,
                    "metric_values": p.values,
                    "per_run_values": p.per_run,
                    "spread": spread,
                    "group_passes": self.group_passes(p),
                })
            })
            .collect();
        let selections: Vec<Value> = self
            .selections
            .iter()
            .map(|s| {
                json!({
                    "criteria": s.criteria.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<String, Value>>(),
                    "mode": s.mode,
                    "selected_value": s.selected,
                    "observed_metric": s.observed,
                    "status": if s.selected.is_some() { "best_observed" } else { "none" },
                    "reason": s.reason,
                    "assumption": s.assumption,
                    "at_search_bound": s.at_bound,
                })
            })
            .collect();
        json!({
            "variable": self.variable.name(),
            "interrupted": self.interrupted,
            "probes": probes,
            "selections": selections,
        })
    }

    /// The console tables: every probe, then the answers.
    pub fn tables(&self) -> String {
        use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
        let metrics: Vec<&criteria::Metric> =
            self.groups
                .iter()
                .flatten()
                .map(|c| &c.metric)
                .fold(Vec::new(), |mut v, m| {
                    if !v.iter().any(|x: &&criteria::Metric| x.name == m.name) {
                        v.push(m);
                    }
                    v
                });
        let mut probes = Table::new();
        probes.load_preset(UTF8_FULL_CONDENSED);
        let mut header = vec![
            self.variable.name().to_string(),
            "Succeeded/Total".into(),
            "Run status".into(),
            "Groups".into(),
        ];
        header.extend(
            metrics
                .iter()
                .map(|m| format!("{} (mean; min-max, cv)", m.name)),
        );
        header.push("Reason".into());
        probes.set_header(header);
        for p in &self.probes {
            let groups = self
                .group_passes(p)
                .iter()
                .enumerate()
                .map(|(i, ok)| format!("{}:{}", i + 1, if *ok { "PASS" } else { "FAIL" }))
                .collect::<Vec<_>>()
                .join(", ");
            let mut row = vec![
                p.value.to_string(),
                format!("{}/{}", p.succeeded, p.total),
                if p.reasons.is_empty() {
                    "VALID"
                } else {
                    "FAILED"
                }
                .to_string(),
                groups,
            ];
            for m in &metrics {
                row.push(match (p.values.get(m.name), p.spread(m.name)) {
                    (Some(v), Some((lo, hi, cv))) if p.runs.len() > 1 => format!(
                        "{}; {}-{}, {:.1}%",
                        m.show(*v),
                        crate::output::console::num(lo),
                        crate::output::console::num(hi),
                        cv
                    ),
                    (Some(v), _) => m.show(*v),
                    _ => "-".into(),
                });
            }
            row.push(if p.reasons.is_empty() {
                "-".into()
            } else {
                p.reasons.join(", ")
            });
            probes.add_row(row);
        }
        let mut answers = Table::new();
        answers.load_preset(UTF8_FULL_CONDENSED);
        answers.set_header(vec!["Criteria", "Selected", "Status", "Reason"]);
        for s in &self.selections {
            let mut reason = s.reason.clone();
            match s.at_bound {
                Some("upper") => reason.push_str(
                    "; at the search's upper bound: the limit may lie above it (raise --sla-upper-bound)",
                ),
                Some(_) if s.selected.is_some() => reason.push_str(
                    "; at the search's lower bound: nothing lower was tried (lower --sla-lower-bound)",
                ),
                _ => {}
            }
            answers.add_row(vec![
                s.criteria
                    .iter()
                    .map(|(m, c)| format!("{m} {c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.selected.map_or("None".into(), |v| v.to_string()),
                if s.selected.is_some() {
                    "best_observed"
                } else {
                    "none"
                }
                .into(),
                reason,
            ]);
        }
        let mut text = format!("SLA auto-tune: probes\n{probes}\n\nSelections\n{answers}");
        if self.interrupted {
            text.push_str("\n(interrupted: the search stopped before it finished; the answers cover the probes that ran)");
        }
        text
    }

    /// Writes `sla_summary.json` and `sla_search.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        crate::output::write_json_nan(&dir.join("sla_summary.json"), &self.summary_json())?;
        crate::output::write_json(&dir.join("sla_search.json"), &self.search_json())
    }
}

#[cfg(test)]
mod tests;
