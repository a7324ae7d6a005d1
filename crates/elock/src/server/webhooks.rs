//! Webhooks (docs/api.md, "Events"): each configured URL gets the events of its types as a POST of the event
//! JSON, signed `X-Elock-Signature: sha256=<hex HMAC-SHA256 of the body>` with the secret from
//! its `secret-env`, and retried with exponential backoff.
//!
//! Each webhook has its own subscription to the event bus and its own delivery task, so a slow or
//! dead receiver never slows the lock path or the other webhooks; if it falls further behind than
//! the bus keeps, the oldest events are skipped and counted (`events_lost`).

use std::time::Duration;

use elock_core::config::RetryConfig;
use elock_core::event::EventType;
use elock_core::manager::{retry::backoff, Manager};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::schema::Webhook;

/// Delivery attempts per event before it is given up (and logged).
const ATTEMPTS: u32 = 6;

/// The signature header value for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Starts one delivery task per webhook. A `secret-env` naming an unset variable is an error.
pub fn start(manager: &Manager, hooks: &[Webhook]) -> Result<(), String> {
    for hook in hooks {
        let secret = match &hook.secret_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                format!(
                    "events.webhooks {}: secret-env {var} is not set in the environment",
                    hook.url
                )
            })?),
            None => None,
        };
        let types: Vec<EventType> = hook
            .types
            .iter()
            .filter_map(|t| EventType::parse(t))
            .collect();
        let mut events = manager.subscribe();
        let url = hook.url.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("events.webhooks {url}: {e}"))?;
        tokio::spawn(async move {
            let retry = RetryConfig {
                enabled: true,
                max_attempts: ATTEMPTS,
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(30),
            };
            while let Some(event) = events.recv_filtered(&types).await {
                let body = super::shown::json(serde_json::to_vec(&*event).unwrap_or_default());
                for attempt in 0..ATTEMPTS {
                    let mut request = http
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header("X-Elock-Event", event.kind.name())
                        .body(body.clone());
                    if let Some(secret) = &secret {
                        request = request
                            .header("X-Elock-Signature", signature(secret.as_bytes(), &body));
                    }
                    match request.send().await {
                        Ok(r) if r.status().is_success() => break,
                        outcome => {
                            let why = match outcome {
                                Ok(r) => format!("HTTP {}", r.status()),
                                Err(e) => e.to_string(),
                            };
                            if attempt + 1 == ATTEMPTS {
                                tracing::error!(%url, event = event.id, %why, "webhook delivery given up");
                            } else {
                                tracing::warn!(%url, event = event.id, %why, attempt, "webhook delivery failed; retrying");
                                tokio::time::sleep(backoff(&retry, attempt)).await;
                            }
                        }
                    }
                }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let s = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
