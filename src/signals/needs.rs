//! What a signal needs from this process before it can be read at all: a configured Kafka,
//! PostgreSQL or Kubernetes API, or a file that exists here. A rule whose signal lacks its
//! need is *disabled* (never evaluated, listed with the reason) instead of producing an
//! "unknown" skip every tick: an install that ships a pack it cannot use stays quiet and
//! Ready, and says once, plainly, which setting would turn the rule on.

use std::path::Path;

/// The one thing a signal kind cannot do without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing beyond the rule itself (an RPC URL: whether it answers is a runtime matter).
    Nothing,
    Kafka,
    Postgres,
    /// The Kubernetes API (the pod watch).
    Kubernetes,
    /// A file or directory on this machine (a mounted volume, a procfs or cgroup file).
    Path(String),
}

/// Which dependencies this process has configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Available {
    pub kafka: bool,
    pub postgres: bool,
    pub kubernetes: bool,
}

impl Available {
    /// Why `need` is not met here, naming the setting that would meet it; `None` when met.
    /// A path is looked up on the filesystem at each call.
    pub fn missing(&self, need: &Need) -> Option<String> {
        match need {
            Need::Nothing => None,
            Need::Kafka if !self.kafka => {
                Some("Kafka is not configured: set KAFKA_BOOTSTRAP_SERVERS".to_owned())
            }
            Need::Postgres if !self.postgres => Some(
                "PostgreSQL is not configured: set DATABASE_URL, or POSTGRES_HOST with POSTGRES_USER \
                 and POSTGRES_PASSWORD"
                    .to_owned(),
            ),
            Need::Kubernetes if !self.kubernetes => Some(
                "no Kubernetes API: KUBERNETES=off, or neither an in-cluster service account nor a \
                 KUBECONFIG context"
                    .to_owned(),
            ),
            Need::Path(path) if !Path::new(path).exists() => Some(format!(
                "{path} does not exist here (a volume that is not mounted, or no such kernel file)"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_need_names_the_setting_that_meets_it() {
        let none = Available::default();
        let kafka = none.missing(&Need::Kafka).expect("kafka missing");
        assert!(kafka.contains("KAFKA_BOOTSTRAP_SERVERS"), "{kafka}");
        let pg = none.missing(&Need::Postgres).expect("postgres missing");
        assert!(
            pg.contains("DATABASE_URL") && pg.contains("POSTGRES_HOST"),
            "{pg}"
        );
        let kube = none.missing(&Need::Kubernetes).expect("kube missing");
        assert!(
            kube.contains("KUBERNETES=off") && kube.contains("KUBECONFIG"),
            "{kube}"
        );
        assert_eq!(none.missing(&Need::Nothing), None);
        let all = Available {
            kafka: true,
            postgres: true,
            kubernetes: true,
        };
        assert_eq!(all.missing(&Need::Kafka), None);
        assert_eq!(all.missing(&Need::Postgres), None);
        assert_eq!(all.missing(&Need::Kubernetes), None);
    }

    #[test]
    fn a_path_is_met_only_when_it_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let here = dir.path().display().to_string();
        assert_eq!(Available::default().missing(&Need::Path(here.clone())), None);
        let gone = format!("{here}/not-mounted");
        let why = Available::default()
            .missing(&Need::Path(gone.clone()))
            .expect("missing");
        assert!(why.starts_with(&gone) && why.contains("does not exist"), "{why}");
    }
}
