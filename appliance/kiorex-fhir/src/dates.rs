//! FHIR dates as periods: `2024` covers the whole year, `2024-03-05` the whole day, a full
//! date-time one microsecond. Used both for indexing and for search values, so both agree.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};

/// The inclusive period a FHIR date, dateTime or instant string covers.
pub fn period_of(value: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let invalid = || {
        format!(
            "{value:?} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a date-time with a time zone)"
        )
    };
    if value.len() > 10 {
        let at = DateTime::parse_from_rfc3339(value)
            .map_err(|_| invalid())?
            .with_timezone(&Utc);
        return Ok((at, at));
    }
    let parts: Vec<&str> = value.split('-').collect();
    let number = |s: &str, len: usize| -> Result<u32, String> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| invalid())
        } else {
            Err(invalid())
        }
    };
    let (first, last) = match parts.as_slice() {
        [y] => {
            let y = number(y, 4)? as i32;
            (
                date(y, 1, 1).ok_or_else(invalid)?,
                date(y, 12, 31).ok_or_else(invalid)?,
            )
        }
        [y, m] => {
            let (y, m) = (number(y, 4)? as i32, number(m, 2)?);
            let first = date(y, m, 1).ok_or_else(invalid)?;
            (first, last_day_of_month(first))
        }
        [y, m, d] => {
            let day =
                date(number(y, 4)? as i32, number(m, 2)?, number(d, 2)?).ok_or_else(invalid)?;
            (day, day)
        }
        _ => return Err(invalid()),
    };
    Ok((start_of(first), end_of(last)))
}

fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn last_day_of_month(first: NaiveDate) -> NaiveDate {
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.map_or(first, |n| n - Duration::days(1))
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN))
}

fn end_of(day: NaiveDate) -> DateTime<Utc> {
    start_of(day) + Duration::days(1) - Duration::microseconds(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_sets_the_period() {
        let (lo, hi) = period_of("2024").unwrap();
        assert_eq!(lo.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(hi.date_naive().to_string(), "2024-12-31");
        let (lo, hi) = period_of("2024-02").unwrap();
        assert_eq!((lo.day(), hi.day()), (1, 29), "2024 is a leap year");
        let (lo, hi) = period_of("1980-04-02").unwrap();
        assert_eq!(lo.date_naive(), hi.date_naive());
        let (lo, hi) = period_of("2024-03-05T10:15:00+02:00").unwrap();
        assert_eq!(lo, hi);
        assert_eq!(lo.to_rfc3339(), "2024-03-05T08:15:00+00:00");
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "1980-13-01",
            "1980-02-30",
            "80-01-01",
            "yesterday",
            "2024-03-05T10:15:00",
        ] {
            assert!(period_of(bad).is_err(), "{bad}");
        }
    }
}
