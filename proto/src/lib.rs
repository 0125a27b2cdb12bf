//! Wire formats of Bifrost: the public gRPC API (`bifrost.v1`), the internal
//! Raft transport (`bifrost.raft.v1`, used by `bifrost-raft`) and the server's
//! own node-to-node calls (`bifrost.node.v1`, used by `bifrost-server`),
//! generated from `proto/*.proto`.
//!
//! This crate holds the generated code, the encoded file descriptor set (for
//! gRPC reflection), [`channel`], the one place an address becomes a
//! plain or TLS endpoint, [`convert`], the one place where API messages become
//! model records and back, and [`replica`], the replica check (comparing
//! nodes' history digests, and asking every member for them through the
//! generated stubs): the one crate the server, the client and the test kit
//! all share. Of the Bifrost crates it depends on `bifrost-model` only; it
//! must not depend on storage, Raft or the server.

pub mod channel;
pub mod convert;
pub mod replica;

/// Public API, served by every node.
pub mod v1 {
    tonic::include_proto!("bifrost.v1");
}

/// Internal Raft transport between cluster peers. Not for clients.
pub mod raft {
    tonic::include_proto!("bifrost.raft.v1");
}

/// The server's own node-to-node calls (liveness probes, node-local work).
/// Not for clients; not used by the Raft layer.
pub mod node {
    tonic::include_proto!("bifrost.node.v1");
}

/// Encoded `FileDescriptorSet` of all services, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bifrost_descriptor");
