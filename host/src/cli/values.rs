//! The range of every numeric flag, checked as the flag is parsed: a value outside it stops
//! `perf` with exit code 2 and a message that names the flag (clap adds it), the value and the
//! range. Negative numbers parse as values (the command allows them), so `--number -5` is
//! refused for its range, not mistaken for a flag.
//!
//! The bounds keep every value meaningful and every later computation finite: seconds stay far
//! below what a `Duration` holds, rates far above the point where a gap overflows, counts
//! below what memory or a file could hold.

/// Longest time any flag may give, in seconds (about three years).
pub const MAX_SECONDS: f64 = 1e8;
/// Most concurrent requests (`--parallel`).
pub const MAX_PARALLEL: i64 = 1_000_000;
/// Most requests of one run (`--number`).
pub const MAX_NUMBER: u64 = 1_000_000_000_000;
/// Highest `--rate`, requests per second.
pub const MAX_RATE: f64 = 1e7;
/// Lowest `--rate`: one request in about a month.
pub const MIN_RATE: f64 = 1e-6;
/// Most tokens a request may ask for.
pub const MAX_TOKENS: u32 = 100_000_000;

fn number(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| "not a number".to_string())
}

fn whole(text: &str, lo: u64, hi: u64, what: &str) -> Result<u64, String> {
    let range = || format!("must be {what} from {lo} to {hi}");
    let v = number(text).map_err(|_| range())?;
    if v.fract() != 0.0 || v < lo as f64 || v > hi as f64 {
        return Err(range());
    }
    Ok(v as u64)
}

fn real(text: &str, lo: f64, hi: f64, open_low: bool, what: &str) -> Result<f64, String> {
    let range = || {
        let low = if open_low { "above" } else { "from" };
        format!("must be {what} {low} {lo} up to {hi}")
    };
    let v = number(text).map_err(|_| range())?;
    if v < lo || (open_low && v == lo) || v > hi {
        return Err(range());
    }
    Ok(v)
}

/// Seconds above 0 (timeouts, `--duration`).
pub fn seconds(text: &str) -> Result<f64, String> {
    real(text, 0.0, MAX_SECONDS, true, "a number of seconds")
}

/// Seconds, 0 allowed (`--sleep-interval`).
pub fn seconds_or_zero(text: &str) -> Result<f64, String> {
    real(text, 0.0, MAX_SECONDS, false, "a number of seconds")
}

/// Milliseconds, 0 allowed (the simulator's delays).
pub fn milliseconds(text: &str) -> Result<f64, String> {
    real(
        text,
        0.0,
        MAX_SECONDS * 1000.0,
        false,
        "a number of milliseconds",
    )
}

/// `--number`: requests of one run.
pub fn requests(text: &str) -> Result<u64, String> {
    whole(text, 1, MAX_NUMBER, "a whole number of requests")
}

/// `--parallel`: concurrent requests.
pub fn parallel(text: &str) -> Result<i64, String> {
    whole(
        text,
        1,
        MAX_PARALLEL as u64,
        "a whole number of concurrent requests",
    )
    .map(|v| v as i64)
}

/// `--rate`: requests per second, or -1 for no pacing.
pub fn rate(text: &str) -> Result<f64, String> {
    match number(text) {
        Ok(v) if v == -1.0 => Ok(v),
        Ok(v) if (MIN_RATE..=MAX_RATE).contains(&v) => Ok(v),
        _ => Err(format!(
            "must be requests per second from {MIN_RATE} to {MAX_RATE}, or -1 for no pacing"
        )),
    }
}

/// `--warmup-num`: a count, or a fraction of `--number` below 1.
pub fn warmup(text: &str) -> Result<f64, String> {
    let v = real(
        text,
        0.0,
        1e9,
        false,
        "a count (or a fraction of --number below 1)",
    )?;
    if v >= 1.0 && v.fract() != 0.0 {
        return Err("must be a whole count, or a fraction of --number below 1".into());
    }
    Ok(v)
}

/// `--max-tokens` and friends: tokens, at least 1.
pub fn tokens(text: &str) -> Result<u32, String> {
    whole(text, 1, u64::from(MAX_TOKENS), "a whole number of tokens").map(|v| v as u32)
}

/// Tokens, 0 allowed (`--min-tokens`).
pub fn tokens_or_zero(text: &str) -> Result<u32, String> {
    whole(text, 0, u64::from(MAX_TOKENS), "a whole number of tokens").map(|v| v as u32)
}

/// A prompt length (tokens with a tokenizer, else characters).
pub fn length(text: &str) -> Result<u64, String> {
    whole(text, 0, 100_000_000, "a whole length")
}

