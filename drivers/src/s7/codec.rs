//! Byte-level S7comm over ISO-on-TCP: TPKT (RFC 1006) frames carrying COTP
//! (ISO 8073 class 0) TPDUs carrying S7 PDUs. Builds requests and parses
//! replies; never does I/O and never panics on malformed input (every
//! length is checked before it is used).
//!
//! Must not depend on the driver, tokio or tags: it knows areas and byte
//! offsets ([`super::address::Area`]), nothing more. The layouts are
//! explained field by field in the fixtures of the tests below.

use super::address::Area;

/// TPKT header: version 3, reserved 0, length of the whole frame (2 bytes).
pub const TPKT_HEADER_LEN: usize = 4;
/// COTP Data (DT) header: length indicator 2, type 0xF0, EOT + TPDU number.
const COTP_DT: [u8; 3] = [0x02, 0xF0, 0x80];
const COTP_CR: u8 = 0xE0;
const COTP_CC: u8 = 0xD0;
const COTP_DR: u8 = 0x80;

/// S7 PDU types (ROSCTR).
const ROSCTR_JOB: u8 = 0x01;
const ROSCTR_ACK: u8 = 0x02;
const ROSCTR_ACK_DATA: u8 = 0x03;
const ROSCTR_USERDATA: u8 = 0x07;

/// S7 functions.
const FN_SETUP_COMMUNICATION: u8 = 0xF0;
const FN_READ_VAR: u8 = 0x04;
const FN_WRITE_VAR: u8 = 0x05;

/// Transport sizes of an address item (the "word length").
const TS_ITEM_BIT: u8 = 0x01;
const TS_ITEM_BYTE: u8 = 0x02;
/// Transport sizes of a data item: bit (length in bits), byte/word/dword
/// (length in bits), integer (bits), real (bytes), octet string (bytes).
const TS_DATA_BIT: u8 = 0x03;
const TS_DATA_BYTE: u8 = 0x04;

/// Bytes of a Read Var request before its items: S7 header (10) + function
/// and item count (2).
pub const READ_REQUEST_OVERHEAD: usize = 12;
/// Bytes of one address item in a request.
pub const READ_ITEM_LEN: usize = 12;
/// Bytes of a Read Var reply before its items: S7 header (12) + function
/// and item count (2).
pub const READ_REPLY_OVERHEAD: usize = 14;
/// Bytes of a data item's header in a reply: return code, transport size,
/// length.
pub const DATA_ITEM_HEADER_LEN: usize = 4;
/// Bytes of a single-item Write Var request besides its data: header (10),
/// parameters (2 + 12), data item header (4).
pub const WRITE_OVERHEAD: usize = 28;

/// Why a reply could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Not a well-formed answer to the request (the connection is suspect).
    Malformed(String),
    /// The PLC refused the whole request: header error class and code.
    Header { class: u8, code: u8 },
}

impl ReplyError {
    /// `0x8104`-style code of a header error.
    pub fn header_code(class: u8, code: u8) -> u16 {
        (class as u16) << 8 | code as u16
    }
}

fn malformed<T>(what: impl Into<String>) -> Result<T, ReplyError> {
    Err(ReplyError::Malformed(what.into()))
}

/// What a header error class means (the first byte of e.g. 0x8104).
pub fn header_error_text(class: u8, code: u8) -> &'static str {
    match (class, code) {
        (0x81, 0x04) => "function not supported or context not allowed",
        (0x85, 0x00) => "PDU size exceeded",
        (0x87, 0x04) => "access denied (protection level)",
        (0x81, _) => "application relationship error",
        (0x82, _) => "object definition error",
        (0x83, _) => "no resources available",
        (0x84, _) => "error on service processing",
        (0x85, _) => "error on supplies",
        (0x87, _) => "access error",
        _ => "unknown error class",
    }
}

/// What a data item return code means.
pub fn item_error_text(code: u8) -> &'static str {
    match code {
        0x01 => "hardware fault",
        0x03 => "access to the object not allowed",
        0x05 => "address out of range",
        0x06 => "data type not supported",
        0x07 => "data type inconsistent",
        0x0A => "object does not exist",
        _ => "unknown return code",
    }
}

/// Wraps a COTP TPDU in a TPKT frame.
pub fn tpkt(cotp: &[u8]) -> Vec<u8> {
    let len = (cotp.len() + TPKT_HEADER_LEN) as u16;
    let mut out = vec![0x03, 0x00];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(cotp);
    out
}

