//! EtherNet/IP and CIP frames, byte by byte: the encapsulation header, the
//! Common Packet Format (CPF), Unconnected Send, Forward Open/Close, Read
//! Tag (0x4C), Read Tag Fragmented (0x52), Write Tag (0x4D), Multiple
//! Service Packet (0x0A), and the atomic values inside replies.
//!
//! Pure: builds byte vectors and decodes byte slices, nothing else. It must
//! not depend on sockets, the driver or the planner. Every decoder checks
//! lengths and returns an error naming what was malformed and where; none
//! panics on truncated or garbage input. All CIP integers are little-endian
//! (the socket address inside List Identity is the one big-endian field).

use crate::{DataType, Value};

/// Encapsulation commands.
pub mod command {
    pub const LIST_IDENTITY: u16 = 0x0063;
    pub const REGISTER_SESSION: u16 = 0x0065;
    pub const UNREGISTER_SESSION: u16 = 0x0066;
    pub const SEND_RR_DATA: u16 = 0x006F;
    pub const SEND_UNIT_DATA: u16 = 0x0070;
}

/// CIP services.
pub mod service {
    pub const MULTIPLE_SERVICE_PACKET: u8 = 0x0A;
    pub const READ_TAG: u8 = 0x4C;
    pub const WRITE_TAG: u8 = 0x4D;
    pub const FORWARD_CLOSE: u8 = 0x4E;
    pub const READ_TAG_FRAGMENTED: u8 = 0x52;
    pub const UNCONNECTED_SEND: u8 = 0x52;
    pub const FORWARD_OPEN: u8 = 0x54;
    pub const LARGE_FORWARD_OPEN: u8 = 0x5B;
    /// Set in the service code of every reply.
    pub const REPLY: u8 = 0x80;
}

/// CPF item types.
pub mod item {
    pub const NULL_ADDRESS: u16 = 0x0000;
    pub const LIST_IDENTITY: u16 = 0x000C;
    pub const CONNECTED_ADDRESS: u16 = 0x00A1;
    pub const CONNECTED_DATA: u16 = 0x00B1;
    pub const UNCONNECTED_DATA: u16 = 0x00B2;
}

/// General status 0x06: more data follows (Read Tag Fragmented).
pub const STATUS_PARTIAL: u8 = 0x06;
/// General status of a Multiple Service Packet reply when one of its
/// services failed ("embedded service error"); each reply has its own.
pub const STATUS_EMBEDDED_ERROR: u8 = 0x1E;

pub const ENCAP_HEADER_LEN: usize = 24;
/// Bytes of a Read Tag reply before the data: service, reserved, status,
/// extended status size, type code.
pub const READ_REPLY_OVERHEAD: usize = 6;
/// Path of the Message Router (class 0x02, instance 1).
pub const MESSAGE_ROUTER_PATH: [u8; 4] = [0x20, 0x02, 0x24, 0x01];
/// Path of the Connection Manager (class 0x06, instance 1).
pub const CONNECTION_MANAGER_PATH: [u8; 4] = [0x20, 0x06, 0x24, 0x01];
/// Structure handle of the predefined Logix STRING (LEN DINT, DATA SINT[82]).
pub const LOGIX_STRING_HANDLE: u16 = 0x0FCE;
/// Characters a Logix STRING holds.
pub const LOGIX_STRING_CAPACITY: usize = 82;
/// Bytes of a Logix STRING: LEN (4) + DATA (82) + 2 pad to a 4-byte boundary.
pub const LOGIX_STRING_SIZE: usize = 88;

/// Reads fields off a byte slice, failing with what was being read and at
/// which offset.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(format!(
                "{}: truncated reading {field} at byte {} ({n} bytes needed, {left} left)",
                self.what, self.pos
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }

    pub fn u16(&mut self, field: &str) -> Result<u16, String> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, field: &str) -> Result<u32, String> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        s
    }

    pub fn pos(&self) -> usize {
        self.pos
    }
}

// ---------------------------------------------------------------- encapsulation

