//! The one progress line of a waiting request on a terminal (`elock lock --wait`, `elock run`,
//! `elock atlantis run`): who holds the resource and since when, this request's place in the
//! queue, how long it has waited; rewritten every second on stderr.

use std::time::{Duration, Instant};

use elock_client::api::Timestamp;
use elock_client::Client;

/// Shows the line until aborted (the caller aborts it when its request is answered).
pub async fn show(client: Client, resource: String, owner: String, who: &'static str) {
    let started = Instant::now();
    // A second of slack for the server's clock against this machine's.
    let asked = Timestamp::from_system(std::time::SystemTime::now()).as_millis();
    let asked = Timestamp::from_millis(asked.saturating_sub(1000));
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(info) = client.resource(&resource).await else {
            continue;
        };
        let holder = info.holder.as_ref().map_or("nobody".to_string(), |h| {
            format!("{} since {}", h.owner, h.acquired_at)
        });
        let place = queue_place(&info.queue, &resource, &owner, asked)
            .map_or(format!("{} in the queue", info.queue.len()), |n| {
                format!("position {n} of {}", info.queue.len())
            });
        eprint!(
            "\r\x1b[K{who}: waiting for {resource}: held by {holder}, {place}, {} so far",
            elock_core::model::format_duration(started.elapsed())
        );
    }
}

/// This run's place in a resource's queue: its owner's first ticket enqueued since it asked (a
/// waiting request does not learn its ticket's id; tickets of one owner asked for in the same
/// second may be told apart wrongly).
fn queue_place(
    queue: &[elock_client::api::TicketView],
    resource: &str,
    owner: &str,
    asked: Timestamp,
) -> Option<u32> {
    queue
        .iter()
        .enumerate()
        .filter(|(_, t)| t.owner.as_str() == owner && t.enqueued_at >= asked)
        .min_by_key(|(_, t)| t.enqueued_at)
        .map(|(i, t)| {
            t.position
                .iter()
                .find(|(r, _)| r.as_str() == resource)
                .map_or(i as u32 + 1, |(_, n)| *n)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use elock_client::api::TicketView;

    fn ticket(owner: &str, at: u64, position: u32) -> TicketView {
        serde_json::from_value(serde_json::json!({
            "id": "AAAAAAAAAAAAAAAAAAAAAA", "owner": owner, "resources": ["r"], "priority": "normal",
            "effective_priority": "normal", "enqueued_at": Timestamp::from_millis(at).to_string(),
            "deadline": null, "detached": false, "position": {"r": position}
        }))
        .unwrap()
    }

    #[test]
    fn the_progress_line_finds_this_runs_place_in_the_queue() {
        let asked = Timestamp::from_millis(10_000);
        let queue = [
            ticket("acme/infra#42", 5_000, 1), // the same owner, asked before this run
            ticket("acme/infra#43", 11_000, 2),
            ticket("acme/infra#42", 12_000, 3), // this run
            ticket("acme/infra#42", 13_000, 4), // a later run of the same owner
        ];
        assert_eq!(queue_place(&queue, "r", "acme/infra#42", asked), Some(3));
        assert_eq!(queue_place(&queue, "r", "someone", asked), None);
    }
}
