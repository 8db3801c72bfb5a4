//! `perf compare A B [C ...]`: the same metrics at the same load, side by side, with the
//! change against the first benchmark in percent (before and after a server upgrade, two
//! engines, two settings). Runs are matched by their load (concurrency, or rate in open loop);
//! a load only some benchmarks ran shows blanks for the others.

use std::path::PathBuf;

use serde::Serialize;

use crate::charts::{Chart, Figure, Series, Style};
use crate::load::{self, trim, Benchmark, Run};
use crate::observe::fmt;
use crate::ReportError;

/// A compared metric: its name, how to read it from a run, and whether more is better.
struct Metric {
    name: &'static str,
    get: fn(&Run) -> Option<f64>,
    higher_is_better: bool,
}

fn sentinel(v: Option<f64>) -> Option<f64> {
    v.filter(|v| *v >= 0.0 && v.is_finite())
}

const METRICS: [Metric; 11] = [
    Metric {
        name: "Req Throughput (req/s)",
        get: |r| sentinel(r.num("Req Throughput (req/s)")),
        higher_is_better: true,
    },
    Metric {
        name: "Output Throughput (tok/s)",
        get: |r| sentinel(r.num("Output Throughput (tok/s)")),
        higher_is_better: true,
    },
    Metric {
        name: "Success (%)",
        get: |r| r.success_percent(),
        higher_is_better: true,
    },
    Metric {
        name: "Avg Latency (s)",
        get: |r| sentinel(r.num("Avg Latency (s)")),
        higher_is_better: false,
    },
    Metric {
        name: "P99 Latency (s)",
        get: |r| sentinel(r.percentile("99%", "Latency (s)")),
        higher_is_better: false,
    },
    Metric {
        name: "Avg TTFT (ms)",
        get: |r| sentinel(r.num("Avg TTFT (ms)")),
        higher_is_better: false,
    },
    Metric {
        name: "P99 TTFT (ms)",
        get: |r| sentinel(r.percentile("99%", "TTFT (ms)")),
        higher_is_better: false,
    },
    Metric {
        name: "Avg TPOT (ms)",
        get: |r| sentinel(r.num("Avg TPOT (ms)")),
        higher_is_better: false,
    },
    Metric {
        name: "P99 TPOT (ms)",
        get: |r| sentinel(r.percentile("99%", "TPOT (ms)")),
        higher_is_better: false,
    },
    Metric {
        name: "Avg ITL (ms)",
        get: |r| sentinel(r.num("Avg ITL (ms)")),
        higher_is_better: false,
    },
    Metric {
        name: "Goodput (req/s)",
        get: |r| sentinel(r.num("Goodput (req/s)")),
        higher_is_better: true,
    },
];

/// Where a run sits: open loop or not, and its load.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Load {
    open: bool,
    value: f64,
}

impl Load {
    fn of(r: &Run) -> Load {
        Load {
            open: r.rate().is_some(),
            value: r.load(),
        }
    }

    fn label(&self) -> String {
        if self.open {
            format!("rate {} req/s", trim(self.value))
        } else {
            format!("concurrency {}", trim(self.value))
        }
    }
}

/// Benchmarks read for comparison.
pub struct Comparison {
    /// A short, distinct name per benchmark.
    pub labels: Vec<String>,
    /// The benchmarks, in the order given; the first is the baseline.
    pub benches: Vec<Benchmark>,
    loads: Vec<Load>,
}

/// One cell: the value and its change against the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The figure.
    pub value: String,
    /// `+12.3%`, empty for the baseline or without both values.
    pub change: String,
    /// `up` (better), `down` (worse) or empty.
    pub class: &'static str,
}

/// A load's table.
#[derive(Debug, Clone, Serialize)]
pub struct LoadTable {
    /// The load.
    pub load: String,
    /// Per metric: its name and one cell per benchmark.
    pub rows: Vec<(String, Vec<Cell>)>,
}

