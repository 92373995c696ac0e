//! Clients of the outside world: the Kubernetes API (and the Lease), Kafka, PostgreSQL, and
//! the one retry policy they share. Each speaks its protocol and returns typed errors; none
//! knows a rule, a signal kind or an action kind (signals and actions call them with plain
//! queries). May import only `core` and `settings`.

pub mod backoff;
pub mod http;
pub mod kafka;
pub mod kube;
pub mod pg;
pub mod roots;