/// A count of at least 1 (`--prefix-count`, `--log-every-n-query`, `--db-commit-interval`,
/// `--n-choices`, ...), bounded by `hi`.
fn count_up_to(text: &str, hi: u64) -> Result<u64, String> {
    whole(text, 1, hi, "a whole number")
}

/// A count of at least 1, up to a million.
pub fn count(text: &str) -> Result<u64, String> {
    count_up_to(text, 1_000_000)
}

/// `--log-every-n-query`: at least 1, up to `--number`'s bound (a huge value silences it).
pub fn every(text: &str) -> Result<u64, String> {
    count_up_to(text, MAX_NUMBER)
}

/// A count of at least 1, up to a million, as `usize`.
pub fn count_usize(text: &str) -> Result<usize, String> {
    count(text).map(|v| v as usize)
}

/// A count of at least 1, up to a million, as `u32`.
pub fn count_u32(text: &str) -> Result<u32, String> {
    count(text).map(|v| v as u32)
}

/// Anything from 0 to a million, as `usize` (flags accepted for compatibility).
pub fn small_usize(text: &str) -> Result<usize, String> {
    whole(text, 0, 1_000_000, "a whole number").map(|v| v as usize)
}

/// Anything from 0 up, as `u64` (every-Nth fault injection, offsets).
pub fn any_u64(text: &str) -> Result<u64, String> {
    whole(text, 0, u64::MAX >> 11, "a whole number")
}

/// Image sides in pixels.
pub fn pixels(text: &str) -> Result<u32, String> {
    whole(text, 1, 16_384, "a whole number of pixels").map(|v| v as u32)
}

/// Images per request.
pub fn images(text: &str) -> Result<u32, String> {
    whole(text, 0, 100, "a whole number of images").map(|v| v as u32)
}

/// A TCP port (0 picks a free one where the flag allows it).
pub fn port(text: &str) -> Result<u16, String> {
    whole(text, 0, 65_535, "a port").map(|v| v as u16)
}

/// An HTTP status.
pub fn status(text: &str) -> Result<u16, String> {
    whole(text, 100, 599, "an HTTP status").map(|v| v as u16)
}

/// `--temperature`.
pub fn temperature(text: &str) -> Result<f64, String> {
    real(text, 0.0, 100.0, false, "a temperature")
}

/// `--top-p`.
pub fn top_p(text: &str) -> Result<f64, String> {
    real(text, 0.0, 1.0, false, "a probability")
}

/// `--top-k`: -1 (off, as vLLM takes it) or a count.
pub fn top_k(text: &str) -> Result<i64, String> {
    match number(text) {
        Ok(v) if v.fract() == 0.0 && (-1.0..=1e7).contains(&v) => Ok(v as i64),
        _ => Err("must be -1 (off) or a whole number from 0 to 10000000".into()),
    }
}

/// `--frequency-penalty`.
pub fn frequency_penalty(text: &str) -> Result<f64, String> {
    real(text, -2.0, 2.0, false, "a penalty")
}

/// `--repetition-penalty`.
pub fn repetition_penalty(text: &str) -> Result<f64, String> {
    real(text, 0.0, 100.0, true, "a penalty")
}

/// Bytes, at least 1 KiB (the response limits).
pub fn bytes(text: &str) -> Result<u64, String> {
    whole(text, 1024, 1 << 40, "a number of bytes")
}

/// `--burstiness`: a gamma shape, from 0.01 (very bursty) to 1000 (almost even).
pub fn burstiness(text: &str) -> Result<f64, String> {
    real(text, 0.01, 1000.0, false, "a gamma shape")
}

/// A fraction of `--number` for the SLA search, or a multiplier.
pub fn multiplier(text: &str) -> Result<f64, String> {
    real(text, 0.0, 1e6, true, "a multiplier")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_their_range_say_the_range() {
        assert_eq!(requests("5"), Ok(5));
        assert_eq!(
            requests("-5"),
            Err("must be a whole number of requests from 1 to 1000000000000".into())
        );
        assert!(requests("2.5").is_err());
        assert!(seconds("1e20")
            .expect_err("too long")
            .contains("up to 100000000"));
        assert!(seconds("0").is_err() && seconds_or_zero("0").is_ok());
        assert!(seconds("nan").is_err() && seconds("inf").is_err());
        assert!(rate("1e-300")
            .expect_err("too slow")
            .contains("or -1 for no pacing"));
        assert_eq!(rate("-1"), Ok(-1.0));
        assert!(parallel("99999999999999").is_err());
        assert!(warmup("1e300").is_err() && warmup("0.5").is_ok() && warmup("3").is_ok());
        assert!(warmup("2.5").is_err());
        assert_eq!(top_k("-1"), Ok(-1));
    }
}
