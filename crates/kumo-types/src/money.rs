//! Money without floats: decimal strings in and out, integers inside.
//!
//! Unit prices are integer micro-units (1 = 0.000001 of the currency), costs integer minor units
//! (cents). A price like "0.012" is parsed digit by digit; a cost is rounded (half up) exactly once,
//! when a line's whole quantity is multiplied by its unit price ([`cost_cents`]).

/// Micro-units per currency unit.
pub const MICROS: i64 = 1_000_000;
/// Micro-units per minor unit (cent).
pub const MICROS_PER_CENT: i64 = 10_000;

/// Parses a non-negative decimal string with at most `scale` fraction digits into an integer of
/// 10^-scale units: `parse_decimal("0.012", 6)` is 12000.
pub fn parse_decimal(s: &str, scale: u32) -> Result<i64, String> {
    let t = s.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) {
        return Err(format!("'{s}' is not a decimal number like 0.012"));
    }
    if frac.len() > scale as usize {
        return Err(format!("'{s}' has more than {scale} digits after the decimal point"));
    }
    let mut v: i64 = 0;
    for b in int.bytes().chain(frac.bytes()).chain(std::iter::repeat_n(b'0', scale as usize - frac.len())) {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((b - b'0') as i64))
            .ok_or_else(|| format!("'{s}' is too large"))?;
    }
    Ok(v)
}

/// Formats an integer of 10^-scale units as a decimal string, trimming trailing zeros but keeping
/// at least `min_frac` fraction digits: `format_decimal(12000, 6, 2)` is "0.012".
pub fn format_decimal(v: i64, scale: u32, min_frac: usize) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let v = v.unsigned_abs();
    let p = 10u64.pow(scale);
    let mut frac = format!("{:0width$}", v % p, width = scale as usize);
    while frac.len() > min_frac && frac.ends_with('0') {
        frac.pop();
    }
    if frac.is_empty() {
        format!("{sign}{}", v / p)
    } else {
        format!("{sign}{}.{frac}", v / p)
    }
}

/// A unit price in micro-units as a decimal string ("0.012").
pub fn format_micros(micros: i64) -> String {
    format_decimal(micros, 6, 2)
}

/// A cost in cents as a decimal string ("12.34").
pub fn format_cents(cents: i64) -> String {
    format_decimal(cents, 2, 2)
}

/// The cost in cents of `quantity` (in the price's base unit, e.g. seconds) at `unit_price_micros`
/// per `per` base units (e.g. 3600 for a price per hour), rounded half up once.
pub fn cost_cents(quantity: i64, unit_price_micros: i64, per: i64) -> i64 {
    let num = quantity as i128 * unit_price_micros as i128;
    let den = per as i128 * MICROS_PER_CENT as i128;
    let q = (num + den / 2).div_euclid(den);
    q.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("0.012", 6), Ok(12_000));
        assert_eq!(parse_decimal("0.10", 6), Ok(100_000));
        assert_eq!(parse_decimal("50", 2), Ok(5_000));
        assert_eq!(parse_decimal("50.5", 2), Ok(5_050));
        assert_eq!(parse_decimal(".5", 2), Ok(50));
        assert!(parse_decimal("0.0000001", 6).is_err());
        assert!(parse_decimal("-1", 6).is_err());
        assert!(parse_decimal("1e3", 6).is_err());
        assert!(parse_decimal("", 6).is_err());
        assert!(parse_decimal(".", 6).is_err());
        assert!(parse_decimal("99999999999999999999", 6).is_err());
    }

    #[test]
    fn decimals_format_back() {
        assert_eq!(format_micros(12_000), "0.012");
        assert_eq!(format_micros(100_000), "0.10");
        assert_eq!(format_micros(36_000_000), "36.00");
        assert_eq!(format_cents(1234), "12.34");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-5), "-0.05");
    }

    #[test]
    fn cost_is_rounded_half_up_once() {
        // 0.012 per hour for one hour: 1.2 cents -> 1.
        assert_eq!(cost_cents(3600, 12_000, 3600), 1);
        // 0.015 per hour for one hour: 1.5 cents -> 2.
        assert_eq!(cost_cents(3600, 15_000, 3600), 2);
        // A whole 30-day month of 0.012/h: 720 h x 1.2 cents = 864 cents exactly; rounding per
        // hour instead would give 720.
        assert_eq!(cost_cents(720 * 3600, 12_000, 3600), 864);
        // 36.00 per hour is one cent per second.
        assert_eq!(cost_cents(7, 36_000_000, 3600), 7);
        assert_eq!(cost_cents(0, 36_000_000, 3600), 0);
    }
}