/// The frame length a TPKT header announces, checked.
pub fn tpkt_length(header: &[u8; TPKT_HEADER_LEN]) -> Result<usize, String> {
    if header[0] != 0x03 {
        return Err(format!(
            "not a TPKT frame (version byte 0x{:02X})",
            header[0]
        ));
    }
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    if len < TPKT_HEADER_LEN + 3 {
        return Err(format!("TPKT length {len} is too short for a COTP TPDU"));
    }
    Ok(len)
}

/// Remote TSAP of a CPU at `rack`/`slot`: connection type PG (0x01) in the
/// high byte, `rack * 32 + slot` in the low byte.
pub fn remote_tsap(rack: u16, slot: u16) -> u16 {
    0x0100 | ((rack & 0x07) << 5) | (slot & 0x1F)
}

/// COTP Connection Request (a whole TPKT frame) with the TSAPs and a TPDU
/// size of 1024 bytes.
pub fn connect_request(local_tsap: u16, remote_tsap: u16) -> Vec<u8> {
    let [lh, ll] = local_tsap.to_be_bytes();
    let [rh, rl] = remote_tsap.to_be_bytes();
    let cotp = [
        17, COTP_CR, 0x00, 0x00, 0x00, 0x01, 0x00, // LI, CR, dst ref, src ref, class 0
        0xC0, 1, 0x0A, // TPDU size 2^10
        0xC1, 2, lh, ll, // calling (local) TSAP
        0xC2, 2, rh, rl, // called (remote) TSAP
    ];
    tpkt(&cotp)
}

/// Checks a COTP Connection Confirm (the TPDU after the TPKT header).
pub fn parse_connect_confirm(cotp: &[u8]) -> Result<(), String> {
    match cotp.get(1) {
        Some(&COTP_CC) if cotp.len() >= 7 => Ok(()),
        Some(&COTP_DR) => Err(
            "the PLC refused the ISO connection (COTP disconnect): check rack/slot or TSAPs".into(),
        ),
        Some(t) => Err(format!(
            "expected a COTP connection confirm (0xD0), got type 0x{t:02X}"
        )),
        None => Err("empty COTP TPDU".into()),
    }
}

/// Wraps an S7 PDU in a COTP DT TPDU and a TPKT frame.
pub fn data_frame(pdu: &[u8]) -> Vec<u8> {
    let mut cotp = COTP_DT.to_vec();
    cotp.extend_from_slice(pdu);
    tpkt(&cotp)
}

/// Splits a COTP DT TPDU into its payload and whether it is the last one
/// (EOT) of the S7 PDU.
pub fn parse_data_tpdu(cotp: &[u8]) -> Result<(&[u8], bool), String> {
    let li = *cotp.first().ok_or("empty COTP TPDU")? as usize;
    match cotp.get(1) {
        Some(0xF0) => {}
        Some(&COTP_DR) => return Err("the PLC closed the ISO connection (COTP disconnect)".into()),
        Some(t) => return Err(format!("expected COTP data (0xF0), got type 0x{t:02X}")),
        None => return Err("COTP TPDU of one byte".into()),
    }
    if li < 2 || li + 1 > cotp.len() {
        return Err(format!(
            "COTP length indicator {li} does not fit a {}-byte TPDU",
            cotp.len()
        ));
    }
    Ok((&cotp[li + 1..], cotp[2] & 0x80 != 0))
}

fn job_header(pdu_ref: u16, param_len: usize, data_len: usize) -> Vec<u8> {
    let mut h = vec![0x32, ROSCTR_JOB, 0x00, 0x00];
    h.extend_from_slice(&pdu_ref.to_be_bytes());
    h.extend_from_slice(&(param_len as u16).to_be_bytes());
    h.extend_from_slice(&(data_len as u16).to_be_bytes());
    h
}

/// Setup Communication: one outstanding job each way, and `pdu_size`.
pub fn setup_communication(pdu_ref: u16, pdu_size: u16) -> Vec<u8> {
    let mut pdu = job_header(pdu_ref, 8, 0);
    pdu.extend_from_slice(&[FN_SETUP_COMMUNICATION, 0x00, 0x00, 0x01, 0x00, 0x01]);
    pdu.extend_from_slice(&pdu_size.to_be_bytes());
    pdu
}

