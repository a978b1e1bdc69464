//! Timestamps as the SDK writes them: protobuf `Timestamp`s at microsecond precision
//! (`Timestamp.GetCurrentTime()`), `Timestamp.ToJsonString()` for upload `create_time`s,
//! `datetime.isoformat() + "Z"` for `createdAt`/`finishedAt`, and the local-time
//! `%Y%m%d_%H%M%S` stamp of run directory names (`sdk/cmd/init.py`).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, Utc};

use super::proto::Timestamp;

/// Now, truncated to microseconds like the SDK's timestamps.
pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: (d.subsec_micros() * 1000) as i32,
    }
}

fn utc(ts: &Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32).unwrap_or_default()
}

/// `google.protobuf.Timestamp.ToJsonString()`: RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits.
pub fn to_json_string(ts: &Timestamp) -> String {
    let base = utc(ts).format("%Y-%m-%dT%H:%M:%S");
    let n = ts.nanos;
    if n == 0 {
        format!("{base}Z")
    } else if n % 1_000_000 == 0 {
        format!("{base}.{:03}Z", n / 1_000_000)
    } else if n % 1000 == 0 {
        format!("{base}.{:06}Z", n / 1000)
    } else {
        format!("{base}.{n:09}Z")
    }
}

/// Python's `Timestamp.ToDatetime().isoformat() + "Z"`: microseconds only when non-zero.
pub fn isoformat_z(ts: &Timestamp) -> String {
    let base = utc(ts).format("%Y-%m-%dT%H:%M:%S");
    let micros = ts.nanos / 1000;
    if micros == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{micros:06}Z")
    }
}

/// `datetime.now().strftime("%Y%m%d_%H%M%S")`, in local time as the SDK names run directories.
pub fn run_dir_stamp() -> String {
    Local::now().format("%Y%m%d_%H%M%S").to_string()
}

/// Parses the login response's `expiredAt` (`%Y-%m-%dT%H:%M:%S.%fZ`) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_python() {
        let ts = Timestamp {
            seconds: 1_795_935_755,
            nanos: 845_037_000,
        };
        assert_eq!(to_json_string(&ts), "2026-11-29T07:02:35.845037Z");
        assert_eq!(isoformat_z(&ts), "2026-11-29T07:02:35.845037Z");
        let ms = Timestamp {
            seconds: 1_795_935_755,
            nanos: 845_000_000,
        };
        assert_eq!(to_json_string(&ms), "2026-11-29T07:02:35.845Z");
        assert_eq!(isoformat_z(&ms), "2026-11-29T07:02:35.845000Z");
        let whole = Timestamp {
            seconds: 1_795_935_755,
            nanos: 0,
        };
        assert_eq!(to_json_string(&whole), "2026-11-29T07:02:35Z");
        assert_eq!(isoformat_z(&whole), "2026-11-29T07:02:35Z");
        assert_eq!(
            parse_rfc3339("2099-01-01T00:00:00.000Z"),
            Some(4_070_908_800)
        );
        assert_eq!(now().nanos % 1000, 0);
    }
}
