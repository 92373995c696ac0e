//! Signals: what the automaton observes. Each kind is one file holding its rule-file
//! parameters (serde, a `///` on every field), its validation, its collection and its tests,
//! and one line in the registry below, from which the rule schema ([`SignalSpec`]), the
//! dispatch, `simulate`'s kind names ([`SignalSpec::KINDS`]) and the metrics' labels come.
//! Collection is I/O through [`crate::clients`]; everything after it is pure.

pub mod alerts;
mod error;
mod needs;
pub mod pods;
pub mod selector;
mod sources;
pub mod template;

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::core::series::Series;
pub use crate::core::target::OwnerKind;
pub use error::SignalError;
pub use needs::{Available, Need};
pub use sources::Sources;

/// What a rule around a signal tells its validation.
#[derive(Debug, Clone, Copy)]
pub struct RuleContext {
    /// The rule's cooldown: a window longer than it would act on one event twice.
    pub cooldown: Duration,
}

/// What every signal kind provides. Implemented by the parameter struct of each kind.
pub trait Signal: Send + Sync {
    /// The `source` label of `automaton_signal_source_up` and `/status`: what is read.
    fn source(&self) -> &'static str;

    /// The external dependency the collection goes through: the key of its circuit breaker.
    /// Local files (disk, PSI, cgroup) have none.
    fn dependency(&self) -> Option<String> {
        None
    }

    /// What this process must have configured before the signal can be read at all; a
    /// rule whose need is missing is disabled, not evaluated (see [`needs`]).
    fn needs(&self) -> Need {
        Need::Nothing
    }

    /// Whether series carry an `owner` label (the workload of a pod), so a rule may use
    /// `target: owner`. Such signals are read from the pod watch, which pushes changes.
    fn has_owner(&self) -> bool {
        false
    }

    /// The label selector of the pods a pod signal reads from the pod watch, which asks the
    /// API server only for the pods every such selector selects.
    fn pod_selector(&self) -> Option<&str> {
        None
    }

    /// What the series' `owner` label names: a workload for pod signals; for signals whose
    /// target is a template, what the template names.
    fn owner_kind(&self) -> Option<OwnerKind> {
        self.has_owner().then_some(OwnerKind::Workload)
    }

    /// Whether new readings are pushed (the pod watch, Alertmanager's webhook): a push
    /// evaluates these sources at once, without waiting for the tick.
    fn pushes(&self) -> bool {
        self.has_owner()
    }

    /// A secret setting the kind cannot run without, checked when the daemon loads its rules
    /// (the `alert` signal: ALERTMANAGER_TOKEN, so only Alertmanager can push alerts).
    fn needs_secret(&self) -> Option<&'static str> {
        None
    }

    /// Every problem of the parameters, in the rule around them.
    fn validate(&self, _rule: &RuleContext) -> Vec<String> {
        Vec::new()
    }

    /// One collection. `Err` is "unknown" with the reason: never 0 in its place.
    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>>;

    /// Every source of this kind in one tick, results in their order. By default each is
    /// collected on its own, all concurrently; a kind whose protocol reads many at once in
    /// one request (Kafka: one Metadata and ListOffsets for every group) overrides it.
    fn collect_batch<'a>(batch: &'a [&'a Self], sources: &'a Sources) -> BoxFuture<'a, Vec<Collection>>
    where
        Self: Sized,
    {
        Box::pin(futures::future::join_all(
            batch.iter().map(|s| s.collect(sources)),
        ))
    }
}

/// One source's collection: its series, or why they are unknown.
pub type Collection = Result<Vec<Series>, SignalError>;

/// The registry: `module => Kind` declares the kind's file and its variant of
/// [`SignalSpec`]. The kind's name in rule files is the module's name, which is also the
/// variant's name in snake case (checked by a test).
macro_rules! signals {
    ($($module:ident => $kind:ident,)+) => {
        $(
            pub mod $module;
            pub use $module::$kind;
        )+

        /// The signal of a rule: exactly one kind, with its parameters.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum SignalSpec {
            $($kind($kind),)+
        }

        impl SignalSpec {
            /// Every kind's name, as written in rule files and timelines.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($module)),+];

            /// The kind's name, as written in rule files and timelines.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(SignalSpec::$kind(_) => stringify!($module),)+
                }
            }

            /// The kind's implementation.
            pub fn get(&self) -> &dyn Signal {
                match self {
                    $(SignalSpec::$kind(s) => s,)+
                }
            }

            /// Every spec's collection, in their order: each kind's sources together
            /// ([`Signal::collect_batch`]), the kinds concurrently, each in a `collect`
            /// span naming its kind.
            pub async fn collect_all(specs: &[&SignalSpec], sources: &Sources) -> Vec<Collection> {
                use tracing::Instrument;
                let mut kinds: Vec<BoxFuture<'_, Vec<(usize, Collection)>>> = Vec::new();
                $(
                    let (at, batch): (Vec<usize>, Vec<&$kind>) = specs
                        .iter()
                        .enumerate()
                        .filter_map(|(i, spec)| match spec {
                            SignalSpec::$kind(s) => Some((i, s)),
                            _ => None,
                        })
                        .unzip();
                    if !batch.is_empty() {
                        let span = tracing::info_span!(
                            "collect",
                            signal = stringify!($module),
                            sources = batch.len()
                        );
                        kinds.push(Box::pin(async move {
                            let results = <$kind as Signal>::collect_batch(&batch, sources).await;
                            at.into_iter().zip(results).collect()
                        }.instrument(span)));
                    }
                )+
                let mut out: Vec<Option<Collection>> = specs.iter().map(|_| None).collect();
                for (i, result) in futures::future::join_all(kinds).await.into_iter().flatten() {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(result);
                    }
                }
                out.into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(SignalError::Task("the kind's batch gave no result".to_owned()))))
                    .collect()
            }
        }
    };
}

