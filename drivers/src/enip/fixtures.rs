//! Recorded byte-level fixtures for what cpppo's simulator cannot exercise:
//! a real UDT member path, program scope as a controller sees it, the Logix
//! STRING structure, a controller's 0x04 for an unknown tag, extended
//! statuses, fragmented replies, embedded errors in a Multiple Service
//! Packet, a Forward Open request and its refusal (with the fallback to
//! unconnected messaging, against a scripted server), and List Identity.
//! Every frame is written out field by field, then decoded (or encoded) and
//! asserted. Truncated and garbage frames must give errors, never panics.

use super::address::TagPath;
use super::codec::{self, CipReply, CipType, ForwardOpen};
use super::identity;
use crate::{DataType, Value};

/// `Recipe.Temps[0]`, a member of a UDT instance, read with Read Tag.
#[test]
fn read_tag_request_for_a_udt_member_path() {
    let path = TagPath::parse("Recipe.Temps[0]").unwrap();
    let req = codec::read_tag(&path.epath(), 1);
    #[rustfmt::skip]
    let want = [
        0x4C,                                           // service: Read Tag
        0x09,                                           // path size: 9 words (18 bytes)
        0x91, 0x06, b'R', b'e', b'c', b'i', b'p', b'e', // symbolic "Recipe" (6, even: no pad)
        0x91, 0x05, b'T', b'e', b'm', b'p', b's', 0x00, // symbolic "Temps" (5) + pad byte
        0x28, 0x00,                                     // element 0 (8-bit element segment)
        0x01, 0x00,                                     // element count: 1
    ];
    assert_eq!(req, want);
}

/// `Program:Main.Tag`: the program name is one symbolic segment.
#[test]
fn program_scope_path_and_multi_dimensional_index() {
    #[rustfmt::skip]
    let want = [
        0x91, 0x0C, b'P', b'r', b'o', b'g', b'r', b'a', b'm', b':', b'M', b'a', b'i', b'n',
        0x91, 0x03, b'T', b'a', b'g', 0x00,             // "Tag" (3) + pad
    ];
    assert_eq!(TagPath::parse("Program:Main.Tag").unwrap().epath(), want);
    // Grid[1,2]: one element segment per dimension, in order.
    #[rustfmt::skip]
    let want = [0x91, 0x04, b'G', b'r', b'i', b'd', 0x28, 0x01, 0x28, 0x02];
    assert_eq!(TagPath::parse("Grid[1,2]").unwrap().epath(), want);
}

#[test]
fn forward_open_request_field_by_field() {
    let fo = ForwardOpen {
        t_o_id: 0x1122_3344,
        connection_serial: 0x5566,
        vendor_id: 0x1337,
        originator_serial: 0x8899_AABB,
        rpi_us: 2_000_000,
        size: 504,
        slot: 0,
    };
    #[rustfmt::skip]
    let want = [
        0x54,                   // service: Forward Open
        0x02, 0x20, 0x06, 0x24, 0x01, // path: 2 words, class 0x06 (Connection Manager) instance 1
        0x0A,                   // priority/time tick
        0x0E,                   // timeout ticks
        0x00, 0x00, 0x00, 0x00, // O->T connection id: 0, the target picks
        0x44, 0x33, 0x22, 0x11, // T->O connection id: ours
        0x66, 0x55,             // connection serial
        0x37, 0x13,             // originator vendor id
        0xBB, 0xAA, 0x99, 0x88, // originator serial
        0x03,                   // connection timeout multiplier (x32)
        0x00, 0x00, 0x00,       // reserved
        0x80, 0x84, 0x1E, 0x00, // O->T RPI: 2,000,000 us
        0xF8, 0x43,             // O->T parameters: point-to-point 0x4000 | variable 0x0200 | 504
        0x80, 0x84, 0x1E, 0x00, // T->O RPI
        0xF8, 0x43,             // T->O parameters
        0xA3,                   // transport: server, application trigger, class 3
        0x03,                   // connection path: 3 words
        0x01, 0x00,             //   port 1 (backplane), slot 0
        0x20, 0x02, 0x24, 0x01, //   Message Router
    ];
    assert_eq!(fo.encode(), want);
    // Above 511 bytes: Large Forward Open, 32-bit parameters.
    let large = ForwardOpen {
        size: 4002,
        ..fo.clone()
    }
    .encode();
    assert_eq!(large[0], 0x5B);
    assert_eq!(&large[32..36], &(0x4200_0000u32 | 4002).to_le_bytes());
    // Forward Close names the same connection.
    #[rustfmt::skip]
    let close = [
        0x4E, 0x02, 0x20, 0x06, 0x24, 0x01, // Forward Close to the Connection Manager
        0x0A, 0x0E,                         // priority/tick, timeout ticks
        0x66, 0x55, 0x37, 0x13,             // connection serial, vendor
        0xBB, 0xAA, 0x99, 0x88,             // originator serial
        0x03, 0x00,                         // path size 3 words, reserved
        0x01, 0x00, 0x20, 0x02, 0x24, 0x01,
    ];
    assert_eq!(fo.close(), close);
}

