//! The event stream, reconnecting by itself: after a cut it resumes with `Last-Event-ID`, and
//! tells its reader when the server could not replay everything that was missed.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use reqwest::Method;

use elock_core::api::{Event, EventGap, EventType};

use crate::client::Client;
use crate::error::{Error, Result};

/// What the stream delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum EventItem {
    Event(Event),
    /// Some events were missed (the server no longer kept them, or it restarted); what follows
    /// is everything it still had.
    Gap(EventGap),
}

type Frames = Pin<
    Box<
        dyn Stream<
                Item = std::result::Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// A subscription to `GET /api/v1/events`. Connection losses are repaired inside
/// [`next`](Self::next); only the server's refusals (a bad type list, a revoked token) end it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let started = elock::server::start(elock::server::ServeOptions::in_memory()).await?;
/// # let server = format!("http://{}", started.addr);
/// # tokio::spawn(started.run(std::future::pending()));
/// use elock_client::api::EventType;
/// use elock_client::{Client, EventItem};
///
/// let client = Client::new(&server)?;
/// let mut events = client.events(&[EventType::LockAcquired]).await?;
/// client.lock("alice", ["db/migrations"])?.try_acquire().await?;
/// match events.next().await? {
///     EventItem::Event(e) => assert_eq!(e.owner.unwrap().as_str(), "alice"),
///     EventItem::Gap(gap) => eprintln!("missed some events: {}", gap.message),
/// }
/// # Ok(()) }
/// ```
pub struct EventStream {
    client: Client,
    types: Vec<EventType>,
    last_id: Option<u64>,
    frames: Option<Frames>,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

impl Client {
    /// Subscribes to events of `types` (all when empty). Connects before returning, so a server
    /// that cannot be reached or refuses is an error here.
    pub async fn events(&self, types: &[EventType]) -> Result<EventStream> {
        let mut stream = EventStream {
            client: self.clone(),
            types: types.to_vec(),
            last_id: None,
            frames: None,
        };
        stream.connect().await?;
        Ok(stream)
    }
}

impl EventStream {
    /// The id of the last event delivered: where a reconnection resumes.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The next event (or gap). Waits as long as it takes, reconnecting after connection
    /// losses with a growing pause (100 ms to 5 s).
    pub async fn next(&mut self) -> Result<EventItem> {
        let mut pause = FIRST_RETRY;
        loop {
            let Some(frames) = self.frames.as_mut() else {
                match self.connect().await {
                    Ok(()) => pause = FIRST_RETRY,
                    Err(e @ Error::Api { .. }) => return Err(e),
                    Err(e) => {
                        tracing::debug!(error = %e, "event stream: reconnecting");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(LONGEST_RETRY);
                    }
                }
                continue;
            };
            match frames.next().await {
                Some(Ok(frame)) => {
                    if let Some(item) = self.item(frame)? {
                        return Ok(item);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "event stream cut; resuming");
                    self.frames = None;
                }
                None => self.frames = None,
            }
        }
    }

    fn item(&mut self, frame: eventsource_stream::Event) -> Result<Option<EventItem>> {
        let bad = |e: serde_json::Error| Error::Protocol {
            server: self.client.server().to_string(),
            status: 200,
            message: format!("an event that is not elock's: {e}"),
        };
        match frame.event.as_str() {
            "gap" => Ok(Some(EventItem::Gap(
                serde_json::from_str(&frame.data).map_err(bad)?,
            ))),
            _ if frame.data.is_empty() => Ok(None),
            _ => {
                let event: Event = serde_json::from_str(&frame.data).map_err(bad)?;
                self.last_id = Some(event.id);
                Ok(Some(EventItem::Event(event)))
            }
        }
    }

    async fn connect(&mut self) -> Result<()> {
        let mut request = self.client.request(Method::GET, "/api/v1/events");
        if !self.types.is_empty() {
            let names: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
            request = request.query(&[("types", names.join(","))]);
        }
        if let Some(id) = self.last_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.client.unreachable(e))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.client.unreachable(e))?;
            return self.client.decode(status, &bytes);
        }
        self.frames = Some(Box::pin(response.bytes_stream().eventsource()));
        Ok(())
    }
}