/// The 24-byte encapsulation header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncapHeader {
    pub command: u16,
    /// Bytes of data after the header.
    pub length: u16,
    pub session: u32,
    /// 0 = success; nonzero: the encapsulation layer refused the request.
    pub status: u32,
    pub context: u64,
    pub options: u32,
}

impl EncapHeader {
    pub fn parse(b: &[u8]) -> Result<EncapHeader, String> {
        let mut r = Reader::new(b, "encapsulation header");
        let command = r.u16("command")?;
        let length = r.u16("length")?;
        let session = r.u32("session handle")?;
        let status = r.u32("status")?;
        let ctx = r.take(8, "sender context")?;
        let mut c = [0u8; 8];
        c.copy_from_slice(ctx);
        let options = r.u32("options")?;
        Ok(EncapHeader {
            command,
            length,
            session,
            status,
            context: u64::from_le_bytes(c),
            options,
        })
    }
}

/// An encapsulation packet: header then `body`.
pub fn encap(command: u16, session: u32, context: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCAP_HEADER_LEN + body.len());
    out.extend_from_slice(&command.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&context.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Register Session: protocol version 1, option flags 0.
pub fn register_session(context: u64) -> Vec<u8> {
    encap(command::REGISTER_SESSION, 0, context, &[1, 0, 0, 0])
}

pub fn unregister_session(session: u32, context: u64) -> Vec<u8> {
    encap(command::UNREGISTER_SESSION, session, context, &[])
}

fn cpf(items: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    for (kind, data) in items {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Send RR Data (unconnected): interface handle 0, timeout 0, CPF with a
/// null address item and an unconnected data item holding `cip`.
pub fn send_rr_data(session: u32, context: u64, cip: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 0, 0, 0];
    body.extend(cpf(&[
        (item::NULL_ADDRESS, &[]),
        (item::UNCONNECTED_DATA, cip),
    ]));
    encap(command::SEND_RR_DATA, session, context, &body)
}

/// Send Unit Data (connected): the connected address item carries the
/// O->T connection id, the connected data item a sequence count then `cip`.
pub fn send_unit_data(session: u32, context: u64, conn_id: u32, seq: u16, cip: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 0, 0, 0];
    let mut data = seq.to_le_bytes().to_vec();
    data.extend_from_slice(cip);
    body.extend(cpf(&[
        (item::CONNECTED_ADDRESS, &conn_id.to_le_bytes()),
        (item::CONNECTED_DATA, &data),
    ]));
    encap(command::SEND_UNIT_DATA, session, context, &body)
}

/// The items of a CPF: (type, data).
pub fn parse_cpf(b: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut r = Reader::new(b, "common packet format");
    let count = r.u16("item count")?;
    let mut items = Vec::new();
    for i in 0..count {
        let kind = r.u16("item type")?;
        let len = r.u16("item length")? as usize;
        let data = r.take(len, &format!("item {i} data"))?;
        items.push((kind, data));
    }
    Ok(items)
}

/// The CIP reply inside a Send RR Data reply body.
pub fn rr_data_reply(body: &[u8]) -> Result<&[u8], String> {
    let b = body
        .get(6..)
        .ok_or("send rr data reply: shorter than handle and timeout")?;
    parse_cpf(b)?
        .into_iter()
        .find(|(k, _)| *k == item::UNCONNECTED_DATA)
        .map(|(_, d)| d)
        .ok_or_else(|| "send rr data reply: no unconnected data item (0x00B2)".into())
}

/// (connection id, sequence count, CIP reply) of a Send Unit Data reply body.
pub fn unit_data_reply(body: &[u8]) -> Result<(u32, u16, &[u8]), String> {
    let b = body
        .get(6..)
        .ok_or("send unit data reply: shorter than handle and timeout")?;
    let items = parse_cpf(b)?;
    let addr = items
        .iter()
        .find(|(k, _)| *k == item::CONNECTED_ADDRESS)
        .ok_or("send unit data reply: no connected address item (0x00A1)")?;
    let conn = Reader::new(addr.1, "connected address item").u32("connection id")?;
    let data = items
        .iter()
        .find(|(k, _)| *k == item::CONNECTED_DATA)
        .ok_or("send unit data reply: no connected data item (0x00B1)")?;
    let mut r = Reader::new(data.1, "connected data item");
    let seq = r.u16("sequence count")?;
    Ok((conn, seq, r.rest()))
}

// ---------------------------------------------------------------- CIP messages

/// A CIP request: service, path size in words, path, data.
pub fn cip_request(service: u8, path: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + path.len() + data.len());
    out.push(service);
    out.push((path.len() / 2) as u8);
    out.extend_from_slice(path);
    out.extend_from_slice(data);
    out
}

