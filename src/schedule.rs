//! The `schedule` key: a cron expression in the `cron` crate's form (seconds first, 6 or 7 fields,
//! or `@hourly` and the like), or in the 5-field form crontab and Kubernetes CronJobs use, which
//! runs at second 0.
//!
//! The two forms number the days of the week differently: crontab counts 0-7 from Sunday (0 and 7
//! both Sunday), the `cron` crate 1-7 from Sunday. A 5-field expression's day-of-week field is
//! therefore rewritten with day names, so `0 9 * * 1-5` runs on weekdays as crontab would run it,
//! not from Sunday to Thursday.

use std::str::FromStr;

/// How the two forms look, for error messages.
pub const FORMS: &str = "the 5-field crontab form `min hour day-of-month month day-of-week` \
     (e.g. `*/15 * * * *`, days of the week 0-7 from Sunday) or the form with seconds first \
     `sec min hour day-of-month month day-of-week [year]` (e.g. `0 */15 * * * *`, days of the week 1-7 \
     from Sunday)";

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Parses `expression` in either form. The error says what is wrong with it, in the cron crate's
/// words or ours.
pub fn parse(expression: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let full = if fields.len() == 5 {
        let day_of_week = crontab_days(fields[4])?;
        format!(
            "0 {} {} {} {} {day_of_week}",
            fields[0], fields[1], fields[2], fields[3]
        )
    } else {
        expression.to_string()
    };
    cron::Schedule::from_str(&full).map_err(|error| error.to_string().trim_end().to_string())
}

/// A crontab day-of-week field (`*`, `1-5`, `0,6`, `*/2`, `mon-fri`, `5-7`) as the `cron` crate's
/// field with the same days, written with day names.
fn crontab_days(field: &str) -> Result<String, String> {
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 =
                    step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("day of week `{part}`: `{step}` is not a step of 1 or more")
                    })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (first, last) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                Some((first, last)) => (crontab_day(first)?, crontab_day(last)?),
                // `n/step` runs from n to the end of the week.
                None if step > 1 => (crontab_day(range)?, 6),
                None => {
                    let day = crontab_day(range)?;
                    (day, day)
                }
            },
        };
        // Sunday may close a range as 7 (`5-7`: Friday to Sunday).
        let last = if last == 0 && first > 0 { 7 } else { last };
        if first > last {
            return Err(format!("day of week `{part}`: the range runs backwards"));
        }
        for day in (first..=last).step_by(step as usize) {
            days[(day % 7) as usize] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".to_string());
    }
    let names: Vec<&str> = DAY_NAMES
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    Ok(names.join(","))
}

/// One crontab day: 0-7 (0 and 7 Sunday) or a name's first three letters, in any case.
fn crontab_day(text: &str) -> Result<u32, String> {
    if let Ok(number) = text.parse::<u32>() {
        return match number {
            0..=7 => Ok(number),
            _ => Err(format!("day of week `{text}`: crontab counts 0-7 from Sunday")),
        };
    }
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|day| day as u32)
        .ok_or_else(|| format!("day of week `{text}`: not 0-7 or a day name (sun, mon, ...)"))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Datelike, Timelike, Utc};

    use super::*;

    /// The next `n` ticks after `after`, as `Wed 09:00:00`.
    fn ticks(expression: &str, n: usize) -> Vec<String> {
        let after: DateTime<Utc> = "2026-12-05T18:00:00Z".parse().unwrap(); // a Saturday
        parse(expression)
            .unwrap()
            .after(&after)
            .take(n)
            .map(|t| {
                format!(
                    "{} {:02}:{:02}:{:02}",
                    t.weekday(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            })
            .collect()
    }

    #[test]
    fn the_five_field_form_runs_at_second_zero_like_the_six_field_form() {
        assert_eq!(ticks("*/15 * * * *", 2), ["Sat 18:15:00", "Sat 18:30:00"]);
        assert_eq!(ticks("*/15 * * * *", 3), ticks("0 */15 * * * *", 3));
        assert_eq!(ticks("@hourly", 1), ["Sat 19:00:00"]);
    }

    #[test]
    fn crontab_days_of_the_week_count_from_sunday_zero() {
        assert_eq!(
            ticks("0 9 * * 1-5", 5),
            [
                "Mon 09:00:00",
                "Tue 09:00:00",
                "Wed 09:00:00",
                "Thu 09:00:00",
                "Fri 09:00:00"
            ]
        );
        assert_eq!(ticks("0 9 * * 1-5", 5), ticks("0 0 9 * * Mon-Fri", 5));
        assert_eq!(ticks("0 9 * * 0", 1), ["Sun 09:00:00"]);
        assert_eq!(ticks("0 9 * * 7", 1), ["Sun 09:00:00"]);
        assert_eq!(
            ticks("0 9 * * 5-7", 3),
            ["Sun 09:00:00", "Fri 09:00:00", "Sat 09:00:00"]
        );
        assert_eq!(ticks("0 9 * * mon,Wed", 2), ["Mon 09:00:00", "Wed 09:00:00"]);
        assert_eq!(
            ticks("0 9 * * */3", 3),
            ["Sun 09:00:00", "Wed 09:00:00", "Sat 09:00:00"]
        );
        assert_eq!(crontab_days("*").as_deref(), Ok("*"));
        assert_eq!(crontab_days("0-7").as_deref(), Ok("*"));
        assert_eq!(crontab_days("1/2").as_deref(), Ok("MON,WED,FRI"));
    }

    #[test]
    fn a_bad_day_of_the_week_is_named() {
        assert_eq!(
            parse("0 9 * * 8").unwrap_err(),
            "day of week `8`: crontab counts 0-7 from Sunday"
        );
        assert_eq!(
            parse("0 9 * * 5-1").unwrap_err(),
            "day of week `5-1`: the range runs backwards"
        );
        assert_eq!(
            parse("0 9 * * L").unwrap_err(),
            "day of week `L`: not 0-7 or a day name (sun, mon, ...)"
        );
    }
}
