//! `clean_logs`: delete old log files inside pods with a fixed argv
//! (`find PATH -name PATTERN -type f -mtime +N -delete`): no shell, nothing from signal
//! labels in the command, and PATH must be absolute without `..`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::core::plan::{Effect, Plan};
use crate::core::values::Dur;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanLogs {
    /// Label selector of the pods to clean.
    pub selector: String,
    /// The container to exec into (default: the pod's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The directory to clean: absolute, no `..`.
    pub path: String,
    /// File name pattern for `find -name`.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// Only files last modified longer ago than this (default 7d).
    #[serde(default = "default_older_than")]
    pub older_than: Dur,
}

fn default_pattern() -> String {
    "*.log".to_owned()
}

fn default_older_than() -> Dur {
    Dur(std::time::Duration::from_secs(7 * 86400))
}

impl CleanLogs {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.path.starts_with('/') || self.path.split('/').any(|part| part == "..") {
            errors.push(format!(
                "clean_logs `path` must be absolute and without `..`, found `{}`",
                self.path
            ));
        }
        if self.path == "/" {
            errors.push("clean_logs `path` must not be `/`".to_owned());
        }
        if self.pattern.is_empty() || self.pattern.contains('/') {
            errors.push(format!(
                "clean_logs `pattern` must be a file name pattern, found `{}`",
                self.pattern
            ));
        }
        errors
    }

    /// The exact argv run in the container. Every element comes from the rule file.
    pub fn argv(&self) -> Vec<String> {
        let days = self.older_than.0.as_secs().div_ceil(86400).max(1);
        [
            "find",
            &self.path,
            "-name",
            &self.pattern,
            "-type",
            "f",
            "-mtime",
            &format!("+{}", days - 1),
            "-delete",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn plan(&self) -> Plan {
        Plan::new(
            json!({"selector": self.selector, "argv": self.argv()}),
            Effect::External,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_matches_find_semantics_and_paths_are_checked() {
        let spec = CleanLogs {
            selector: "app=x".into(),
            container: None,
            path: "/var/log/app".into(),
            pattern: "*.log".into(),
            older_than: default_older_than(),
        };
        // `-mtime +6` matches files at least 7 whole days old.
        assert_eq!(
            spec.argv().join(" "),
            "find /var/log/app -name *.log -type f -mtime +6 -delete"
        );
        assert!(spec.validate().is_empty());
        for bad in ["var/log", "/var/../etc", "/"] {
            let s = CleanLogs {
                path: bad.into(),
                ..spec.clone()
            };
            assert!(!s.validate().is_empty(), "{bad}");
        }
    }
}
