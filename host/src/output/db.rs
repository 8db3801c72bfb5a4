//! `benchmark_data.db`: one row per measured request, table `result` with evalscope's columns
//! (responses as JSON instead of pickles) plus perf's: request index, HTTP status, error kind
//! and text, cached tokens, chunk counts, and the Unix-epoch time of every phase.
//!
//! Written on the aggregator thread, never on the threads that time requests, in one
//! transaction per `--db-commit-interval` rows.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use serde_json::json;

use crate::aggregate::derive::{self, Derived};
use crate::aggregate::Rows;
use crate::output::redact::redact;

const SCHEMA: &str = "
CREATE TABLE result (
    request TEXT,
    start_time REAL,
    inter_token_latencies TEXT,
    success INTEGER,
    response_messages TEXT,
    completed_time REAL,
    latency REAL,
    first_chunk_latency REAL,
    time_per_output_token REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    max_gpu_memory_cost REAL,
    request_id TEXT,
    is_stream INTEGER,
    request_index INTEGER,
    http_status INTEGER,
    error_kind TEXT,
    error TEXT,
    cached_tokens INTEGER,
    tokens_estimated INTEGER,
    output_chunks INTEGER,
    malformed_chunks INTEGER,
    dispatch_lag REAL,
    intended_send_epoch REAL,
    sent_epoch REAL,
    first_byte_epoch REAL,
    first_token_epoch REAL,
    completed_epoch REAL,
    token_counts TEXT
);";

const INSERT: &str =
    "INSERT INTO result VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?27, ?12,
    ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?28)";

/// Longest time a finished request waits in an open transaction: a killed process loses at
/// most about this much (plus `--db-commit-interval` rows, whichever comes first).
pub const COMMIT_AFTER: Duration = Duration::from_secs(1);

/// The per-run database.
pub struct ResultDb {
    conn: Connection,
    pending: usize,
    commit_every: usize,
    last_commit: Instant,
    run_start_epoch: f64,
    /// A row failed to be written: the table no longer holds every request.
    incomplete: bool,
}

