//! `benchmark_data.db`: one row per measured request, table `result`. evalscope's fourteen
//! columns come first, in its order, with its types and values (failed requests have NULL
//! latency, TTFT, token counts, memory and TPOT; `response_messages` in the form
//! `--response-messages` picks, evalscope's pickle by default), then perf's own: request
//! index, HTTP status, error kind and text, cached tokens, chunk counts, dispatch lag, the
//! Unix-epoch time of every phase, where the token counts came from, the connect and TLS
//! handshake times of a request that opened its connection, and with `--multi-turn` the
//! conversation and turn (from 1) of each request. A script that reads
//! `SELECT *` by position gets what it got from evalscope.
//!
//! Beside `result`, table `perf_metrics` holds each row's numbers without its bodies (the same
//! rowid): the percentiles, the workload timeline and the HTML report read it, since reading a column of
//! `result` after `response_messages` (or a long `request`) walks the body's overflow pages.
//!
//! Written on the collector thread, never on the threads that time requests, in one
//! transaction per `--db-commit-interval` rows or per [`COMMIT_AFTER`].

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use crate::aggregate::derive::{self, Derived};
use crate::aggregate::Rows;
use crate::output::messages::{self, ResponseMessages};
use crate::output::redact::redact;
use crate::output::workload::Sample;