/// A Logix STRING read: a structure (0x02A0) with handle 0x0FCE.
#[test]
fn logix_string_structure_reply() {
    let mut reply = vec![
        0xCC, // Read Tag reply
        0x00, // reserved
        0x00, // status: success
        0x00, // extended status size: 0
        0xA0, 0x02, // type: structure
        0xCE, 0x0F, // structure handle: STRING
        0x05, 0x00, 0x00, 0x00, // LEN (DINT): 5
        b'H', b'e', b'l', b'l', b'o',
    ];
    reply.resize(reply.len() + 77 + 2, 0); // rest of DATA[82], 2 pad bytes
    let r = CipReply::parse(&reply).unwrap();
    assert_eq!((r.service, r.status), (0xCC, 0));
    let (ty, data) = codec::typed_data(r.data).unwrap();
    assert_eq!(ty, CipType::LOGIX_STRING);
    assert_eq!(ty.name(), "STRING");
    assert!(codec::fits(ty, DataType::String));
    assert!(!codec::fits(ty, DataType::I32));
    assert_eq!(
        codec::decode_values(ty, data, 1).unwrap(),
        vec![Value::Text("Hello".into())]
    );
    // Writing encodes the same 88 bytes after the type and handle.
    let enc = codec::encode_value(ty, &Value::Text("Hello".into())).unwrap();
    assert_eq!(enc, reply[8..]);
    let req = codec::write_tag(&TagPath::parse("Msg").unwrap().epath(), ty, 1, &enc);
    #[rustfmt::skip]
    assert_eq!(&req[..12], &[
        0x4D, 0x03, 0x91, 0x03, b'M', b's', b'g', 0x00, // Write Tag, path "Msg"
        0xA0, 0x02, 0xCE, 0x0F,                         // type STRUCT, handle 0x0FCE
    ]);
    assert_eq!(&req[12..14], &[0x01, 0x00]); // one element
    assert!(codec::encode_value(ty, &Value::Text("x".repeat(83))).is_err());
    // LEN beyond 82 is malformed.
    let mut bad = reply.clone();
    bad[8] = 83;
    let (ty, data) = codec::typed_data(CipReply::parse(&bad).unwrap().data).unwrap();
    assert!(codec::decode_values(ty, data, 1)
        .unwrap_err()
        .contains("LEN 83"));
}

/// A UDT instance (another structure handle) is not an atomic type.
#[test]
fn udt_structure_reply_is_refused_by_type() {
    #[rustfmt::skip]
    let reply = [0xCC, 0x00, 0x00, 0x00, 0xA0, 0x02, 0x34, 0x12, 1, 2, 3, 4];
    let (ty, data) = codec::typed_data(CipReply::parse(&reply).unwrap().data).unwrap();
    assert_eq!(ty.name(), "structure (handle 0x1234)");
    assert!(!codec::fits(ty, DataType::I32));
    assert!(codec::decode_values(ty, data, 1)
        .unwrap_err()
        .contains("not an atomic type"));
}

