//! Errors of the Kubernetes layer. Every kube error is wrapped with the request it came from
//! (method, resource, object) and sorted by what the caller can do about it: fix the Role
//! (403), fix the rule (404, 422), retry (409 after a fresh read; 429, 5xx and timeouts after
//! a backoff).

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// One request to the API server, as an error names it and as RBAC authorizes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// HTTP method: `GET`, `PATCH`, `POST`.
    pub method: &'static str,
    /// The RBAC verb it is authorized as: `get`, `list`, `patch`, `create`.
    pub verb: &'static str,
    /// The API group, `""` for core.
    pub group: &'static str,
    /// The resource, with its subresource when there is one: `deployments/scale`, `pods/exec`.
    pub resource: String,
    pub namespace: String,
    /// The object's name; `None` for lists and creations.
    pub name: Option<String>,
}

impl ApiRequest {
    pub fn new(
        method: &'static str,
        verb: &'static str,
        group: &'static str,
        resource: impl Into<String>,
        namespace: &str,
        name: Option<&str>,
    ) -> Self {
        ApiRequest {
            method,
            verb,
            group,
            resource: resource.into(),
            namespace: namespace.to_owned(),
            name: name.map(str::to_owned),
        }
    }

    /// `deployments.apps/scale`, as Kubernetes qualifies a resource in its own messages.
    pub fn qualified_resource(&self) -> String {
        let (resource, sub) = match self.resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(sub)),
            None => (self.resource.as_str(), None),
        };
        let mut out = resource.to_owned();
        if !self.group.is_empty() {
            out.push('.');
            out.push_str(self.group);
        }
        if let Some(sub) = sub {
            out.push('/');
            out.push_str(sub);
        }
        out
    }

    /// Where the permission for this request is granted.
    fn grant(&self) -> &'static str {
        if self.resource == "pods/exec" {
            "deploy/components/clean-logs (an optional component: add it to your overlay's `components:`)"
        } else {
            "deploy/base/role.yaml (in another namespace of WATCH_NAMESPACES: its RoleBinding, \
             deploy/overlays/namespaces; for `*`: deploy/components/cluster-wide)"
        }
    }
}

impl fmt::Display for ApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.qualified_resource())?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        match self.namespace.as_str() {
            // A watch across the cluster (WATCH_NAMESPACES=*).
            "" => f.write_str(" across the cluster"),
            ns => write!(f, " in namespace {ns:?}"),
        }
    }
}

