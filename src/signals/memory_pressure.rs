//! `memory_pressure`: Linux PSI (`/proc/pressure/memory` or a cgroup v2 `memory.pressure`).
//! The value is a weighted sum of the `some` averages; `full` is parsed too so that a
//! malformed file is caught whichever line is broken.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{RuleContext, Signal, SignalError, Sources};
use crate::core::series::Series;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPressure {
    /// A PSI file: `/proc/pressure/memory` or a cgroup v2 `memory.pressure`.
    #[serde(default = "default_psi_path")]
    pub path: String,
    /// Weights of the `some` averages; the seed's `0.7*avg10 + 0.3*avg60` by default.
    #[serde(default)]
    pub weights: PsiWeights,
}

fn default_psi_path() -> String {
    "/proc/pressure/memory".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsiWeights {
    /// Weight of `avg10`.
    #[serde(default)]
    pub avg10: f64,
    /// Weight of `avg60`.
    #[serde(default)]
    pub avg60: f64,
    /// Weight of `avg300`.
    #[serde(default)]
    pub avg300: f64,
}

impl Default for PsiWeights {
    fn default() -> Self {
        PsiWeights {
            avg10: 0.7,
            avg60: 0.3,
            avg300: 0.0,
        }
    }
}

impl Signal for MemoryPressure {
    fn source(&self) -> &'static str {
        "psi"
    }

    fn needs(&self) -> super::Need {
        super::Need::Path(self.path.clone())
    }

    fn validate(&self, _rule: &RuleContext) -> Vec<String> {
        let w = self.weights;
        if [w.avg10, w.avg60, w.avg300]
            .iter()
            .any(|x| !x.is_finite() || *x < 0.0)
        {
            return vec!["memory_pressure `weights` must be non-negative numbers".to_owned()];
        }
        Vec::new()
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        let (path, weights) = (self.path.clone(), self.weights);
        Box::pin(sources.blocking(move || collect(&path, &weights)))
    }
}

/// Why a PSI text is not the kernel's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PsiError(String);

/// The averages of one PSI line (`some` or `full`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total: u64,
}

/// Parses the kernel's format:
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and optionally a `full` line.
pub fn parse(text: &str) -> Result<(PsiLine, Option<PsiLine>), PsiError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            // A kind a newer kernel may add: ignored, as prometheus/procfs does.
            _ => continue,
        };
        let mut parsed = PsiLine::default();
        let mut seen = 0;
        for field in fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| PsiError(format!("malformed PSI field `{field}`")))?;
            let bad = || PsiError(format!("malformed PSI value in `{field}`"));
            // A percentage: `NaN`, `inf` or -3 would read as pressure (or as none) and act.
            let percent = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(bad)
            };
            match key {
                "avg10" => parsed.avg10 = percent(value)?,
                "avg60" => parsed.avg60 = percent(value)?,
                "avg300" => parsed.avg300 = percent(value)?,
                "total" => parsed.total = value.parse().map_err(|_| bad())?,
                _ => continue,
            }
            seen += 1;
        }
        if seen != 4 {
            return Err(PsiError(format!(
                "PSI line `{line}` lacks one of avg10, avg60, avg300, total"
            )));
        }
        *slot = Some(parsed);
    }
    let some = some.ok_or_else(|| PsiError("PSI file has no `some` line".to_owned()))?;
    Ok((some, full))
}

/// The weighted `some` pressure.
pub fn weighted(line: &PsiLine, w: &PsiWeights) -> f64 {
    w.avg10 * line.avg10 + w.avg60 * line.avg60 + w.avg300 * line.avg300
}

