//! Services of the review area: integrations, BYOK LLM providers, reviews, and webhook intake.
//! Each function takes what a handler parsed (typed ids, request bodies) and answers a view from
//! `edgeplane_core::views::review`; the JSON routes and the console call the same functions.

pub mod hook_secrets;
pub mod intake;
pub mod integrations;
pub mod providers;
pub mod reviews;
mod secrets;
mod update;

use serde::{Deserialize, Deserializer};

/// Distinguishes "field absent" (`None`) from "field set to null" (`Some(None)`) in PATCH bodies.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