/// LINT, LREAL, SINT and a signed INT from a controller.
#[test]
fn atomic_replies_decode() {
    let cases: [(&[u8], Value); 6] = [
        (
            &[0xC5, 0x00, 0x35, 0xFB, 0x04, 0x8E, 0xE0, 0xFE, 0xFF, 0xFF],
            Value::Int(-1_234_567_890_123),
        ),
        (
            &[0xCB, 0x00, 0x18, 0x2D, 0x44, 0x54, 0xFB, 0x21, 0x09, 0x40],
            Value::Float(std::f64::consts::PI),
        ),
        (&[0xC2, 0x00, 0xF4], Value::Int(-12)),
        (&[0xC3, 0x00, 0x2E, 0xFB], Value::Int(-1234)),
        (&[0xCA, 0x00, 0x00, 0x00, 0xAC, 0x41], Value::Float(21.5)),
        (&[0xC1, 0x00, 0xFF], Value::Bool(true)),
    ];
    for (data, want) in cases {
        let (ty, rest) = codec::typed_data(data).unwrap();
        assert_eq!(
            codec::decode_values(ty, rest, 1).unwrap(),
            vec![want.clone()],
            "{}",
            ty.name()
        );
        assert_eq!(
            codec::encode_value(ty, &want).unwrap(),
            rest,
            "{} round trip",
            ty.name()
        );
    }
    let sint = CipType::atomic(codec::code::SINT);
    assert!(codec::encode_value(sint, &Value::Int(128))
        .unwrap_err()
        .contains("outside the range of SINT"));
    assert!(codec::fits(sint, DataType::I16) && !codec::fits(sint, DataType::U16));
}

/// A controller's answer for an unknown tag: 0x04, extended 0x0000.
#[test]
fn unknown_tag_and_extended_statuses() {
    let r = CipReply::parse(&[0xCC, 0x00, 0x04, 0x01, 0x00, 0x00]).unwrap();
    assert_eq!(r.cip_status().reason(), "cip_status:0x04");
    assert!(r.cip_status().describe().contains("unknown tag"));
    // Write Tag with the wrong type: general error 0xFF, extended 0x2107.
    let r = CipReply::parse(&[0xCD, 0x00, 0xFF, 0x01, 0x07, 0x21]).unwrap();
    assert_eq!(r.cip_status().reason(), "cip_status:0xff/0x2107");
    assert!(r
        .cip_status()
        .describe()
        .contains("data type does not match"));
    // Unconnected Send failed in routing: no module in that slot.
    let r = CipReply::parse(&[0xD2, 0x00, 0x01, 0x01, 0x12, 0x03]).unwrap();
    assert!(r.cip_status().describe().contains("no module in that slot"));
}

/// Read Tag Fragmented: 0x06 "partial transfer" with data, then the rest.
#[test]
fn fragmented_replies() {
    #[rustfmt::skip]
    let first = [
        0xD2, 0x00,             // Read Tag Fragmented reply, reserved
        0x06, 0x00,             // status 0x06: partial transfer, no extended status
        0xC4, 0x00,             // type DINT
        0x0A, 0x00, 0x00, 0x00, // element 0: 10
        0x14, 0x00, 0x00, 0x00, // element 1: 20
    ];
    #[rustfmt::skip]
    let last = [0xD2, 0x00, 0x00, 0x00, 0xC4, 0x00, 0x1E, 0x00, 0x00, 0x00];
    let a = CipReply::parse(&first).unwrap();
    assert_eq!(a.status, codec::STATUS_PARTIAL);
    let b = CipReply::parse(&last).unwrap();
    let (ty, d1) = codec::typed_data(a.data).unwrap();
    let (_, d2) = codec::typed_data(b.data).unwrap();
    let all = [d1, d2].concat();
    assert_eq!(
        codec::decode_values(ty, &all, 3).unwrap(),
        vec![Value::Int(10), Value::Int(20), Value::Int(30)]
    );
    // The request for the second fragment asks from byte offset 8.
    let req = codec::read_tag_fragmented(&TagPath::parse("A").unwrap().epath(), 3, 8);
    assert_eq!(
        req,
        [0x52, 0x02, 0x91, 0x01, b'A', 0x00, 0x03, 0x00, 0x08, 0x00, 0x00, 0x00]
    );
}

