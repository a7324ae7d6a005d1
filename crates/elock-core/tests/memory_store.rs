//! The conformance suite and the model-based property test against the in-memory store.

use std::sync::Arc;

use elock_core::testkit::{model_check, MemoryFactory};

elock_core::conformance_tests!(MemoryFactory);

#[test]
fn model_check_memory_store() {
    model_check::run(Arc::new(MemoryFactory), 300);
}