/// A decoded CIP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CipReply<'a> {
    /// Request service with bit 0x80 set.
    pub service: u8,
    pub status: u8,
    pub ext_status: Vec<u16>,
    pub data: &'a [u8],
}

impl<'a> CipReply<'a> {
    pub fn parse(b: &'a [u8]) -> Result<CipReply<'a>, String> {
        let mut r = Reader::new(b, "CIP reply");
        let service = r.u8("service")?;
        if service & service::REPLY == 0 {
            return Err(format!(
                "CIP reply: service 0x{service:02X} lacks the reply bit 0x80"
            ));
        }
        r.u8("reserved")?;
        let status = r.u8("general status")?;
        let words = r.u8("extended status size")?;
        let mut ext_status = Vec::with_capacity(words as usize);
        for _ in 0..words {
            ext_status.push(r.u16("extended status")?);
        }
        Ok(CipReply {
            service,
            status,
            ext_status,
            data: r.rest(),
        })
    }

    /// The status as a [`CipStatus`].
    pub fn cip_status(&self) -> CipStatus {
        CipStatus {
            general: self.status,
            extended: self.ext_status.first().copied().filter(|e| *e != 0),
        }
    }
}

/// A CIP error: general status and the first extended status word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipStatus {
    pub general: u8,
    pub extended: Option<u16>,
}

impl CipStatus {
    /// The quality reason: `cip_status:0x05`, or with an extended status
    /// `cip_status:0xff/0x2105`.
    pub fn reason(&self) -> String {
        match self.extended {
            Some(e) => format!("cip_status:0x{:02x}/0x{e:04x}", self.general),
            None => format!("cip_status:0x{:02x}", self.general),
        }
    }

    /// The reason and what it means, for logs and errors.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({})", self.reason(), status_name(self.general));
        if let Some(e) = self.extended {
            if let Some(m) = extended_status_name(self.general, e) {
                s.push_str(&format!(": {m}"));
            }
        }
        s
    }
}

/// The name of a CIP general status.
pub fn status_name(status: u8) -> &'static str {
    match status {
        0x00 => "success",
        0x01 => "connection failure",
        0x02 => "resource unavailable",
        0x03 => "invalid parameter value",
        0x04 => "path segment error: unknown tag or bad path",
        0x05 => "path destination unknown",
        0x06 => "partial transfer",
        0x07 => "connection lost",
        0x08 => "service not supported",
        0x09 => "invalid attribute value",
        0x0A => "attribute list error",
        0x0C => "object state conflict",
        0x0E => "attribute not settable",
        0x0F => "privilege violation",
        0x10 => "device state conflict",
        0x11 => "reply data too large",
        0x13 => "not enough data",
        0x14 => "attribute not supported",
        0x15 => "too much data",
        0x1E => "embedded service error",
        0x1F => "vendor specific error",
        0x20 => "invalid parameter",
        0x26 => "path size invalid",
        0xFF => "general error (see extended status)",
        _ => "other CIP error",
    }
}

