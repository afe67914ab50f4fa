//! Integration tests of the core API against real PostgreSQL (one binary, many modules).

mod access;
mod audit;
mod bad_input;
mod bundles;
mod chart;
mod duplicates;
mod fhir_crud;
mod search;
mod spec;
mod terminology;
