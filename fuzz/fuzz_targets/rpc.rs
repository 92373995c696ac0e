//! `check_rpc` of `../parsers.rs` on arbitrary bytes; `tests/fuzz_corpus.rs` replays the
//! corpus this target kept (`fuzz/corpus/rpc/`) on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../parsers.rs");

fuzz_target!(|data: &[u8]| {
    check_rpc(data);
});
