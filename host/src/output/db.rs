//! `benchmark_data.db`: one row per measured request, table `result` with evalscope's columns
//! (responses as JSON instead of pickles) plus perf's: request index, HTTP status, error kind
//! and text, cached tokens, chunk counts, and the Unix-epoch time of every phase.
//!
//! Written on the aggregator thread, never on the threads that time requests, in one
//! transaction per `--db-commit-interval` rows.

use std::path::Path;

use perf_plugin_api::RequestRecord;
use rusqlite::{params, Connection};
use serde_json::json;

use crate::aggregate::derive;
use crate::worker::RawRecord;

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
    completed_epoch REAL
);";

const INSERT: &str =
    "INSERT INTO result VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, NULL, ?12,
    ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)";

/// The per-run database.
pub struct ResultDb {
    conn: Connection,
    pending: usize,
    commit_every: usize,
    run_start_epoch: f64,
}

impl ResultDb {
    /// Creates `path` (which must not exist) with the `result` table.
    pub fn create(
        path: &Path,
        commit_every: usize,
        run_start_epoch: f64,
    ) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch("BEGIN")?;
        Ok(ResultDb {
            conn,
            pending: 0,
            commit_every: commit_every.max(1),
            run_start_epoch,
        })
    }

    /// Adds one request.
    pub fn insert(&mut self, rec: &RequestRecord, raw: &RawRecord) -> rusqlite::Result<()> {
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
        self.conn.prepare_cached(INSERT)?.execute(params![
            request,
            rel(rec.times.sent),
            itl,
            rec.success,
            response.to_string(),
            rel(rec.times.completed),
            rec.latency_s.into_option(),
            rec.ttft_s.into_option(),
            rec.tpot_s.into_option(),
            rec.prompt_tokens.into_option().map(|n| n as i64),
            rec.completion_tokens.into_option().map(|n| n as i64),
            rec.is_stream,
            rec.request_index as i64,
            (rec.http_status != 0).then_some(rec.http_status),
            (!rec.success).then(|| rec.failure.as_str()),
            (!rec.success).then(|| rec.error.as_str()),
            rec.cached_tokens.into_option().map(|n| n as i64),
            rec.tokens_estimated,
            raw.output_events,
            raw.malformed_chunks,
            derive::dispatch_lag_s(raw),
            rec.times.intended_send,
            rec.times.sent,
            rec.times.first_byte.into_option(),
            rec.times.first_output.into_option(),
            rec.times.completed,
        ])?;
        self.pending += 1;
        if self.pending >= self.commit_every {
            self.conn.execute_batch("COMMIT; BEGIN")?;
            self.pending = 0;
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
