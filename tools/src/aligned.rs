//! Page-aligned read buffers: the shared block-I/O layer's
//! [`blockio::BufferPool`] (formats/blockio), named here as before.

pub use blockio::{BufferPool, ALIGN_BYTES};
