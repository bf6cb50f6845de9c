//! Relative and partial dates (「下个月」, 「下周四」, 「月底前」, "next quarter", "Tue 2/6") resolved
//! against the note's own date.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use regex::Regex;

/// A time expression found in a clause, with the date it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDate {
    /// The expression as written.
    pub text: String,
    /// The (first) day it refers to.
    pub date: NaiveDate,
}

/// Finds and resolves time expressions. Build once; matching is per clause.
pub struct DateResolver {
    patterns: Vec<(Regex, Rule)>,
}

#[derive(Clone, Copy)]
enum Rule {
    DaysAhead(i64),
    NextWeekday,
    ThisWeekday,
    NextWeek,
    MonthStart(i32),
    MonthMiddle(i32),
    MonthEnd(i32),
    NextQuarter,
    QuarterEnd,
    YearEnd,
    MonthDay,
    SlashDate,
    EnglishMonthDay,
    InDays,
    InWeeks,
    Iso,
    BareWeekday,
}

fn zh_weekday(c: &str) -> Option<Weekday> {
    Some(match c {
        "一" | "1" => Weekday::Mon,
        "二" | "2" => Weekday::Tue,
        "三" | "3" => Weekday::Wed,
        "四" | "4" => Weekday::Thu,
        "五" | "5" => Weekday::Fri,
        "六" | "6" => Weekday::Sat,
        "日" | "天" | "7" => Weekday::Sun,
        _ => return en_weekday(c),
    })
}

fn en_weekday(w: &str) -> Option<Weekday> {
    let w = w.to_lowercase();
    let w = w.trim_end_matches('.');
    Some(match w.get(..3)? {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn en_month(m: &str) -> Option<u32> {
    let m = m.to_lowercase();
    [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|p| m.starts_with(p))
    .map(|i| i as u32 + 1)
}

fn zh_number(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let digit = |c: char| {
        "零一二三四五六七八九"
            .chars()
            .position(|d| d == c)
            .map(|p| p as u32)
    };
    let chars: Vec<char> = s.chars().collect();
    match chars.as_slice() {
        ['十'] => Some(10),
        ['十', d] => Some(10 + digit(*d)?),
        [t, '十'] => Some(digit(*t)? * 10),
        [t, '十', d] => Some(digit(*t)? * 10 + digit(*d)?),
        ['两'] => Some(2),
        [d] => digit(*d),
        _ => None,
    }
}

fn add_months(d: NaiveDate, months: i32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 + months;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1)
        .expect("valid first of month")
}

fn month_end(first: NaiveDate) -> NaiveDate {
    add_months(first, 1) - Duration::days(1)
}

fn week_monday(d: NaiveDate) -> NaiveDate {
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

impl Default for DateResolver {
    fn default() -> Self {
        let p = |re: &str, rule| (Regex::new(re).expect("valid date pattern"), rule);
        let weekday_en = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)\.?";
        Self {
            // Most specific first: the first pattern that matches and resolves wins.
            patterns: vec![
                p(r"(\d{4})-(\d{1,2})-(\d{1,2})", Rule::Iso),
                p(
                    r"(\d{1,2}|[一二三四五六七八九十]{1,3})月(\d{1,2}|[一二三四五六七八九十]{1,3})[日号]",
                    Rule::MonthDay,
                ),
                p(r"\b(\d{1,2})/(\d{1,2})\b", Rule::SlashDate),
                p(
                    r"(?i)\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b",
                    Rule::EnglishMonthDay,
                ),
                p(
                    r"(?:下周|下星期|下礼拜)([一二三四五六日天1-7])",
                    Rule::NextWeekday,
                ),
                p(&format!(r"(?i)next\s+{weekday_en}"), Rule::NextWeekday),
                p(
                    r"下个?月初|(?i:early next month|beginning of next month|start of next month)",
                    Rule::MonthStart(1),
                ),
                p(r"下个?月中|(?i:mid[- ]next month)", Rule::MonthMiddle(1)),
                p(
                    r"下个?月底|下个?月末|(?i:end of next month)",
                    Rule::MonthEnd(1),
                ),
                p(
                    r"(?:本周|这周|周|星期|礼拜)([一二三四五六日天])",
                    Rule::ThisWeekday,
                ),
                p(
                    &format!(r"(?i)\b(?:on|by|this|until)\s+{weekday_en}\b"),
                    Rule::BareWeekday,
                ),
                p(r"今天|今日|(?i:today)", Rule::DaysAhead(0)),
                p(r"明天|明日|(?i:tomorrow)", Rule::DaysAhead(1)),
                p(r"后天", Rule::DaysAhead(2)),
                p(r"(?i)next\s+week|下周|下星期|下礼拜", Rule::NextWeek),
                p(r"(?i)next\s+month|下个?月", Rule::MonthStart(1)),
                p(
                    r"本月底|这个月底|月底|月末|(?i:end of (?:the |this )?month|month[- ]end|EOM)",
                    Rule::MonthEnd(0),
                ),
                p(r"下个?季度|(?i:next quarter)", Rule::NextQuarter),
                p(
                    r"季度末|季末|(?i:end of (?:the |this )?quarter|quarter[- ]end|EOQ)",
                    Rule::QuarterEnd,
                ),
                p(
                    r"年底|年末|(?i:end of (?:the |this )?year|year[- ]end|EOY)",
                    Rule::YearEnd,
                ),
                p(
                    r"(?i)(?:in|within)\s+(\d{1,3})\s+days?|(\d{1,3}|[一二两三四五六七八九十]+)\s*天内",
                    Rule::InDays,
                ),
                p(
                    r"(?i)(?:in|within)\s+(\d{1,2})\s+weeks?|(\d{1,2}|[一二两三四五六七八九十]+)\s*(?:周|个星期)内",
                    Rule::InWeeks,
                ),
            ],
        }
    }
}

impl DateResolver {
    /// The most specific time expression in `text` that resolves, relative to `anchor`.
    pub fn resolve(&self, text: &str, anchor: NaiveDate) -> Option<ResolvedDate> {
        self.patterns.iter().find_map(|(regex, rule)| {
            regex.captures_iter(text).find_map(|caps| {
                let date = apply(*rule, &caps, anchor)?;
                Some(ResolvedDate {
                    text: caps.get(0).expect("match").as_str().to_string(),
                    date,
                })
            })
        })
    }
}

fn group<'t>(caps: &regex::Captures<'t>, i: usize) -> Option<&'t str> {
    caps.get(i).map(|m| m.as_str())
}

