//! `automaton check`: good and bad rule files, run through the real binary. Every error is
//! pinned exactly as an operator reads it, `FILE:LINE:COL: message`, and `check` exits 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Variables the rule files below and the repo's `rules/` read; removed from the child's
/// environment so a developer's shell cannot change what `check` sees.
const VARIABLES: [&str; 17] = [
    "KAFKA_LAG_THRESHOLD",
    "KAFKA_LAG_CLEAR",
    "MAX_REPLICAS",
    "HEAL_SELECTOR",
    "POSTGRES_CONN_THRESHOLD",
    "DISK_PATH",
    "DISK_SPACE_THRESHOLD",
    "PSI_PATH",
    "MEMORY_PRESSURE_HIGH",
    "MEMORY_PRESSURE_LOW",
    "VALIDATOR_ADMIN_URL",
    "VALIDATOR_RPC_URL",
    "REFERENCE_RPC_URL",
    "SLOT_LAG_THRESHOLD",
    "ALERT_WEBHOOK_URL",
    "LAG_THRESHOLD",
    "AUTOMATON_TEST_UNSET",
];

/// Runs `automaton check PATHS…` in `dir` with only `env` set among [`VARIABLES`].
fn check_in(dir: &Path, paths: &[&Path], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automaton"));
    cmd.current_dir(dir).arg("check").args(paths);
    for var in VARIABLES {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("the automaton binary runs")
}

fn check(paths: &[&Path]) -> Output {
    check_in(Path::new(env!("CARGO_MANIFEST_DIR")), paths, &[])
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts `check` failed with exactly `expected` on stdout and the count on stderr.
fn assert_errors(out: &Output, expected: &[String]) {
    assert_eq!(
        stdout_lines(out),
        expected,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "check must exit 1 on errors");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("{} error(s)", expected.len())
    );
}

/// A temporary rule directory.
struct RuleDir {
    dir: tempfile::TempDir,
}

impl RuleDir {
    fn new() -> Self {
        RuleDir {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn with(self, name: &str, text: &str) -> Self {
        std::fs::write(self.file(name), text).expect("the rule file is written");
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `FILE:LINE:COL: message` lines for `name`, from `LINE:COL: message`.
    fn errors_in(&self, name: &str, located: &[&str]) -> Vec<String> {
        let file = self.file(name);
        located
            .iter()
            .map(|l| format!("{}:{l}", file.display()))
            .collect()
    }
}

/// A rule that `check` accepts, for cases that change one thing of it.
const GOOD: &str = r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#;

struct Bad {
    what: &'static str,
    yaml: &'static str,
    /// `LINE:COL: message`, in order.
    errors: &'static [&'static str],
}

/// The case of `BAD` described as `what`.
fn bad(what: &str) -> &'static Bad {
    BAD.iter()
        .find(|b| b.what.starts_with(what))
        .unwrap_or_else(|| panic!("no case `{what}`"))
}

const BAD: &[Bad] = &[
    Bad {
        what: "unknown field, with the closest known one",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
    cooldwn: 5m
"#,
        errors: &["8:5: rules[0]: unknown field `cooldwn`, expected one of `name`, `description`, `priority`, `signal`, `when`, `for`, `clear`, `action`, `cooldown`, `dry_run`, `rate_limit`, `verify`, `rollback`, `notify_first` (did you mean `cooldown`?)"],
    },
    Bad {
        what: "unknown signal kind",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lagg: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["4:7: rules[0].signal: unknown variant `kafka_lagg`, expected one of `kafka_lag`, `postgres`, `pod_oom_killed`, `pod_crash_loop`, `pod_restarts`, `disk_usage`, `memory_pressure`, `memory_oom_kills`, `slot_lag`, `prometheus`, `alert` (did you mean `kafka_lag`?)"],
    },
    Bad {
        what: "unknown action kind",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scael: {target: deployment/app, replicas: 3}
"#,
        errors: &["7:7: rules[0].action: unknown variant `scael`, expected one of `scale`, `restart`, `raise_memory`, `terminate_idle_connections`, `clean_logs`, `http`, `run_job`, `notify` (did you mean `scale`?)"],
    },
    Bad {
        what: "unknown priority",
        yaml: r#"rules:
  - name: lag
    priority: urgent
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["3:15: rules[0].priority: unknown variant `urgent`, expected one of `critical`, `high`, `medium`, `low`"],
    },
    Bad {
        what: "condition with an invalid operator",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "=> 5"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["5:11: rules[0].when: invalid condition `=> 5`: expected an operator (>, >=, <, <=, ==, !=) and a number, e.g. `> 15000`"],
    },
    Bad {
        what: "condition without an operator",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: 15000
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["5:11: rules[0].when: invalid condition `15000`: expected an operator (>, >=, <, <=, ==, !=) and a number, e.g. `> 15000`"],
    },
    Bad {
        what: "condition with a number that is not one",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> lots"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["5:11: rules[0].when: invalid condition `> lots`: expected a number, optionally with %, Ki/Mi/Gi/Ti or k/M/G/T, found `lots`"],
    },
    Bad {
        what: "duration in words",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    for: 5 minutes
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["6:10: rules[0].for: invalid duration `5 minutes`: expected a number and a unit (ms, s, m, h, d), e.g. `30s`, `5m`, `1h`, `7d`"],
    },
    Bad {
        what: "duration without a unit",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    for: 5
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["6:10: rules[0].for: invalid duration `5`: expected a number and a unit (ms, s, m, h, d), e.g. `30s`, `5m`, `1h`, `7d`"],
    },
    Bad {
        what: "`M` is not minutes (humantime would read five months)",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
    cooldown: 5M
"#,
        errors: &["8:15: rules[0].cooldown: invalid duration `5M`: expected a number and a unit (ms, s, m, h, d), e.g. `30s`, `5m`, `1h`, `7d`"],
    },
    Bad {
        what: "memory bound that is not a byte quantity",
        yaml: r#"rules:
  - name: oom
    signal:
      pod_oom_killed: {selector: app=x}
    when: "> 0"
    action:
      raise_memory: {target: owner, max: 8 gigs}
"#,
        errors: &["7:42: rules[0].action.raise_memory.max: invalid byte quantity `8 gigs`: expected a number with an optional unit Ki/Mi/Gi/Ti (or k/M/G/T), e.g. `512Mi` or `2Gi`"],
    },
    Bad {
        what: "memory bound in percent",
        yaml: r#"rules:
  - name: oom
    signal:
      pod_oom_killed: {selector: app=x}
    when: "> 0"
    action:
      raise_memory: {target: owner, max: 50%}
"#,
        errors: &["7:42: rules[0].action.raise_memory.max: invalid byte quantity `50%`: expected a number with an optional unit Ki/Mi/Gi/Ti (or k/M/G/T), e.g. `512Mi` or `2Gi`"],
    },
    Bad {
        what: "rule name outside [a-z0-9-]",
        yaml: r#"rules:
  - name: Bad_Name
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["2:11: rules[0].name: invalid rule name `Bad_Name`: expected 1 to 51 characters of [a-z0-9-]"],
    },
    Bad {
        what: "unset variable without a default: the rule, the variable, at the `${`",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> ${AUTOMATON_TEST_UNSET}"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["5:14: rule `lag`: environment variable `AUTOMATON_TEST_UNSET` is not set and `${AUTOMATON_TEST_UNSET}` has no default (write `${AUTOMATON_TEST_UNSET:-VALUE}`)"],
    },
    Bad {
        what: "scale with both `replicas` and `step`",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3, step: 1}
"#,
        errors: &["2:11: rule `lag`: scale needs exactly one of `replicas`, `step` or `per_lag`"],
    },
    Bad {
        what: "`target: owner` with a signal that has no owner",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      restart: {target: owner}
"#,
        errors: &["2:11: rule `lag`: `target: owner` needs a signal whose series name their owner (pod_oom_killed, pod_crash_loop, pod_restarts, or prometheus or alert with a `target`), not `kafka_lag`"],
    },
    Bad {
        what: "a workload action on series that name volume claims",
        yaml: r#"rules:
  - name: full
    signal:
      prometheus: {url: "http://prometheus:9090", query: "volume_used", target: "pvc/{{persistentvolumeclaim}}"}
    when: "> 85"
    action:
      restart: {target: owner}
"#,
        errors: &["2:11: rule `full`: `target: owner` of `restart` acts on a workload (`deployment/NAME`, `statefulset/NAME`), but the signal's series name a volume claim (`pvc/NAME`)"],
    },
    Bad {
        what: "clean_logs of the pods a workload series names",
        yaml: r#"rules:
  - name: logs
    signal:
      prometheus: {url: "http://prometheus:9090", query: "log_bytes", target: owner}
    when: "> 85"
    action:
      clean_logs: {selector: "app=x", target: owner, path: /var/log/app}
"#,
        errors: &["2:11: rule `logs`: `target: owner` of `clean_logs` acts on a pod (`pod/NAME`) or a volume claim (`pvc/NAME`), but the signal's series name a workload (`deployment/NAME`, `statefulset/NAME`)"],
    },
    Bad {
        what: "clean_logs path that climbs out with `..`",
        yaml: r#"rules:
  - name: disk
    signal:
      disk_usage: {path: /var/log}
    when: "> 85"
    action:
      clean_logs: {selector: app=x, path: /var/log/../etc}
"#,
        errors: &["2:11: rule `disk`: clean_logs `path` must be absolute, without `..`, `//` or `/.`, found `/var/log/../etc`"],
    },
    Bad {
        what: "notify webhook that is not a URL (never echoed: it may hold a token)",
        yaml: r#"rules:
  - name: page
    signal:
      slot_lag: {rpc: "http://127.0.0.1:8899"}
    when: "> 10"
    action:
      notify: {webhook: alertmanager}
"#,
        errors: &["2:11: rule `page`: `webhook` must be an absolute http(s) URL such as `https://host/path`, found no scheme (`http://` or `https://`)"],
    },
    Bad {
        // The rule is named `a`, which also occurs in `name:`: the column is the value's.
        what: "http url with another scheme",
        yaml: r#"rules:
  - name: a
    signal:
      memory_pressure: {}
    when: "> 10"
    action:
      http: {url: "ftp://validator/admin"}
"#,
        errors: &["2:11: rule `a`: `url` must be an absolute http(s) URL such as `https://host/path`, found the scheme `ftp`"],
    },
    Bad {
        what: "missing `when`",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["2:5: rules[0]: missing field `when`"],
    },
    Bad {
        what: "YAML syntax error, saying where the unclosed `{` opened",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g
    when: "> 10"
"#,
        errors: &["5:9: did not find expected ',' or '}', while parsing a flow mapping at line 4 column 18"],
    },
    Bad {
        what: "empty file",
        yaml: "",
        errors: &["1:1: the file is empty: expected `rules:` and a list of rules"],
    },
    Bad {
        what: "file of comments only",
        yaml: "# nothing here yet\n\n",
        errors: &["1:1: the file is empty: expected `rules:` and a list of rules"],
    },
    Bad {
        what: "target of a kind that cannot be acted on",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      restart: {target: pod/x}
"#,
        errors: &["7:25: rules[0].action.restart.target: invalid target `pod/x`: expected `deployment/NAME`, `statefulset/NAME`, `NAMESPACE/deployment/NAME` or `owner`"],
    },
    Bad {
        what: "replicas that are not a number",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: six}
"#,
        errors: &[
            "7:49: rules[0].action.scale.replicas: invalid type: string \"six\", expected a whole number, 0 or more",
        ],
    },
    Bad {
        what: "a signal kind without its parameters",
        yaml: r#"rules:
  - name: lag
    signal: kafka_lag
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["3:13: rules[0].signal: expected `KIND: {PARAMETERS}`, found a kind without parameters"],
    },
    Bad {
        what: "two signal kinds in one rule",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
      postgres: {metric: idle_connections}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["4:7: rules[0].signal: expected exactly one kind, found several"],
    },
    Bad {
        what: "parameters that are not a mapping",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: 5
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["4:18: rules[0].signal.kafka_lag: invalid type: integer `5`, expected a mapping of parameters, e.g. `{NAME: VALUE}`"],
    },
    Bad {
        what: "a list of rules without `rules:`",
        yaml: r#"- name: lag
  signal:
    kafka_lag: {group: g}
"#,
        errors: &["1:1: invalid type: sequence, expected `rules:` and a list of rules"],
    },
    Bad {
        what: "YAML and type errors stop at the first of a file",
        yaml: r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "=> 10"
    for: 5
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
        errors: &["5:11: rules[0].when: invalid condition `=> 10`: expected an operator (>, >=, <, <=, ==, !=) and a number, e.g. `> 15000`"],
    },
];

