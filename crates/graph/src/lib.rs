//! Microsoft Graph calls API wire types (see `graph-calls-reference.md`).
//! Pure data and serde: lenient on input (any enum casing, numbers as strings, unknown
//! properties kept), exact on output (camelCase, `@odata.type` on polymorphic values).

pub mod enums;
pub mod lenient;
pub mod requests;
pub mod streaming;
pub mod types;

pub use enums::*;
pub use types::*;