/// A Multiple Service Packet reply in which the second service failed.
#[test]
fn multiple_service_reply_with_an_embedded_error() {
    #[rustfmt::skip]
    let reply = [
        0x8A, 0x00,             // Multiple Service Packet reply, reserved
        0x1E, 0x00,             // status 0x1E: embedded service error
        0x02, 0x00,             // 2 replies
        0x06, 0x00, 0x10, 0x00, // offsets 6 and 16 (from the count)
        0xCC, 0x00, 0x00, 0x00, 0xCA, 0x00, 0x00, 0x00, 0xAC, 0x41, // REAL 21.5
        0xCC, 0x00, 0x04, 0x01, 0x00, 0x00,                         // 0x04 unknown tag
    ];
    let r = CipReply::parse(&reply).unwrap();
    assert_eq!(r.status, codec::STATUS_EMBEDDED_ERROR);
    let parts = codec::multiple_service_replies(r.data).unwrap();
    assert_eq!(parts.len(), 2);
    let ok = CipReply::parse(parts[0]).unwrap();
    let (ty, d) = codec::typed_data(ok.data).unwrap();
    assert_eq!(
        codec::decode_values(ty, d, 1).unwrap(),
        vec![Value::Float(21.5)]
    );
    assert_eq!(
        CipReply::parse(parts[1]).unwrap().cip_status().reason(),
        "cip_status:0x04"
    );
    // And the request side: count, offsets from the count field, requests.
    let a = codec::read_tag(&[0x91, 0x01, b'A', 0x00], 1);
    let msp = codec::multiple_service_packet(&[a.clone(), a.clone()]);
    #[rustfmt::skip]
    assert_eq!(&msp[..10], &[0x0A, 0x02, 0x20, 0x02, 0x24, 0x01, 0x02, 0x00, 0x06, 0x00]);
    assert_eq!(&msp[10..12], &(6 + a.len() as u16).to_le_bytes());
}

/// List Identity reply of a 1756-L61 (cpppo answers the same fields).
#[test]
fn list_identity_reply() {
    #[rustfmt::skip]
    let mut body = vec![
        0x01, 0x00,             // one CPF item
        0x0C, 0x00,             // type: identity
        0x00, 0x00,             // length, patched below
        0x01, 0x00,             // encapsulation protocol version 1
        0x00, 0x02, 0xAF, 0x12, // sin_family 2, sin_port 44818 (big-endian)
        0xC0, 0xA8, 0x01, 0x0A, // 192.168.1.10
        0, 0, 0, 0, 0, 0, 0, 0, // sin_zero
        0x01, 0x00,             // vendor 1 (Rockwell)
        0x0E, 0x00,             // device type 14 (PLC)
        0x36, 0x00,             // product code 54
        0x14, 0x0B,             // revision 20.11
        0x60, 0x31,             // status word
        0x1A, 0x06, 0x6C, 0x00, // serial 0x006C061A
        0x04, b'L', b'6', b'1', b'!', // product name (SHORT_STRING)
        0x03,                   // state
    ];
    let len = (body.len() - 6) as u16;
    body[4..6].copy_from_slice(&len.to_le_bytes());
    let id = identity::parse_reply(&body).unwrap();
    assert_eq!(
        id,
        identity::Identity {
            vendor_id: 1,
            device_type: 14,
            product_code: 54,
            revision: "20.11".into(),
            serial: 0x006C_061A,
            product_name: "L61!".into(),
            state: 3,
        }
    );
    for n in 0..body.len() {
        assert!(
            identity::parse_reply(&body[..n]).is_err(),
            "truncated at {n}"
        );
    }
}

