//! FHIR R4 for Kiorex: which resources the server holds, how an incoming resource is parsed and
//! checked (through the `fhir-model` types), what it is found by, how searches are read from a
//! query string, and the documents the server answers with (OperationOutcome, Bundle,
//! CapabilityStatement). No I/O: the API crate does the talking.

pub mod bundle;
pub mod capability;
pub mod dates;
pub mod extract;
pub mod kind;
pub mod outcome;
pub mod params;
pub mod parse;

pub use kind::ResourceKind;
pub use outcome::{Issue, IssueCode};
pub use parse::Clinical;

/// The FHIR version Kiorex speaks on the wire.
pub const FHIR_VERSION: &str = "4.0.1";
/// The media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json";
