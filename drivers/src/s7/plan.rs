//! Read planning: turn one device's tags into as few Read Var requests as
//! the negotiated PDU size allows.
//!
//! Three steps, all pure (no I/O, no tags beyond their parsed addresses):
//!
//! 1. **Ranges.** Tags are sorted by area and start; a range grows while the
//!    next tag starts within [`MAX_GAP`] bytes of its end. Reading a few
//!    unused bytes is cheaper than another item (12 request bytes, 4 reply
//!    bytes), and S7 areas have no holes (a DB is contiguous up to its end).
//! 2. **Items.** A range longer than one item can carry (`pdu - 18` bytes:
//!    Ack_Data header 12, function and count 2, item header 4) is split
//!    into several items; the driver puts the bytes back together.
//! 3. **Requests.** Items are packed, in order, into a request while both
//!    the request (12 + 12 per item) and its reply (14 + per item 4 + data
//!    padded to even) fit the PDU size, and at most 255 items (the count is
//!    one byte). There is no fixed item limit such as snap7's 20: the PDU
//!    arithmetic is what the CPU checks (an S7-300 at PDU 240 takes 19
//!    items, an S7-1500 at 960 takes 79).

use super::address::{Area, S7Address};
use super::codec::{
    Item, DATA_ITEM_HEADER_LEN, READ_ITEM_LEN, READ_REPLY_OVERHEAD, READ_REQUEST_OVERHEAD,
};

/// Most unused bytes read to join two tags into one range.
pub const MAX_GAP: u32 = 16;

/// Smallest PDU size the planner works with (a CPU grants at least 240).
pub const MIN_PDU: u16 = 64;

/// Bytes of contiguous memory read for one or more tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub area: Area,
    pub start: u32,
    pub end: u32,
    /// Indices (into the planned tag list) of the tags it serves.
    pub tags: Vec<usize>,
}

/// One address item of a request and the range it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedItem {
    pub item: Item,
    pub range: usize,
}

/// The reads for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub ranges: Vec<Range>,
    /// Each request's items.
    pub requests: Vec<Vec<PlannedItem>>,
    /// Per input tag: the index of its range, or why it has none.
    pub slots: Vec<Result<usize, String>>,
}

/// Largest data one item can carry at `pdu` in a reply.
pub fn max_item_bytes(pdu: u16) -> u32 {
    (pdu as usize - READ_REPLY_OVERHEAD - DATA_ITEM_HEADER_LEN) as u32
}

/// Plans reads of `tags` (an `Err` passes through to its slot) for a
/// connection with PDU size `pdu` (at least [`MIN_PDU`]).
pub fn plan(tags: &[Result<S7Address, String>], pdu: u16) -> Plan {
    let pdu = pdu.max(MIN_PDU);
    let mut slots: Vec<Result<usize, String>> = tags
        .iter()
        .map(|t| t.as_ref().map(|_| usize::MAX).map_err(Clone::clone))
        .collect();
    let mut order: Vec<(Area, u32, u32, usize)> = tags
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.as_ref().ok().map(|a| (a.area, a.byte, a.end(), i)))
        .collect();
    order.sort_unstable();
    let mut ranges: Vec<Range> = Vec::new();
    for (area, start, end, i) in order {
        match ranges.last_mut() {
            Some(r) if r.area == area && start <= r.end.saturating_add(MAX_GAP) => {
                r.end = r.end.max(end);
                r.tags.push(i);
            }
            _ => ranges.push(Range {
                area,
                start,
                end,
                tags: vec![i],
            }),
        }
        slots[i] = Ok(ranges.len() - 1);
    }
    let requests = pack(&ranges, pdu);
    Plan {
        ranges,
        requests,
        slots,
    }
}

