//! The wire format: how records become a request body and an answer becomes one result per
//! record, chosen once from the --api preset and the shaping flags. A new way of talking is a
//! new `Way` in codec.rs; a new preset is a row of the table in presets.rs.

mod codec;
pub mod json;
mod presets;
mod requests;
mod usage;

pub use codec::{Codec, Input, Meta};
pub use presets::Flags;
pub use requests::{Failed, custom_id, id_hash};
pub use usage::{Usage, usage};
