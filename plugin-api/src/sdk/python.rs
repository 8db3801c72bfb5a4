//! Python's spelling of numbers, for files and services that Python programs read or wrote
//! (evalscope's directory names, the ClearML client's hyperparameters).

/// `x` as Python's `str(float)` / `repr(float)` writes it (`10.0`, `0.5`, `1e-05`, `inf`).
pub fn python_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let abs = x.abs();
    if x != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust writes `1e-5`, Python `1e-05`: the exponent takes a sign and two digits.
        let text = format!("{x:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::python_float;

    #[test]
    fn floats_read_as_python_writes_them() {
        for (x, want) in [
            (10.0, "10.0"),
            (0.5, "0.5"),
            (2.25, "2.25"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (1.5e20, "1.5e+20"),
            (-1.0, "-1.0"),
            (0.0, "0.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(python_float(x), want);
        }
    }
}