/// A parsed S7 reply: parameters and data of an Ack_Data or Userdata PDU
/// whose header reported no error.
#[derive(Debug)]
pub struct Reply<'a> {
    pub rosctr: u8,
    pub params: &'a [u8],
    pub data: &'a [u8],
}

/// Parses an S7 reply PDU and checks it answers `pdu_ref`.
pub fn parse_reply(pdu: &[u8], pdu_ref: u16) -> Result<Reply<'_>, ReplyError> {
    if pdu.len() < 10 || pdu[0] != 0x32 {
        return malformed(format!(
            "not an S7 PDU ({} bytes: {})",
            pdu.len(),
            hex(pdu, 12)
        ));
    }
    let rosctr = pdu[1];
    let header_len = match rosctr {
        ROSCTR_ACK | ROSCTR_ACK_DATA => 12,
        ROSCTR_USERDATA => 10,
        other => return malformed(format!("unexpected S7 PDU type 0x{other:02X} in a reply")),
    };
    if pdu.len() < header_len {
        return malformed(format!("S7 header cut short at {} bytes", pdu.len()));
    }
    let got_ref = u16::from_be_bytes([pdu[4], pdu[5]]);
    if got_ref != pdu_ref {
        return malformed(format!("reply to request {got_ref}, expected {pdu_ref}"));
    }
    if header_len == 12 && (pdu[10] != 0 || pdu[11] != 0) {
        return Err(ReplyError::Header {
            class: pdu[10],
            code: pdu[11],
        });
    }
    let param_len = u16::from_be_bytes([pdu[6], pdu[7]]) as usize;
    let data_len = u16::from_be_bytes([pdu[8], pdu[9]]) as usize;
    if header_len + param_len + data_len > pdu.len() {
        return malformed(format!(
            "S7 header announces {param_len} parameter and {data_len} data bytes, but only {} follow",
            pdu.len() - header_len
        ));
    }
    let params = &pdu[header_len..header_len + param_len];
    let data = &pdu[header_len + param_len..header_len + param_len + data_len];
    Ok(Reply {
        rosctr,
        params,
        data,
    })
}

/// The PDU size the PLC granted in its Setup Communication reply.
pub fn parse_setup_reply(pdu: &[u8], pdu_ref: u16) -> Result<u16, ReplyError> {
    let r = parse_reply(pdu, pdu_ref)?;
    if r.params.len() < 8 || r.params[0] != FN_SETUP_COMMUNICATION {
        return malformed("Setup Communication reply without its parameters");
    }
    Ok(u16::from_be_bytes([r.params[6], r.params[7]]))
}

/// One address item: `count` bytes from `byte` of `area`, or one bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    pub area: Area,
    pub byte: u32,
    /// `Some(bit)`: a single BIT item (writes of BOOL).
    pub bit: Option<u8>,
    /// Bytes (1 for a bit).
    pub count: u16,
}

fn push_item(out: &mut Vec<u8>, item: &Item) {
    let (ts, address) = match item.bit {
        Some(bit) => (TS_ITEM_BIT, item.byte << 3 | bit as u32),
        None => (TS_ITEM_BYTE, item.byte << 3),
    };
    out.extend_from_slice(&[0x12, 0x0A, 0x10, ts]);
    out.extend_from_slice(&item.count.to_be_bytes());
    out.extend_from_slice(&item.area.db_number().to_be_bytes());
    out.push(item.area.code());
    out.extend_from_slice(&address.to_be_bytes()[1..]);
}

/// A Read Var request for `items` (at most 255; the planner keeps within
/// the PDU size).
pub fn read_var_request(pdu_ref: u16, items: &[Item]) -> Vec<u8> {
    let param_len = 2 + READ_ITEM_LEN * items.len();
    let mut pdu = job_header(pdu_ref, param_len, 0);
    pdu.extend_from_slice(&[FN_READ_VAR, items.len() as u8]);
    for item in items {
        push_item(&mut pdu, item);
    }
    pdu
}

/// Per item of a Read Var reply: its bytes, or its return code.
pub type ItemResult = Result<Vec<u8>, u8>;

