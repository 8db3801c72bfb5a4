//! Goodput (`--goodput`, vLLM's form): per-request service-level objectives on the time to
//! first token, the time per output token and the end-to-end latency. A request is good when
//! it succeeded and meets every objective given (`<=`); a failed request is never good.
//! `Goodput (req/s)` is the good requests over the run's wall time (the same time
//! `Req Throughput (req/s)` divides by), `Good Requests (%)` their share of the measured ones.

use crate::error::usage;

/// The objectives, seconds; `None` where none was given.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Slo {
    /// Time to first token.
    pub ttft_s: Option<f64>,
    /// Time per output token (requests with one output token have none, and meet it).
    pub tpot_s: Option<f64>,
    /// End-to-end latency.
    pub e2el_s: Option<f64>,
}

impl Slo {
    /// Parses `ttft:MS tpot:MS e2el:MS` (any of them, each once).
    pub fn parse(items: &[String]) -> anyhow::Result<Option<Slo>> {
        if items.is_empty() {
            return Ok(None);
        }
        let mut slo = Slo::default();
        for item in items {
            let refuse = |why: &str| {
                usage(format!(
                    "--goodput {item}: {why}; give METRIC:MILLISECONDS with METRIC one of ttft, tpot, e2el (for example --goodput ttft:500 tpot:50)"
                ))
            };
            let (name, value) = item
                .split_once(':')
                .ok_or_else(|| refuse("no ':' between the metric and its limit"))?;
            let ms: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| refuse("the limit must be a number of milliseconds above 0"))?;
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "ttft" => &mut slo.ttft_s,
                "tpot" => &mut slo.tpot_s,
                "e2el" => &mut slo.e2el_s,
                _ => return Err(refuse("unknown metric")),
            };
            if slot.is_some() {
                return Err(refuse("the metric is given twice"));
            }
            *slot = Some(ms / 1000.0);
        }
        Ok(Some(slo))
    }

    /// Whether a successful request with these times (seconds) is good.
    pub fn met(&self, ttft_s: Option<f64>, tpot_s: Option<f64>, latency_s: f64) -> bool {
        let within = |limit: Option<f64>, value: Option<f64>| match (limit, value) {
            (None, _) => true,
            (Some(l), Some(v)) => v <= l,
            (Some(_), None) => true,
        };
        within(self.ttft_s, ttft_s.or(Some(latency_s)))
            && within(self.tpot_s, tpot_s)
            && within(self.e2el_s, Some(latency_s))
    }

    /// In vLLM's words, for the log and the console.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("ttft", self.ttft_s),
            ("tpot", self.tpot_s),
            ("e2el", self.e2el_s),
        ] {
            if let Some(s) = v {
                parts.push(format!("{name} <= {} ms", s * 1000.0));
            }
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn objectives_parse_in_milliseconds_and_bad_ones_say_why() {
        let slo = Slo::parse(&items("ttft:500 TPOT:50 e2el:2000"))
            .expect("parses")
            .expect("some");
        assert_eq!(slo.ttft_s, Some(0.5));
        assert_eq!(slo.tpot_s, Some(0.05));
        assert_eq!(slo.e2el_s, Some(2.0));
        assert_eq!(Slo::parse(&[]).expect("empty"), None);
        for (bad, why) in [
            ("ttft", "no ':'"),
            ("ttft:abc", "milliseconds"),
            ("ttft:-1", "milliseconds"),
            ("itl:5", "unknown metric"),
            ("ttft:5 ttft:6", "twice"),
        ] {
            let e = format!("{:#}", Slo::parse(&items(bad)).expect_err(bad));
            assert!(
                e.contains(why) && e.contains("METRIC:MILLISECONDS"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_request_is_good_when_it_meets_every_objective() {
        let slo = Slo {
            ttft_s: Some(0.1),
            tpot_s: Some(0.01),
            e2el_s: None,
        };
        assert!(slo.met(Some(0.1), Some(0.01), 9.0));
        assert!(!slo.met(Some(0.1001), Some(0.01), 0.2));
        assert!(!slo.met(Some(0.05), Some(0.02), 0.2));
        // One output token: no TPOT to miss.
        assert!(slo.met(Some(0.05), None, 0.05));
        // Not streamed: the latency is the time to first token.
        assert!(!slo.met(None, None, 0.2));
    }
}
