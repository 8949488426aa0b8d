//! proto3 JSON forms of scalars that Envoy writes as strings.
//!
//! Owns: parsing `google.protobuf.Duration` strings (`"0.25s"`), `bytes`
//! fields (base64) and the hex strings Envoy reads as bytes (health-check
//! payload `text`), with error messages that say what form was expected.
//!
//! Must not touch: paths or error collection; callers attach the place.

use std::time::Duration;

/// proto3: a Duration holds at most 10,000 years of seconds.
pub(crate) const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

/// Parses a proto3 JSON duration: decimal seconds with an `s` suffix and at
/// most nine fractional digits (`"5s"`, `"0.25s"`, `"1.000340012s"`).
///
/// Negative durations are valid proto3 but meaningless for every Envoy
/// timeout hale reads, so they are rejected here.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = |why: &str| format!("invalid duration \"{text}\": {why}");
    let Some(number) = text.strip_suffix('s') else {
        return Err(invalid(
            "expected seconds with an \"s\" suffix, like \"5s\" or \"0.25s\"",
        ));
    };
    if number.starts_with('-') {
        return Err(invalid("a duration must not be negative"));
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return Err(invalid(
            "expected seconds with an \"s\" suffix, like \"5s\" or \"0.25s\"",
        ));
    }
    if number.ends_with('.') {
        return Err(invalid("expected digits after the decimal point"));
    }
    if fraction.len() > 9 {
        return Err(invalid("at most 9 digits after the decimal point"));
    }
    let seconds = whole
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= MAX_DURATION_SECONDS)
        .ok_or_else(|| invalid(&format!("at most {MAX_DURATION_SECONDS} seconds")))?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        // Right-pad to nanoseconds: "25" means 250_000_000ns.
        format!("{fraction:0<9}")
            .parse::<u32>()
            .map_err(|_| invalid("bad fraction"))?
    };
    Ok(Duration::new(seconds, nanos))
}

/// Decodes proto3 JSON `bytes`: standard or URL-safe base64, padding optional.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let sextet = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    };
    let unpadded = text.trim_end_matches('=');
    if text.len() - unpadded.len() > 2 || unpadded.len() % 4 == 1 {
        return Err(format!("invalid base64 \"{text}\": wrong length"));
    }
    let mut out = Vec::with_capacity(unpadded.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for (i, c) in unpadded.bytes().enumerate() {
        let value = sextet(c).ok_or_else(|| {
            format!("invalid base64 \"{text}\": unexpected character at position {i}")
        })?;
        // Only the low 14 bits can still be unread; keep the buffer small.
        buffer = ((buffer << 6) | value) & 0x3fff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Ok(out)
}

/// Decodes a hex string such as `"000000FF"`: an even number of hex digits,
/// upper or lower case, nothing else (Envoy's `Hex::decode`). Empty text is
/// an error too: Envoy's payload `text` has `min_len: 1`.
pub(crate) fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let invalid = |why: &str| format!("invalid hex string \"{text}\": {why}");
    if text.is_empty() {
        return Err(invalid("expected at least one byte, like \"000000FF\""));
    }
    if !text.len().is_multiple_of(2) {
        return Err(invalid("expected an even number of hex digits"));
    }
    text.as_bytes()
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let digit = |offset: usize| {
                char::from(pair[offset]).to_digit(16).ok_or_else(|| {
                    invalid(&format!(
                        "unexpected character at position {}",
                        2 * i + offset
                    ))
                })
            };
            // Two hex digits always fit in a byte.
            Ok((digit(0)? * 16 + digit(1)?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_proto3_json_form() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("1.000340012s"),
            Ok(Duration::new(1, 340_012))
        );
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_that_envoy_rejects() {
        for (text, why) in [
            ("5", "\"s\" suffix"),
            ("5ms", "\"s\" suffix"),
            ("1m", "\"s\" suffix"),
            ("s", "\"s\" suffix"),
            ("-1s", "negative"),
            ("1.s", "digits after"),
            ("1.0000000001s", "at most 9 digits"),
            ("315576000001s", "at most"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
            assert!(error.starts_with(&format!("invalid duration \"{text}\"")));
        }
    }

    #[test]
    fn base64_standard_and_url_safe() {
        assert_eq!(decode_base64("aGVsbG8="), Ok(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8"), Ok(b"hello".to_vec()));
        assert_eq!(decode_base64("-_8="), Ok(vec![0xfb, 0xff]));
        assert_eq!(decode_base64("+/8="), Ok(vec![0xfb, 0xff]));
        assert_eq!(decode_base64(""), Ok(vec![]));
        assert!(decode_base64("a").is_err());
        assert!(decode_base64("aGV*").is_err());
    }

    #[test]
    fn hex_in_either_case() {
        assert_eq!(decode_hex("000000FF"), Ok(vec![0, 0, 0, 0xff]));
        assert_eq!(decode_hex("0aBc"), Ok(vec![0x0a, 0xbc]));
        let odd = decode_hex("abc").unwrap_err();
        assert!(odd.contains("even number"), "{odd}");
        let bad = decode_hex("0g").unwrap_err();
        assert_eq!(
            bad,
            "invalid hex string \"0g\": unexpected character at position 1"
        );
        assert!(decode_hex("").unwrap_err().contains("at least one byte"));
        // Multi-byte characters are not hex digits (and must not panic).
        assert!(decode_hex("é0").is_err());
    }
}