fn upcoming(anchor: NaiveDate, month: u32, day: u32) -> Option<NaiveDate> {
    let this_year = NaiveDate::from_ymd_opt(anchor.year(), month, day)?;
    // A date more than two months in the past most likely means next year.
    if this_year < anchor - Duration::days(60) {
        NaiveDate::from_ymd_opt(anchor.year() + 1, month, day)
    } else {
        Some(this_year)
    }
}

fn apply(rule: Rule, caps: &regex::Captures, anchor: NaiveDate) -> Option<NaiveDate> {
    let monday = week_monday(anchor);
    Some(match rule {
        Rule::Iso => NaiveDate::from_ymd_opt(
            group(caps, 1)?.parse().ok()?,
            group(caps, 2)?.parse().ok()?,
            group(caps, 3)?.parse().ok()?,
        )?,
        Rule::DaysAhead(n) => anchor + Duration::days(n),
        Rule::NextWeekday => {
            let wd = zh_weekday(group(caps, 1)?)?;
            monday + Duration::days(7 + wd.num_days_from_monday() as i64)
        }
        Rule::ThisWeekday => {
            let wd = zh_weekday(group(caps, 1)?)?;
            let day = monday + Duration::days(wd.num_days_from_monday() as i64);
            if day < anchor {
                day + Duration::days(7)
            } else {
                day
            }
        }
        Rule::BareWeekday => {
            let wd = en_weekday(group(caps, 1)?)?;
            let ahead = (7 + wd.num_days_from_monday() as i64
                - anchor.weekday().num_days_from_monday() as i64)
                % 7;
            anchor + Duration::days(if ahead == 0 { 7 } else { ahead })
        }
        Rule::NextWeek => monday + Duration::days(7),
        Rule::MonthStart(n) => add_months(anchor, n),
        Rule::MonthMiddle(n) => add_months(anchor, n) + Duration::days(14),
        Rule::MonthEnd(n) => month_end(add_months(anchor, n)),
        Rule::NextQuarter => {
            let q_start_month = (anchor.month0() / 3) * 3;
            add_months(
                NaiveDate::from_ymd_opt(anchor.year(), q_start_month + 1, 1)?,
                3,
            )
        }
        Rule::QuarterEnd => {
            let q_start_month = (anchor.month0() / 3) * 3;
            add_months(
                NaiveDate::from_ymd_opt(anchor.year(), q_start_month + 1, 1)?,
                3,
            ) - Duration::days(1)
        }
        Rule::YearEnd => NaiveDate::from_ymd_opt(anchor.year(), 12, 31)?,
        Rule::MonthDay => upcoming(
            anchor,
            zh_number(group(caps, 1)?)?,
            zh_number(group(caps, 2)?)?,
        )?,
        Rule::SlashDate => upcoming(
            anchor,
            group(caps, 1)?.parse().ok()?,
            group(caps, 2)?.parse().ok()?,
        )?,
        Rule::EnglishMonthDay => upcoming(
            anchor,
            en_month(group(caps, 1)?)?,
            group(caps, 2)?.parse().ok()?,
        )?,
        Rule::InDays => {
            anchor + Duration::days(i64::from(zh_number(group(caps, 1).or(group(caps, 2))?)?))
        }
        Rule::InWeeks => {
            anchor + Duration::weeks(i64::from(zh_number(group(caps, 1).or(group(caps, 2))?)?))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, anchor: &str) -> Option<String> {
        let anchor = NaiveDate::parse_from_str(anchor, "%Y-%m-%d").unwrap();
        DateResolver::default()
            .resolve(text, anchor)
            .map(|r| format!("{} {}", r.text, r.date))
    }

    #[test]
    fn chinese_relative_dates() {
        // 2026-12-04 is a Friday.
        assert_eq!(
            at("下月初安排技术交流", "2026-12-04").as_deref(),
            Some("下月初 2027-01-01")
        );
        assert_eq!(
            at("下个月签合同", "2026-12-04").as_deref(),
            Some("下个月 2027-01-01")
        );
        assert_eq!(
            at("月底前给报价", "2026-12-04").as_deref(),
            Some("月底 2026-12-31")
        );
        assert_eq!(
            at("约了下周四去现场", "2026-12-04").as_deref(),
            Some("下周四 2026-12-10")
        );
        assert_eq!(
            at("周三上午开会", "2026-12-04").as_deref(),
            Some("周三 2026-12-09")
        );
        assert_eq!(
            at("6月8日前提交方案", "2026-12-04").as_deref(),
            Some("6月8日 2027-06-08")
        );
        assert_eq!(
            at("三天内回复", "2026-12-04").as_deref(),
            Some("三天内 2026-12-07")
        );
    }

    #[test]
    fn english_relative_dates() {
        assert_eq!(
            at("compliance audit next quarter", "2026-11-15").as_deref(),
            Some("next quarter 2027-01-01")
        );
        assert_eq!(
            at("demo booked for next Tuesday", "2026-12-04").as_deref(),
            Some("next Tuesday 2026-12-08")
        );
        assert_eq!(
            at("call on Tue 2/6 at 10", "2026-01-20").as_deref(),
            Some("2/6 2026-02-06")
        );
        assert_eq!(
            at("need it by end of month", "2026-02-10").as_deref(),
            Some("end of month 2026-02-28")
        );
        assert_eq!(
            at("go-live June 30th", "2026-03-01").as_deref(),
            Some("June 30th 2026-06-30")
        );
        assert_eq!(at("nothing temporal here", "2026-03-01"), None);
    }
}
