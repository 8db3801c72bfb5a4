//! `--shard-sync DIR`: the shards of one benchmark start each run of a sweep together. The
//! directory is one every shard can read and write (the shared volume their results go to);
//! there is no coordinator.
//!
//! Before run `k` each shard writes `run-<k>-shard-<I>.json` holding the instant it became
//! ready, on the server's clock (its own clock less the offset read from the server's `Date`
//! header, so machines whose clocks disagree still agree on instants). Each then polls for the
//! other shards' marks; once all `N` are there, every shard computes the same start, the
//! latest ready instant plus [`MARGIN`], and sleeps until it on its own clock. The margin
//! covers the polling and a shared file system's delay in showing a new file. A mark is
//! written to a temporary name and renamed, so a reader never sees half of one.
//!
//! A shard whose sweep ends early (`--stop-on-saturation`, an interrupt) writes
//! `run-<k>-stop.json` for the run it will not start, and the shards waiting for that run stop
//! their sweeps too. A shard that never comes (it failed, or was never started) must not hold
//! the others forever: a shard that has waited [`PATIENCE`] for a run starts it without the
//! missing ones, and says which they were. The directory must be fresh for each benchmark: joining writes
//! `joined-<I>` with create-new semantics, so a directory left by an earlier benchmark, whose
//! marks would let the shards through at once, is refused by name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::error::usage;
use crate::plan::shard::{now_unix, Shard};
use crate::run::clock::Offset;

/// How long after the last shard is ready every shard starts.
pub const MARGIN: Duration = Duration::from_secs(2);
/// How long a shard waits for the others before it starts a run without them.
pub const PATIENCE: Duration = Duration::from_secs(600);
/// How often the marks are looked for.
const POLL: Duration = Duration::from_millis(50);

/// This shard's place in the rendezvous.
pub struct Barrier {
    dir: PathBuf,
    index: u64,
    count: u64,
    /// This clock minus the server's (0 when the server sent no `Date`).
    offset_s: f64,
}

/// How a wait ended.
#[derive(Debug, PartialEq)]
pub enum Met {
    /// Every shard was ready; this one started `late_s` after the common start (0 when on time).
    All { late_s: f64 },
    /// These shards were not ready within [`PATIENCE`]; the others started without them.
    Without(Vec<u64>),
    /// Shard `shard` ended the sweep before this run (`why`): it is not run.
    Stopped { shard: u64, why: String },
    /// An interrupt ended the wait.
    Interrupted,
}