/// Logix extended statuses worth naming.
pub fn extended_status_name(general: u8, ext: u16) -> Option<&'static str> {
    Some(match (general, ext) {
        (0xFF, 0x2104) => "offset beyond the end of the tag",
        (0xFF, 0x2105) => "elements beyond the end of the tag",
        (0xFF, 0x2107) => "data type does not match the tag",
        (0x10, 0x2101) => "keyswitch in run mode",
        (0x10, 0x2802) => "safety memory cannot be modified",
        (0x01, 0x0100) => "connection in use or duplicate Forward Open",
        (0x01, 0x0113) => "out of connections",
        (0x01, 0x0109) => "invalid connection size",
        (0x01, 0x0204) => "unconnected request timed out",
        (0x01, 0x0311) => "invalid port in the route path",
        (0x01, 0x0312) => "invalid link address in the route path (no module in that slot)",
        (0x01, 0x0315) => "invalid segment in the connection path",
        _ => return None,
    })
}

/// Route path to the CPU: backplane (port 1), slot.
pub fn route_path(slot: u8) -> [u8; 2] {
    [0x01, slot]
}

/// Unconnected Send (0x52 to the Connection Manager) carrying `cip` to the
/// CPU in `slot`. Priority/tick 0x0A and 0x0E timeout ticks: about 1.9 s
/// for the routed request, shorter than the client's own timeout is not
/// required; the client waits for whichever comes first.
pub fn unconnected_send(cip: &[u8], slot: u8) -> Vec<u8> {
    let mut data = vec![0x0A, 0x0E];
    data.extend_from_slice(&(cip.len() as u16).to_le_bytes());
    data.extend_from_slice(cip);
    if cip.len() % 2 == 1 {
        data.push(0);
    }
    data.push(1); // route path size in words
    data.push(0); // reserved
    data.extend_from_slice(&route_path(slot));
    cip_request(service::UNCONNECTED_SEND, &CONNECTION_MANAGER_PATH, &data)
}

/// Read Tag: path, element count.
pub fn read_tag(path: &[u8], elements: u16) -> Vec<u8> {
    cip_request(service::READ_TAG, path, &elements.to_le_bytes())
}

/// Read Tag Fragmented: path, element count, byte offset into the data.
pub fn read_tag_fragmented(path: &[u8], elements: u16, offset: u32) -> Vec<u8> {
    let mut data = elements.to_le_bytes().to_vec();
    data.extend_from_slice(&offset.to_le_bytes());
    cip_request(service::READ_TAG_FRAGMENTED, path, &data)
}

/// Write Tag: path, type (with structure handle), element count, data.
pub fn write_tag(path: &[u8], ty: CipType, elements: u16, data: &[u8]) -> Vec<u8> {
    let mut body = ty.encode();
    body.extend_from_slice(&elements.to_le_bytes());
    body.extend_from_slice(data);
    cip_request(service::WRITE_TAG, path, &body)
}

/// Multiple Service Packet to the Message Router: count, offsets (from the
/// count field), then the requests.
pub fn multiple_service_packet(requests: &[Vec<u8>]) -> Vec<u8> {
    let mut data = (requests.len() as u16).to_le_bytes().to_vec();
    let mut offset = 2 + 2 * requests.len();
    for r in requests {
        data.extend_from_slice(&(offset as u16).to_le_bytes());
        offset += r.len();
    }
    for r in requests {
        data.extend_from_slice(r);
    }
    cip_request(
        service::MULTIPLE_SERVICE_PACKET,
        &MESSAGE_ROUTER_PATH,
        &data,
    )
}

/// Bytes a Multiple Service Packet adds around `n` requests: service, path
/// size, path, count and one offset each.
pub fn msp_request_overhead(n: usize) -> usize {
    2 + MESSAGE_ROUTER_PATH.len() + 2 + 2 * n
}

/// Bytes a Multiple Service Packet reply adds around `n` replies.
pub fn msp_reply_overhead(n: usize) -> usize {
    4 + 2 + 2 * n
}

/// The embedded replies of a Multiple Service Packet reply's data.
pub fn multiple_service_replies(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut r = Reader::new(data, "multiple service reply");
    let count = r.u16("reply count")? as usize;
    let mut offsets = Vec::with_capacity(count.min(256));
    for _ in 0..count {
        offsets.push(r.u16("reply offset")? as usize);
    }
    let mut out = Vec::with_capacity(offsets.len());
    for (i, &start) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).copied().unwrap_or(data.len());
        if start < r.pos() || start > end || end > data.len() {
            return Err(format!(
                "multiple service reply: reply {i} spans bytes {start}..{end} of {}",
                data.len()
            ));
        }
        out.push(&data[start..end]);
    }
    Ok(out)
}