/// Parses a Read Var reply to a request of `expected` items.
pub fn parse_read_var_reply(
    pdu: &[u8],
    pdu_ref: u16,
    expected: usize,
) -> Result<Vec<ItemResult>, ReplyError> {
    let r = parse_reply(pdu, pdu_ref)?;
    if r.params.len() < 2 || r.params[0] != FN_READ_VAR {
        return malformed("Read Var reply without its function code");
    }
    if r.params[1] as usize != expected {
        return malformed(format!(
            "Read Var reply has {} items, asked for {expected}",
            r.params[1]
        ));
    }
    let mut out = Vec::with_capacity(expected);
    let mut data = r.data;
    for i in 0..expected {
        if data.len() < DATA_ITEM_HEADER_LEN {
            return malformed(format!("Read Var reply cut short at item {i}"));
        }
        let (rc, ts) = (data[0], data[1]);
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        data = &data[DATA_ITEM_HEADER_LEN..];
        if rc != 0xFF {
            out.push(Err(rc));
            continue;
        }
        let bytes = match ts {
            TS_DATA_BIT | TS_DATA_BYTE | 0x05 => len.div_ceil(8),
            0x07 | 0x09 => len,
            other => return malformed(format!("item {i}: unknown transport size 0x{other:02X}")),
        };
        if data.len() < bytes {
            return malformed(format!(
                "item {i}: {bytes} bytes announced, {} left",
                data.len()
            ));
        }
        out.push(Ok(data[..bytes].to_vec()));
        // A fill byte follows an odd-length item, except (usually) the last.
        let fill = usize::from(bytes % 2 == 1 && i + 1 < expected);
        data = &data[(bytes + fill).min(data.len())..];
    }
    Ok(out)
}

/// A Write Var request of one item: `data` to `item` (a BIT item takes one
/// byte, 0 or 1).
pub fn write_var_request(pdu_ref: u16, item: &Item, data: &[u8]) -> Vec<u8> {
    let data_len = DATA_ITEM_HEADER_LEN + data.len();
    let mut pdu = job_header(pdu_ref, 2 + READ_ITEM_LEN, data_len);
    pdu.extend_from_slice(&[FN_WRITE_VAR, 1]);
    push_item(&mut pdu, item);
    let (ts, bits) = match item.bit {
        Some(_) => (TS_DATA_BIT, 1u16),
        None => (TS_DATA_BYTE, (data.len() * 8) as u16),
    };
    pdu.extend_from_slice(&[0x00, ts]);
    pdu.extend_from_slice(&bits.to_be_bytes());
    pdu.extend_from_slice(data);
    pdu
}

/// Parses a Write Var reply of one item: Ok, or the item's return code.
pub fn parse_write_var_reply(pdu: &[u8], pdu_ref: u16) -> Result<Result<(), u8>, ReplyError> {
    let r = parse_reply(pdu, pdu_ref)?;
    if r.params.len() < 2 || r.params[0] != FN_WRITE_VAR {
        return malformed("Write Var reply without its function code");
    }
    match r.data.first() {
        Some(0xFF) => Ok(Ok(())),
        Some(&rc) => Ok(Err(rc)),
        None => malformed("Write Var reply without a return code"),
    }
}

/// A Userdata request reading SZL `id` with `index` (CPU functions group,
/// subfunction Read SZL).
pub fn szl_request(pdu_ref: u16, id: u16, index: u16) -> Vec<u8> {
    let mut pdu = vec![0x32, ROSCTR_USERDATA, 0x00, 0x00];
    pdu.extend_from_slice(&pdu_ref.to_be_bytes());
    pdu.extend_from_slice(&[0x00, 0x08, 0x00, 0x08]);
    pdu.extend_from_slice(&[0x00, 0x01, 0x12, 0x04, 0x11, 0x44, 0x01, 0x00]);
    pdu.extend_from_slice(&[0xFF, 0x09, 0x00, 0x04]);
    pdu.extend_from_slice(&id.to_be_bytes());
    pdu.extend_from_slice(&index.to_be_bytes());
    pdu
}

