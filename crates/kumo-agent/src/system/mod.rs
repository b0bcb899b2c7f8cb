//! Host-wide plumbing the other folders share: running system tools with typed errors ([`tool`])
//! and fault injection for crash tests ([`fault`]).

pub mod fault;
pub mod tool;