signals! {
    kafka_lag => KafkaLag,
    postgres => Postgres,
    pod_oom_killed => PodOomKilled,
    pod_crash_loop => PodCrashLoop,
    pod_restarts => PodRestarts,
    disk_usage => DiskUsage,
    memory_pressure => MemoryPressure,
    memory_oom_kills => MemoryOomKills,
    slot_lag => SlotLag,
    prometheus => Prometheus,
    alert => Alert,
}

impl SignalSpec {
    /// The dependency behind the signal: the `source` label of `automaton_signal_source_up`.
    pub fn source(&self) -> &'static str {
        self.get().source()
    }

    /// The key of the circuit breaker the collection goes through, if any.
    pub fn dependency(&self) -> Option<String> {
        self.get().dependency()
    }

    /// What this process must have configured before the signal can be read at all.
    pub fn needs(&self) -> Need {
        self.get().needs()
    }

    /// Whether series carry an `owner` label, so a rule may use `target: owner`.
    pub fn is_pod_signal(&self) -> bool {
        self.get().has_owner()
    }

    /// The selector of the pods a pod signal reads.
    pub fn pod_selector(&self) -> Option<&str> {
        self.get().pod_selector()
    }

    /// What the series' `owner` label names, when they carry one.
    pub fn owner_kind(&self) -> Option<OwnerKind> {
        self.get().owner_kind()
    }

    /// Whether a push (pod watch event, Alertmanager webhook) re-reads this source at once.
    pub fn pushes(&self) -> bool {
        self.get().pushes()
    }

    /// Every problem of the signal's parameters in the rule around it.
    pub fn validate(&self, rule: &RuleContext) -> Vec<String> {
        self.get().validate(rule)
    }

    /// One collection through `sources`.
    pub async fn collect(&self, sources: &Sources) -> Result<Vec<Series>, SignalError> {
        self.get().collect(sources).await
    }
}

impl crate::core::rule::SignalKind for SignalSpec {
    fn kind(&self) -> &'static str {
        SignalSpec::kind(self)
    }

    fn has_owner(&self) -> bool {
        self.is_pod_signal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_in_rule_files_by_its_module() {
        for kind in SignalSpec::KINDS {
            let yaml = format!("{kind}: {{}}\n");
            let err = serde_yaml::from_str::<SignalSpec>(&yaml)
                .map(|s| s.kind().to_owned())
                .unwrap_or_else(|e| e.to_string());
            assert!(
                err == *kind || !err.contains("unknown variant"),
                "`{kind}` is not a variant name of SignalSpec: {err}"
            );
        }
    }

    use crate::clients::kafka::OffsetReset;

    /// Mixed kinds come back in the order asked, each kind's sources collected as one batch:
    /// a Kafka spec without Kafka configured is its own error, the disk specs read.
    #[tokio::test]
    async fn collect_all_answers_every_spec_in_its_order() {
        let disk_at = |path: &str| {
            SignalSpec::DiskUsage(DiskUsage {
                path: path.to_owned(),
            })
        };
        let (disk, missing) = (disk_at("/"), disk_at("/no/such/path"));
        let kafka = SignalSpec::KafkaLag(KafkaLag {
            group: "g".to_owned(),
            topic: None,
            offset_reset: OffsetReset::Latest,
        });
        let specs = [&disk, &kafka, &missing, &kafka, &disk];
        let sources = Sources::new(Duration::from_secs(1), reqwest::Client::new());
        let results = SignalSpec::collect_all(&specs, &sources).await;
        let shape: Vec<&str> = results
            .iter()
            .map(|r| match r {
                Ok(_) => "read",
                Err(SignalError::NotConfigured(_)) => "no kafka",
                Err(_) => "error",
            })
            .collect();
        assert_eq!(shape, ["read", "no kafka", "error", "no kafka", "read"]);
    }
}
