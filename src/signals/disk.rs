//! `disk_usage`: percent used of the filesystem holding a path, computed as `df` does
//! (`used / (used + available to unprivileged users)`), so the number matches what an SRE
//! sees on the node.

use crate::core::series::Series;

/// Reads the filesystem statistics of `path` (statvfs).
pub fn collect(path: &str) -> Result<Vec<Series>, String> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {path}: {e}"))?;
    let used = st.blocks().saturating_sub(st.blocks_free()) as f64;
    let avail = st.blocks_available() as f64;
    if used + avail <= 0.0 {
        return Err(format!("statvfs {path}: filesystem reports no blocks"));
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
        assert!(err.contains("/no/such/dir"), "{err}");
    }
}