/// The SZL bytes (from the SZL id on) of a Read SZL reply, or the return
/// code when the PLC has no such list.
pub fn parse_szl_reply(pdu: &[u8], pdu_ref: u16) -> Result<Result<Vec<u8>, u8>, ReplyError> {
    let r = parse_reply(pdu, pdu_ref)?;
    if r.rosctr != ROSCTR_USERDATA || r.params.len() < 12 {
        return malformed("Read SZL reply is not a Userdata PDU with 12 parameter bytes");
    }
    let error = u16::from_be_bytes([r.params[10], r.params[11]]);
    if error != 0 {
        return Err(ReplyError::Header {
            class: r.params[10],
            code: r.params[11],
        });
    }
    if r.data.len() < DATA_ITEM_HEADER_LEN {
        return malformed("Read SZL reply without a data item");
    }
    if r.data[0] != 0xFF {
        return Ok(Err(r.data[0]));
    }
    let len = u16::from_be_bytes([r.data[2], r.data[3]]) as usize;
    let body = &r.data[DATA_ITEM_HEADER_LEN..];
    if body.len() < len {
        return malformed(format!(
            "Read SZL reply announces {len} bytes, {} follow",
            body.len()
        ));
    }
    Ok(Ok(body[..len].to_vec()))
}

/// The first `max` bytes of `b` in hex, for error messages.
pub fn hex(b: &[u8], max: usize) -> String {
    let mut s: Vec<String> = b.iter().take(max).map(|x| format!("{x:02X}")).collect();
    if b.len() > max {
        s.push("..".into());
    }
    s.join(" ")
}

#[cfg(test)]
mod tests {
    //! Recorded frames, as a Siemens CPU (S7-300/1500) and snap7 exchange
    //! them, explained field by field. They cover what python-snap7's
    //! server does not exercise: TSAP bytes for rack/slot, a PDU size other
    //! than its 480, BIT-item writes as a PLC answers them, an item return
    //! code inside a multi-item reply with fill bytes, header errors, and the
    //! SZL 0x0011 record layout of a real CPU.
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn connect_request_carries_tsaps_for_rack_and_slot() {
        // Rack 0, slot 2 (an S7-300 CPU): remote TSAP 0x0102.
        let want = unhex(
            "03 00 00 16 \
             11 E0 00 00 00 01 00 \
             C0 01 0A \
             C1 02 01 00 \
             C2 02 01 02",
        );
        // 03 00 00 16: TPKT version 3, reserved, frame length 22.
        // 11: COTP length indicator (17 bytes follow); E0: Connection Request;
        // 00 00: destination reference (unknown yet); 00 01: our source
        // reference; 00: class 0, no options.
        // C0 01 0A: parameter TPDU size, 1 byte, 2^10 = 1024.
        // C1 02 01 00: calling TSAP (ours), 2 bytes, 0x0100 (PG).
        // C2 02 01 02: called TSAP, 0x01 = PG connection, 0x02 = rack 0 * 32 + slot 2.
        assert_eq!(connect_request(0x0100, remote_tsap(0, 2)), want);
        // Rack 1 slot 3: low byte 1 * 32 + 3 = 0x23.
        assert_eq!(remote_tsap(1, 3), 0x0123);
        // The confirm: D0 = CC, then references and the same parameters.
        let cc = unhex("11 D0 00 01 44 31 00 C0 01 0A C1 02 01 00 C2 02 01 02");
        assert_eq!(parse_connect_confirm(&cc), Ok(()));
        // A CPU that has no module in that slot answers a Disconnect Request.
        let dr = unhex("06 80 00 01 00 00 00");
        assert!(parse_connect_confirm(&dr)
            .unwrap_err()
            .contains("rack/slot"));
    }

    #[test]
    fn setup_communication_negotiates_the_pdu_size() {
        // 32: protocol id; 01: Job; 00 00: reserved; 00 01: PDU reference;
        // 00 08: parameter length; 00 00: data length.
        // F0: Setup Communication; 00: reserved; 00 01: max AmQ calling;
        // 00 01: max AmQ called; 03 C0: PDU size 960.
        let req = unhex("32 01 00 00 00 01 00 08 00 00 F0 00 00 01 00 01 03 C0");
        assert_eq!(setup_communication(1, 960), req);
        // An S7-300 grants 240: 32 03 (Ack_Data) ... 00 00 (error class and
        // code: none) then the parameters with 00 F0 = 240.
        let reply = unhex("32 03 00 00 00 01 00 08 00 00 00 00 F0 00 00 01 00 01 00 F0");
        assert_eq!(parse_setup_reply(&reply, 1), Ok(240));
        // A reply to another request is refused (the stream is out of step).
        assert!(matches!(
            parse_setup_reply(&reply, 2),
            Err(ReplyError::Malformed(_))
        ));
    }

