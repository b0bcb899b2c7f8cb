//! Background work: the loops that make the hosts match the recorded intent.

pub mod instances;
pub mod monitoring;
pub mod network;
pub mod sweep;
pub mod volumes;
