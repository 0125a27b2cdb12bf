//! List Identity (encapsulation command 0x0063): what a device says it is,
//! for discovery. The request is a bare encapsulation header; the reply's
//! CPF holds one Identity item (type 0x000C).
//!
//! Pure decoding here; the TCP exchange is in the driver module. It must
//! not depend on sessions: List Identity needs none.

use super::codec::{self, item, Reader};

/// A device's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub vendor_id: u16,
    pub device_type: u16,
    pub product_code: u16,
    /// `major.minor`.
    pub revision: String,
    pub serial: u32,
    pub product_name: String,
    pub state: u8,
}

/// The List Identity request.
pub fn request(context: u64) -> Vec<u8> {
    codec::encap(codec::command::LIST_IDENTITY, 0, context, &[])
}

/// Decodes the body (after the encapsulation header) of a List Identity
/// reply.
pub fn parse_reply(body: &[u8]) -> Result<Identity, String> {
    let items = codec::parse_cpf(body)?;
    let (_, data) = items
        .into_iter()
        .find(|(k, _)| *k == item::LIST_IDENTITY)
        .ok_or("list identity reply: no identity item (0x000C)")?;
    let mut r = Reader::new(data, "identity item");
    r.u16("encapsulation protocol version")?;
    r.take(16, "socket address")?;
    let vendor_id = r.u16("vendor id")?;
    let device_type = r.u16("device type")?;
    let product_code = r.u16("product code")?;
    let major = r.u8("major revision")?;
    let minor = r.u8("minor revision")?;
    r.u16("status")?;
    let serial = r.u32("serial number")?;
    let len = r.u8("product name length")? as usize;
    let name = r.take(len, "product name")?;
    let state = r.u8("state")?;
    Ok(Identity {
        vendor_id,
        device_type,
        product_code,
        revision: format!("{major}.{minor}"),
        serial,
        product_name: name.iter().map(|&c| c as char).collect(),
        state,
    })
}
