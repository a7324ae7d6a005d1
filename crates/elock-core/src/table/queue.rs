//! One resource's wait queue: four FIFO lanes, one per base priority.
//!
//! Order: higher effective priority first, then enqueue order, where
//! `effective = min(3, base + floor(waited / threshold), base + max_boost)`. Within one lane every
//! ticket has the same base, and an older ticket has waited longer, so its effective priority is
//! at least that of any younger one: each lane is already in queue order, and the head of the whole
//! queue is one of the four lane heads. Handoff therefore costs four look-ups, not a sort.

use std::collections::VecDeque;
use std::time::Duration;

use crate::model::{Priority, Ticket, TicketId, Timestamp};

use super::Map;

/// Anti-starvation aging: how effective priority grows with time waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aging {
    /// Zero turns aging off.
    pub threshold_ms: u64,
    pub max_boost: u8,
}

impl Aging {
    pub fn new(threshold: Duration, max_boost: u8) -> Self {
        Aging {
            threshold_ms: threshold.as_millis() as u64,
            max_boost,
        }
    }

    fn cap(&self, base: Priority) -> u8 {
        3u8.min(base.level().saturating_add(self.max_boost))
    }

    pub fn effective(&self, base: Priority, enqueued_at: Timestamp, now: Timestamp) -> Priority {
        if self.threshold_ms == 0 {
            return base;
        }
        let steps = now.as_millis().saturating_sub(enqueued_at.as_millis()) / self.threshold_ms;
        let level = (base.level() as u64)
            .saturating_add(steps)
            .min(self.cap(base) as u64);
        Priority::from_level_saturating(level as u8)
    }

    /// When the effective priority of a ticket next rises, if it still can.
    pub fn next_step(
        &self,
        base: Priority,
        enqueued_at: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        if self.threshold_ms == 0
            || self.effective(base, enqueued_at, now).level() >= self.cap(base)
        {
            return None;
        }
        let steps = now.as_millis().saturating_sub(enqueued_at.as_millis()) / self.threshold_ms;
        Some(Timestamp::from_millis(
            enqueued_at
                .as_millis()
                .saturating_add((steps + 1).saturating_mul(self.threshold_ms)),
        ))
    }
}

