//! OpenAPI schemas of the model types with a wire form of their own (text ids, names, time).

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::{LeaseId, Metadata, Owner, Priority, ResourceName, TicketId, Timestamp};

fn text(description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([serde_json::Value::String(example.into())])
}

macro_rules! schema {
    ($ty:ty, $build:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let b: ObjectBuilder = $build;
                b.build().into()
            }
        }
        impl ToSchema for $ty {}
    };
}

/// Ids are 22 characters of URL-safe base64 without padding.
const ID_PATTERN: &str = "^[A-Za-z0-9_-]{22}$";
/// Names: no control characters (the byte limits are checked by the server).
const NAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F]+$";

schema!(LeaseId, text("A lease id: 128 random bits as 22 characters of URL-safe base64. A capability: it lets its holder release the lease.", "krrADO4c6sCCyvljF0u9fw").min_length(Some(22)).max_length(Some(22)).pattern(Some(ID_PATTERN)));
schema!(
    TicketId,
    text(
        "A ticket id: 128 random bits as 22 characters of URL-safe base64.",
        "uAsAYMOzOf7UOWuGaB7UOw"
    )
    .min_length(Some(22))
    .max_length(Some(22))
    .pattern(Some(ID_PATTERN))
);
schema!(
    ResourceName,
    text(
        "What is locked: UTF-8, 1..=1024 bytes, no control characters, case-sensitive.",
        "acme/infra/envs/prod/default/"
    )
    .min_length(Some(1))
    .max_length(Some(1024))
    .pattern(Some(NAME_PATTERN))
);
schema!(
    Owner,
    text(
        "Who holds or waits: UTF-8, 1..=256 bytes, no control characters.",
        "acme/infra#42"
    )
    .min_length(Some(1))
    .max_length(Some(256))
    .pattern(Some(NAME_PATTERN))
);
schema!(
    Priority,
    text(
        "low, normal (default), high or critical; 0..=3 are accepted on input.",
        "normal"
    )
    .enum_values(Some(["low", "normal", "high", "critical"]))
);
schema!(
    Timestamp,
    text("An instant, RFC 3339 UTC.", "2026-11-23T18:18:45.441Z")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
);
schema!(
    Metadata,
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Holder metadata: a JSON object of at most 16 KiB."))
);

/// The wire form of a duration, for the OpenAPI description only: `30s`, `10m`, `1h30m`,
/// `250ms` (whole numbers with units; the server reads them with humantime).
pub struct DurationText;

schema!(
    DurationText,
    text(
        "A duration: whole numbers with units (ms, s, m, h, d), e.g. 30s, 10m, 1h30m, 250ms.",
        "10m"
    )
    .pattern(Some("^\\s*(0|([0-9]+\\s*[A-Za-zµ]+\\s*)+)$"))
);
