//! `memory_pressure`: Linux PSI (`/proc/pressure/memory` or a cgroup v2 `memory.pressure`).
//! The value is a weighted sum of the `some` averages; `full` is parsed too so that a
//! malformed file is caught whichever line is broken.

use super::PsiWeights;
use crate::core::series::Series;

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
pub fn parse(text: &str) -> Result<(PsiLine, Option<PsiLine>), String> {
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
                .ok_or_else(|| format!("malformed PSI field `{field}`"))?;
            let bad = || format!("malformed PSI value in `{field}`");
            match key {
                "avg10" => parsed.avg10 = value.parse().map_err(|_| bad())?,
                "avg60" => parsed.avg60 = value.parse().map_err(|_| bad())?,
                "avg300" => parsed.avg300 = value.parse().map_err(|_| bad())?,
                "total" => parsed.total = value.parse().map_err(|_| bad())?,
                _ => continue,
            }
            seen += 1;
        }
        if seen != 4 {
            return Err(format!(
                "PSI line `{line}` lacks one of avg10, avg60, avg300, total"
            ));
        }
        *slot = Some(parsed);
    }
    let some = some.ok_or("PSI file has no `some` line")?;
    Ok((some, full))
}

/// The weighted `some` pressure.
pub fn weighted(line: &PsiLine, w: &PsiWeights) -> f64 {
    w.avg10 * line.avg10 + w.avg60 * line.avg60 + w.avg300 * line.avg300
}

/// Reads and evaluates a PSI file.
pub fn collect(path: &str, weights: &PsiWeights) -> Result<Vec<Series>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let (some, _) = parse(&text).map_err(|e| format!("{path}: {e}"))?;
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
        let err = collect(dir.path().to_str().unwrap(), &PsiWeights::default()).unwrap_err();
        assert!(
            err.starts_with(&format!("read {}", dir.path().display())),
            "{err}"
        );
        std::fs::write(&file, "some avg10=1.00 avg60=2.00\n").unwrap();
        let err = collect(file.to_str().unwrap(), &PsiWeights::default()).unwrap_err();
        assert!(err.contains("lacks one of"), "{err}");
    }

    #[test]
    fn malformed_files_are_errors_not_zero() {
        for bad in [
            "",
            "full avg10=1.00 avg60=2.00 avg300=0.50 total=1",
            "some avg10=x avg60=0 avg300=0 total=0",
            "some avg10=1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("memory.pressure");
        let err = collect(missing.to_str().unwrap(), &PsiWeights::default()).unwrap_err();
        assert!(err.contains("memory.pressure"), "{err}");
    }
}
