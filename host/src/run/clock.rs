//! How far this machine's clock is from the server's, read from the server's `Date` header: a
//! shard's times are its own machine's, so `perf merge` needs each shard's offset to say how
//! far apart the shards' clocks are. `Date` has whole seconds; polled every 10 ms, the response
//! on which it turns over places the server's second boundary on this clock within the two
//! polls around it.

use std::time::{Duration, Instant};

use serde::Serialize;

/// This clock minus the server's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Offset {
    /// Seconds this machine's Unix clock is ahead of the server's.
    pub offset_s: f64,
    /// Half the window the second boundary was seen in.
    pub uncertainty_s: f64,
}

/// Polls between two reads of `Date`.
const POLL: Duration = Duration::from_millis(10);
/// Long enough to see one boundary.
const WATCH: Duration = Duration::from_millis(1300);

fn unix_now() -> f64 {
    crate::plan::shard::now_unix()
}

/// The `Date` header of an answer from `url`'s server, as Unix seconds.
async fn date(client: &reqwest::Client, url: &reqwest::Url) -> Option<i64> {
    let response = client
        .get(url.clone())
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let text = response
        .headers()
        .get(reqwest::header::DATE)?
        .to_str()
        .ok()?;
    chrono::DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|t| t.timestamp())
}

/// The offset of this clock from the server's behind `url` (its root), or `None` when the
/// server sends no `Date` or does not answer.
pub async fn offset(client: &reqwest::Client, url: &reqwest::Url) -> Option<Offset> {
    let mut root = url.clone();
    root.set_path("/");
    root.set_query(None);
    let deadline = Instant::now() + WATCH;
    // (sent, date) of the previous answer.
    let mut before: Option<(f64, i64)> = None;
    while Instant::now() < deadline {
        let sent = unix_now();
        let d = date(client, &root).await?;
        let received = unix_now();
        if let Some((sent_before, d_before)) = before {
            if d == d_before + 1 {
                // The server's second `d` began after it stamped the previous answer (at or
                // after `sent_before`) and before it stamped this one (by `received`).
                let boundary = (sent_before + received) / 2.0;
                return Some(Offset {
                    offset_s: boundary - d as f64,
                    uncertainty_s: (received - sent_before) / 2.0,
                });
            }
        }
        before = Some((sent, d));
        tokio::time::sleep(POLL).await;
    }
    None
}
