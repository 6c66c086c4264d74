//! Procedural macros for [annals](https://docs.rs/annals): use them through
//! the `annals` crate, which re-exports them.
//!
//! - `#[derive(DomainEvent)]`: a stable type name and schema version per
//!   event type, encoding and decoding of payloads.

mod event;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `annals::DomainEvent` for an enum (one stored type per variant)
/// or a struct (one stored type).
///
/// Attributes, all optional:
///
/// - on a variant, or on a struct: `#[event(name = "OrderPlaced", version = 2)]`
///   (the name defaults to the identifier, the version to 1);
/// - on the type: `#[event(upcasters = path::to::function)]`, a
///   `fn() -> annals::Upcasters` called once;
/// - on the type: `#[event(crate = path::to::annals)]` when `annals` is
///   renamed.
///
/// The enum must keep serde's default (externally tagged) representation.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
