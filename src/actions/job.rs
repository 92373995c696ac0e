//! `run_job`: create a Job from a CronJob's jobTemplate, as
//! `kubectl create job --from=cronjob/NAME` does (snapshot backups, ledger pruning).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::core::plan::{Effect, Plan};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunJob {
    /// Name of the CronJob in the automaton's namespace.
    pub from_cronjob: String,
}

impl RunJob {
    pub fn plan(&self) -> Plan {
        Plan::new(json!({"job_from_cronjob": self.from_cronjob}), Effect::External)
    }
}
