//! Command-line values of the recording tools, checked with one clear message
//! each (clap gets them as text, so a bad value is one line, not a usage page).

use anyhow::{bail, Result};

/// A playback speed: a finite number above zero.
pub fn speed(s: &str) -> Result<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => bail!("invalid --speed {s:?}: expected a number above 0, e.g. 2 or 0.5"),
    }
}

/// Seconds: a number (`1.5`) or a duration (`1500ms`, `2m`); `positive`
/// refuses zero.
pub fn seconds(flag: &str, s: &str, positive: bool) -> Result<f64> {
    let t = s.trim();
    let v = t
        .parse::<f64>()
        .ok()
        .or_else(|| humantime::parse_duration(t).ok().map(|d| d.as_secs_f64()));
    match v {
        Some(v) if v.is_finite() && (v > 0.0 || (!positive && v == 0.0)) => Ok(v),
        _ => {
            let least = if positive { "above 0" } else { "of 0 or more" };
            bail!("invalid {flag} {s:?}: expected seconds {least}, e.g. 2, 0.5 or 1500ms")
        }
    }
}

/// A terminal size `COLSxROWS`.
pub fn size(s: &str) -> Result<(u32, u32)> {
    match crate::size::parse_size(s) {
        Ok((c, r)) if c > 0 && r > 0 => Ok((u32::from(c), u32::from(r))),
        _ => bail!("invalid --size {s:?}: expected COLSxROWS, e.g. 80x24"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds() {
        assert_eq!(speed("2").unwrap(), 2.0);
        assert_eq!(speed("0.25").unwrap(), 0.25);
        for bad in ["0", "-1", "fast", "", "inf", "NaN"] {
            let e = speed(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid --speed"), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn seconds_as_numbers_or_durations() {
        assert_eq!(seconds("--from", "2.5", false).unwrap(), 2.5);
        assert_eq!(seconds("--from", "0", false).unwrap(), 0.0);
        assert_eq!(seconds("--from", "1500ms", false).unwrap(), 1.5);
        assert!(seconds("--idle-limit", "0", true).is_err());
        assert!(seconds("--from", "-1", false).is_err());
        let e = seconds("--idle-limit", "soon", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--idle-limit") && e.contains("soon"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(size("100x30").unwrap(), (100, 30));
        assert!(size("0x30").is_err());
        assert!(size("big").is_err());
    }
}