    #[test]
    fn multi_item_read_request_and_reply_with_a_missing_db() {
        let items = [
            // DB10, 4 bytes from byte 4 (a REAL at DBD4)
            Item {
                area: Area::Db(10),
                byte: 4,
                bit: None,
                count: 4,
            },
            // M, 1 byte at MB0 (holds M0.1)
            Item {
                area: Area::Merker,
                byte: 0,
                bit: None,
                count: 1,
            },
            // DB99, which does not exist
            Item {
                area: Area::Db(99),
                byte: 0,
                bit: None,
                count: 2,
            },
            // Q, 1 byte at QB1
            Item {
                area: Area::Output,
                byte: 1,
                bit: None,
                count: 1,
            },
        ];
        let req = unhex(
            "32 01 00 00 00 07 00 32 00 00 \
             04 04 \
             12 0A 10 02 00 04 00 0A 84 00 00 20 \
             12 0A 10 02 00 01 00 00 83 00 00 00 \
             12 0A 10 02 00 02 00 63 84 00 00 00 \
             12 0A 10 02 00 01 00 00 82 00 00 08",
        );
        // Header: Job, PDU reference 7, parameter length 0x32 = 2 + 4 * 12, no data.
        // 04: Read Var; 04: four items. Each item: 12 (variable
        // specification) 0A (10 bytes follow) 10 (S7-Any); 02: transport
        // size BYTE; count; DB number; area (84 DB, 83 M, 82 Q); 3-byte bit
        // address (byte 4 -> 0x000020, byte 1 -> 0x000008).
        assert_eq!(read_var_request(7, &items), req);
        let reply = unhex(
            "32 03 00 00 00 07 00 02 00 17 00 00 \
             04 04 \
             FF 04 00 20 42 F6 E9 79 \
             FF 04 00 08 02 00 \
             0A 00 00 00 \
             FF 04 00 08 81",
        );
        // Ack_Data, reference 7, 2 parameter bytes, 0x17 = 23 data bytes, no error.
        // Item 1: FF success, 04 byte/word/dword, 0x20 = 32 bits, 123.456f32.
        // Item 2: 8 bits, 0x02 (M0.1 set), then a fill byte (odd length).
        // Item 3: 0A object does not exist, no data.
        // Item 4: 8 bits, 0x81; the last item has no fill byte.
        let items = parse_read_var_reply(&reply, 7, 4).unwrap();
        assert_eq!(items[0], Ok(vec![0x42, 0xF6, 0xE9, 0x79]));
        assert_eq!(items[1], Ok(vec![0x02]));
        assert_eq!(items[2], Err(0x0A));
        assert_eq!(items[3], Ok(vec![0x81]));
        assert_eq!(item_error_text(0x0A), "object does not exist");
    }

    #[test]
    fn header_errors_are_reported_with_class_and_code() {
        // Ack (02) with error class 0x81, code 0x04 and nothing else, as
        // python-snap7 and real CPUs answer an unsupported function.
        let reply = unhex("32 02 00 00 00 03 00 00 00 00 81 04");
        assert_eq!(
            parse_read_var_reply(&reply, 3, 1),
            Err(ReplyError::Header {
                class: 0x81,
                code: 0x04
            })
        );
        assert_eq!(ReplyError::header_code(0x81, 0x04), 0x8104);
        assert!(header_error_text(0x85, 0x00).contains("PDU size"));
    }

    #[test]
    fn write_var_of_a_bit_and_of_bytes() {
        // Set DB1.DBX2.3: transport size 01 (BIT), count 1, DB 1, area 84,
        // bit address 2 * 8 + 3 = 0x13. Data item: 00 reserved, 03 BIT,
        // length 1 (in bits), value 01.
        let req = unhex(
            "32 01 00 00 00 09 00 0E 00 05 \
             05 01 \
             12 0A 10 01 00 01 00 01 84 00 00 13 \
             00 03 00 01 01",
        );
        let bit = Item {
            area: Area::Db(1),
            byte: 2,
            bit: Some(3),
            count: 1,
        };
        assert_eq!(write_var_request(9, &bit, &[1]), req);
        // A WORD to MW10: BYTE item of 2, data 04 (bytes, length in bits) 0x10 = 16.
        let word = Item {
            area: Area::Merker,
            byte: 10,
            bit: None,
            count: 2,
        };
        let req = write_var_request(10, &word, &[0x12, 0x34]);
        assert_eq!(
            &req[10..],
            &unhex("05 01 12 0A 10 02 00 02 00 00 83 00 00 50 00 04 00 10 12 34")[..]
        );
        assert_eq!(req.len(), WRITE_OVERHEAD + 2);
        // Replies: FF success; 0A object does not exist (a PLC writing to a
        // missing DB; python-snap7 answers a header error 0x8404 instead).
        let ok = unhex("32 03 00 00 00 09 00 02 00 01 00 00 05 01 FF");
        assert_eq!(parse_write_var_reply(&ok, 9), Ok(Ok(())));
        let missing = unhex("32 03 00 00 00 09 00 02 00 01 00 00 05 01 0A");
        assert_eq!(parse_write_var_reply(&missing, 9), Ok(Err(0x0A)));
    }