// ---------------------------------------------------------------- connections

/// What a Forward Open asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardOpen {
    /// The T->O connection id we pick (replies come on it).
    pub t_o_id: u32,
    pub connection_serial: u16,
    pub vendor_id: u16,
    pub originator_serial: u32,
    /// Requested packet interval, microseconds.
    pub rpi_us: u32,
    /// Connection size in bytes, both directions.
    pub size: u16,
    /// Backplane slot of the CPU.
    pub slot: u8,
}

/// Largest size a (small) Forward Open can ask for; above it the Large
/// Forward Open (0x5B, 32-bit parameters) is used.
pub const SMALL_FORWARD_OPEN_MAX: u16 = 511;

/// Connection path: port 1 (backplane) slot, then the Message Router.
fn connection_path(slot: u8) -> Vec<u8> {
    let mut p = route_path(slot).to_vec();
    p.extend_from_slice(&MESSAGE_ROUTER_PATH);
    p
}

impl ForwardOpen {
    /// The Forward Open request (0x54, or 0x5B above 511 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let large = self.size > SMALL_FORWARD_OPEN_MAX;
        let mut d = vec![0x0A, 0x0E]; // priority/tick, timeout ticks
        d.extend_from_slice(&0u32.to_le_bytes()); // O->T id: the target picks
        d.extend_from_slice(&self.t_o_id.to_le_bytes());
        d.extend_from_slice(&self.connection_serial.to_le_bytes());
        d.extend_from_slice(&self.vendor_id.to_le_bytes());
        d.extend_from_slice(&self.originator_serial.to_le_bytes());
        d.push(0x03); // timeout multiplier: x32
        d.extend_from_slice(&[0, 0, 0]); // reserved
        for _ in 0..2 {
            // O->T then T->O: RPI, then point-to-point, low priority,
            // variable size, the size.
            d.extend_from_slice(&self.rpi_us.to_le_bytes());
            if large {
                d.extend_from_slice(&(0x4200_0000u32 | self.size as u32).to_le_bytes());
            } else {
                d.extend_from_slice(&(0x4200u16 | self.size).to_le_bytes());
            }
        }
        d.push(0xA3); // transport: server, application trigger, class 3
        let path = connection_path(self.slot);
        d.push((path.len() / 2) as u8);
        d.extend_from_slice(&path);
        let svc = if large {
            service::LARGE_FORWARD_OPEN
        } else {
            service::FORWARD_OPEN
        };
        cip_request(svc, &CONNECTION_MANAGER_PATH, &d)
    }

    /// The Forward Close request for this connection.
    pub fn close(&self) -> Vec<u8> {
        let mut d = vec![0x0A, 0x0E];
        d.extend_from_slice(&self.connection_serial.to_le_bytes());
        d.extend_from_slice(&self.vendor_id.to_le_bytes());
        d.extend_from_slice(&self.originator_serial.to_le_bytes());
        let path = connection_path(self.slot);
        d.push((path.len() / 2) as u8);
        d.push(0);
        d.extend_from_slice(&path);
        cip_request(service::FORWARD_CLOSE, &CONNECTION_MANAGER_PATH, &d)
    }
}

/// The useful part of a successful Forward Open reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardOpenReply {
    /// Id to send on (picked by the target).
    pub o_t_id: u32,
    /// Id replies come on (ours, echoed).
    pub t_o_id: u32,
    pub connection_serial: u16,
}

impl ForwardOpenReply {
    /// Decodes the data of a successful Forward Open reply.
    pub fn parse(data: &[u8]) -> Result<ForwardOpenReply, String> {
        let mut r = Reader::new(data, "forward open reply");
        let o_t_id = r.u32("O->T connection id")?;
        let t_o_id = r.u32("T->O connection id")?;
        let connection_serial = r.u16("connection serial")?;
        r.u16("vendor id")?;
        r.u32("originator serial")?;
        r.u32("O->T actual packet interval")?;
        r.u32("T->O actual packet interval")?;
        Ok(ForwardOpenReply {
            o_t_id,
            t_o_id,
            connection_serial,
        })
    }
}