/// Splits ranges into items and packs them into requests.
fn pack(ranges: &[Range], pdu: u16) -> Vec<Vec<PlannedItem>> {
    let max_item = max_item_bytes(pdu);
    let pdu = pdu as usize;
    let mut requests: Vec<Vec<PlannedItem>> = Vec::new();
    // Start "full" so the first item opens a request.
    let (mut req_len, mut reply_len) = (pdu, pdu);
    for (ri, r) in ranges.iter().enumerate() {
        let mut start = r.start;
        while start < r.end {
            let count = (r.end - start).min(max_item);
            let reply_item = DATA_ITEM_HEADER_LEN + (count as usize).next_multiple_of(2);
            let fits = req_len + READ_ITEM_LEN <= pdu
                && reply_len + reply_item <= pdu
                && requests.last().is_some_and(|q| q.len() < 255);
            if !fits {
                requests.push(Vec::new());
                req_len = READ_REQUEST_OVERHEAD;
                reply_len = READ_REPLY_OVERHEAD;
            }
            req_len += READ_ITEM_LEN;
            reply_len += reply_item;
            let item = Item {
                area: r.area,
                byte: start,
                bit: None,
                count: count as u16,
            };
            requests
                .last_mut()
                .expect("a request was just ensured")
                .push(PlannedItem { item, range: ri });
            start += count;
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s7::address::parse;
    use crate::DataType;

    fn addrs(list: &[&str]) -> Vec<Result<S7Address, String>> {
        list.iter()
            .map(|a| {
                let t = if a.contains(".DBX") || a.starts_with('M') && a.contains('.') {
                    DataType::Bool
                } else if a.contains("STRING") {
                    DataType::String
                } else {
                    DataType::F64
                };
                parse(a, t, 0)
            })
            .collect()
    }

    #[test]
    fn neighbours_merge_within_the_gap_and_areas_stay_apart() {
        let p = plan(
            &addrs(&[
                "DB1.DBD0:REAL",
                "DB1.DBD20:REAL",
                "DB1.DBD41:REAL",
                "M0.1",
                "DB2.DBD0:REAL",
            ]),
            480,
        );
        let spans: Vec<_> = p.ranges.iter().map(|r| (r.area, r.start, r.end)).collect();
        // 4..20 is a gap of 16 (joined), 24..41 of 17 (not joined).
        assert_eq!(
            spans,
            vec![
                (Area::Merker, 0, 1),
                (Area::Db(1), 0, 24),
                (Area::Db(1), 41, 45),
                (Area::Db(2), 0, 4)
            ]
        );
        assert_eq!(p.slots, vec![Ok(1), Ok(1), Ok(2), Ok(0), Ok(3)]);
        assert_eq!(p.requests.len(), 1);
        assert_eq!(p.requests[0].len(), 4);
    }

    #[test]
    fn request_item_count_follows_the_pdu_arithmetic() {
        // 100 REALs 40 bytes apart: one range each.
        let list: Vec<String> = (0..100)
            .map(|i| format!("DB1.DBD{}:REAL", i * 40))
            .collect();
        let tags: Vec<_> = list.iter().map(|a| parse(a, DataType::F32, 0)).collect();
        // PDU 240: request 12 + 12n <= 240 gives n = 19 (reply 14 + 8n fits).
        let sizes: Vec<usize> = plan(&tags, 240).requests.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![19, 19, 19, 19, 19, 5]);
        // PDU 480: n = 39; PDU 960: n = 79.
        assert_eq!(plan(&tags, 480).requests[0].len(), 39);
        assert_eq!(plan(&tags, 960).requests[0].len(), 79);
    }

    #[test]
    fn the_reply_size_limits_packing_too() {
        // 8 strings of 102 bytes (STRING[100]), 200 bytes apart: each item's
        // reply takes 4 + 102 = 106 bytes; at 480, (480 - 14) / 106 = 4 items.
        let list: Vec<String> = (0..8)
            .map(|i| format!("DB1.DBB{}:STRING[100]", i * 200))
            .collect();
        let tags: Vec<_> = list.iter().map(|a| parse(a, DataType::String, 0)).collect();
        let sizes: Vec<usize> = plan(&tags, 480).requests.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4]);
    }

    #[test]
    fn ranges_larger_than_an_item_are_split() {
        // STRING[254] is 256 bytes; at PDU 240 an item carries 240 - 18 = 222.
        let p = plan(&addrs(&["DB3.DBB10:STRING"]), 240);
        let items: Vec<_> = p
            .requests
            .iter()
            .flatten()
            .map(|i| (i.item.byte, i.item.count))
            .collect();
        assert_eq!(items, vec![(10, 222), (232, 34)]);
        // Both fit one reply? 14 + 226 > 240: no, two requests.
        assert_eq!(p.requests.len(), 2);
        assert!(p.requests.iter().flatten().all(|i| i.range == 0));
    }

    #[test]
    fn bad_tags_keep_their_error_and_get_no_item() {
        let tags = vec![
            Err("address 'x': bad".to_string()),
            parse("MW2", DataType::I16, 0),
        ];
        let p = plan(&tags, 480);
        assert_eq!(p.slots[0], Err("address 'x': bad".to_string()));
        assert_eq!(p.slots[1], Ok(0));
        assert_eq!(p.requests.len(), 1);
        assert!(plan(&[], 480).requests.is_empty());
    }
}
