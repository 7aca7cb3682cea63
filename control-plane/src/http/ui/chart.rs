//! Charts drawn on the server as SVG: a key row's usage sparkline and a key's requests per hour
//! by outcome. No chart library, no script: the page's CSS colours them.

use keygate_shared::Outcome;

use crate::store::usage::OutcomeCount;

/// Hours a sparkline covers.
pub(super) const SPARK_HOURS: i64 = 36;
const SPARK_WIDTH: i64 = 72;
const SPARK_HEIGHT: i64 = 20;

/// A sparkline: the polyline's points, and the total it draws (for its label).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Spark {
    pub points: String,
    pub total: i64,
}

impl Spark {
    /// The line through `hourly`, oldest first, scaled to the largest hour.
    pub(super) fn new(hourly: &[i64]) -> Self {
        let peak = hourly.iter().copied().max().unwrap_or(0).max(1);
        let last = i64::try_from(hourly.len().saturating_sub(1))
            .unwrap_or(1)
            .max(1);
        let points = hourly
            .iter()
            .zip(0_i64..)
            .map(|(requests, hour)| {
                let x = hour * SPARK_WIDTH / last;
                let y = SPARK_HEIGHT - 1 - requests * (SPARK_HEIGHT - 2) / peak;
                format!("{x},{y}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            points,
            total: hourly.iter().sum(),
        }
    }
}

/// The hourly counts of the `SPARK_HOURS` hours that end with the one holding `now`, oldest
/// first, from `(hour start, requests)` rows.
pub(super) fn spark_hours(rows: impl IntoIterator<Item = (i64, i64)>, now: i64) -> Vec<i64> {
    let first = now - now.rem_euclid(3_600) - (SPARK_HOURS - 1) * 3_600;
    let mut hours = vec![0; usize::try_from(SPARK_HOURS).unwrap_or(0)];
    for (start, requests) in rows {
        let slot = usize::try_from((start - first).div_euclid(3_600)).ok();
        if let Some(hour) = slot.and_then(|slot| hours.get_mut(slot)) {
            *hour += requests;
        }
    }
    hours
}

/// Hours the outcome chart covers.
pub(super) const CHART_HOURS: i64 = 24;
const BAR_WIDTH: i64 = 18;
const BAR_STEP: i64 = 24;
const CHART_HEIGHT: i64 = 160;

/// One outcome's part of one hour's bar.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Segment {
    pub y: i64,
    pub height: i64,
    pub outcome: &'static str,
    pub requests: i64,
}

/// One hour's bar.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Bar {
    pub x: i64,
    /// `HH:00`, UTC.
    pub hour: String,
    pub segments: Vec<Segment>,
}

/// Requests per hour, stacked by outcome, allowed at the bottom.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Chart {
    pub width: i64,
    pub height: i64,
    /// The largest hour, the top of the scale.
    pub peak: i64,
    pub bars: Vec<Bar>,
    /// Each outcome seen and its requests over the whole chart, in `Outcome::ALL`'s order.
    pub legend: Vec<(&'static str, i64)>,
}

impl Chart {
    /// The chart of the `CHART_HOURS` hours that end with the one holding `now`.
    pub(super) fn new(counts: &[OutcomeCount], now: i64) -> Self {
        let first = now - now.rem_euclid(3_600) - (CHART_HOURS - 1) * 3_600;
        let hours: Vec<i64> = (0..CHART_HOURS).map(|hour| first + hour * 3_600).collect();
        let in_hour = |start: i64| counts.iter().filter(move |count| count.start == start);
        let peak = hours
            .iter()
            .map(|start| in_hour(*start).map(|count| count.requests).sum::<i64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let bars = hours
            .iter()
            .zip(0_i64..)
            .map(|(start, slot)| {
                let mut top = CHART_HEIGHT;
                let segments = Outcome::ALL
                    .iter()
                    .filter_map(|outcome| {
                        let requests: i64 = in_hour(*start)
                            .filter(|count| count.outcome == *outcome)
                            .map(|count| count.requests)
                            .sum();
                        (requests > 0).then(|| {
                            let height = (requests * CHART_HEIGHT / peak).max(1);
                            top -= height;
                            Segment {
                                y: top,
                                height,
                                outcome: outcome.as_str(),
                                requests,
                            }
                        })
                    })
                    .collect();
                Bar {
                    x: slot * BAR_STEP,
                    hour: format!("{:02}:00", start.rem_euclid(86_400) / 3_600),
                    segments,
                }
            })
            .collect();
        let legend = Outcome::ALL
            .iter()
            .filter_map(|outcome| {
                let requests: i64 = counts
                    .iter()
                    .filter(|count| count.outcome == *outcome && count.start >= first)
                    .map(|count| count.requests)
                    .sum();
                (requests > 0).then_some((outcome.as_str(), requests))
            })
            .collect();
        Self {
            width: CHART_HOURS * BAR_STEP,
            height: CHART_HEIGHT,
            peak,
            bars,
            legend,
        }
    }

    /// Bars' width, for the template.
    pub(super) fn bar_width(&self) -> i64 {
        BAR_WIDTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_scales_to_its_busiest_hour() {
        let spark = Spark::new(&[0, 5, 10]);
        assert_eq!(spark.points, "0,19 36,10 72,1");
        assert_eq!(spark.total, 15);
        let quiet = Spark::new(&[0; 36]);
        assert_eq!(quiet.total, 0);
        assert!(quiet.points.split(' ').all(|point| point.ends_with(",19")));
    }

    #[test]
    fn hours_outside_the_window_are_left_out() {
        let now = 100 * 3_600 + 1_800;
        let hours = spark_hours(
            [
                (100 * 3_600, 3),
                (65 * 3_600, 2),
                (64 * 3_600, 7),
                (101 * 3_600, 9),
            ],
            now,
        );
        assert_eq!(hours.len(), 36);
        assert_eq!(hours[35], 3);
        assert_eq!(hours[0], 2);
        assert_eq!(hours.iter().sum::<i64>(), 5);
    }

    #[test]
    fn bars_stack_allowed_under_denials_and_the_legend_totals_them() {
        let now = 50 * 3_600 + 10;
        let count = |start, outcome, requests| OutcomeCount {
            start,
            outcome,
            requests,
        };
        let chart = Chart::new(
            &[
                count(50 * 3_600, Outcome::Ok, 6),
                count(50 * 3_600, Outcome::RateLimited, 2),
                count(49 * 3_600, Outcome::Revoked, 4),
            ],
            now,
        );
        assert_eq!(chart.peak, 8);
        assert_eq!(chart.bars.len(), 24);
        let last = &chart.bars[23];
        assert_eq!(last.hour, "02:00");
        assert_eq!(last.segments[0].outcome, "ok");
        assert_eq!(last.segments[0].height, 120);
        assert_eq!(last.segments[0].y, 40);
        assert_eq!(last.segments[1].outcome, "rate_limited");
        assert_eq!(last.segments[1].y, 0);
        assert_eq!(chart.bars[22].segments[0].height, 80);
        assert!(chart.bars[0].segments.is_empty());
        assert_eq!(
            chart.legend,
            vec![("ok", 6), ("revoked", 4), ("rate_limited", 2)]
        );
    }
}