// ---------------------------------------------------------------- data types

/// A CIP data type as a Read Tag reply names it: the type code, and for
/// structures (0x02A0) the structure handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CipType {
    pub code: u16,
    pub handle: Option<u16>,
}

/// CIP type codes.
pub mod code {
    pub const BOOL: u16 = 0xC1;
    pub const SINT: u16 = 0xC2;
    pub const INT: u16 = 0xC3;
    pub const DINT: u16 = 0xC4;
    pub const LINT: u16 = 0xC5;
    pub const USINT: u16 = 0xC6;
    pub const UINT: u16 = 0xC7;
    pub const UDINT: u16 = 0xC8;
    pub const ULINT: u16 = 0xC9;
    pub const REAL: u16 = 0xCA;
    pub const LREAL: u16 = 0xCB;
    /// CIP STRING: UINT length, characters, pad to even (cpppo's STRING).
    pub const STRING: u16 = 0xD0;
    /// DWORD: a 32-bit bit array (BOOL[] elements are read as these).
    pub const DWORD: u16 = 0xD3;
    /// SHORT_STRING: USINT length, characters.
    pub const SSTRING: u16 = 0xDA;
    /// A structure; a structure handle follows the code.
    pub const STRUCT: u16 = 0x02A0;
}

impl CipType {
    pub const fn atomic(code: u16) -> CipType {
        CipType { code, handle: None }
    }

    pub const LOGIX_STRING: CipType = CipType {
        code: code::STRUCT,
        handle: Some(LOGIX_STRING_HANDLE),
    };

    /// The type as sent in a Write Tag request.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.code.to_le_bytes().to_vec();
        if let Some(h) = self.handle {
            v.extend_from_slice(&h.to_le_bytes());
        }
        v
    }

    /// The Logix name (`DINT`, `STRING`, `STRUCT 0x1234`).
    pub fn name(&self) -> String {
        let n = match (self.code, self.handle) {
            (code::STRUCT, Some(LOGIX_STRING_HANDLE)) => "STRING",
            (code::STRUCT, Some(h)) => return format!("structure (handle 0x{h:04X})"),
            (code::BOOL, _) => "BOOL",
            (code::SINT, _) => "SINT",
            (code::INT, _) => "INT",
            (code::DINT, _) => "DINT",
            (code::LINT, _) => "LINT",
            (code::USINT, _) => "USINT",
            (code::UINT, _) => "UINT",
            (code::UDINT, _) => "UDINT",
            (code::ULINT, _) => "ULINT",
            (code::REAL, _) => "REAL",
            (code::LREAL, _) => "LREAL",
            (code::STRING, _) => "STRING (CIP)",
            (code::SSTRING, _) => "SHORT_STRING",
            (code::DWORD, _) => "DWORD (bit array)",
            (c, _) => return format!("type 0x{c:04X}"),
        };
        n.into()
    }

    /// Bytes per element for fixed-size types; `None` for strings of
    /// varying length and unknown types.
    pub fn fixed_size(&self) -> Option<usize> {
        Some(match (self.code, self.handle) {
            (code::BOOL | code::SINT | code::USINT, _) => 1,
            (code::INT | code::UINT, _) => 2,
            (code::DINT | code::UDINT | code::REAL | code::DWORD, _) => 4,
            (code::LINT | code::ULINT | code::LREAL, _) => 8,
            (code::STRUCT, Some(LOGIX_STRING_HANDLE)) => LOGIX_STRING_SIZE,
            _ => return None,
        })
    }

    /// The integer range of an integer type.
    pub fn int_range(&self) -> Option<(i128, i128)> {
        Some(match self.code {
            code::SINT => (i8::MIN as i128, i8::MAX as i128),
            code::INT => (i16::MIN as i128, i16::MAX as i128),
            code::DINT => (i32::MIN as i128, i32::MAX as i128),
            code::LINT => (i64::MIN as i128, i64::MAX as i128),
            code::USINT => (0, u8::MAX as i128),
            code::UINT => (0, u16::MAX as i128),
            code::UDINT => (0, u32::MAX as i128),
            code::ULINT => (0, u64::MAX as i128),
            _ => return None,
        })
    }

    pub fn is_string(&self) -> bool {
        *self == CipType::LOGIX_STRING || matches!(self.code, code::STRING | code::SSTRING)
    }
}

