// The invariants of the parsers that read what the outside world sends: a validator's
// JSON-RPC answers, the kernel's PSI and cgroup `memory.events` files, the settings from the
// environment and `simulate`'s timelines. Shared by the fuzz targets (`fuzz/fuzz_targets/`)
// and the corpus replay in CI (`tests/fuzz_corpus.rs`), which both `include!` this file.
// Beyond "no panic", each check asserts what the parser promises about what it accepts.

/// The JSON-RPC id every check uses.
const RPC_ID: u64 = 7;

/// `getSlot` and `getHealth` bodies: a slot read is the envelope's `result`, a health read 0
/// for `"ok"` or the `numSlotsBehind` of a -32005; anything else is an error, never a guess.
pub fn check_rpc(data: &[u8]) -> bool {
    use automaton::signals::slot_lag::rpc::{parse_health, parse_slot};
    let json: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    let envelope_ok = json.as_ref().is_some_and(|v| {
        v.get("jsonrpc").and_then(|j| j.as_str()) == Some("2.0")
            && v.get("id").and_then(|i| i.as_u64()) == Some(RPC_ID)
    });
    let mut accepted = false;
    if let Ok(slot) = parse_slot(data, RPC_ID) {
        let v = json.as_ref().expect("an accepted slot comes from JSON");
        assert!(envelope_ok, "a slot from a body that is not our JSON-RPC 2.0 answer");
        assert!(v.get("error").is_none(), "a slot from an error answer");
        assert_eq!(v["result"].as_u64(), Some(slot), "the slot is not the result");
        accepted = true;
    }
    if let Ok(behind) = parse_health(data, RPC_ID) {
        let v = json.as_ref().expect("an accepted health comes from JSON");
        assert!(envelope_ok, "a health from a body that is not our JSON-RPC 2.0 answer");
        let ok = v.get("error").is_none() && v["result"] == "ok" && behind == 0;
        let behind_by = v["error"]["code"].as_i64() == Some(-32005)
            && v["error"]["data"]["numSlotsBehind"].as_u64() == Some(behind);
        assert!(ok || behind_by, "health {behind} from {v}");
        accepted = true;
    }
    accepted
}

/// PSI: a `some` line is required, every average is a finite percentage.
pub fn check_psi(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok((some, full)) = automaton::signals::memory_pressure::parse(&text) else {
        return false;
    };
    for line in std::iter::once(some).chain(full) {
        for avg in [line.avg10, line.avg60, line.avg300] {
            assert!((0.0..=100.0).contains(&avg), "an average of {avg} accepted from {text:?}");
        }
    }
    assert!(text.lines().any(|l| l.split_whitespace().next() == Some("some")));
    true
}

/// `memory.events`: the `oom_kill` value is the one written on its (last) line, and every
/// line is a key and a number.
pub fn check_events(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(kills) = automaton::signals::memory_oom_kills::parse_oom_kill("memory.events", &text) else {
        return false;
    };
    let last = text
        .lines()
        .rev()
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some("oom_kill")).then(|| fields.next())?
        })
        .expect("an accepted file has an oom_kill line");
    assert_eq!(last.parse::<u64>().ok(), Some(kills), "{kills} kills from {text:?}");
    true
}

/// Settings as `NAME=value` lines: never a panic, and what is accepted is in range (so the
/// arithmetic done with it later cannot overflow either).
pub fn check_settings(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = automaton::clients::kafka::KafkaSettings::from_vars(vars.clone());
    let _ = automaton::clients::pg::PgSettings::from_vars(vars.clone());
    let Ok(s) = automaton::settings::Settings::from_vars(vars) else {
        return false;
    };
    let interval = std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);
    assert!(interval.contains(&s.check_interval), "{:?}", s.check_interval);
    assert!(s.limits.min_replicas <= s.limits.max_replicas && s.limits.max_replicas <= 10_000);
    assert!((1..=10_000).contains(&s.budget_limit));
    let _ = s.check_interval * 3 + s.action_timeout;
    let _ = automaton::core::engine::EngineConfig::from(&s);
    true
}

/// Timelines: never a panic; an accepted one has its steps in time order.
pub fn check_timeline(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(t) = automaton::runtime::simulate::Timeline::parse(&text) else {
        return false;
    };
    assert!(t.steps.windows(2).all(|w| w[0].at <= w[1].at));
    true
}