/// Reads the benchmarks in `dirs` (at least two).
pub fn compare(dirs: &[PathBuf]) -> Result<Comparison, ReportError> {
    if dirs.len() < 2 {
        return Err(ReportError::Invalid {
            path: dirs.first().cloned().unwrap_or_default(),
            detail: "compare needs at least two benchmark directories".into(),
        });
    }
    let benches = dirs
        .iter()
        .map(|d| load::benchmark(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut loads: Vec<Load> = Vec::new();
    for r in benches.iter().flat_map(|b| &b.runs) {
        let l = Load::of(r);
        if !loads.contains(&l) {
            loads.push(l);
        }
    }
    loads.sort_by(|a, b| a.open.cmp(&b.open).then(a.value.total_cmp(&b.value)));
    Ok(Comparison {
        labels: labels(&benches),
        benches,
        loads,
    })
}

/// Distinct names: the title, made distinct by the directory when two are alike.
fn labels(benches: &[Benchmark]) -> Vec<String> {
    let titles: Vec<String> = benches.iter().map(Benchmark::title).collect();
    titles
        .iter()
        .zip(benches)
        .enumerate()
        .map(|(i, (t, b))| {
            if titles.iter().filter(|x| *x == t).count() == 1 {
                t.clone()
            } else {
                let parent = b.dir.parent().map(load::dir_name).unwrap_or_default();
                let candidate = format!("{parent}/{}", load::dir_name(&b.dir));
                let clash = titles.iter().enumerate().any(|(j, x)| {
                    j != i
                        && x == t
                        && benches[j].dir.parent().map(load::dir_name)
                            == b.dir.parent().map(load::dir_name)
                });
                if clash {
                    format!("{candidate} #{}", i + 1)
                } else {
                    candidate
                }
            }
        })
        .collect()
}

impl Comparison {
    fn run(&self, bench: usize, load: Load) -> Option<&Run> {
        self.benches[bench]
            .runs
            .iter()
            .find(|r| Load::of(r) == load)
    }

    /// The tables, one per load.
    pub fn tables(&self) -> Vec<LoadTable> {
        self.loads
            .iter()
            .map(|load| LoadTable {
                load: load.label(),
                rows: METRICS
                    .iter()
                    .filter_map(|m| {
                        let values: Vec<Option<f64>> = (0..self.benches.len())
                            .map(|b| self.run(b, *load).and_then(m.get))
                            .collect();
                        values
                            .iter()
                            .any(Option::is_some)
                            .then(|| (m.name.to_string(), cells(&values, m.higher_is_better)))
                    })
                    .collect(),
            })
            .collect()
    }

    /// The console form: a table per load.
    pub fn console(&self) -> String {
        use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
        let mut out = String::new();
        for (i, (label, b)) in self.labels.iter().zip(&self.benches).enumerate() {
            let role = if i == 0 { " (baseline)" } else { "" };
            out.push_str(&format!("[{}] {label}{role}: {}\n", i + 1, b.dir.display()));
        }
        for t in self.tables() {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            let mut head = vec!["Metric".to_string()];
            for (i, _) in self.labels.iter().enumerate() {
                head.push(format!("[{}]", i + 1));
                if i > 0 {
                    head.push(format!("[{}] vs [1]", i + 1));
                }
            }
            table.set_header(head);
            for (metric, cells) in &t.rows {
                let mut row = vec![metric.clone()];
                for (i, c) in cells.iter().enumerate() {
                    row.push(c.value.clone());
                    if i > 0 {
                        row.push(c.change.clone());
                    }
                }
                table.add_row(row);
            }
            out.push_str(&format!("\n{}\n{table}\n", t.load));
        }
        out
    }

    /// Line charts of the main metrics over the loads, one line per benchmark.
    pub fn charts(&self) -> Vec<Figure> {
        let ticks: Vec<String> = self.loads.iter().map(|l| trim(l.value)).collect();
        let x_label = if self.loads.iter().all(|l| l.open) {
            "request rate (req/s)"
        } else {
            "load (concurrency or rate)"
        };
        [0usize, 1, 3, 4, 5, 6, 7]
            .iter()
            .map(|&m| {
                let metric = &METRICS[m];
                Chart {
                    id: format!("compare-{}", slug(metric.name)),
                    title: metric.name.to_string(),
                    x_label: x_label.into(),
                    y_label: unit(metric.name).into(),
                    style: Style::Line,
                    x_ticks: Some(ticks.clone()),
                    series: self
                        .labels
                        .iter()
                        .enumerate()
                        .map(|(b, label)| Series {
                            name: label.clone(),
                            points: self
                                .loads
                                .iter()
                                .enumerate()
                                .filter_map(|(x, l)| {
                                    self.run(b, *l).and_then(metric.get).map(|v| (x as f64, v))
                                })
                                .collect(),
                        })
                        .collect(),
                    note: None,
                }
            })
            .filter(|c| !c.is_empty())
            .map(|c| c.figure())
            .collect()
    }

    /// The HTML page of the comparison.
    pub fn html(&self, opts: &crate::page::Options) -> Result<String, ReportError> {
        #[derive(Serialize)]
        struct Page<'a> {
            benches: Vec<(String, String)>,
            charts: Vec<Figure>,
            tables: Vec<LoadTable>,
            labels: &'a [String],
            generated: &'a str,
            version: &'static str,
            nav: Option<String>,
        }
        let page = Page {
            benches: self
                .labels
                .iter()
                .zip(&self.benches)
                .map(|(l, b)| (l.clone(), b.dir.display().to_string()))
                .collect(),
            charts: self.charts(),
            tables: self.tables(),
            labels: &self.labels,
            generated: &opts.generated,
            version: env!("CARGO_PKG_VERSION"),
            nav: opts.nav.clone(),
        };
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.add_template("compare.html", include_str!("../templates/compare.html"))?;
        env.add_template("style.css", crate::page::STYLE)?;
        Ok(env.get_template("compare.html")?.render(&page)?)
    }
}

fn cells(values: &[Option<f64>], higher_is_better: bool) -> Vec<Cell> {
    let base = values[0];
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let value = v.map(|v| fmt(Some(v))).unwrap_or_default();
            let (change, class) = match (i, base, *v) {
                (0, _, _) | (_, None, _) | (_, _, None) => (String::new(), ""),
                (_, Some(0.0), Some(b)) => (if b == 0.0 { "0%".into() } else { "n/a".into() }, ""),
                (_, Some(a), Some(b)) => {
                    let pct = 100.0 * (b - a) / a;
                    let better = (pct > 0.0) == higher_is_better;
                    let class = if pct.abs() < 0.5 {
                        ""
                    } else if better {
                        "up"
                    } else {
                        "down"
                    };
                    (format!("{pct:+.1}%"), class)
                }
            };
            Cell {
                value,
                change,
                class,
            }
        })
        .collect()
}

fn unit(metric: &str) -> &str {
    metric
        .rsplit_once('(')
        .map_or("", |(_, u)| u.trim_end_matches(')'))
}

fn slug(metric: &str) -> String {
    metric
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_against_the_baseline_and_coloured_by_direction() {
        let c = cells(&[Some(10.0), Some(12.0), None], true);
        assert_eq!(c[0].change, "");
        assert_eq!((c[1].change.as_str(), c[1].class), ("+20.0%", "up"));
        assert_eq!(c[2].value, "");
        let c = cells(&[Some(10.0), Some(12.0)], false);
        assert_eq!(c[1].class, "down", "more latency is worse");
    }

    #[test]
    fn slugs_and_units_come_from_the_metric_name() {
        assert_eq!(slug("P99 TTFT (ms)"), "p99-ttft-ms");
        assert_eq!(unit("Req Throughput (req/s)"), "req/s");
    }
}