/// Whether a value of CIP type `ty` can be stored in a tag of `data_type`
/// without loss (see the module docs of [`super`] for the table).
pub fn fits(ty: CipType, data_type: DataType) -> bool {
    use DataType as D;
    match (ty.code, ty.handle) {
        (code::BOOL, _) => data_type == D::Bool,
        (code::SINT | code::INT, _) => matches!(data_type, D::I16 | D::I32 | D::I64),
        (code::USINT, _) => matches!(data_type, D::I16 | D::U16 | D::I32 | D::U32 | D::I64),
        (code::UINT, _) => matches!(data_type, D::U16 | D::I32 | D::U32 | D::I64),
        (code::DINT, _) => matches!(data_type, D::I32 | D::I64),
        (code::UDINT, _) => matches!(data_type, D::U32 | D::I64),
        (code::LINT | code::ULINT, _) => data_type == D::I64,
        (code::REAL, _) => matches!(data_type, D::F32 | D::F64),
        (code::LREAL, _) => data_type == D::F64,
        _ if ty.is_string() => data_type == D::String,
        _ => false,
    }
}

/// The type and data of a Read Tag (Fragmented) reply's data.
pub fn typed_data(data: &[u8]) -> Result<(CipType, &[u8]), String> {
    let mut r = Reader::new(data, "read tag reply");
    let code = r.u16("type code")?;
    let handle = if code == code::STRUCT {
        Some(r.u16("structure handle")?)
    } else {
        None
    };
    Ok((CipType { code, handle }, r.rest()))
}

/// Decodes `count` elements of type `ty` from `data`.
pub fn decode_values(ty: CipType, data: &[u8], count: usize) -> Result<Vec<Value>, String> {
    let mut r = Reader::new(data, "tag data");
    let mut out = Vec::with_capacity(count.min(4096));
    for i in 0..count {
        let field = format!("element {i} ({})", ty.name());
        out.push(decode_one(ty, &mut r, &field)?);
    }
    Ok(out)
}

fn decode_one(ty: CipType, r: &mut Reader, field: &str) -> Result<Value, String> {
    let fixed = |r: &mut Reader, n: usize| -> Result<[u8; 8], String> {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(r.take(n, field)?);
        Ok(b)
    };
    Ok(match (ty.code, ty.handle) {
        (code::BOOL, _) => Value::Bool(r.u8(field)? != 0),
        (code::SINT, _) => Value::Int(r.u8(field)? as i8 as i64),
        (code::USINT, _) => Value::Int(r.u8(field)? as i64),
        (code::INT, _) => Value::Int(r.u16(field)? as i16 as i64),
        (code::UINT, _) => Value::Int(r.u16(field)? as i64),
        (code::DINT, _) => Value::Int(r.u32(field)? as i32 as i64),
        (code::UDINT, _) => Value::Int(r.u32(field)? as i64),
        (code::LINT, _) => Value::Int(i64::from_le_bytes(fixed(r, 8)?)),
        (code::ULINT, _) => {
            let v = u64::from_le_bytes(fixed(r, 8)?);
            Value::Int(i64::try_from(v).map_err(|_| format!("{field}: {v} exceeds i64"))?)
        }
        (code::REAL, _) => Value::Float(f32::from_bits(r.u32(field)?) as f64),
        (code::LREAL, _) => Value::Float(f64::from_le_bytes(fixed(r, 8)?)),
        (code::STRING, _) => {
            let n = r.u16(field)? as usize;
            let s = latin1(r.take(n, field)?);
            if n % 2 == 1 {
                // The pad to an even length; tolerated when missing after
                // the last string.
                let _ = r.take(1, "pad");
            }
            Value::Text(s)
        }
        (code::SSTRING, _) => {
            let n = r.u8(field)? as usize;
            Value::Text(latin1(r.take(n, field)?))
        }
        (code::STRUCT, Some(LOGIX_STRING_HANDLE)) => decode_logix_string(r, field)?,
        _ => return Err(format!("{field}: not an atomic type or STRING")),
    })
}