impl ResultDb {
    /// Creates `path` (which must not exist) with the `result` table.
    pub fn create(
        path: &Path,
        commit_every: usize,
        run_start_epoch: f64,
    ) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -256;",
        )?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch("BEGIN")?;
        Ok(ResultDb {
            conn,
            pending: 0,
            commit_every: commit_every.max(1),
            last_commit: Instant::now(),
            run_start_epoch,
            incomplete: false,
        })
    }

    /// Adds one request.
    pub fn insert(&mut self, d: &Derived) -> rusqlite::Result<()> {
        let written = self.write(d);
        self.incomplete |= written.is_err();
        written
    }

    fn write(&mut self, d: &Derived) -> rusqlite::Result<()> {
        let (rec, raw) = (&d.record, &d.raw);
        let rel = |epoch: f64| epoch - self.run_start_epoch;
        let response = json!({
            "content": raw.text,
            "reasoning": raw.reasoning,
            "usage": {
                "prompt_tokens": raw.usage.prompt_tokens.into_option(),
                "completion_tokens": raw.usage.completion_tokens.into_option(),
                "cached_tokens": raw.usage.cached_tokens.into_option(),
            },
        });
        let itl = serde_json::to_string(rec.itl_s.as_slice()).unwrap_or_else(|_| "[]".into());
        let request = String::from_utf8_lossy(&raw.request_body);
        let request = redact(&request);
        let response = response.to_string();
        let response = redact(&response);
        self.conn.prepare_cached(INSERT)?.execute(params![
            request.as_ref(),
            rel(rec.times.sent),
            itl,
            rec.success,
            response.as_ref(),
            rel(rec.times.completed),
            rec.latency_s.into_option(),
            rec.ttft_s.into_option(),
            rec.tpot_s.into_option(),
            rec.prompt_tokens
                .into_option()
                .and_then(|n| i64::try_from(n).ok()),
            rec.completion_tokens
                .into_option()
                .and_then(|n| i64::try_from(n).ok()),
            rec.is_stream,
            rec.request_index as i64,
            (rec.http_status != 0).then_some(rec.http_status),
            (!rec.success).then(|| rec.failure.as_str()),
            (!rec.success).then(|| rec.error.as_str()),
            rec.cached_tokens
                .into_option()
                .and_then(|n| i64::try_from(n).ok()),
            rec.tokens_estimated,
            raw.output_events,
            raw.malformed_chunks,
            derive::dispatch_lag_s(raw),
            rec.times.intended_send,
            rec.times.sent,
            rec.times.first_byte.into_option(),
            rec.times.first_output.into_option(),
            rec.times.completed,
            crate::worker::request_id(raw.index),
            d.tokens.source(),
        ])?;
        self.pending += 1;
        if self.pending >= self.commit_every {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT; BEGIN")?;
        self.pending = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Commits the rows waiting longer than [`COMMIT_AFTER`]; the collector calls this
    /// between records, so a quiet spell does not leave finished requests uncommitted.
    pub fn tick(&mut self) -> rusqlite::Result<()> {
        if self.pending > 0 && self.last_commit.elapsed() >= COMMIT_AFTER && !self.incomplete {
            let committed = self.commit();
            self.incomplete |= committed.is_err();
            return committed;
        }
        Ok(())
    }

    /// After a failed write: keeps what can be kept (commits the rows written since the last
    /// commit, if the database still takes it).
    pub fn salvage(&mut self) {
        let _ = self.conn.execute_batch("COMMIT; BEGIN");
        self.pending = 0;
    }

    /// The table as [`Rows`] for the percentiles, when it holds every request: after a row
    /// failed to be written it does not, and the error says so (percentiles over only the
    /// rows that made it would be wrong).
    pub fn complete_rows(&self) -> Result<CompleteRows<'_>, String> {
        if self.incomplete {
            return Err("some rows could not be written, so the table misses requests".into());
        }
        Ok(CompleteRows(self))
    }

    fn ranks(&self, expr: &str, rows: &str, ps: &[f64]) -> rusqlite::Result<Vec<Option<f64>>> {
        let finite =
            format!("({rows}) AND ({expr}) IS NOT NULL AND abs({expr}) <= 1.7976931348623157e308");
        let n: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM result WHERE {finite}"),
            [],
            |r| r.get(0),
        )?;
        let mut out = vec![None; ps.len()];
        if n == 0 {
            return Ok(out);
        }
        let n = n as usize;
        let wanted: Vec<usize> = ps
            .iter()
            .map(|p| (((p / 100.0) * n as f64).ceil() as usize).clamp(1, n) - 1)
            .collect();
        let last = wanted.iter().copied().max().unwrap_or(0);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {expr} FROM result WHERE {finite} ORDER BY 1 LIMIT {}",
            last + 1
        ))?;
        let mut values = stmt.query([])?;
        let mut index = 0;
        while let Some(row) = values.next()? {
            let v: f64 = row.get(0)?;
            for (slot, &w) in out.iter_mut().zip(&wanted) {
                if w == index {
                    *slot = Some(v);
                }
            }
            index += 1;
        }
        Ok(out)
    }

    /// Commits what is pending and closes the file.
    pub fn finish(self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")?;
        self.conn.close().map_err(|(_, e)| e)
    }
}

/// A run's table known to hold every measured request.
pub struct CompleteRows<'a>(&'a ResultDb);

impl Rows for CompleteRows<'_> {
    /// Nearest-rank values of `expr` over the rows matching `filter` (an SQL condition): the
    /// element at `ceil(p/100 * n) - 1` of the sorted finite values. SQLite sorts, on disk when
    /// the run is large, so memory does not grow with the number of requests.
    fn nearest_ranks(
        &self,
        expr: &str,
        filter: &str,
        ps: &[f64],
    ) -> Result<Vec<Option<f64>>, String> {
        self.0.ranks(expr, filter, ps).map_err(|e| e.to_string())
    }
}
