//! elock-core's conformance suite and model-based property test, unchanged, against the Redis
//! store on a real single-node redis-server.

use std::sync::Arc;

use elock_core::testkit::model_check;
use elock_redis::testing::RedisFactory;

elock_core::conformance_tests!(RedisFactory::single());

#[test]
fn model_check_single_node_with_reopens() {
    model_check::run(Arc::new(RedisFactory::single()), 120);
}