    #[test]
    fn szl_request_and_reply() {
        // Userdata (07), 10-byte header, 8 parameter and 8 data bytes.
        // Parameters: 00 01 12 (head), 04 (4 follow), 11 (request), 44
        // (type 4 = request, group 4 = CPU functions), 01 (Read SZL), 00 (sequence).
        // Data: FF, 09 (octet string), 00 04 bytes: SZL id 0x0011, index 0x0000.
        let req = unhex(
            "32 07 00 00 00 05 00 08 00 08 \
             00 01 12 04 11 44 01 00 \
             FF 09 00 04 00 11 00 00",
        );
        assert_eq!(szl_request(5, 0x0011, 0), req);
        // Reply parameters: 12 08 (8 follow) 12 (response) 84 (type 8 =
        // response, group 4) 01 (Read SZL) 01 (sequence) 00 (data unit ref)
        // 00 (last data unit) 00 00 (no error). Data: FF 09, length 0x0A:
        // SZL id 0011, index 0000, record length 2, 1 record, record 00 01
        // (the record layout is szl.rs's business; this is the framing).
        let reply = unhex(
            "32 07 00 00 00 05 00 0C 00 0E \
             00 01 12 08 12 84 01 01 00 00 00 00 \
             FF 09 00 0A 00 11 00 00 00 02 00 01 00 01",
        );
        let body = parse_szl_reply(&reply, 5).unwrap().unwrap();
        assert_eq!(body, unhex("00 11 00 00 00 02 00 01 00 01"));
        // No such list: the data item's return code is not FF.
        let none = unhex(
            "32 07 00 00 00 05 00 0C 00 04 \
             00 01 12 08 12 84 01 01 00 00 00 00 \
             0A 00 00 00",
        );
        assert_eq!(parse_szl_reply(&none, 5), Ok(Err(0x0A)));
    }

    #[test]
    fn truncated_and_garbage_replies_are_errors_not_panics() {
        let reply = unhex(
            "32 03 00 00 00 07 00 02 00 17 00 00 04 04 \
             FF 04 00 20 42 F6 E9 79 FF 04 00 08 02 00 0A 00 00 00 FF 04 00 08 81",
        );
        for cut in 0..reply.len() {
            assert!(
                parse_read_var_reply(&reply[..cut], 7, 4).is_err(),
                "cut at {cut}"
            );
            let _ = parse_setup_reply(&reply[..cut], 7);
            let _ = parse_write_var_reply(&reply[..cut], 7);
            let _ = parse_szl_reply(&reply[..cut], 7);
        }
        // Data length lies: announces 200 bits (25 bytes) with 4 left.
        let lie = unhex("32 03 00 00 00 07 00 02 00 08 00 00 04 01 FF 04 00 C8 01 02 03 04");
        assert!(parse_read_var_reply(&lie, 7, 1).is_err());
        let mut seed = 0x2545_F491_u32;
        for _ in 0..2000 {
            let n = (seed % 40) as usize;
            let junk: Vec<u8> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = parse_read_var_reply(&junk, 7, 3);
            let _ = parse_szl_reply(&junk, 7);
            let _ = parse_data_tpdu(&junk);
            let _ = parse_connect_confirm(&junk);
        }
        assert!(parse_data_tpdu(&[0x02, 0xF0]).is_err());
        assert!(tpkt_length(&[3, 0, 0, 5]).is_err());
        assert!(tpkt_length(&[0x16, 3, 0, 30]).is_err());
        assert_eq!(
            parse_data_tpdu(&[0x02, 0xF0, 0x80, 0x32]).unwrap(),
            (&[0x32][..], true)
        );
    }
}
