//! Webhooks: the coordinator tells a platform when a recording starts, is
//! interrupted, resumes, completes or fails, by POSTing signed JSON to
//! configured URLs. Delivery is at least once: the fleet core emits an
//! event ([`event`]), the driver writes one outbox row per URL in the same
//! transaction as the state change ([`outbox`]), and a task on the runtime
//! sends what is due ([`sender`]), retrying with backoff ([`retry`]) until
//! the retry window ends. Bodies are signed as Stripe and GitHub sign
//! theirs ([`sign`]); docs/operations.md says how a receiver verifies them.

pub mod config;
pub mod event;
pub mod outbox;
pub mod retry;
pub mod sender;
pub mod sign;

pub use config::WebhookConfig;
pub use event::{WebhookEvent, WebhookKind};
