//! `--sla-auto-tune` on the session: each probe run is an ordinary run of the engine in
//! `sla_tuning/sla_<variable>_<value>_run_<i>/`, with the dataset offset advancing as a sweep
//! advances it; the search itself is `crate::sla`.

use super::Session;
use crate::output::console::RunOutcome;
use crate::output::log;
use crate::sla::{Outcome, ProbeRun, Prober, SlaPlan, Tuner};

struct SessionProber<'s, 'p> {
    session: &'s Session<'p>,
    sla: &'s SlaPlan,
    outcomes: Vec<RunOutcome>,
    offset: u64,
}

impl Prober for &mut SessionProber<'_, '_> {
    fn run(&mut self, value: u64, i: u32) -> anyhow::Result<Option<ProbeRun>> {
        let session = self.session;
        if session.interrupt.stop.is_cancelled() {
            return Ok(None);
        }
        if i > 0 {
            session.sleep_between_runs();
        }
        let spec = self.sla.spec(value, i);
        let outcome = session.run_one(&spec, self.outcomes.len(), self.offset)?;
        self.offset += spec.number;
        let run = ProbeRun {
            summary: outcome.summary.clone(),
            percentiles: outcome.percentiles.clone(),
        };
        self.outcomes.push(outcome);
        // An interrupted probe measured part of its load: it decides nothing.
        if session.interrupt.stop.is_cancelled() {
            return Ok(None);
        }
        Ok(Some(run))
    }
}

impl Session<'_> {
    /// The SLA search: every probe run, and what the search found (written to
    /// `sla_summary.json` and `sla_search.json`, and printed).
    pub(super) fn sla_search(&self, sla: &SlaPlan) -> anyhow::Result<(Vec<RunOutcome>, Outcome)> {
        self.begin();
        let mut prober = SessionProber {
            session: self,
            sla,
            outcomes: Vec::new(),
            offset: 0,
        };
        let outcome = Tuner::new(sla, &mut prober).tune()?;
        outcome.write(&self.plan.output_dir)?;
        log::info(format!(
            "SLA summary saved to {}",
            self.plan.output_dir.join("sla_summary.json").display()
        ));
        Ok((prober.outcomes, outcome))
    }
}
