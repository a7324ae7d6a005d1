//! `cargo +nightly fuzz run bolt`: any bytes given to the bbolt reader give a result or an
//! error, never a panic, an overflow or a hang. Seed the corpus with the fixtures:
//! `mkdir -p corpus/bolt && cp ../tests/fixtures/*.db corpus/bolt/`.
#![no_main]

use elock_atlantis::bolt::Bolt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(db) = Bolt::from_bytes(data.to_vec()) {
        if let Ok(buckets) = db.buckets() {
            for b in buckets {
                let _ = db.bucket(&b);
            }
        }
    }
});
