//! The history of deadlocks: the last 1,000, prevented or resolved, served by GET /deadlocks.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::table::DeadlockRecord;

pub struct DeadlockHistory {
    capacity: usize,
    records: Mutex<VecDeque<DeadlockRecord>>,
}

impl DeadlockHistory {
    pub fn new(capacity: usize) -> Self {
        DeadlockHistory {
            capacity,
            records: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    pub fn push(&self, record: DeadlockRecord) {
        let mut r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == self.capacity {
            r.pop_front();
        }
        r.push_back(record);
    }

    /// Oldest first.
    pub fn all(&self) -> Vec<DeadlockRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use crate::table::Resolution;

    #[test]
    fn keeps_only_the_newest_records() {
        let h = DeadlockHistory::new(1000);
        for i in 0..1005u64 {
            h.push(DeadlockRecord {
                detected_at: Timestamp::from_millis(i),
                cycle: vec![],
                resolution: Resolution::Prevented,
                victim: None,
                victim_ticket: None,
                policy: None,
            });
        }
        let all = h.all();
        assert_eq!(all.len(), 1000);
        assert_eq!(all[0].detected_at, Timestamp::from_millis(5));
        assert_eq!(all[999].detected_at, Timestamp::from_millis(1004));
    }
}
