//! NAR ingest (NAR → castore) and render (castore → NAR).

mod ingest;
mod render;

pub use ingest::{ingest_nar, IngestError, Ingested};
pub use render::{calculate_nar, ensure_complete, nar_listing, render_nar, RenderError};
