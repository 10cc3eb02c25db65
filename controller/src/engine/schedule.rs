//! Rollout windows (`spec.schedule`): is now inside one, and when does the next one open?
//!
//! A window opens at every time its cron expression names, in its time zone's wall clock,
//! and stays open for its duration. Cron matching and time zones are croner's and jiff's
//! (the tz database is bundled, so `Europe/Berlin` means the same on every host); this
//! module only asks them for occurrences. Pure: the clock is an argument.

use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::crd::{RolloutWindow, Schedule};

/// Why a window cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron {cron:?}: {reason}")]
    Cron { cron: String, reason: String },
    #[error("timeZone {zone:?}: not a known IANA time zone")]
    TimeZone { zone: String },
    #[error("duration must be more than 0s")]
    ZeroDuration,
}

/// Whether runs may move now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    /// No schedule, or inside a window.
    Open,
    /// `freeze: true`.
    Frozen,
    /// Outside every window; the next one opens then (`None`: never, or unknown).
    Closed { next_open: Option<Timestamp> },
}

impl WindowState {
    pub fn is_open(&self) -> bool {
        *self == WindowState::Open
    }

    /// Why the run waits, for status and Events.
    pub fn describe(&self) -> String {
        match self {
            WindowState::Open => "inside a rollout window".to_string(),
            WindowState::Frozen => "frozen (spec.schedule.freeze)".to_string(),
            WindowState::Closed {
                next_open: Some(at),
            } => format!("outside the rollout windows; the next opens at {at}"),
            WindowState::Closed { next_open: None } => {
                "outside the rollout windows; none opens again".to_string()
            }
        }
    }
}

/// A window, parsed.
pub struct ParsedWindow {
    cron: Cron,
    zone: TimeZone,
    duration: jiff::SignedDuration,
}

/// Parses and checks one window (used by `validate` too).
pub fn parse(window: &RolloutWindow) -> Result<ParsedWindow, ScheduleError> {
    let cron = Cron::from_str(window.cron.trim()).map_err(|e| ScheduleError::Cron {
        cron: window.cron.clone(),
        reason: e.to_string(),
    })?;
    let fields = window.cron.split_whitespace().count();
    if fields != 5 {
        return Err(ScheduleError::Cron {
            cron: window.cron.clone(),
            reason: format!(
                "needs 5 fields (minute hour day-of-month month day-of-week), got {fields}"
            ),
        });
    }
    let zone = TimeZone::get(&window.time_zone).map_err(|_| ScheduleError::TimeZone {
        zone: window.time_zone.clone(),
    })?;
    if window.duration.is_zero() {
        return Err(ScheduleError::ZeroDuration);
    }
    Ok(ParsedWindow {
        cron,
        zone,
        duration: window.duration.to_signed(),
    })
}

impl ParsedWindow {
    /// Whether `now` is inside an opening of this window: some cron time `t` with
    /// `t <= now < t + duration`.
    pub fn contains(&self, now: Timestamp) -> bool {
        let Ok(from) = now.checked_sub(self.duration) else {
            return false;
        };
        // The first opening strictly after `now - duration`: if it is not in the future,
        // `now` is inside it.
        self.cron
            .find_next_occurrence(&from.to_zoned(self.zone.clone()), false)
            .is_ok_and(|opening| opening.timestamp() <= now)
    }

    /// The first opening after `now`.
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&now.to_zoned(self.zone.clone()), false)
            .ok()
            .map(|opening| opening.timestamp())
    }
}

/// The schedule's state at `now`. A window that does not parse never opens (validation
/// reports it; failing closed only ever holds a rollout, it never rolls one forward).
pub fn state(schedule: Option<&Schedule>, now: Timestamp) -> WindowState {
    let Some(schedule) = schedule else {
        return WindowState::Open;
    };
    if schedule.freeze {
        return WindowState::Frozen;
    }
    if schedule.windows.is_empty() {
        return WindowState::Open;
    }
    let parsed: Vec<ParsedWindow> = schedule
        .windows
        .iter()
        .filter_map(|window| parse(window).ok())
        .collect();
    if parsed.iter().any(|window| window.contains(now)) {
        return WindowState::Open;
    }
    let next_open = parsed
        .iter()
        .filter_map(|window| window.next_open(now))
        .min();
    WindowState::Closed { next_open }
}