/// Logix STRING: LEN (DINT), DATA (82 SINTs), 2 pad bytes (optional here:
/// a fragment may end without them).
fn decode_logix_string(r: &mut Reader, field: &str) -> Result<Value, String> {
    let len = r.u32(field)? as i32;
    let data = r.take(LOGIX_STRING_CAPACITY, field)?;
    if !(0..=LOGIX_STRING_CAPACITY as i32).contains(&len) {
        return Err(format!(
            "{field}: LEN {len} is outside 0-{LOGIX_STRING_CAPACITY}"
        ));
    }
    let _ = r.take(2, "pad");
    Ok(Value::Text(latin1(&data[..len as usize])))
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// Encodes one value (already in the tag's raw units) as type `ty`, or says
/// why it does not fit.
pub fn encode_value(ty: CipType, value: &Value) -> Result<Vec<u8>, String> {
    if let Some((lo, hi)) = ty.int_range() {
        let i = match value {
            Value::Int(i) => *i as i128,
            Value::Bool(b) => *b as i128,
            Value::Float(f) if f.fract() == 0.0 && f.is_finite() => *f as i128,
            other => return Err(format!("{} needs a whole number, got {other}", ty.name())),
        };
        if i < lo || i > hi {
            return Err(format!(
                "{i} is outside the range of {} ({lo}..={hi})",
                ty.name()
            ));
        }
        let size = ty.fixed_size().unwrap_or(8);
        return Ok((i as i64).to_le_bytes()[..size].to_vec());
    }
    let number = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (ty.code, ty.handle) {
        (code::BOOL, _) => match value {
            Value::Bool(b) => Ok(vec![if *b { 0xFF } else { 0 }]),
            other => Err(format!("BOOL needs true or false, got {other}")),
        },
        (code::REAL, _) => {
            let f = number(value).ok_or_else(|| format!("REAL needs a number, got {value}"))?;
            if f.is_finite() && f.abs() > f32::MAX as f64 {
                return Err(format!("{f} is outside the range of REAL"));
            }
            Ok((f as f32).to_le_bytes().to_vec())
        }
        (code::LREAL, _) => {
            let f = number(value).ok_or_else(|| format!("LREAL needs a number, got {value}"))?;
            Ok(f.to_le_bytes().to_vec())
        }
        _ if ty.is_string() => encode_string(ty, value),
        _ => Err(format!("writing {} is not supported", ty.name())),
    }
}

fn encode_string(ty: CipType, value: &Value) -> Result<Vec<u8>, String> {
    let text = match value {
        Value::Text(t) => t.clone(),
        other => other.to_string(),
    };
    let bytes: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(c as u32).map_err(|_| format!("character '{c}' is not Latin-1")))
        .collect::<Result<_, _>>()?;
    let max = match ty.code {
        code::SSTRING => 255,
        code::STRING => u16::MAX as usize,
        _ => LOGIX_STRING_CAPACITY,
    };
    if bytes.len() > max {
        return Err(format!(
            "{} characters do not fit a {} of {max}",
            bytes.len(),
            ty.name()
        ));
    }
    let mut out = Vec::new();
    match ty.code {
        code::SSTRING => out.push(bytes.len() as u8),
        code::STRING => out.extend_from_slice(&(bytes.len() as u16).to_le_bytes()),
        _ => out.extend_from_slice(&(bytes.len() as u32).to_le_bytes()),
    }
    out.extend_from_slice(&bytes);
    if ty == CipType::LOGIX_STRING {
        out.resize(LOGIX_STRING_SIZE, 0);
    } else if ty.code == code::STRING && bytes.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}
