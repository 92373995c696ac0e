//! `disk_usage`: percent used of the filesystem holding a path, computed as `df` does
//! (`used / (used + available to unprivileged users)`), so the number matches what an SRE
//! sees on the node.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Signal, SignalError, Sources};
use crate::core::series::Series;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUsage {
    /// Any path on the filesystem to measure.
    pub path: String,
}

impl Signal for DiskUsage {
    fn source(&self) -> &'static str {
        "disk"
    }

    fn needs(&self) -> super::Need {
        super::Need::Path(self.path.clone())
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        let path = self.path.clone();
        Box::pin(sources.blocking(move || collect(&path)))
    }
}

/// Reads the filesystem statistics of `path` (statvfs).
pub fn collect(path: &str) -> Result<Vec<Series>, SignalError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| SignalError::Io(format!("statvfs {path}: {e}")))?;
    let used = st.blocks().saturating_sub(st.blocks_free()) as f64;
    let avail = st.blocks_available() as f64;
    if used + avail <= 0.0 {
        return Err(SignalError::Io(format!(
            "statvfs {path}: filesystem reports no blocks"
        )));
    }
    let mut series = Series::single(used / (used + avail) * 100.0);
    series.labels.insert("path".to_owned(), path.to_owned());
    Ok(vec![series])
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_a_real_filesystem_and_reports_a_missing_path() {
        let s = super::collect("/").unwrap();
        assert!((0.0..=100.0).contains(&s[0].value), "{}", s[0].value);
        let err = super::collect("/no/such/dir/for/automaton").unwrap_err();
        assert!(err.to_string().contains("/no/such/dir"), "{err}");
    }
}
