//! elock-core's conformance suite and model-based property test, unchanged, against the Redis
//! store on a real single-node redis-server.

use std::sync::Arc;

use elock_core::testkit::model_check;
mod support;

use support::RedisFactory;

elock_core::conformance_tests!(RedisFactory::single());

#[test]
fn model_check_single_node_with_reopens() {
    model_check::run(Arc::new(RedisFactory::single()), 120);
}

/// The same with Atlantis's keys kept beside the table: the scripts behave exactly the same for
/// every lease that is not Atlantis's.
mod legacy_format {
    use super::*;

    elock_core::conformance_tests!(RedisFactory::single().with_atlantis_keys());

    #[test]
    fn model_check_with_legacy_format() {
        model_check::run(Arc::new(RedisFactory::single().with_atlantis_keys()), 60);
    }
}

/// The same where Redis has no Functions (Redis 6, or `FUNCTION` denied): the Lua runs as
/// scripts, by SHA.
mod without_functions {
    use super::*;

    elock_core::conformance_tests!(RedisFactory::single().without_functions());

    #[test]
    fn model_check_without_functions() {
        model_check::run(Arc::new(RedisFactory::single().without_functions()), 40);
    }
}