/// Reads and evaluates a PSI file.
pub fn collect(path: &str, weights: &PsiWeights) -> Result<Vec<Series>, SignalError> {
    let text = std::fs::read_to_string(path).map_err(|e| SignalError::Io(format!("read {path}: {e}")))?;
    let (some, _) = parse(&text).map_err(|e| SignalError::Parse(format!("{path}: {e}")))?;
    let mut series = Series::single(weighted(&some, weights));
    series.labels.insert("path".to_owned(), path.to_owned());
    Ok(vec![series])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = "some avg10=12.50 avg60=20.00 avg300=1.00 total=12345\n\
                          full avg10=1.00 avg60=2.00 avg300=0.50 total=678\n";

    #[test]
    fn weighs_some_averages_like_the_seed() {
        let (some, full) = parse(KERNEL).unwrap();
        assert_eq!(some.total, 12345);
        assert_eq!(full.unwrap().avg60, 2.0);
        let v = weighted(&some, &PsiWeights::default());
        assert!((v - (0.7 * 12.5 + 0.3 * 20.0)).abs() < 1e-9, "{v}");
    }

    /// prometheus/procfs' fixtures (`/proc/pressure/memory`) and its parser's edge cases.
    #[test]
    fn reads_the_procfs_fixtures_and_their_edge_cases() {
        let (some, full) =
            parse("some avg10=0.10 avg60=2.00 avg300=3.85 total=15\nfull avg10=0.20 avg60=3.00 avg300=4.95 total=25\n")
                .unwrap();
        assert_eq!(
            (some.avg10, some.avg60, some.avg300, some.total),
            (0.1, 2.0, 3.85, 15)
        );
        let full = full.unwrap();
        assert_eq!(
            (full.avg10, full.avg60, full.avg300, full.total),
            (0.2, 3.0, 4.95, 25)
        );
        // A `cpu` file of an older kernel: no `full` line.
        assert!(parse("some avg10=0.10 avg60=2.00 avg300=3.85 total=15\n")
            .unwrap()
            .1
            .is_none());
        // Unknown kinds are ignored, but without `some` there is no value.
        assert!(parse("nonsense haha test=fake").is_err());
        for bad in [
            "some avg10=0.10 avg60=2.00 avg300=3.85 total=oops\nfull avg10=0.20 avg60=3.00 avg300=teddy total=25",
            "some avg10=0.10 avg60=2.00 avg300=3.85 total=1\nfull avg10=0.20 avg60=3.00 avg300=test total=25",
        ] {
            assert!(parse(bad).is_err(), "a malformed `full` line must fail the file: {bad:?}");
        }
    }

    /// A container's cgroup v2 `memory.pressure` has the same format; what cannot be read
    /// is unknown with the path in the reason.
    #[test]
    fn reads_a_cgroup_file_and_reports_what_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.pressure");
        std::fs::write(&file, KERNEL).unwrap();
        let series = collect(file.to_str().unwrap(), &PsiWeights::default()).unwrap();
        assert!((series[0].value - 14.75).abs() < 1e-9, "{}", series[0].value);
        assert_eq!(series[0].labels["path"], file.to_str().unwrap());
        // A directory where the file should be: unreadable, whoever runs the test.
        let err = collect(dir.path().to_str().unwrap(), &PsiWeights::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("read {}", dir.path().display())),
            "{err}"
        );
        std::fs::write(&file, "some avg10=1.00 avg60=2.00\n").unwrap();
        let err = collect(file.to_str().unwrap(), &PsiWeights::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks one of"), "{err}");
    }

    #[test]
    fn malformed_files_are_errors_not_zero() {
        for bad in [
            "",
            "full avg10=1.00 avg60=2.00 avg300=0.50 total=1",
            "some avg10=x avg60=0 avg300=0 total=0",
            "some avg10=1",
            "some avg10=NaN avg60=0 avg300=0 total=0",
            "some avg10=inf avg60=0 avg300=0 total=0",
            "some avg10=-3 avg60=0 avg300=0 total=0",
            "some avg10=100.01 avg60=0 avg300=0 total=0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("memory.pressure");
        let err = collect(missing.to_str().unwrap(), &PsiWeights::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory.pressure"), "{err}");
    }
}