/// The sort key of a ticket at `now`: smaller is nearer the head.
pub(crate) fn order_key(t: &Ticket, aging: &Aging, now: Timestamp) -> (u8, u64) {
    (
        3 - aging.effective(t.priority, t.enqueued_at, now).level(),
        t.seq,
    )
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    lanes: [VecDeque<TicketId>; 4],
    len: usize,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a ticket; tickets must be pushed in sequence order.
    pub fn push(&mut self, priority: Priority, id: TicketId) {
        self.lanes[priority.level() as usize].push_back(id);
        self.len += 1;
    }

    pub fn remove(&mut self, priority: Priority, id: TicketId) -> bool {
        let lane = &mut self.lanes[priority.level() as usize];
        if let Some(i) = lane.iter().position(|t| *t == id) {
            lane.remove(i);
            self.len -= 1;
            true
        } else {
            false
        }
    }

    /// The oldest ticket of each non-empty lane.
    pub fn lane_heads(&self) -> impl Iterator<Item = TicketId> + '_ {
        self.lanes.iter().filter_map(|l| l.front().copied())
    }

    pub fn ids(&self) -> impl Iterator<Item = TicketId> + '_ {
        self.lanes.iter().flat_map(|l| l.iter().copied())
    }

    pub fn head(
        &self,
        tickets: &Map<TicketId, Ticket>,
        aging: &Aging,
        now: Timestamp,
    ) -> Option<TicketId> {
        self.lane_heads()
            .min_by_key(|id| order_key(&tickets[id], aging, now))
    }

    /// Whether a new request of `priority`, enqueued now, would be ahead of every queued ticket.
    pub fn would_lead(
        &self,
        priority: Priority,
        tickets: &Map<TicketId, Ticket>,
        aging: &Aging,
        now: Timestamp,
    ) -> bool {
        self.lane_heads().all(|id| {
            let t = &tickets[&id];
            aging.effective(t.priority, t.enqueued_at, now) < priority
        })
    }

    /// Every ticket in queue order at `now`.
    pub fn ordered(
        &self,
        tickets: &Map<TicketId, Ticket>,
        aging: &Aging,
        now: Timestamp,
    ) -> Vec<TicketId> {
        let mut ids: Vec<(u8, u64, TicketId)> = self
            .ids()
            .map(|id| {
                let (p, s) = order_key(&tickets[&id], aging, now);
                (p, s, id)
            })
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, _, id)| id).collect()
    }

    /// How many tickets are ahead of one whose order key is `key`. Keys ascend along each lane,
    /// so this is four binary searches, not a sort.
    pub fn count_ahead(
        &self,
        key: (u8, u64),
        tickets: &Map<TicketId, Ticket>,
        aging: &Aging,
        now: Timestamp,
    ) -> usize {
        self.lanes
            .iter()
            .map(|lane| lane.partition_point(|id| order_key(&tickets[id], aging, now) < key))
            .sum()
    }

    /// The ticket immediately ahead of the one whose order key is `key`, if any.
    pub fn ahead_of(
        &self,
        key: (u8, u64),
        tickets: &Map<TicketId, Ticket>,
        aging: &Aging,
        now: Timestamp,
    ) -> Option<TicketId> {
        self.lanes
            .iter()
            .filter_map(|lane| {
                let i = lane.partition_point(|id| order_key(&tickets[id], aging, now) < key);
                i.checked_sub(1).map(|i| lane[i])
            })
            .max_by_key(|id| order_key(&tickets[id], aging, now))
    }

    /// When the effective priority of some lane head next rises (a stalled queue may change head).
    pub fn next_aging_step(
        &self,
        tickets: &Map<TicketId, Ticket>,
        aging: &Aging,
        now: Timestamp,
    ) -> Option<Timestamp> {
        self.lane_heads()
            .filter_map(|id| {
                let t = &tickets[&id];
                aging.next_step(t.priority, t.enqueued_at, now)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_priority_follows_the_formula() {
        let aging = Aging::new(Duration::from_secs(120), 3);
        let t0 = Timestamp::from_millis(1_000_000);
        let at = |secs: u64| t0.plus(Duration::from_secs(secs));
        assert_eq!(aging.effective(Priority::Low, t0, at(0)), Priority::Low);
        assert_eq!(aging.effective(Priority::Low, t0, at(119)), Priority::Low);
        assert_eq!(
            aging.effective(Priority::Low, t0, at(120)),
            Priority::Normal
        );
        assert_eq!(aging.effective(Priority::Low, t0, at(240)), Priority::High);
        assert_eq!(
            aging.effective(Priority::Low, t0, at(10_000)),
            Priority::Critical
        );
        let capped = Aging::new(Duration::from_secs(120), 1);
        assert_eq!(
            capped.effective(Priority::Low, t0, at(10_000)),
            Priority::Normal
        );
        let off = Aging::new(Duration::ZERO, 3);
        assert_eq!(off.effective(Priority::Low, t0, at(10_000)), Priority::Low);
    }

    #[test]
    fn next_step_is_the_next_threshold_boundary_until_the_cap() {
        let aging = Aging::new(Duration::from_secs(60), 2);
        let t0 = Timestamp::from_millis(0);
        assert_eq!(
            aging.next_step(Priority::Low, t0, Timestamp::from_millis(10_000)),
            Some(Timestamp::from_millis(60_000))
        );
        assert_eq!(
            aging.next_step(Priority::Low, t0, Timestamp::from_millis(60_000)),
            Some(Timestamp::from_millis(120_000))
        );
        assert_eq!(
            aging.next_step(Priority::Low, t0, Timestamp::from_millis(120_000)),
            None
        );
        assert_eq!(aging.next_step(Priority::Critical, t0, t0), None);
    }
}