/// Truncated prefixes and garbage: errors, no panics.
#[test]
fn truncated_and_garbage_replies_are_errors() {
    let frames: [&[u8]; 4] = [
        &[
            0x8A, 0x00, 0x00, 0x00, 0x02, 0x00, 0x06, 0x00, 0x10, 0x00, 0xCC, 0x00, 0x00, 0x00,
            0xC4, 0x00,
        ],
        &[0xCC, 0x00, 0x00, 0x00, 0xA0, 0x02, 0xCE, 0x0F, 0x05, 0x00],
        &[0xCC, 0x00, 0xFF, 0x02, 0x07],
        &[0xCC, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x09, 0x00, b'a'],
    ];
    for f in frames {
        for n in 0..=f.len() {
            let b = &f[..n];
            if let Ok(r) = CipReply::parse(b) {
                let _ = codec::multiple_service_replies(r.data);
                if let Ok((ty, d)) = codec::typed_data(r.data) {
                    let _ = codec::decode_values(ty, d, 3);
                }
            }
        }
    }
    assert!(codec::multiple_service_replies(&[0x02, 0x00, 0x06, 0x00, 0xFF, 0x00]).is_err());
    assert!(codec::multiple_service_replies(&[0x02, 0x00, 0x08, 0x00, 0x06, 0x00, 0, 0]).is_err());
    assert!(CipReply::parse(&[0x4C, 0, 0, 0])
        .unwrap_err()
        .contains("reply bit"));
    assert!(codec::EncapHeader::parse(&[0; 23])
        .unwrap_err()
        .contains("options"));
    assert!(codec::unit_data_reply(&[0; 8]).is_err());
    assert!(codec::rr_data_reply(&[0, 0, 0, 0, 0, 0, 1, 0, 0xB2, 0, 9, 0]).is_err());
    // Pseudo-random garbage through every decoder.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..2000 {
        let len = (x % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = codec::parse_cpf(&bytes);
        let _ = codec::unit_data_reply(&bytes);
        let _ = codec::rr_data_reply(&bytes);
        let _ = identity::parse_reply(&bytes);
        let _ = codec::ForwardOpenReply::parse(&bytes);
        let _ = codec::multiple_service_replies(&bytes);
        if let Ok((ty, d)) = codec::typed_data(&bytes) {
            let _ = codec::decode_values(ty, d, 4);
        }
        if let Ok(r) = CipReply::parse(&bytes) {
            let _ = r.cip_status().describe();
        }
    }
}

/// A scripted controller that refuses Forward Open (out of connections)
/// and answers Read Tag over Unconnected Send: the driver falls back.
#[tokio::test]
async fn forward_open_refused_falls_back_to_unconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        loop {
            let mut head = [0u8; 24];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let h = codec::EncapHeader::parse(&head).unwrap();
            let mut body = vec![0u8; h.length as usize];
            s.read_exact(&mut body).await.unwrap();
            let reply = match h.command {
                codec::command::REGISTER_SESSION => {
                    codec::encap(h.command, 0x0000_BEEF, h.context, &body)
                }
                codec::command::SEND_RR_DATA => {
                    let cip = codec::rr_data_reply(&body).unwrap().to_vec();
                    log.lock().unwrap().push(cip.clone());
                    let answer: &[u8] = match cip[0] {
                        // Forward Open reply: status 0x01, extended 0x0113.
                        0x54 => &[0xD4, 0x00, 0x01, 0x01, 0x13, 0x01],
                        // Unconnected Send: the embedded Read Tag's reply, DINT 42.
                        _ => &[0xCC, 0x00, 0x00, 0x00, 0xC4, 0x00, 0x2A, 0x00, 0x00, 0x00],
                    };
                    codec::send_rr_data(0x0000_BEEF, h.context, answer)
                }
                _ => return,
            };
            s.write_all(&reply).await.unwrap();
        }
    });
    let mut d = super::EnipDriver::new(
        &addr.to_string(),
        super::EnipOptions {
            slot: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let s = crate::Driver::read(&mut d, &[spec("Answer", DataType::I32)]).await;
    assert_eq!(s[0].value, Some(Value::Int(42)));
    assert!(!d.connected_messaging());
    let why = d.forward_open_refused().unwrap();
    assert!(
        why.contains("cip_status:0x01/0x0113") && why.contains("out of connections"),
        "{why}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    #[rustfmt::skip]
    assert_eq!(seen[1], [
        0x52, 0x02, 0x20, 0x06, 0x24, 0x01, // Unconnected Send to the Connection Manager
        0x0A, 0x0E,                         // priority/tick, timeout ticks
        0x0C, 0x00,                         // embedded message: 12 bytes
        0x4C, 0x04, 0x91, 0x06, b'A', b'n', b's', b'w', b'e', b'r', 0x01, 0x00,
        0x01, 0x00,                         // route path: 1 word, reserved
        0x01, 0x02,                         // port 1 (backplane), slot 2
    ]);
}

fn spec(address: &str, data_type: DataType) -> crate::TagSpec {
    crate::TagSpec::new(address, data_type)
}