/// The columns of `result`, in order: evalscope's first.
pub const COLUMNS: [(&str, &str); 34] = [
    ("request", "TEXT"),
    ("start_time", "REAL"),
    ("inter_token_latencies", "TEXT"),
    ("success", "INTEGER"),
    ("response_messages", "TEXT"),
    ("completed_time", "REAL"),
    ("latency", "REAL"),
    ("first_chunk_latency", "REAL"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("max_gpu_memory_cost", "REAL"),
    ("time_per_output_token", "REAL"),
    ("request_id", "TEXT"),
    ("is_stream", "INTEGER"),
    // perf's own, after evalscope's.
    ("request_index", "INTEGER"),
    ("http_status", "INTEGER"),
    ("error_kind", "TEXT"),
    ("error", "TEXT"),
    ("cached_tokens", "INTEGER"),
    ("tokens_estimated", "INTEGER"),
    ("output_chunks", "INTEGER"),
    ("decode_chunks", "INTEGER"),
    ("malformed_chunks", "INTEGER"),
    ("dispatch_lag", "REAL"),
    ("intended_send_epoch", "REAL"),
    ("sent_epoch", "REAL"),
    ("first_byte_epoch", "REAL"),
    ("first_token_epoch", "REAL"),
    ("completed_epoch", "REAL"),
    ("token_counts", "TEXT"),
    ("connect_time", "REAL"),
    ("tls_handshake_time", "REAL"),
    ("conversation_id", "INTEGER"),
    ("turn_index", "INTEGER"),
];

/// How many of [`COLUMNS`] are evalscope's.
pub const EVALSCOPE_COLUMNS: usize = 14;

/// The columns of `perf_metrics`, each a copy of `result`'s of the same name.
const METRICS: [(&str, &str); 12] = [
    ("success", "INTEGER"),
    ("is_stream", "INTEGER"),
    ("start_time", "REAL"),
    ("completed_time", "REAL"),
    ("latency", "REAL"),
    ("first_chunk_latency", "REAL"),
    ("time_per_output_token", "REAL"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("cached_tokens", "INTEGER"),
    ("dispatch_lag", "REAL"),
    ("error_kind", "TEXT"),
];

fn schema() -> String {
    let columns = |cs: &[(&str, &str)]| -> String {
        let c: Vec<String> = cs.iter().map(|(n, t)| format!("{n} {t}")).collect();
        c.join(", ")
    };
    format!(
        "CREATE TABLE result ({}); CREATE TABLE perf_metrics ({});",
        columns(&COLUMNS),
        columns(&METRICS)
    )
}

/// `perf_metrics`' insert, the rowid of the `result` row first.
fn metrics_insert_sql() -> String {
    let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
    let slots: Vec<String> = (1..=METRICS.len() + 1).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO perf_metrics (rowid, {}) VALUES ({})",
        names.join(", "),
        slots.join(", ")
    )
}

fn insert_sql(table: &str, n: usize) -> String {
    let slots: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!("INSERT INTO {table} VALUES ({})", slots.join(", "))
}

/// Longest time a finished request waits in an open transaction: a killed process loses at
/// most about this much (plus `--db-commit-interval` rows, whichever comes first).
pub const COMMIT_AFTER: Duration = Duration::from_secs(1);

/// The per-run database.
pub struct ResultDb {
    conn: Connection,
    insert: String,
    insert_metrics: String,
    pending: usize,
    commit_every: usize,
    last_commit: Instant,
    run_start_epoch: f64,
    messages: ResponseMessages,
    scratch: Vec<u8>,
    /// A row failed to be written: the table no longer holds every request.
    incomplete: bool,
}

impl ResultDb {
    /// Creates `path` (which must not exist) with the `result` table.
    pub fn create(
        path: &Path,
        commit_every: usize,
        run_start_epoch: f64,
        messages: ResponseMessages,
    ) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -256;",
        )?;
        conn.execute_batch(&schema())?;
        conn.execute_batch("BEGIN")?;
        Ok(ResultDb {
            conn,
            insert: insert_sql("result", COLUMNS.len()),
            insert_metrics: metrics_insert_sql(),
            pending: 0,
            commit_every: commit_every.max(1),
            last_commit: Instant::now(),
            run_start_epoch,
            messages,
            scratch: Vec::new(),
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
        let ok = rec.success;
        let count = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok());
        let itl = serde_json::to_string(rec.itl_s.as_slice()).unwrap_or_else(|_| "[]".into());
        let request = String::from_utf8_lossy(&raw.request_body);
        let request = redact(&request);
        let response = messages::encode(self.messages, raw, &mut self.scratch);
        let response = redact(&response);
        // evalscope's GB of accelerator memory: 0.0 for a remote server.
        let memory_gb = raw.peak_memory_bytes as f64 / (1u64 << 30) as f64;
        // evalscope's completion is the last event, start + latency; a failure's is when it
        // ended (evalscope leaves it 0).
        let completed = match rec.latency_s.into_option().filter(|_| ok) {
            Some(latency) => rel(rec.times.sent) + latency,
            None => rel(rec.times.completed),
        };
        let latency = rec.latency_s.into_option().filter(|_| ok);
        let ttft = rec.ttft_s.into_option().filter(|_| ok);
        let prompt = count(rec.prompt_tokens.into_option().filter(|_| ok));
        let completion = count(rec.completion_tokens.into_option().filter(|_| ok));
        // evalscope's 0 where there is no TPOT (one token, not streamed).
        let tpot = ok.then(|| rec.tpot_s.into_option().unwrap_or(0.0));
        let cached = count(rec.cached_tokens.into_option());
        self.conn.prepare_cached(&self.insert)?.execute(params![
            request.as_ref(),
            rel(rec.times.sent),
            itl,
            ok,
            response.as_ref(),
            completed,
            latency,
            ttft,
            prompt,
            completion,
            ok.then_some(memory_gb),
            tpot,
            raw.request_id.as_str(),
            rec.is_stream,
            rec.request_index as i64,
            (rec.http_status != 0).then_some(rec.http_status),
            (!ok).then(|| rec.failure.as_str()),
            (!ok).then(|| rec.error.as_str()),
            cached,
            rec.tokens_estimated,
            raw.output_events,
            raw.decode_chunks,
            raw.malformed_chunks,
            derive::dispatch_lag_s(raw),
            rec.times.intended_send,
            rec.times.sent,
            rec.times.first_byte.into_option(),
            rec.times.first_output.into_option(),
            rec.times.completed,
            d.tokens.source(),
            raw.opened.map(|o| o.connect.as_secs_f64()),
            raw.opened.and_then(|o| o.tls).map(|t| t.as_secs_f64()),
            raw.turn.map(|t| t.conversation as i64),
            raw.turn.map(|t| t.turn),
        ])?;
        let rowid = self.conn.last_insert_rowid();
        self.conn
            .prepare_cached(&self.insert_metrics)?
            .execute(params![
                rowid,
                ok,
                rec.is_stream,
                rel(rec.times.sent),
                completed,
                latency,
                ttft,
                tpot,
                prompt,
                completion,
                cached,
                derive::dispatch_lag_s(raw),
                (!ok).then(|| rec.failure.as_str()),
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
            &format!("SELECT COUNT(*) FROM perf_metrics WHERE {finite}"),
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
            "SELECT {expr} FROM perf_metrics WHERE {finite} ORDER BY 1 LIMIT {}",
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

    /// The successful requests in the order they were written (the order they finished),
    /// for the workload timeline.
    pub fn successes(&self, visit: &mut dyn FnMut(&Sample)) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT start_time, completed_time, prompt_tokens, completion_tokens, cached_tokens \
             FROM perf_metrics WHERE success = 1 ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        let count = |v: Option<i64>| v.map_or(0, |n| n.max(0) as u64);
        while let Some(row) = rows.next()? {
            visit(&Sample {
                start: row.get(0)?,
                completed: row.get(1)?,
                prompt: count(row.get(2)?),
                completion: count(row.get(3)?),
                cached: count(row.get(4)?),
            });
        }
        Ok(())
    }

    /// Appends every row of the run database at `path` (a shard's), its relative start and
    /// completion times shifted by `shift_s` (its run started that much after this table's);
    /// returns how many rows it added.
    pub fn append_from(&mut self, path: &Path, shift_s: f64) -> rusqlite::Result<u64> {
        self.conn.execute_batch("COMMIT")?;
        self.conn.execute(
            "ATTACH DATABASE ?1 AS shard",
            params![path.to_string_lossy()],
        )?;
        let copied = self.copy_attached(shift_s);
        let detached = self.conn.execute_batch("DETACH DATABASE shard; BEGIN");
        let n = copied?;
        detached?;
        Ok(n)
    }

    fn copy_attached(&mut self, shift_s: f64) -> rusqlite::Result<u64> {
        let base: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(rowid), 0) FROM main.result", [], |r| {
                    r.get(0)
                })?;
        let shifted = |name: &str| match name {
            "start_time" | "completed_time" => format!("{name} + ?2"),
            other => other.to_string(),
        };
        let names = |cs: &[(&str, &str)]| -> (String, String) {
            let plain: Vec<&str> = cs.iter().map(|(n, _)| *n).collect();
            let moved: Vec<String> = cs.iter().map(|(n, _)| shifted(n)).collect();
            (plain.join(", "), moved.join(", "))
        };
        self.conn.execute_batch("BEGIN")?;
        let (result, result_moved) = names(&COLUMNS);
        let n = self.conn.execute(
            &format!(
                "INSERT INTO main.result (rowid, {result}) SELECT rowid + ?1, {result_moved} FROM shard.result ORDER BY rowid"
            ),
            params![base, shift_s],
        )?;
        let (metrics, metrics_moved) = names(&METRICS);
        self.conn.execute(
            &format!(
                "INSERT INTO main.perf_metrics (rowid, {metrics}) SELECT rowid + ?1, {metrics_moved} FROM shard.perf_metrics ORDER BY rowid"
            ),
            params![base, shift_s],
        )?;
        self.conn.execute_batch("COMMIT")?;
        Ok(n as u64)
    }

    /// Every row's figures, in order, as [`Stored`] (not its request or response bodies).
    pub fn stored(&self, visit: &mut dyn FnMut(Stored)) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT request_index, success, is_stream, http_status, error_kind, error, latency, \
             first_chunk_latency, time_per_output_token, prompt_tokens, completion_tokens, \
             cached_tokens, token_counts, output_chunks, decode_chunks, malformed_chunks, \
             intended_send_epoch, sent_epoch, first_byte_epoch, first_token_epoch, \
             completed_epoch, inter_token_latencies, connect_time, tls_handshake_time, \
             conversation_id, turn_index, request_id FROM result ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let itl: Option<String> = r.get(21)?;
            visit(Stored {
                index: r.get::<_, Option<i64>>(0)?.unwrap_or(0).max(0) as u64,
                success: r.get::<_, Option<bool>>(1)?.unwrap_or(false),
                is_stream: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
                http_status: r.get::<_, Option<i64>>(3)?.unwrap_or(0).clamp(0, 999) as u16,
                error_kind: r.get(4)?,
                error: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                latency: r.get(6)?,
                ttft: r.get(7)?,
                tpot: r.get(8)?,
                prompt_tokens: r.get::<_, Option<i64>>(9)?.map(|n| n.max(0) as u64),
                completion_tokens: r.get::<_, Option<i64>>(10)?.map(|n| n.max(0) as u64),
                cached_tokens: r.get::<_, Option<i64>>(11)?.map(|n| n.max(0) as u64),
                token_counts: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                output_chunks: r
                    .get::<_, Option<i64>>(13)?
                    .unwrap_or(0)
                    .clamp(0, u32::MAX as i64) as u32,
                decode_chunks: r
                    .get::<_, Option<i64>>(14)?
                    .unwrap_or(0)
                    .clamp(0, u32::MAX as i64) as u32,
                malformed_chunks: r
                    .get::<_, Option<i64>>(15)?
                    .unwrap_or(0)
                    .clamp(0, u32::MAX as i64) as u32,
                intended: r.get::<_, Option<f64>>(16)?.unwrap_or(0.0),
                sent: r.get::<_, Option<f64>>(17)?.unwrap_or(0.0),
                first_byte: r.get(18)?,
                first_token: r.get(19)?,
                completed: r.get::<_, Option<f64>>(20)?.unwrap_or(0.0),
                itl: itl
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default(),
                connect: r.get(22)?,
                tls: r.get(23)?,
                conversation: r.get::<_, Option<i64>>(24)?.map(|n| n.max(0) as u64),
                turn: r
                    .get::<_, Option<i64>>(25)?
                    .map(|n| n.clamp(0, u32::MAX as i64) as u32),
                request_id: r.get::<_, Option<String>>(26)?.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Commits what is pending and closes the file.
    pub fn finish(self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")?;
        self.conn.close().map_err(|(_, e)| e)
    }
}

/// One stored row's figures: what a request's record is rebuilt from (`perf merge`).
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub index: u64,
    pub success: bool,
    pub is_stream: bool,
    pub http_status: u16,
    pub error_kind: Option<String>,
    pub error: String,
    pub latency: Option<f64>,
    pub ttft: Option<f64>,
    pub tpot: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// `server`, `client` or `estimated`.
    pub token_counts: String,
    pub output_chunks: u32,
    pub decode_chunks: u32,
    pub malformed_chunks: u32,
    pub intended: f64,
    pub sent: f64,
    pub first_byte: Option<f64>,
    pub first_token: Option<f64>,
    pub completed: f64,
    pub itl: Vec<f64>,
    pub connect: Option<f64>,
    pub tls: Option<f64>,
    pub conversation: Option<u64>,
    pub turn: Option<u32>,
    pub request_id: String,
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