/// An error of the Kubernetes layer.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("{request}: forbidden: the automaton's Role lacks `{}` on {} — see {} (API server: {message})", .request.verb, .request.qualified_resource(), .request.grant())]
    Forbidden {
        request: Box<ApiRequest>,
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{request}: the target does not exist (API server: {message})")]
    NotFound {
        request: Box<ApiRequest>,
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// 409: a stale `resourceVersion` (`reason: Conflict`) or a name taken (`AlreadyExists`).
    #[error("{request}: conflict ({reason}): {message}")]
    Conflict {
        request: Box<ApiRequest>,
        reason: String,
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// 429 and 5xx: worth retrying after a backoff.
    #[error("{request}: transient failure (HTTP {code}): {message}")]
    Transient {
        request: Box<ApiRequest>,
        code: u16,
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Any other refusal (400, 422…): the request itself is wrong and retrying will not help.
    #[error("{request}: rejected (HTTP {code} {reason}): {message}")]
    Rejected {
        request: Box<ApiRequest>,
        code: u16,
        reason: String,
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The connection failed (refused, reset, TLS, read timeout of the client).
    #[error("{request}: the API server is unreachable: {source}")]
    Unreachable {
        request: Box<ApiRequest>,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{request}: no answer within {after:?}")]
    Timeout {
        request: Box<ApiRequest>,
        after: Duration,
    },
    /// A client-side failure: the request could not be built or the answer not read.
    #[error("{request}: {source}")]
    Client {
        request: Box<ApiRequest>,
        #[source]
        source: Box<kube::Error>,
    },
    /// The command run by `exec` failed inside the container.
    #[error("exec in {target}: {message}")]
    Exec { target: String, message: String },
    /// The decision or the live object does not allow the action (no plan, unknown container…).
    #[error("{0}")]
    Invalid(String),
}

impl ClusterError {
    /// Wraps a kube error with the request it answered.
    pub fn from_kube(request: ApiRequest, source: kube::Error) -> Self {
        let (request, source) = (Box::new(request), Box::new(source));
        let status = match &*source {
            kube::Error::Api(status) => status,
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                return ClusterError::Unreachable { request, source };
            }
            _ => return ClusterError::Client { request, source },
        };
        let (code, reason, message) = (status.code, status.reason.clone(), status.message.clone());
        if code == 403 || reason == "Forbidden" {
            ClusterError::Forbidden {
                request,
                message,
                source,
            }
        } else if code == 404 || reason == "NotFound" {
            ClusterError::NotFound {
                request,
                message,
                source,
            }
        } else if code == 409 || reason == "Conflict" || reason == "AlreadyExists" {
            let reason = if reason.is_empty() {
                "Conflict".to_owned()
            } else {
                reason
            };
            ClusterError::Conflict {
                request,
                reason,
                message,
                source,
            }
        } else if code == 429
            || (500..=599).contains(&code)
            || matches!(
                reason.as_str(),
                "TooManyRequests" | "ServerTimeout" | "Timeout" | "InternalError" | "ServiceUnavailable"
            )
        {
            ClusterError::Transient {
                request,
                code,
                message,
                source,
            }
        } else {
            ClusterError::Rejected {
                request,
                code,
                reason,
                message,
                source,
            }
        }
    }

    /// Whether retrying the same request later may succeed: 429, 5xx, connection failures
    /// and timeouts. A 403, 404 or 422 stays what it is; a 409 needs a fresh read first.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClusterError::Transient { .. } | ClusterError::Unreachable { .. } | ClusterError::Timeout { .. }
        )
    }

    /// How long the API server asked to wait before retrying: `details.retryAfterSeconds`
    /// of a `Status` (`NewTooManyRequests`, `NewServerTimeout`…). The `Retry-After` header
    /// that API Priority and Fairness sends with its plain-text 429 is not seen: kube 5's
    /// `Error::Api` keeps the body only, so that 429 waits the computed backoff.
    pub fn retry_after(&self) -> Option<Duration> {
        let ClusterError::Transient { source, .. } = self else {
            return None;
        };
        let kube::Error::Api(status) = source.as_ref() else {
            return None;
        };
        let seconds = status.details.as_ref()?.retry_after_seconds;
        (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)))
    }

    /// A 409 on an optimistic-concurrency precondition (`metadata.resourceVersion`).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClusterError::Conflict { reason, .. } if reason != "AlreadyExists")
    }

    /// A 409 because the name is taken.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, ClusterError::Conflict { reason, .. } if reason == "AlreadyExists")
    }

    /// The request that failed, when the error comes from one.
    pub fn request(&self) -> Option<&ApiRequest> {
        match self {
            ClusterError::Forbidden { request, .. }
            | ClusterError::NotFound { request, .. }
            | ClusterError::Conflict { request, .. }
            | ClusterError::Transient { request, .. }
            | ClusterError::Rejected { request, .. }
            | ClusterError::Unreachable { request, .. }
            | ClusterError::Timeout { request, .. }
            | ClusterError::Client { request, .. } => Some(request.as_ref()),
            ClusterError::Exec { .. } | ClusterError::Invalid(_) => None,
        }
    }

    /// A bounded label for metrics, as kube-rs controller-rs does.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ClusterError::Forbidden { .. } => "forbidden",
            ClusterError::NotFound { .. } => "not_found",
            ClusterError::Conflict { .. } => "conflict",
            ClusterError::Transient { .. } => "transient",
            ClusterError::Rejected { .. } => "rejected",
            ClusterError::Unreachable { .. } => "unreachable",
            ClusterError::Timeout { .. } => "timeout",
            ClusterError::Client { .. } => "client",
            ClusterError::Exec { .. } => "exec",
            ClusterError::Invalid(_) => "invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("server says no", reason).with_code(code).boxed())
    }

    fn patch_scale() -> ApiRequest {
        ApiRequest::new(
            "PATCH",
            "patch",
            "apps",
            "deployments/scale",
            "prod",
            Some("email-service"),
        )
    }

    #[test]
    fn forbidden_names_the_verb_the_resource_and_the_role() {
        let err = ClusterError::from_kube(patch_scale(), api(403, "Forbidden"));
        assert_eq!(err.metric_label(), "forbidden");
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            "PATCH deployments.apps/scale \"email-service\" in namespace \"prod\": forbidden: the \
             automaton's Role lacks `patch` on deployments.apps/scale — see deploy/base/role.yaml \
             (in another namespace of WATCH_NAMESPACES: its RoleBinding, deploy/overlays/namespaces; \
             for `*`: deploy/components/cluster-wide) (API server: server says no)"
        );
        let across = ApiRequest::new("GET", "list", "apps", "deployments", "", None);
        assert_eq!(across.to_string(), "GET deployments.apps across the cluster");
        let exec = ApiRequest::new("GET", "get and create", "", "pods/exec", "prod", Some("p"));
        let err = ClusterError::from_kube(exec, api(403, "Forbidden"));
        assert!(
            err.to_string()
                .contains("lacks `get and create` on pods/exec — see deploy/components/clean-logs"),
            "{err}"
        );
    }

    #[test]
    fn codes_sort_into_what_the_caller_can_do() {
        let cases = [
            (404, "NotFound", "not_found", false),
            (409, "Conflict", "conflict", false),
            (409, "AlreadyExists", "conflict", false),
            (422, "Invalid", "rejected", false),
            (429, "TooManyRequests", "transient", true),
            (429, "Failed to parse error data", "transient", true),
            (500, "InternalError", "transient", true),
            (503, "ServiceUnavailable", "transient", true),
            (504, "Timeout", "transient", true),
        ];
        for (code, reason, label, transient) in cases {
            let err = ClusterError::from_kube(patch_scale(), api(code, reason));
            assert_eq!(
                (err.metric_label(), err.is_transient()),
                (label, transient),
                "{code} {reason}"
            );
        }
        let conflict = ClusterError::from_kube(patch_scale(), api(409, "Conflict"));
        assert!(conflict.is_conflict() && !conflict.is_already_exists());
        let taken = ClusterError::from_kube(patch_scale(), api(409, "AlreadyExists"));
        assert!(taken.is_already_exists() && !taken.is_conflict());
        let timeout = ClusterError::Timeout {
            request: Box::new(patch_scale()),
            after: Duration::from_secs(10),
        };
        assert!(timeout.is_transient());
    }

    #[test]
    fn retry_after_comes_from_the_status_details() {
        let with = |seconds| {
            let details = kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: seconds,
            };
            let status = Status::failure("slow down", "TooManyRequests")
                .with_code(429)
                .with_details(details);
            ClusterError::from_kube(patch_scale(), kube::Error::Api(status.boxed()))
        };
        assert_eq!(with(3).retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(with(0).retry_after(), None, "0 means not set");
        let plain = ClusterError::from_kube(patch_scale(), api(429, "Failed to parse error data"));
        assert_eq!(plain.retry_after(), None);
        let forbidden = ClusterError::from_kube(patch_scale(), api(403, "Forbidden"));
        assert_eq!(forbidden.retry_after(), None);
    }

    #[test]
    fn core_resources_are_not_qualified() {
        let list = ApiRequest::new("GET", "list", "", "pods", "prod", None);
        assert_eq!(list.to_string(), "GET pods in namespace \"prod\"");
    }
}
