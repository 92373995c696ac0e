//! The forms of the settings' values: each returns `None` for a value it refuses, and
//! `Settings::from_vars` names the variable and the expected form.

use std::time::Duration;

use super::{KubeMode, LogFormat};
use crate::core::values::Dur;

/// Bounds of the replica settings: far above any real workload, far below i32 overflow.
pub(super) const MAX_REPLICAS: u32 = 10_000;
/// Bounds of MAX_MEMORY: a limit below 1Mi cannot run a process, above 16Ti no node exists.
pub(super) const MIN_MEMORY: u64 = 1 << 20;
pub(super) const MAX_MEMORY: u64 = 16 << 40;

/// `15s`, `1m`, or a bare number of seconds (the seed's ConfigMap says `CHECK_INTERVAL: "60"`).
pub(super) fn parse_interval(v: &str) -> Option<Duration> {
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => v.parse::<Dur>().ok()?.0,
    };
    // An hour at most: `3 x CHECK_INTERVAL` (staleness, liveness) must stay meaningful,
    // and a bare number of seconds near u64::MAX would overflow it.
    (Duration::from_millis(100)..=Duration::from_secs(3600))
        .contains(&d)
        .then_some(d)
}

pub(super) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" | "" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_budget(v: &str) -> Option<(u32, Duration)> {
    let (count, window) = v.split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|n| (1..=10_000).contains(n))?;
    let window = window
        .trim()
        .parse::<Dur>()
        .ok()
        .map(|d| d.0)
        .filter(|w| !w.is_zero() && *w <= Duration::from_secs(7 * 86_400))?;
    Some((count, window))
}

pub(super) fn parse_kube_mode(v: &str) -> Option<KubeMode> {
    match v {
        "auto" => Some(KubeMode::Auto),
        "on" | "true" => Some(KubeMode::On),
        "off" | "false" => Some(KubeMode::Off),
        _ => None,
    }
}

pub(super) fn parse_log_format(v: &str) -> Option<LogFormat> {
    match v {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        _ => None,
    }
}