#[test]
fn every_bad_rule_file_is_an_exact_error_and_exit_1() {
    let mut wrong = Vec::new();
    for case in BAD {
        let dir = RuleDir::new().with("rules.yaml", case.yaml);
        let out = check(&[dir.path()]);
        let expected = dir.errors_in("rules.yaml", case.errors);
        let got = stdout_lines(&out);
        if got != expected || out.status.code() != Some(1) {
            wrong.push(format!(
                "{}:\n  exit {:?}\n  got      {got:#?}\n  expected {expected:#?}",
                case.what,
                out.status.code()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        BAD.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_single_file_can_be_checked_by_its_path() {
    let typo = bad("unknown field");
    let dir = RuleDir::new().with("rules.yaml", typo.yaml);
    let out = check(&[&dir.file("rules.yaml")]);
    assert_errors(&out, &dir.errors_in("rules.yaml", typo.errors));
}

#[test]
fn a_good_file_passes() {
    let dir = RuleDir::new().with("rules.yaml", GOOD);
    let out = check(&[dir.path()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stdout_lines(&out), ["ok: 1 rules, 1 distinct signal sources"]);
}

#[test]
fn every_rule_level_problem_of_a_file_is_reported() {
    let dir = RuleDir::new().with(
        "rules.yaml",
        r#"rules:
  - name: first
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: owner, replicas: 3, step: 1, min: 5, max: 2}
  - name: second
    signal:
      disk_usage: {path: /var/log}
    when: "> 85"
    action:
      clean_logs: {selector: app=x, path: var/log/../x, pattern: "a/b"}
"#,
    );
    let out = check(&[dir.path()]);
    assert_errors(
        &out,
        &dir.errors_in(
            "rules.yaml",
            &[
                "2:11: rule `first`: `target: owner` needs a signal whose series name their owner (pod_oom_killed, pod_crash_loop, pod_restarts, or prometheus or alert with a `target`), not `kafka_lag`",
                "2:11: rule `first`: scale needs exactly one of `replicas`, `step` or `per_lag`",
                "2:11: rule `first`: scale `min` (5) is above `max` (2)",
                "8:11: rule `second`: clean_logs `path` must be absolute, without `..`, `//` or `/.`, found `var/log/../x`",
                "8:11: rule `second`: clean_logs `pattern` must be a file name pattern, found `a/b`",
            ],
        ),
    );
}

#[test]
fn errors_of_every_file_are_printed() {
    let (operator, typo) = (bad("condition with an invalid operator"), bad("unknown field"));
    let dir = RuleDir::new()
        .with("a.yaml", operator.yaml)
        .with("b.yaml", typo.yaml)
        .with("c.yaml", GOOD.replace("name: lag", "name: fine").as_str());
    let mut expected = dir.errors_in("a.yaml", operator.errors);
    expected.extend(dir.errors_in("b.yaml", typo.errors));
    assert_errors(&check(&[dir.path()]), &expected);
}

#[test]
fn a_duplicate_name_points_at_the_second_and_names_the_first() {
    let second = r#"# the same name again, in another file
rules:
  - name: other
    signal:
      kafka_lag: {group: g}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
  - name: lag
    signal:
      kafka_lag: {group: h}
    when: "> 10"
    action:
      scale: {target: deployment/app, replicas: 3}
"#;
    let dir = RuleDir::new().with("a.yaml", GOOD).with("b.yaml", second);
    let message = format!(
        "9:11: rule name `lag` is already used at {}:2",
        dir.file("a.yaml").display()
    );
    assert_errors(&check(&[dir.path()]), &dir.errors_in("b.yaml", &[&message]));
}

#[test]
fn hidden_files_and_other_extensions_are_not_rules() {
    let dir = RuleDir::new()
        .with("rules.yml", GOOD)
        .with(".hidden.yaml", bad("unknown field").yaml)
        .with("notes.txt", "not a rule file");
    let out = check(&[dir.path()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stdout_lines(&out), ["ok: 1 rules, 1 distinct signal sources"]);
}

#[test]
fn the_repository_rules_pass() {
    let out = check(&[Path::new("rules")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines = stdout_lines(&out);
    assert!(lines.len() == 1 && lines[0].starts_with("ok: "), "{lines:?}");
}

#[test]
fn a_threshold_from_the_environment_is_checked_where_it_is_used() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = check_in(manifest, &[Path::new("rules")], &[("KAFKA_LAG_THRESHOLD", "abc")]);
    assert_errors(
        &out,
        &[
            "rules/kafka.yaml:9:11: rules[0].when: invalid condition `> ${KAFKA_LAG_THRESHOLD}`: expected a number, \
           optionally with %, Ki/Mi/Gi/Ti or k/M/G/T, found `${KAFKA_LAG_THRESHOLD}` \
           (this line uses `KAFKA_LAG_THRESHOLD` from the environment)"
                .to_owned(),
        ],
    );
    let out = check_in(manifest, &[Path::new("rules")], &[("MAX_REPLICAS", "many")]);
    assert_errors(
        &out,
        &[
            "rules/kafka.yaml:13:67: rules[0].action.scale.max: invalid type: string \"many\", \
           expected a whole number, 0 or more (this line uses `MAX_REPLICAS` from the environment)"
                .to_owned(),
        ],
    );
}

#[test]
fn an_empty_variable_takes_the_default_and_a_set_one_is_used() {
    let dir = RuleDir::new().with(
        "rules.yaml",
        r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> ${LAG_THRESHOLD:-15000}"
    action:
      scale: {target: deployment/app, replicas: 3}
"#,
    );
    for value in ["", "20000"] {
        let out = check_in(
            dir.path(),
            &[Path::new("rules.yaml")],
            &[("LAG_THRESHOLD", value)],
        );
        assert_eq!(out.status.code(), Some(0), "LAG_THRESHOLD={value:?}");
    }
    let out = check_in(dir.path(), &[Path::new("rules.yaml")], &[("LAG_THRESHOLD", "1e")]);
    assert_errors(
        &out,
        &[
            "rules.yaml:5:11: rules[0].when: invalid condition `> ${LAG_THRESHOLD}`: expected a number, optionally \
           with %, Ki/Mi/Gi/Ti or k/M/G/T, found `${LAG_THRESHOLD}` (this line uses `LAG_THRESHOLD` from the environment)"
                .to_owned(),
        ],
    );
}

#[test]
fn a_missing_path_is_an_error_not_an_empty_set() {
    let dir = RuleDir::new();
    let missing = dir.file("nope");
    let out = check(&[&missing]);
    assert_eq!(out.status.code(), Some(1));
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{}:0:0: cannot read: ", missing.display())),
        "{lines:?}"
    );
}
