//! elock-core's conformance suite and model-based property test, unchanged, against the Redis
//! store on a real 3-master Redis Cluster.

use std::sync::Arc;

use elock_core::testkit::model_check;
mod support;

use support::RedisFactory;

elock_core::conformance_tests!(RedisFactory::cluster());

#[test]
fn model_check_cluster_with_reopens() {
    model_check::run(Arc::new(RedisFactory::cluster()), 60);
}
