//! The rule loader on arbitrary text: substitution, YAML, conditions, durations and
//! quantities. The checks live in `../check.rs`, which `tests/fuzz_corpus.rs` shares so CI
//! replays the corpus without the fuzzer.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check.rs");

fuzz_target!(|data: &[u8]| {
    check_rule_loader(data);
});