impl Barrier {
    /// Joins the rendezvous in `dir`, refusing a directory an earlier benchmark left marks in.
    pub fn join(dir: &Path, shard: &Shard, offset: Option<Offset>) -> anyhow::Result<Barrier> {
        std::fs::create_dir_all(dir).map_err(|e| {
            usage(format!(
                "cannot create the --shard-sync directory {}: {e}; give a directory every shard can write",
                dir.display()
            ))
        })?;
        let joined = dir.join(format!("joined-{}", shard.index));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&joined)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(usage(format!(
                    "the --shard-sync directory {} already holds shard {}'s marks of an earlier benchmark: give each benchmark a fresh directory",
                    dir.display(),
                    shard.index
                )))
            }
            Err(e) => {
                return Err(usage(format!(
                    "cannot write in the --shard-sync directory {}: {e}; give a directory every shard can write",
                    dir.display()
                )))
            }
        }
        Ok(Barrier {
            dir: dir.to_path_buf(),
            index: shard.index,
            count: shard.count,
            offset_s: offset.map_or(0.0, |o| o.offset_s),
        })
    }

    fn mark(&self, run: usize, shard: u64) -> PathBuf {
        self.dir.join(format!("run-{run}-shard-{shard}.json"))
    }

    /// The ready instant (server clock) in shard `shard`'s mark for `run`, if it is there.
    fn ready(&self, run: usize, shard: u64) -> Option<f64> {
        let text = std::fs::read_to_string(self.mark(run, shard)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["ready_server_unix"].as_f64()
    }

    fn stop_mark(&self, run: usize) -> PathBuf {
        self.dir.join(format!("run-{run}-stop.json"))
    }

    /// Tells the other shards that this one will not start `run` (its sweep ended: `why`).
    pub fn stop(&self, run: usize, why: &str) -> anyhow::Result<()> {
        let mark = self.stop_mark(run);
        let partial = mark.with_extension(format!("json.{}.partial", self.index));
        let body = serde_json::json!({"shard": self.index, "why": why});
        std::fs::write(&partial, body.to_string())
            .and_then(|()| std::fs::rename(&partial, &mark))
            .with_context(|| format!("cannot write the --shard-sync mark {}", mark.display()))
    }

    /// The shard that ended the sweep before `run`, and why, if one did.
    fn stopped(&self, run: usize) -> Option<(u64, String)> {
        let text = std::fs::read_to_string(self.stop_mark(run)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some((v["shard"].as_u64()?, v["why"].as_str()?.to_string()))
    }

    /// Marks this shard ready for `run` and waits until every shard starts it.
    pub async fn wait(&self, run: usize, stop: &CancellationToken) -> anyhow::Result<Met> {
        let mark = self.mark(run, self.index);
        let partial = mark.with_extension("json.partial");
        let body = serde_json::json!({
            "shard": self.index,
            "ready_server_unix": now_unix() - self.offset_s,
            "host": crate::output::host_name(),
        });
        std::fs::write(&partial, body.to_string())
            .and_then(|()| std::fs::rename(&partial, &mark))
            .with_context(|| format!("cannot write the --shard-sync mark {}", mark.display()))?;
        let mut first_seen: Option<std::time::Instant> = None;
        loop {
            if let Some((shard, why)) = self.stopped(run) {
                return Ok(Met::Stopped { shard, why });
            }
            let ready: Vec<Option<f64>> = (0..self.count).map(|s| self.ready(run, s)).collect();
            if ready.iter().all(Option::is_some) {
                let ready: Vec<f64> = ready.into_iter().flatten().collect();
                let wait = start_local(&ready, self.offset_s) - now_unix();
                if wait <= 0.0 {
                    return Ok(Met::All { late_s: -wait });
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                    _ = stop.cancelled() => return Ok(Met::Interrupted),
                }
                return Ok(Met::All { late_s: 0.0 });
            }
            let since = *first_seen.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > PATIENCE {
                let missing = (0..self.count).filter(|&s| ready[s as usize].is_none());
                return Ok(Met::Without(missing.collect()));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.cancelled() => return Ok(Met::Interrupted),
            }
        }
    }
}

/// When, on a clock `offset_s` ahead of the server's, the run starts: [`MARGIN`] after the
/// latest of the shards' ready instants (the server's clock).
fn start_local(ready_server: &[f64], offset_s: f64) -> f64 {
    let last = ready_server.iter().cloned().fold(f64::MIN, f64::max);
    last + MARGIN.as_secs_f64() + offset_s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u64) -> Shard {
        Shard {
            index,
            count: 2,
            source: "--shard".into(),
        }
    }

    #[test]
    fn clocks_that_disagree_start_at_one_instant_of_the_servers() {
        // Shard 0's clock is 5 s ahead of the server's, shard 1's agrees with it; they were
        // ready at the server's instants 100 and 101.
        let ready = [100.0, 101.0];
        let margin = MARGIN.as_secs_f64();
        assert_eq!(start_local(&ready, 5.0), 101.0 + margin + 5.0);
        assert_eq!(start_local(&ready, 0.0), 101.0 + margin);
        // The same instant of the server's on both.
        assert_eq!(start_local(&ready, 5.0) - 5.0, start_local(&ready, 0.0));
    }

    #[test]
    fn shards_meet_and_a_used_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Barrier::join(dir.path(), &shard(0), None).expect("join");
        let b = Barrier::join(dir.path(), &shard(1), None).expect("join");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stop = CancellationToken::new();
        let (x, y) = rt.block_on(async {
            let (x, y) = tokio::join!(a.wait(0, &stop), b.wait(0, &stop));
            (x.expect("a"), y.expect("b"))
        });
        assert_eq!((x, y), (Met::All { late_s: 0.0 }, Met::All { late_s: 0.0 }));
        for s in 0..2 {
            assert!(a.ready(0, s).is_some(), "shard {s}'s mark");
        }
        let err = Barrier::join(dir.path(), &shard(1), None)
            .err()
            .expect("a used directory");
        assert!(format!("{err:#}").contains("fresh directory"), "{err:#}");
    }

    #[test]
    fn an_interrupt_ends_the_wait_for_a_shard_that_never_comes() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Barrier::join(dir.path(), &shard(0), None).expect("join");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        let met = rt.block_on(async {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                cancel.cancel();
            });
            a.wait(3, &stop).await.expect("wait")
        });
        assert_eq!(met, Met::Interrupted);
        assert!(dir.path().join("run-3-shard-0.json").is_file());
    }

    #[test]
    fn a_shard_whose_sweep_ended_stops_the_others_at_the_next_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Barrier::join(dir.path(), &shard(0), None).expect("join");
        let b = Barrier::join(dir.path(), &shard(1), None).expect("join");
        b.stop(1, "over-saturated").expect("stop mark");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let met = rt
            .block_on(a.wait(1, &CancellationToken::new()))
            .expect("wait");
        assert_eq!(
            met,
            Met::Stopped {
                shard: 1,
                why: "over-saturated".into()
            }
        );
    }
}
